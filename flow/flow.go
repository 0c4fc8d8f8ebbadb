// Package flow serves the gateway's own pages under its prefix (the code
// challenge, enrolment, the member's methods and devices, recovery codes,
// the set-up reminder, sign-out and the admin pages) as a plain http.Handler, and gives the
// Caddy layer's hot path the few steps it shares with them: checking a
// second-factor session, using a remembered device, and sending a member
// to the right page.
//
// Every page is a route in one table (routes.go) that declares its guards:
// signed in at the member site, a CSRF token on posts, a second factor
// enrolled, a code entered within the step-up window, enrolment allowed,
// or an admin role with a recent authenticator-app code.
// The table applies them before any page code runs.
//
// The package imports no Caddy: the Caddy layer gives it the member's
// identity, the policy of the path being protected, the client's address
// and, once the app has started, the engine and the cookie jar.
package flow

import (
	"context"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// Identity is the member signed in at the member site (the first factor).
// An empty ID means nobody is signed in.
type Identity struct {
	ID    string
	Email string
	Phone string
	// Role is the member's admin role ("viewer", "support", "approver"),
	// as the Caddy layer resolved it; "" for a member who is no admin.
	Role string
	// Binding is a hash of the member-site session cookie, zero when there
	// is none to bind to.
	Binding [16]byte
}

// Policy is what a protected path asks of members: a rule of the
// configuration in the form the gateway checks.
type Policy struct {
	// Optional lets members without a second factor through, with a
	// reminder every Reminder.
	Optional bool
	Reminder time.Duration
	// Deadline, on a rule that is not Optional, lets members without a
	// second factor through as Optional does until it passes; nil for
	// none.
	Deadline *challenge.Deadline
	// Remember is how long "don't ask again on this device" lasts; 0
	// refuses remembered devices.
	Remember time.Duration
	// Methods are the factors accepted; a recovery code is too, unless
	// NoRecovery.
	Methods []string
	// NoRecovery refuses recovery codes: on the way to pages a recovery
	// code does not open (the admin pages), where it would be spent for
	// nothing.
	NoRecovery bool
	// Skip lets enrolled members pass without a code (a rule's
	// networks block with second_factor skip). It waives the code, not
	// enrolment, and never makes a session: pages that trust a session
	// still ask.
	Skip bool
	// Recheck asks for a code once when a remembered device is used from
	// an address range (NetworkOf) the member has never passed the
	// second factor from.
	Recheck bool
}

// recovery reports whether a recovery code may be used for where the
// member is going.
func (p *request) recovery() bool { return p.policy == nil || !p.policy.NoRecovery }

// Allows reports whether a session verified by method may pass. A session
// from a remembered device carries the method the device was remembered
// after, so it is held to the same list.
func (p *Policy) Allows(method string) bool {
	if method == challenge.MethodRecovery {
		// A recovery code stands in for whichever method is out of
		// reach, so the member can get back in and repair it.
		return true
	}
	for _, m := range p.Methods {
		if m == method {
			return true
		}
	}
	return false
}

// Backend is what exists only once the app has started: the engine over
// the opened store, and the cookie jar sealing with the loaded keys.
type Backend struct {
	Engine *challenge.Engine
	Jar    *session.Jar
	// Trail is the durable audit trail, for the admin pages' queries.
	Trail *audit.Trail
	// Figures reads the site's figures for the admin overview: one Day a
	// UTC day from from's day to to's (at most audit.MaxFiguresRange
	// days), with zero counts where there is no data and Seen and
	// Enrolled -1 where no count was taken, this instance's latest counts
	// written first. nil: the overview has no figures to show.
	Figures func(ctx context.Context, from, to time.Time) ([]audit.Day, error)
	// SyncTrail waits until the audit records queued before it are in
	// the trail (or ctx ends), so a page reading the trail shows the
	// events that led to it; nil when records are appended at once.
	SyncTrail func(context.Context)
}

// Config is the pages' configuration and what they need of the Caddy layer.
type Config struct {
	Prefix   string // where the pages live, such as /.2fa/
	TopPage  string // where members land when the page they asked for is unknown
	LoginURL string // where to sign in at the member site; "" when the site asks itself
	// LogoutURL is the member site's own sign-out, where the gateway's
	// sign-out leads on to; "" when unknown.
	LogoutURL string
	SiteName  string // shown on pages and in messages; "" for the request's host
	SiteURL   string // the site's public address for links in notices; "" for none

	SessionIdle     time.Duration
	SessionLifetime time.Duration
	StepUp          time.Duration // how recent a code must be to change methods
	TOTPPeriod      time.Duration // how long an authenticator code lasts; 0 for 30s
	// ResetApproval is how long an admin's reset request waits for a
	// second admin's approval (the app's reset_approval); 0: an admin's
	// reset takes effect at once.
	ResetApproval time.Duration

	NewDeviceNotice bool           // email members about a sign-in from a new browser
	TrustedNetworks []netip.Prefix // client ranges whose new browsers need no notice
	// RecordNetworks records the range (NetworkOf) a member passes the
	// second factor from in their record, for rules that recheck
	// remembered devices from new ranges; false keeps no ranges nobody
	// asked for.
	RecordNetworks bool

	PhoneRegion    string   // assumed for numbers typed without a country code
	PhoneCountries []string // regions whose numbers may be enrolled

	// RequiresEnrolment is true when some protected path requires a second
	// factor, so a member's last method cannot be removed.
	RequiresEnrolment bool

	Pages  *pages.Renderer
	Logger *zap.Logger
	Email  notify.Sender // nil: no codes by email
	SMS    notify.Sender // nil: no codes by SMS
	// WebAuthn offers passkeys and security keys (the engine has a
	// relying party for this site).
	WebAuthn bool
	// AdminMethods are the second factors that open the admin pages
	// (never email or SMS codes, which a stolen password with a mailbox
	// or phone number passes); nil for DefaultAdminMethods.
	AdminMethods []string

	// Backend returns the engine and the jar, or nil while the store is
	// not open or cannot be trusted (then everything answers 503).
	Backend func(context.Context) *Backend
	// Identify says who is signed in at the member site.
	Identify func(*http.Request) (Identity, error)
	// PolicyFor returns the policy of the protected path a member is
	// going to (a same-site path), or nil when none protects it.
	PolicyFor func(r *http.Request, path string) *Policy
	// ClientIP is the client's address, as the Caddy layer trusts it.
	ClientIP func(*http.Request) string
	// ClientAddr is the client's address for policies by network, !ok
	// when it cannot be trusted to locate the client. Default:
	// ClientAddr of ClientIP.
	ClientAddr func(*http.Request) (netip.Addr, bool)
	// FlushSeen writes out the members this instance saw and has not
	// recorded yet, so the member list shows them; nil for none.
	FlushSeen func(context.Context)
	// FoldID is the identity's id_case for IDs an admin types (a member's
	// page, an action, a reconcile list, an ID search): nil keeps them as
	// typed.
	FoldID func(string) string
	// AdminNotice tells a member by email, in the background, that an
	// admin changed their factors or asked to (d.Kind: admin_reset,
	// admin_unlock, admin_reset_requested, admin_devices, admin_sessions,
	// admin_passkey_removed with d.Name), at the address to (none when
	// ""); nil for none.
	AdminNotice func(to string, d notify.NoticeData)
	// Go runs work that outlives the request, such as a notice by email,
	// until it ends or the app stops.
	Go func(func(context.Context))
}

// Flow serves the gateway's pages.
type Flow struct {
	cfg    Config
	logger *zap.Logger
	router router
	// adminPolicy is what the challenge applies on the way to an admin
	// page: only the admin methods, no recovery code, nothing
	// remembered.
	adminPolicy Policy
	// guardPolicy is what the challenge applies when an admin with a
	// proven app or passkey steps up for their own settings: those
	// factors only (provenMethods), no recovery code.
	guardPolicy Policy
	// keyMissingLimit spaces out the log line about a member whose data
	// is under a key no longer configured.
	keyMissingLimit logLimit
	// noAddressLimit spaces out the log line about rechecks that found
	// no client address.
	noAddressLimit logLimit
}

// New returns the pages for cfg.
func New(cfg Config) *Flow {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(r *http.Request) string {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			return host
		}
	}
	if cfg.ClientAddr == nil {
		clientIP := cfg.ClientIP
		cfg.ClientAddr = func(r *http.Request) (netip.Addr, bool) { return ClientAddr(clientIP(r)) }
	}
	if cfg.Go == nil {
		cfg.Go = func(fn func(context.Context)) { go fn(context.Background()) }
	}
	if len(cfg.AdminMethods) == 0 {
		cfg.AdminMethods = DefaultAdminMethods
	}
	f := &Flow{cfg: cfg, logger: cfg.Logger, adminPolicy: Policy{Methods: cfg.AdminMethods, NoRecovery: true}}
	f.guardPolicy = Policy{Methods: []string{challenge.MethodTOTP}, NoRecovery: true}
	if cfg.WebAuthn {
		f.guardPolicy.Methods = append(f.guardPolicy.Methods, challenge.MethodWebAuthn)
	}
	f.router = newRouter(routes)
	return f
}

// Refusal is a request the gateway refuses with Status, made by a client
// that is not loading a page (a script's fetch, an API call): it gets the
// status rather than one of the gateway's pages, and the Caddy layer hands
// it to Caddy's error handling, where an operator's handle_errors sees it.
type Refusal struct {
	Status int
	// Reason is the catalog key of the page a browser would have seen,
	// such as "second_factor_required".
	Reason string
}

func (e *Refusal) Error() string { return e.Reason }

// ServeHTTP serves a request under the prefix. A refusal of a client that
// is not loading a page gets the bare status.
func (f *Flow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var refusal *Refusal
	if err := f.Serve(w, r); errors.As(err, &refusal) {
		http.Error(w, http.StatusText(refusal.Status), refusal.Status)
	}
}

// MethodOffered reports whether a site with these senders can offer
// method: the authenticator app always, email and SMS with their sender.
func MethodOffered(method string, email, sms notify.Sender) bool {
	switch method {
	case challenge.MethodTOTP:
		return true
	case challenge.MethodEmail:
		return email != nil
	case challenge.MethodSMS:
		return sms != nil
	}
	return false
}

// methodConfigured reports whether this site can offer method.
func (f *Flow) methodConfigured(method string) bool {
	if method == challenge.MethodWebAuthn {
		return f.cfg.WebAuthn
	}
	return MethodOffered(method, f.cfg.Email, f.cfg.SMS)
}

// request is one request to the gateway's own pages, with what the route's
// guards established.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	e      *challenge.Engine
	jar    *session.Jar
	id     Identity
	csrf   string // the browser's CSRF cookie secret
	page   *pages.Page
	policy *Policy // the policy protecting ReturnTo, if any
	// user is the member's record as the guards read it.
	user *challenge.User
	// session is the session verified within the step-up window, on
	// routes that require one.
	session *session.Session
	// backend is what the request was served with.
	backend *Backend
}

// required reports whether enrolment can be put off for where the member
// is going; paths no rule covers are treated as required.
func (p *request) required() bool {
	return p.policy == nil || p.policy.EnrolmentState(p.user, clock.Now()).State == challenge.EnrolmentRequired
}

// accepts reports whether the page being protected accepts method. Pages
// no rule covers accept any method the site can send.
func (p *request) accepts(method string) bool {
	return p.policy == nil || p.policy.Allows(method)
}

func (f *Flow) actor(r *http.Request, user string) challenge.Actor {
	return challenge.Actor{User: user, IP: f.cfg.ClientIP(r), UserAgent: r.UserAgent()}
}

func (f *Flow) siteName(r *http.Request) string {
	if f.cfg.SiteName != "" {
		return f.cfg.SiteName
	}
	host := r.Host
	if hst, _, err := net.SplitHostPort(host); err == nil {
		host = hst
	}
	return host
}

func (f *Flow) render(p *request, status int, name string) error {
	if err := f.cfg.Pages.Render(p.w, status, name, p.page, p.r.TLS != nil); err != nil {
		f.logger.Error("rendering page", zap.String("page", name), zap.Error(err))
	}
	return nil
}

// wantsPage reports whether the client is loading a page, which gets one
// of the gateway's pages, rather than fetching data for a script, which
// gets a bare status. Browsers say which with Sec-Fetch-Mode; other
// clients asking for JSON get the status, the rest pages.
func wantsPage(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "navigate":
		return true
	case "":
		return !strings.Contains(r.Header.Get("Accept"), "application/json")
	}
	return false
}

// message shows a message page (errors, lockout, sign-out). A refusal of
// a client that is not loading a page returns a *Refusal instead.
func (f *Flow) message(w http.ResponseWriter, r *http.Request, status int, title, msg string, args []any, link string) error {
	if status >= 400 && !wantsPage(r) {
		w.Header().Set("Cache-Control", "no-store")
		return &Refusal{Status: status, Reason: msg}
	}
	page := &pages.Page{
		Lang:        pages.Language(r.Header.Get("Accept-Language")),
		SiteName:    f.siteName(r),
		Prefix:      f.cfg.Prefix,
		Title:       title,
		Message:     msg,
		MessageArgs: args,
		Status:      status,
		Link:        link,
	}
	if link != "" {
		page.LinkLabel = "continue"
	}
	for _, a := range args {
		if _, ok := a.(template.HTML); ok {
			page.LocalTimes = true // a time from pages.When and the like
		}
	}
	if err := f.cfg.Pages.Render(w, status, "message", page, r.TLS != nil); err != nil {
		f.logger.Error("rendering page", zap.String("page", "message"), zap.Error(err))
	}
	return nil
}

func seeOther(p *request, target string) error {
	p.w.Header().Set("Cache-Control", "no-store")
	p.w.Header().Set("Location", target)
	p.w.WriteHeader(http.StatusSeeOther)
	return nil
}

// pageURL is a gateway page carrying the current return_to, and that the
// member came from the settings page.
func (f *Flow) pageURL(p *request, page string) string {
	u := f.cfg.Prefix + page + "?return_to=" + url.QueryEscape(p.page.ReturnTo)
	if p.page.FromSettings {
		u += "&from=settings"
	}
	return u
}

// signOutURL is the way out of the challenge and enrolment pages: the
// gateway's sign-out, which goes on to the site's own, when that is
// known; else the site's top page, since the gateway cannot sign the
// member out of the site.
func (f *Flow) signOutURL() string {
	if f.cfg.LogoutURL == "" {
		return f.cfg.TopPage
	}
	return f.cfg.Prefix + "logout?return_to=" + url.QueryEscape(f.cfg.LogoutURL)
}

// ErrNotReady is why the gateway is closed before the store has opened and
// passed its checks.
var ErrNotReady = errors.New("the store is not open or has not passed the key check")

// Unavailable fails closed: without the store or the identity source the
// gateway cannot tell who may pass, so nobody passes.
func (f *Flow) Unavailable(w http.ResponseWriter, r *http.Request, stage string, err error) error {
	if c := f.logger.Check(zap.ErrorLevel, "second factor unavailable"); c != nil {
		c.Write(zap.String("stage", stage), zap.Error(err))
	}
	return f.unavailablePage(w, r)
}

func (f *Flow) unavailablePage(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Retry-After", "30")
	return f.message(w, r, http.StatusServiceUnavailable, "title_unavailable", "unavailable", nil, "")
}

func (f *Flow) unavailable(p *request, stage string, err error) error {
	return f.Unavailable(p.w, p.r, stage, err)
}

// withTimeout bounds store work done for one request.
func withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 5*time.Second)
}

// engineError maps an engine error to a page, when it is one the member
// should see; it returns false for errors the caller handles.
func (f *Flow) engineError(p *request, err error) (bool, error) {
	var locked *challenge.LockedError
	var limited *challenge.LimitedError
	switch {
	case errors.As(err, &locked):
		f.lockoutNotice(p, locked)
		return true, f.locked(p, locked.Until)
	case errors.As(err, &limited):
		return true, f.limited(p, limited)
	case errors.Is(err, challenge.ErrKeyMissing):
		return true, f.keyMissing(p)
	case errors.Is(err, challenge.ErrCodeInvalid), errors.Is(err, challenge.ErrMalformed),
		errors.Is(err, challenge.ErrNotEnrolled), errors.Is(err, challenge.ErrExpired),
		errors.Is(err, challenge.ErrAlreadyEnrolled), errors.Is(err, challenge.ErrCodeExpired),
		errors.Is(err, challenge.ErrCodeVoid), errors.Is(err, challenge.ErrNoDestination):
		return false, nil
	}
	return true, f.unavailable(p, "engine", err)
}

// lockoutNotice tells the member by email when this refusal started a
// lockout.
func (f *Flow) lockoutNotice(p *request, locked *challenge.LockedError) {
	if !locked.Started {
		return
	}
	if u, err := p.e.State(p.r.Context(), p.id.ID); err == nil {
		f.notice(p, u, notify.NoticeData{Kind: "lockout"})
	}
}

// memberID is an ID an admin typed, compared as the identity compares
// members'.
func (f *Flow) memberID(id string) string {
	if f.cfg.FoldID == nil {
		return id
	}
	return f.cfg.FoldID(id)
}
