package twofactor

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/session"
)

// The hot path: every request through the handler. A verified member's
// request costs a rule match, an identity cache hit, the member's record
// in memory and one cookie opened; no network round trip.

const (
	maxIdentityLength      = 256
	upstreamUserHeader     = "X-2fa-User"
	upstreamMethodHeader   = "X-2fa-Method"
	upstreamEnrolledHeader = "X-2fa-Enrolled"
	// Only for members without a second factor: what the rule asks of
	// them (optional or grace), and in grace when it becomes required.
	upstreamEnrolmentHeader = "X-2fa-Enrolment"
	upstreamDeadlineHeader  = "X-2fa-Enrolment-Deadline"

	// Placeholders for later handlers, beside the headers.
	userPlaceholder      = "http.auth.two_factor.user"
	methodPlaceholder    = "http.auth.two_factor.method"
	enrolledPlaceholder  = "http.auth.two_factor.enrolled"
	enrolmentPlaceholder = "http.auth.two_factor.enrolment"
	deadlinePlaceholder  = "http.auth.two_factor.enrolment_deadline"
)

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The real clock, not clock.Now: this times the gateway's own work
	// (verified_request_duration_seconds).
	began := time.Now()
	// Whatever happens next, the upstream must only ever see our own
	// values of the gateway's headers, and no client's say in which path
	// or method it serves.
	stripClientHeaders(r.Header)

	if strings.HasPrefix(r.URL.Path, h.Prefix) {
		return refuse(r, h.flow.Serve(w, r))
	}
	rule, err := h.ruleFor(r)
	if err != nil {
		return handOver(r, http.StatusBadRequest, err)
	}
	if rule == nil {
		return h.pass(w, r, next)
	}
	b := h.app.backend(r.Context())
	if b == nil {
		return refuse(r, h.flow.Unavailable(w, r, "store", flow.ErrNotReady))
	}

	id, err := h.source.resolve(r)
	if err != nil {
		return refuse(r, h.flow.Unavailable(w, r, "identity", err))
	}
	if id.ID == "" {
		return h.notSignedIn(w, r, next)
	}

	u, err := b.Engine.State(r.Context(), id.ID)
	if err != nil {
		return refuse(r, h.flow.Unavailable(w, r, "state", err))
	}
	now := clock.Now()
	h.app.seen.note(id.ID, id.Email, now)
	pol, at := h.policyOf(rule, r)

	var s session.Session
	if b.Jar.Session(r, id.ID, &s) && h.flow.SessionLive(&s, &id, u, now) &&
		(pol.Remember > 0 || !s.Remembered) && pol.Allows(s.Method) &&
		!(pol.Recheck && s.Remembered && !h.flow.NetworkKnown(r, u, pol)) {
		if flow.RenewalDue(u) {
			// Nothing protected until the rest of the set is replaced.
			return refuse(r, h.flow.NeedRecoveryRenewal(w, r))
		}
		if len(u.Pending) > 0 {
			// Only to a member past the second factor: whoever holds the
			// password alone must not take the notices (to an address
			// they set at the member site).
			h.flow.SendPending(r, b, &id, u)
		}
		if h.flow.SessionRefreshDue(&s, now) {
			s.LastSeen = now.Unix()
			b.Jar.SetSession(w, r, &s, now)
		}
		method := s.Method
		if s.Remembered {
			method = "device"
		}
		setUpstream(r, id.ID, method, true)
		h.app.metrics.verifiedRequest(began)
		return h.pass(w, r, next)
	}

	if !u.Enrolled() {
		en, err := h.flow.EnrolmentFor(r, b, pol, id.ID, u, now)
		if err != nil {
			return refuse(r, h.flow.Unavailable(w, r, "state", err))
		}
		if en.State != challenge.EnrolmentRequired {
			if flow.IsNavigation(r) && h.flow.ReminderDue(r, b, id.ID, now) {
				return h.flow.RedirectToPage(w, r, "remind")
			}
			setUnenrolledUpstream(r, id.ID, en)
			return h.pass(w, r, next)
		}
		return refuse(r, h.flow.NeedSecondFactor(w, r, "enrol"))
	}

	if pol.Skip {
		// From a range whose policy skips the code. No session is made:
		// the gateway's own pages, which trust one, still ask. Nor are
		// pending notices sent, as without a session above.
		if flow.RenewalDue(u) {
			return refuse(r, h.flow.NeedRecoveryRenewal(w, r))
		}
		h.app.noteSkip(b, challenge.Actor{User: id.ID, IP: clientIP(r), UserAgent: r.UserAgent()}, id.Binding, rule.label, at.text, true, now)
		setUpstream(r, id.ID, flow.MethodNetwork, true)
		return h.pass(w, r, next)
	}

	if pol.Remember > 0 {
		if ok, err := h.flow.UseRememberedDevice(w, r, b, &id, pol, now); err != nil {
			return refuse(r, h.flow.Unavailable(w, r, "device", err))
		} else if ok {
			if flow.RenewalDue(u) {
				// A device remembered since the code was used: the
				// session it began is held back like any other.
				return refuse(r, h.flow.NeedRecoveryRenewal(w, r))
			}
			setUpstream(r, id.ID, "device", true)
			return h.pass(w, r, next)
		}
	}
	return refuse(r, h.flow.NeedSecondFactor(w, r, "challenge"))
}

// refuse hands a refusal of a client that is not loading a page to
// Caddy's error handling, so an operator's handle_errors sees it. That
// handling may pass the request on (to render an error page, say), so it
// goes without the gateway's cookies, and with the placeholders saying
// nobody passed.
func refuse(r *http.Request, err error) error {
	var rf *flow.Refusal
	if errors.As(err, &rf) {
		return handOver(r, rf.Status, err)
	}
	return err
}

// handOver gives Caddy's error handling a refusal with status, the
// request stripped of the gateway's cookies and with empty placeholders.
func handOver(r *http.Request, status int, err error) error {
	session.Strip(r.Header)
	setNobody(r)
	return caddyhttp.Error(status, err)
}

// pass hands the request on without the gateway's own cookies. Requests
// that setUpstream did not mark (unprotected paths, nobody signed in) get
// empty placeholders, so a later handler never sees their literal names.
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	session.Strip(r.Header)
	if _, ok := r.Header[upstreamUserHeader]; !ok {
		setNobody(r)
	}
	return next.ServeHTTP(w, r)
}

// ruleFor returns the rule protecting the request's path, or nil. A path
// that an upstream might read as another (see paths.go) is matched in
// each form it may be read as: the rule of any form applies, and a path
// that falls under two different rules, or that no member site needs, is
// refused with errBadPath.
func (h *Handler) ruleFor(r *http.Request) (*Rule, error) {
	rule := h.firstRule(r)
	slash := hasEncodedSlash(r.URL.RawPath)
	if !slash && !needsCanonical(r.URL.Path) {
		return rule, nil
	}
	forms, err := pathForms(r.URL.Path)
	if err != nil {
		return nil, err
	}
	if slash {
		forms = append(forms, keepEncodedSlashes(r.URL))
	}
	for _, p := range forms {
		u := *r.URL
		u.Path, u.RawPath = p, ""
		probe := r.WithContext(r.Context())
		probe.URL = &u
		switch other := h.firstRule(probe); {
		case other == nil || other == rule:
		case rule == nil:
			rule = other
		default:
			return nil, errBadPath
		}
	}
	return rule, nil
}

// firstRule returns the first rule whose paths match the request's and
// whose exceptions do not.
func (h *Handler) firstRule(r *http.Request) *Rule {
	for _, rule := range h.Protect {
		if rule.paths.Match(r) && !rule.exempts(r) {
			return rule
		}
	}
	return nil
}

// policyFor is the policy of the rule protecting path, a same-site path
// the member is about to visit, or nil.
func (h *Handler) policyFor(r *http.Request, path string) *flow.Policy {
	u, err := url.Parse(path)
	if err != nil {
		return nil
	}
	probe := r.Clone(r.Context())
	probe.URL = u
	if rule, err := h.ruleFor(probe); err == nil && rule != nil {
		// The page's client is the request's: a block that turns
		// remembering off or narrows the methods holds on the pages too.
		pol, _ := h.policyOf(rule, r)
		return pol
	}
	return nil
}

// setUpstream tells the upstream who passed which second factor, through
// headers the client cannot set (stripClientHeaders removed its copies),
// and later handlers through placeholders.
func setUpstream(r *http.Request, user, method string, enrolled bool) {
	e := "false"
	if enrolled {
		e = "true"
	}
	// One allocation backs the three header values and the placeholders:
	// this runs on every request.
	u := &upstream{user, method, e}
	vals := u[:]
	r.Header[upstreamUserHeader] = vals[0:1:1]
	r.Header[upstreamMethodHeader] = vals[1:2:2]
	r.Header[upstreamEnrolledHeader] = vals[2:3:3]
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// A provider, not three Sets: Set would grow the replacer's map
		// and box each value on every request, while a provider costs its
		// method value and answers only when a placeholder is used.
		repl.Map(u.placeholder)
	}
}

// setNobody makes the placeholders empty for a request no member passed
// with. A top-level function as the provider costs no allocation.
func setNobody(r *http.Request) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(nobody)
	}
}

func nobody(key string) (any, bool) {
	switch key {
	case userPlaceholder, methodPlaceholder, enrolledPlaceholder, enrolmentPlaceholder, deadlinePlaceholder:
		return "", true
	}
	return nil, false
}

// setUnenrolledUpstream tells the upstream that a member without a second
// factor passed, and what the rule asks of them: "optional", or "grace"
// with the deadline (RFC 3339, UTC). Off the verified path, which sets
// neither header.
func setUnenrolledUpstream(r *http.Request, user string, en flow.Enrolment) {
	u := &enrolmentUpstream{state: en.State}
	r.Header[upstreamEnrolmentHeader] = []string{en.State}
	if !en.Deadline.IsZero() {
		u.deadline = en.Deadline.UTC().Format(time.RFC3339)
		r.Header[upstreamDeadlineHeader] = []string{u.deadline}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// Before setUpstream's: the replacer asks its providers in
		// order, and that one answers these keys with "".
		repl.Map(u.placeholder)
	}
	setUpstream(r, user, "none", false)
}

// enrolmentUpstream answers the enrolment placeholders of a member
// without a second factor.
type enrolmentUpstream struct{ state, deadline string }

func (u *enrolmentUpstream) placeholder(key string) (any, bool) {
	switch key {
	case enrolmentPlaceholder:
		return u.state, true
	case deadlinePlaceholder:
		return u.deadline, true
	}
	return nil, false
}

// upstream is what a request that passes carries on: the member, the
// method, and whether they are enrolled ("true" or "false").
type upstream [3]string

func (u *upstream) placeholder(key string) (any, bool) {
	switch key {
	case userPlaceholder:
		return u[0], true
	case methodPlaceholder:
		return u[1], true
	case enrolledPlaceholder:
		return u[2] == "true", true
	case enrolmentPlaceholder, deadlinePlaceholder:
		// Members without a second factor have them from
		// setUnenrolledUpstream's provider, asked first; empty here.
		return "", true
	}
	return nil, false
}

// stripClientHeaders deletes every request header that could be read as
// one the gateway sets, or as another path or method than the request's
// own: any case, duplicates, and the underscore spellings that CGI and
// FastCGI upstreams treat as the same name.
func stripClientHeaders(h http.Header) {
	for name := range h {
		if len(name) >= 6 && sameHeaderName(name[:6], "x-2fa-") || isOverrideHeader(name) {
			delete(h, name)
		}
	}
}

// overrideHeaders name another URL or method for the request, and are
// honoured by IIS URL Rewrite, Symfony, Laravel, Spring, Express's
// method-override and the like: an upstream reading one would serve a
// path the gateway never matched. Lower case, with dashes.
var overrideHeaders = [...]string{
	"x-original-url", "x-original-uri", "x-rewrite-url", "x-override-url",
	"x-http-method-override", "x-http-method", "x-method-override",
}

func isOverrideHeader(name string) bool {
	if len(name) < len("x-http-method") || !sameHeaderName(name[:2], "x-") {
		return false
	}
	for _, o := range overrideHeaders {
		if sameHeaderName(name, o) {
			return true
		}
	}
	return false
}

// sameHeaderName reports whether name is want (lower case, with dashes)
// in any case, with dashes or underscores.
func sameHeaderName(name, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(want); i++ {
		c := name[i]
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

// clientIP is Caddy's client address, which honours trusted_proxies.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}
