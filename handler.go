package twofactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("two_factor", parseCaddyfile)
	// After forward_auth, so identity headers copied from the auth
	// response are in place; operators need no order line.
	httpcaddyfile.RegisterDirectiveOrder("two_factor", httpcaddyfile.After, "forward_auth")
}

// Handler asks signed-in members for a second factor before they reach
// protected paths, and serves the gateway's own pages under its prefix.
type Handler struct {
	// Where the member's identity (the first factor, the member site's own
	// sign-in) comes from. Required.
	Identity *Identity `json:"identity,omitempty"`

	// Protected paths and the policy for each. Rules are tried in order;
	// the first rule whose paths match (and whose exceptions do not)
	// applies. Requests matching no rule pass through untouched.
	Protect []*Rule `json:"protect,omitempty"`

	// Path prefix under which the gateway serves its pages (challenge,
	// enrolment, sign-out). Requests under it never reach the upstream.
	// Default: /.2fa/
	Prefix string `json:"prefix,omitempty"`

	// Where to send visitors who are not signed in at the member site
	// when they request a protected path (a relative path such as
	// /login). The original path is appended as the "next" query
	// parameter. Default: none; the request passes through, so the member
	// site asks them to sign in itself.
	LoginURL string `json:"login_url,omitempty"`

	// Where members land after verification when the page they asked for
	// is unknown or not a safe same-site path. Default: /
	TopPage string `json:"top_page,omitempty"`

	// Name shown on the gateway's pages and as the issuer in
	// authenticator apps. Default: the request's host name.
	SiteName string `json:"site_name,omitempty"`

	// The site's public address, such as https://example.com, for the
	// link to the settings page in security notices. It is taken from
	// here only, never from a request's Host header, which the client
	// chooses. Default: none; notices name the page's path instead.
	SiteURL string `json:"site_url,omitempty"`

	// "off" sends no email when a member passes the second factor in a
	// browser the gateway has not seen for them before. Default: on
	// (with an email sender configured).
	NewDeviceNotice string `json:"new_device_notice,omitempty"`

	// Client address ranges (CIDR) from which a sign-in in a new browser
	// is not worth a notice, such as an office network. Default: none.
	TrustedNetworks []string `json:"trusted_networks,omitempty"`

	// How long a second-factor session lasts without any request.
	// Default: 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`

	// How long a second-factor session lasts at most, however active.
	// Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// How recently a member must have entered a code (not used a
	// remembered device) to add, remove or change methods and recovery
	// codes; otherwise they are asked for one first. 1m to 1h.
	// Default: 10m.
	StepUp caddy.Duration `json:"step_up,omitempty"`

	// Directory of templates that replace the built-in ones, file by file
	// (challenge.html, enrol.html, layout.html, ...). Default: none.
	Templates string `json:"templates,omitempty"`

	app      *App
	engine   *challenge.Engine
	codec    *session.Codec
	pages    *pages.Renderer
	source   identitySource
	logger   *zap.Logger
	idle     time.Duration
	lifetime time.Duration
	stepUp   time.Duration
	trusted  []netip.Prefix
}

// Rule is a set of protected paths with its policy.
type Rule struct {
	// Path patterns, as in Caddy's path matcher (/members/*, *.pdf, ...).
	// Matching is case-insensitive and applies to the cleaned path, so
	// encodings and dot segments cannot get around it. Required; there is
	// no default.
	Paths []string `json:"paths,omitempty"`

	// Path patterns inside Paths that are not protected. Default: none.
	Except []string `json:"except,omitempty"`

	// "required": members without a second factor must set one up before
	// they continue. "optional": they continue (the upstream is told they
	// have none) and are reminded now and then to set one up; members who
	// have one must still use it. Default: required.
	Enrolment string `json:"enrolment,omitempty"`

	// How long "don't ask for a code on this device" lasts, or "off" to
	// hide the choice and refuse remembered devices on these paths (for
	// example an admin area). Default: 30d. At most 400d.
	RememberDevice string `json:"remember_device,omitempty"`

	// How often members without a second factor see the reminder page on
	// optional paths. Default: 7d.
	Reminder caddy.Duration `json:"reminder,omitempty"`

	// Second factors accepted on these paths: totp, email, sms. Email and
	// SMS need a sender in the two_factor app. A member whose session was
	// verified another way is asked again, with one of these. Default:
	// every method the site can send (totp always).
	Methods []string `json:"methods,omitempty"`

	methods  []string
	paths    caddyhttp.MatchPath
	except   caddyhttp.MatchPath
	optional bool
	remember time.Duration
	reminder time.Duration
}

const (
	defaultPrefix          = "/.2fa/"
	defaultRemember        = 30 * 24 * time.Hour
	maxRemember            = 400 * 24 * time.Hour
	defaultReminder        = 7 * 24 * time.Hour
	defaultSessionIdle     = 30 * time.Minute
	defaultSessionLife     = 12 * time.Hour
	defaultStepUp          = 10 * time.Minute
	sessionRefreshEvery    = time.Minute
	maxIdentityLength      = 256
	enrolmentRequired      = "required"
	enrolmentOptional      = "optional"
	upstreamUserHeader     = "X-2fa-User"
	upstreamMethodHeader   = "X-2fa-Method"
	upstreamEnrolledHeader = "X-2fa-Enrolled"
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.two_factor",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision applies defaults and connects the handler to the two_factor app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("two_factor")
	if err != nil {
		return err
	}
	h.app = appIface.(*App)
	h.engine = h.app.engine
	h.codec = h.app.codec

	if h.Prefix == "" {
		h.Prefix = defaultPrefix
	}
	if h.TopPage == "" {
		h.TopPage = "/"
	}
	h.idle = time.Duration(h.SessionIdle)
	if h.idle == 0 {
		h.idle = defaultSessionIdle
	}
	h.lifetime = time.Duration(h.SessionLifetime)
	if h.lifetime == 0 {
		h.lifetime = defaultSessionLife
	}
	h.SiteURL = strings.TrimSuffix(h.SiteURL, "/")
	switch h.NewDeviceNotice {
	case "", "on", "off":
	default:
		return fmt.Errorf("new_device_notice %q: must be on or off", h.NewDeviceNotice)
	}
	for _, n := range h.TrustedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("trusted_networks %q: %v", n, err)
		}
		h.trusted = append(h.trusted, p.Masked())
	}
	h.stepUp = time.Duration(h.StepUp)
	if h.stepUp == 0 {
		h.stepUp = defaultStepUp
	}
	for i, rule := range h.Protect {
		if err := rule.provision(ctx); err != nil {
			return fmt.Errorf("protect[%d]: %w", i, err)
		}
		if err := rule.provisionMethods(h.app); err != nil {
			return fmt.Errorf("protect[%d]: %w", i, err)
		}
		if len(rule.methods) == 1 && rule.methods[0] == challenge.MethodSMS {
			h.logger.Warn("only SMS codes are accepted on these paths; SMS is the weakest method, so offer an authenticator app too",
				zap.Strings("paths", rule.Paths))
		}
	}
	if (h.app.email != nil || h.app.sms != nil) && h.SiteName == "" {
		// Otherwise the name in emails and texts would come from the
		// request's Host header, which the client chooses.
		return errors.New("site_name: required when codes are sent by email or SMS")
	}
	if h.Identity == nil {
		return errors.New("identity: required (endpoint or header)")
	}
	if h.source, err = h.Identity.provision(ctx, h.logger); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if h.pages, err = pages.New(h.Templates); err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	return nil
}

func (rule *Rule) provision(ctx caddy.Context) error {
	if len(rule.Paths) == 0 {
		return errors.New("paths: at least one path pattern is required")
	}
	for _, set := range [][]string{rule.Paths, rule.Except} {
		for _, p := range set {
			if p == "" || (p[0] != '/' && p[0] != '*') {
				return fmt.Errorf("path pattern %q: must start with / or *", p)
			}
		}
	}
	rule.paths = caddyhttp.MatchPath(append([]string(nil), rule.Paths...))
	rule.except = caddyhttp.MatchPath(append([]string(nil), rule.Except...))
	if err := rule.paths.Provision(ctx); err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	if err := rule.except.Provision(ctx); err != nil {
		return fmt.Errorf("except: %w", err)
	}
	switch rule.Enrolment {
	case "", enrolmentRequired:
	case enrolmentOptional:
		rule.optional = true
	default:
		return fmt.Errorf("enrolment %q: must be required or optional", rule.Enrolment)
	}
	switch rule.RememberDevice {
	case "":
		rule.remember = defaultRemember
	case "off":
	default:
		d, err := caddy.ParseDuration(rule.RememberDevice)
		if err != nil {
			return fmt.Errorf("remember_device %q: %v", rule.RememberDevice, err)
		}
		if d < time.Minute || d > maxRemember {
			return fmt.Errorf("remember_device %s: must be between 1m and %s, or off", rule.RememberDevice, "400d")
		}
		rule.remember = d
	}
	rule.reminder = time.Duration(rule.Reminder)
	if rule.reminder == 0 {
		rule.reminder = defaultReminder
	}
	if rule.reminder < time.Minute || rule.reminder > maxRemember {
		return fmt.Errorf("reminder %s: must be between 1m and 400d", rule.reminder)
	}
	return nil
}

// provisionMethods resolves which methods the rule accepts.
func (rule *Rule) provisionMethods(app *App) error {
	if len(rule.Methods) == 0 {
		for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
			if app.methodConfigured(m) {
				rule.methods = append(rule.methods, m)
			}
		}
		return nil
	}
	seen := map[string]bool{}
	for _, m := range rule.Methods {
		switch m {
		case challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS:
		default:
			return fmt.Errorf("methods %q: must be totp, email or sms", m)
		}
		if !app.methodConfigured(m) {
			return fmt.Errorf("methods %s: the two_factor app has no %s sender configured", m, m)
		}
		if !seen[m] {
			seen[m] = true
			rule.methods = append(rule.methods, m)
		}
	}
	return nil
}

// allows reports whether a session verified by method may pass. A session
// from a remembered device carries the method the device was remembered
// after, so it is held to the same list.
func (rule *Rule) allows(method string) bool {
	if method == challenge.MethodRecovery {
		// A recovery code stands in for whichever method is out of
		// reach, so the member can get back in and repair it.
		return true
	}
	for _, m := range rule.methods {
		if m == method {
			return true
		}
	}
	return false
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if !strings.HasPrefix(h.Prefix, "/") || !strings.HasSuffix(h.Prefix, "/") || len(h.Prefix) < 3 {
		return fmt.Errorf("prefix %q: must start and end with / and name a path, like /.2fa/", h.Prefix)
	}
	if safeReturnPath(h.TopPage) == "" {
		return fmt.Errorf("top_page %q: must be a same-site path starting with /", h.TopPage)
	}
	if h.LoginURL != "" && safeReturnPath(h.LoginURL) == "" {
		return fmt.Errorf("login_url %q: must be a same-site path starting with /", h.LoginURL)
	}
	if h.idle < time.Minute || h.lifetime < h.idle || h.lifetime > 30*24*time.Hour {
		return fmt.Errorf("session_idle %s, session_lifetime %s: need 1m <= idle <= lifetime <= 30d", h.idle, h.lifetime)
	}
	if h.SiteURL != "" {
		u, err := url.Parse(h.SiteURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("site_url %q: must be an http or https address with no path, like https://example.com", h.SiteURL)
		}
	}
	if h.stepUp < time.Minute || h.stepUp > time.Hour {
		return fmt.Errorf("step_up %s: must be between 1m and 1h", h.stepUp)
	}
	if len(h.Protect) == 0 {
		return errors.New("protect: no protected paths configured")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Whatever happens next, the upstream must only ever see our own
	// values of these headers.
	stripGatewayHeaders(r.Header)

	if strings.HasPrefix(r.URL.Path, h.Prefix) {
		return h.servePage(w, r)
	}
	rule := h.ruleFor(r)
	if rule == nil {
		return h.pass(w, r, next)
	}
	if !h.app.Ready() {
		return h.unavailable(w, r, "store", errNotReady)
	}

	id, err := h.source.resolve(r)
	if err != nil {
		return h.unavailable(w, r, "identity", err)
	}
	if id.ID == "" {
		return h.notSignedIn(w, r, next)
	}

	u, err := h.engine.State(r.Context(), id.ID)
	if err != nil {
		return h.unavailable(w, r, "state", err)
	}
	now := clock.Now()
	secure := r.TLS != nil

	if v, ok := cookieValue(r, session.Name(session.SessionCookie, secure)); ok {
		var s session.Session
		if h.codec.DecodeSessionOf(v, id.ID, &s) == nil && h.sessionValid(&s, &id, u, now) &&
			(rule.remember > 0 || !s.Remembered) && rule.allows(s.Method) {
			if now.Unix()-s.LastSeen >= int64(sessionRefreshEvery/time.Second) {
				s.LastSeen = now.Unix()
				h.setSessionCookie(w, &s, secure, now)
			}
			method := s.Method
			if s.Remembered {
				method = "device"
			}
			setUpstream(r, id.ID, method, true)
			return h.pass(w, r, next)
		}
	}

	if !u.Enrolled() {
		if rule.optional {
			if h.reminderDue(r, id.ID, now) && isNavigation(r) {
				return h.redirectToPage(w, r, "remind")
			}
			setUpstream(r, id.ID, "none", false)
			return h.pass(w, r, next)
		}
		return h.needSecondFactor(w, r, "enrol")
	}

	if rule.remember > 0 {
		if ok, err := h.useRememberedDevice(w, r, &id, rule, secure, now); err != nil {
			return h.unavailable(w, r, "device", err)
		} else if ok {
			setUpstream(r, id.ID, "device", true)
			return h.pass(w, r, next)
		}
	}
	return h.needSecondFactor(w, r, "challenge")
}

// pass hands the request on without the gateway's own cookies: the
// remembered-device token and the session are bearer credentials the
// upstream has no use for and should not see, or log.
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripGatewayCookies(r.Header)
	return next.ServeHTTP(w, r)
}

// ruleFor returns the first rule protecting the request's path, or nil.
func (h *Handler) ruleFor(r *http.Request) *Rule {
	for _, rule := range h.Protect {
		if rule.paths.Match(r) && !rule.except.Match(r) {
			return rule
		}
	}
	return nil
}

// ruleForPath is ruleFor for a path the member is about to visit.
func (h *Handler) ruleForPath(r *http.Request, path string) *Rule {
	u, err := url.Parse(path)
	if err != nil {
		return nil
	}
	probe := r.Clone(r.Context())
	probe.URL = u
	return h.ruleFor(probe)
}

// sessionValid reports whether s is a live second-factor session for this
// member, this member-site session and the member's current factors.
func (h *Handler) sessionValid(s *session.Session, id *identity, u *challenge.User, now time.Time) bool {
	t := now.Unix()
	return s.User == id.ID &&
		s.Binding == id.Binding &&
		t < s.Expires &&
		t < s.Issued+int64(h.lifetime/time.Second) &&
		t-s.LastSeen < int64(h.idle/time.Second) &&
		s.LastSeen <= t+60 &&
		u.Enrolled() &&
		s.Epoch == u.Epoch &&
		!u.SessionRevoked(s.ID) &&
		(!s.Remembered || u.DeviceListed(s.ID))
}

// setUpstream tells the upstream who passed which second factor, through
// headers the client cannot set (stripGatewayHeaders removed its copies).
// Later handlers read them as {http.request.header.X-2fa-User} and so on.
func setUpstream(r *http.Request, user, method string, enrolled bool) {
	e := "false"
	if enrolled {
		e = "true"
	}
	// One backing array for the three values: this runs on every request.
	v := [...]string{user, method, e}
	vals := v[:]
	r.Header[upstreamUserHeader] = vals[0:1:1]
	r.Header[upstreamMethodHeader] = vals[1:2:2]
	r.Header[upstreamEnrolledHeader] = vals[2:3:3]
}

// stripGatewayHeaders deletes every request header that could be read as
// one the gateway sets: any case, duplicates, and the underscore spellings
// that CGI and FastCGI upstreams treat as the same name.
func stripGatewayHeaders(h http.Header) {
	for name := range h {
		if len(name) >= 6 && isGatewayHeaderPrefix(name[:6]) {
			delete(h, name)
		}
	}
}

func isGatewayHeaderPrefix(p string) bool {
	const want = "x-2fa-"
	for i := 0; i < len(want); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == '_' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// isNavigation reports whether a redirect to a page makes sense: the
// browser is loading a page, not posting a form or fetching data for a
// script. Browsers say which with Sec-Fetch-Mode; other clients get pages.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	mode := r.Header.Get("Sec-Fetch-Mode")
	return mode == "" || mode == "navigate"
}

// needSecondFactor sends a navigation to the challenge or enrolment page,
// and refuses other requests with 401.
func (h *Handler) needSecondFactor(w http.ResponseWriter, r *http.Request, page string) error {
	if isNavigation(r) {
		return h.redirectToPage(w, r, page)
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "application/json") || r.Header.Get("Sec-Fetch-Mode") != "" {
		body, err := json.Marshal(map[string]string{"error": "second_factor_required", "location": h.Prefix + page})
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, err = w.Write(body)
		return err
	}
	return h.renderMessage(w, r, http.StatusUnauthorized, "title_challenge", "second_factor_required", nil, h.Prefix+page)
}

// redirectToPage redirects to one of the gateway's pages, carrying the
// current path as return_to.
func (h *Handler) redirectToPage(w http.ResponseWriter, r *http.Request, page string) error {
	target := h.Prefix + page + "?return_to=" + url.QueryEscape(r.URL.RequestURI())
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// notSignedIn handles a protected path without a first-factor identity.
func (h *Handler) notSignedIn(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.LoginURL == "" {
		// The member site asks for its own sign-in.
		return h.pass(w, r, next)
	}
	sep := "?"
	if strings.Contains(h.LoginURL, "?") {
		sep = "&"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, h.LoginURL+sep+"next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
	return nil
}

var errNotReady = errors.New("the store has not passed the key check yet")

// unavailable fails closed: without the store or the identity source the
// gateway cannot tell who may pass, so nobody passes.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, what string, err error) error {
	if c := h.logger.Check(zapcore.ErrorLevel, "second factor unavailable"); c != nil {
		c.Write(zap.String("stage", what), zap.Error(err))
	}
	w.Header().Set("Retry-After", "30")
	return h.renderMessage(w, r, http.StatusServiceUnavailable, "title_unavailable", "unavailable", nil, "")
}

// actor describes the requester for limits and the audit trail.
func actor(r *http.Request, user string) challenge.Actor {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return challenge.Actor{User: user, IP: ip, UserAgent: r.UserAgent()}
}

// withTimeout bounds store work done for one request.
func withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 5*time.Second)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
