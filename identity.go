package twofactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-twofactor/twofactor/cache"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/session"
)

// Identity says where the member's first-factor identity comes from. The
// gateway never checks passwords; it learns who is signed in from the member
// site or from a trusted handler that ran before it.
type Identity struct {
	// "endpoint": call the member site's "who am I" URL with the member's
	// cookies. "header": read a value set by a trusted earlier handler.
	// Required; there is no default.
	Source string `json:"source,omitempty"`

	// For source "header": a placeholder set by an earlier handler, such
	// as {http.auth.user.id} from basic_auth, or the name of a request
	// header that an earlier handler always sets or removes, such as one
	// listed in forward_auth's copy_headers. A header that reaches Caddy
	// from the client unchanged must never be used: anyone could claim to
	// be anyone. Placeholders of the request itself ({http.request.*}) are
	// refused for that reason. Required for source "header".
	Header string `json:"header,omitempty"`

	// For source "endpoint": the absolute URL of the member site's "who am
	// I" endpoint. It receives the member's cookies (except the gateway's
	// own) and answers 200 with JSON {"id": ..., "email": ..., "phone":
	// ...} for a signed-in member, or 401/403 (or a redirect to its
	// sign-in page) otherwise. Required for source "endpoint".
	URL string `json:"url,omitempty"`

	// The member site's session cookie. The second-factor session is bound
	// to it, so signing in again at the member site asks for the second
	// factor again. Required for source "endpoint" (the endpoint is only
	// called when the cookie is present). For "header", strongly advised:
	// without it a second-factor session outlives the sign-in it followed.
	// Default: none.
	SessionCookie string `json:"session_cookie,omitempty"`

	// How long an endpoint answer is reused for the same member-site
	// session. Keep it short for sites that keep the session cookie's value
	// across sign-out and sign-in. Default: 10s.
	Cache caddy.Duration `json:"cache,omitempty"`

	// For source "endpoint": how many member-site sessions' answers are
	// kept at most, from 1000 to 10000000. Past it the least used are
	// forgotten first, so members active all the time stay cached
	// however many others pass; each costs about 250 bytes with short
	// IDs and addresses (see the README). Default: 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// How long to wait for the endpoint. Default: 3s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// For source "header": where the member's admin role comes from, when
	// the app takes roles from the identity (admins from_identity): a
	// placeholder or a request header, under the same rules as header.
	// Whatever sets it can make anyone an admin, so a header must be one
	// that the handler before two_factor always sets or removes. The
	// endpoint source reads the role from the "role" field of its answer
	// instead. Default: none.
	RoleHeader string `json:"role_header,omitempty"`

	// How member IDs are compared: "exact", byte for byte as the source
	// gives them, or "fold", in lower case ("Alice" and "alice", "Ärger"
	// and "ärger" are one member). Choose "fold" when the member site
	// treats IDs without regard to case but may echo one as it was
	// typed: with "exact", each spelling would be a gateway account of
	// its own, with its own enrolment and lockout. Characters whose lower
	// case is ASCII (the Kelvin sign, dotted capital I) are kept as they
	// are, and characters that are already lower case (long s, ligatures)
	// are not folded further, so no ID joins another that a member site
	// keeps apart. Switching to "fold" later makes members whose ID has
	// capitals enrol again. Default: exact.
	IDCase string `json:"id_case,omitempty"`
}

// identitySource says who is signed in at the member site. An empty ID
// means nobody is.
type identitySource interface {
	resolve(r *http.Request) (flow.Identity, error)
}

const (
	defaultIdentityCache     = 10 * time.Second
	defaultIdentityCacheSize = 100_000
	defaultIdentityTimeout   = 3 * time.Second
)

// provision applies the defaults and builds the source.
func (c *Identity) provision(logger *zap.Logger) (identitySource, error) {
	src, err := c.source(logger)
	if err != nil || c.IDCase != "fold" {
		return src, err
	}
	return foldedSource{src}, nil
}

func (c *Identity) source(logger *zap.Logger) (identitySource, error) {
	if c.Cache == 0 {
		c.Cache = caddy.Duration(defaultIdentityCache)
	}
	if c.CacheSize == 0 {
		c.CacheSize = defaultIdentityCacheSize
	}
	if c.Timeout == 0 {
		c.Timeout = caddy.Duration(defaultIdentityTimeout)
	}
	switch c.Source {
	case "header":
		h := &headerSource{cookie: c.SessionCookie}
		h.id = newHeaderValue(c.Header)
		if h.id.header != "" {
			logger.Warn("identity comes from a request header: a handler before two_factor must always set or remove it "+
				"(forward_auth's copy_headers does), or clients can name anyone",
				zap.String("header", h.id.header))
		}
		if c.RoleHeader != "" {
			h.role = newHeaderValue(c.RoleHeader)
			if h.role.header != "" {
				logger.Warn("admin roles come from a request header: a handler before two_factor must always set or remove it, "+
					"or clients can make themselves admins", zap.String("header", h.role.header))
			}
		}
		if c.SessionCookie == "" {
			logger.Warn("identity header without session_cookie: second-factor sessions are not bound to the member site's sign-in")
		}
		return h, nil
	case "endpoint":
		timeout := time.Duration(c.Timeout)
		return &endpointSource{
			url:     c.URL,
			cookie:  c.SessionCookie,
			ttl:     time.Duration(c.Cache),
			timeout: timeout,
			known: cache.New[[32]byte, flow.Identity](cache.Options{
				Size: c.CacheSize, TTL: time.Duration(c.Cache), Now: clock.Now,
			}),
			client: &http.Client{
				Timeout: timeout,
				// Following a redirect could carry members' cookies
				// elsewhere; a redirect means "sign in first".
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
		}, nil
	case "":
		return nil, errors.New("source: required (endpoint or header)")
	}
	return nil, fmt.Errorf("source %q: unknown identity source (use endpoint or header)", c.Source)
}

// placeholderName returns the name inside a header value written as a
// placeholder, {like.this}.
func placeholderName(header string) (string, bool) {
	inner, ok := strings.CutPrefix(header, "{")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(inner, "}"), true
}

// validate checks the identity settings.
func (c *Identity) validate() error {
	if c.IDCase != "" && c.IDCase != "exact" && c.IDCase != "fold" {
		return fmt.Errorf("identity: id_case %q: must be exact or fold", c.IDCase)
	}
	if c.SessionCookie != "" && !validCookieName(c.SessionCookie) {
		return fmt.Errorf("identity: session_cookie %q: not a valid cookie name", c.SessionCookie)
	}
	if c.RoleHeader != "" && c.Source != "header" {
		return errors.New(`identity: role_header: only for source header (the endpoint gives the role in its "role" field)`)
	}
	switch c.Source {
	case "header":
		if c.Header == "" {
			return errors.New("identity: header: a header name or placeholder is required for source header")
		}
		if err := validHeaderValue("header", c.Header); err != nil {
			return err
		}
		if c.RoleHeader != "" {
			if err := validHeaderValue("role_header", c.RoleHeader); err != nil {
				return err
			}
		}
	case "endpoint":
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("identity: url %q: must be an absolute http or https URL", c.URL)
		}
		if c.SessionCookie == "" {
			return errors.New("identity: session_cookie: required for source endpoint")
		}
		if d := time.Duration(c.Cache); d < time.Second || d > 10*time.Minute {
			return fmt.Errorf("identity: cache %s: must be between 1s and 10m", d)
		}
		if n := c.CacheSize; n < challenge.MinCacheSize || n > challenge.MaxCacheSize {
			return fmt.Errorf("identity: cache_size %d: must be between %d and %d", n, challenge.MinCacheSize, challenge.MaxCacheSize)
		}
		if d := time.Duration(c.Timeout); d < 100*time.Millisecond || d > time.Minute {
			return fmt.Errorf("identity: timeout %s: must be between 100ms and 1m", d)
		}
	}
	return nil
}

// validHeaderValue checks a header name or placeholder that the identity
// is read from (field names it).
func validHeaderValue(field, v string) error {
	if inner, ok := placeholderName(v); ok {
		if !strings.HasSuffix(v, "}") || inner == "" || strings.ContainsAny(inner, "{} ") {
			return fmt.Errorf("identity: %s %q: not a header name or a single placeholder", field, v)
		}
		if strings.HasPrefix(inner, "http.request.") || strings.HasPrefix(inner, "query.") {
			return fmt.Errorf("identity: %s %q: the request's own values come from the client, which could name anyone; "+
				"use a placeholder set by an authentication handler, such as {http.auth.user.id}", field, v)
		}
	} else if strings.ContainsAny(v, "{} :") {
		return fmt.Errorf("identity: %s %q: not a header name or a single placeholder", field, v)
	}
	return nil
}

func validCookieName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return name != ""
}

// validIdentity keeps absurd IDs out of keys, logs and headers: empty, too
// long, not UTF-8, or with characters that do not print (controls,
// direction overrides).
func validIdentity(id string) bool {
	if id == "" || len(id) > maxIdentityLength || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// foldedSource case-folds the member IDs another source gives.
type foldedSource struct{ identitySource }

func (s foldedSource) resolve(r *http.Request) (flow.Identity, error) {
	id, err := s.identitySource.resolve(r)
	id.ID = foldID(id.ID)
	if err == nil && len(id.ID) > maxIdentityLength {
		// Some capitals take more bytes in lower case (Ⱥ, 2, is ⱥ, 3):
		// the stored ID keeps to the same bound as any other, or a backup
		// holding it could not be restored. Refused, not passed on: the
		// member site has them signed in.
		return flow.Identity{}, fmt.Errorf("member ID longer than %d bytes once folded", maxIdentityLength)
	}
	return id, err
}

// folder is how this identity compares IDs typed by an admin: foldID
// under id_case fold, nil (as typed) otherwise.
func (c *Identity) folder() func(string) string {
	if c.IDCase == "fold" {
		return foldID
	}
	return nil
}

// foldID returns id in lower case, except for the characters whose lower
// case is ASCII (the Kelvin sign, dotted capital I): they stay, so that no
// ID folds onto another that a member site keeps apart. It does not
// allocate when there is nothing to fold (the common case, on every
// request).
func foldID(id string) string {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return strings.Map(foldRune, id)
		}
	}
	return id
}

func foldRune(r rune) rune {
	l := unicode.ToLower(r)
	if r >= utf8.RuneSelf && l < utf8.RuneSelf {
		return r
	}
	return l
}

// headerSource reads the identity from a placeholder or a header set by an
// earlier handler.
type headerSource struct {
	id     headerValue
	role   headerValue // zero when roles do not come from here
	cookie string
}

// headerValue is a value read from a placeholder or a request header.
type headerValue struct {
	placeholder string
	header      string
}

func newHeaderValue(v string) headerValue {
	if inner, ok := placeholderName(v); ok {
		return headerValue{placeholder: inner}
	}
	return headerValue{header: http.CanonicalHeaderKey(v)}
}

// read returns the value, "" when absent or, for a header sent more than
// once, ambiguous: never pick one of several.
func (h headerValue) read(r *http.Request) string {
	if h.placeholder != "" {
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl != nil {
			if v, ok := repl.GetString(h.placeholder); ok {
				return v
			}
		}
		return ""
	}
	if h.header == "" {
		return ""
	}
	if vals := r.Header[h.header]; len(vals) == 1 {
		return vals[0]
	}
	return ""
}

func (s *headerSource) resolve(r *http.Request) (flow.Identity, error) {
	id := s.id.read(r)
	if !validIdentity(id) {
		return flow.Identity{}, nil
	}
	out := flow.Identity{ID: id, Role: s.role.read(r)}
	out.Binding, _, _ = session.Binding(r, s.cookie)
	return out, nil
}

// identify says who is signed in at the member site and, for the admin
// pages, with which admin role: the app's admins list first, then, when
// the operator opted in, the role the identity gives. Anything but an
// exact role name grants nothing.
func (h *Handler) identify(r *http.Request) (flow.Identity, error) {
	id, err := h.source.resolve(r)
	if err != nil || id.ID == "" {
		return id, err
	}
	given := id.Role
	id.Role = ""
	if role, ok := h.admins[id.ID]; ok {
		id.Role = role
	} else if h.app.AdminRolesFromIdentity && flow.ValidRole(given) {
		id.Role = given
	}
	return id, nil
}

// endpointSource asks the member site who is signed in, caching answers
// briefly by the member-site session cookie.
type endpointSource struct {
	url     string
	cookie  string
	ttl     time.Duration
	timeout time.Duration
	client  *http.Client
	flight  singleflight.Group
	// known holds the answers by session.Binding's key of the member-site
	// session, each for ttl.
	known *cache.Cache[[32]byte, flow.Identity]
}

func (s *endpointSource) resolve(r *http.Request) (flow.Identity, error) {
	binding, key, ok := session.Binding(r, s.cookie)
	if !ok {
		return flow.Identity{}, nil
	}
	if id, hit := s.known.Get(key); hit {
		return id, nil
	}
	v, err, _ := s.flight.Do(string(key[:]), func() (any, error) {
		return s.fetch(r)
	})
	if err != nil {
		return flow.Identity{}, err
	}
	id := v.(flow.Identity)
	if id.ID == "" {
		// Not cached: many sites keep the session ID across sign-in, so
		// the same cookie may be signed in a moment from now.
		return id, nil
	}
	id.Binding = binding
	if s.ttl > 0 {
		s.known.Set(key, id)
	}
	return id, nil
}

// fetch calls the endpoint with the member's cookies.
func (s *endpointSource) fetch(r *http.Request) (flow.Identity, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return flow.Identity{}, err
	}
	for _, c := range r.Cookies() {
		if !session.IsGatewayCookie(c.Name) {
			req.AddCookie(c)
		}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "caddy-twofactor")
	resp, err := s.client.Do(req)
	if err != nil {
		return flow.Identity{}, fmt.Errorf("identity endpoint: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden,
		resp.StatusCode >= 300 && resp.StatusCode < 400:
		// Refused, or sent to the sign-in page: nobody is signed in.
		return flow.Identity{}, nil
	case resp.StatusCode != http.StatusOK:
		return flow.Identity{}, fmt.Errorf("identity endpoint: status %d", resp.StatusCode)
	}
	var body struct {
		ID    json.RawMessage `json:"id"`
		Email string          `json:"email"`
		Phone string          `json:"phone"`
		Role  json.RawMessage `json:"role"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return flow.Identity{}, fmt.Errorf("identity endpoint: reading JSON: %w", err)
	}
	id, err := jsonID(body.ID)
	if err != nil {
		return flow.Identity{}, fmt.Errorf("identity endpoint: %w", err)
	}
	// A role that is not a string is no role; which strings are, the
	// handler decides.
	var role string
	_ = json.Unmarshal(body.Role, &role)
	return flow.Identity{ID: id, Email: body.Email, Phone: body.Phone, Role: role}, nil
}

// jsonID accepts a string or a number: member sites use both.
func jsonID(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New(`answer has no "id"`)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if !validIdentity(s) {
			return "", errors.New(`"id" is empty, too long or has control characters`)
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if !validIdentity(n.String()) {
			return "", errors.New(`"id" is too long`)
		}
		return n.String(), nil
	}
	return "", errors.New(`"id" is neither a string nor a number`)
}
