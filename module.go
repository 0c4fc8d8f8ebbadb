// Package twofactor is a Caddy plugin that puts a second authentication
// factor in front of an existing member site: the two_factor app (keys,
// store, senders, engine), the two_factor HTTP handler, and their guest
// modules. The pages live in package flow, the engine in package challenge;
// this package adapts Caddy's configuration, lifecycle and requests to them.
package twofactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
	"github.com/caddy-twofactor/twofactor/store"
)

func init() {
	caddy.RegisterModule(App{})
	caddy.RegisterModule(Handler{})
}

// App is the infrastructure shared by every site that uses the two_factor
// handler: keys, the store, the senders and the second-factor engine. It is
// optional in the config; without it the embedded defaults apply.
type App struct {
	// Master keys that encrypt authenticator secrets and seal cookies,
	// newest first. The first key encrypts new data, and a member's record
	// moves to it whenever it is written; every key is tried when
	// reading, so a replaced key stays listed until the count of member
	// records under an older key, logged at start, reaches 0. Each key is
	// used as the text it is (not decoded), at least 32 bytes after
	// placeholders are replaced and surrounding spaces trimmed; use
	// {env.*} or {file.*} placeholders so the key never sits in the
	// config. Every instance sharing a store needs the same keys.
	// Default: a random key generated on first start and kept in Caddy's
	// data directory (two_factor/key, mode 0600).
	Keys []string `json:"keys,omitempty"`

	// Where enrolments, counters and remembered devices are kept: a
	// two_factor.stores module (embedded or redis). Default: the embedded
	// store in Caddy's data directory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=two_factor.stores inline_key=type"`

	// Length of an authenticator-app time step: whole seconds, at least
	// 15s. Default: 30s.
	TOTPPeriod caddy.Duration `json:"totp_period,omitempty"`

	// Time steps accepted before and after the current one, to allow for
	// clock drift on phones: 0, 1 or 2. Default: 1.
	TOTPSkew *int `json:"totp_skew,omitempty"`

	// Digits in an authenticator-app code: 6 or 8. Default: 6.
	TOTPDigits int `json:"totp_digits,omitempty"`

	// How far either side of the server's time a wrong authenticator code
	// is looked for, to tell the member that their phone's clock looks N
	// minutes fast or slow and how to set it right. The code is refused
	// and counted as a wrong code all the same. 0 turns the hint off;
	// otherwise at most 1h, and at least the accepted skew window
	// (totp_skew × totp_period). Default: 10m.
	TOTPDriftWindow *caddy.Duration `json:"totp_drift_window,omitempty"`

	// Wrong codes allowed per account in a row before the account is
	// locked out, 1 to 50: counted since its last right code, shared by
	// every method, session and address, and forgotten a day after the
	// first. Default: 5.
	MaxFailures int `json:"max_failures,omitempty"`

	// Wrong codes allowed per client address within failure_window; -1
	// turns the address limit off. The address is Caddy's client IP, so
	// behind a load balancer configure trusted_proxies, or every member
	// shares the balancer's address. Default: 20.
	MaxAddressFailures int `json:"max_address_failures,omitempty"`

	// The window over which wrong codes from one client address are
	// counted, at least 1s. Default: 15m.
	FailureWindow caddy.Duration `json:"failure_window,omitempty"`

	// How long the first lockout lasts once max_failures or
	// max_address_failures is reached, counted from that moment; the
	// next tries are counted afresh after it. At least 1s. Default: 15m.
	Lockout caddy.Duration `json:"lockout,omitempty"`

	// The longest an account's lockout lasts: each lockout that follows
	// within a day of the last one ending lasts twice as long as that
	// one, up to this; a right code forgets them. Address lockouts always
	// last lockout. From lockout to 168h. Default: 4h (or lockout, if
	// longer).
	MaxLockout caddy.Duration `json:"max_lockout,omitempty"`

	// How long a started enrolment waits for its confirming code, 1m to
	// 1h. Default: 10m.
	EnrolmentTimeout caddy.Duration `json:"enrolment_timeout,omitempty"`

	// Sender of codes by email: a two_factor.senders module that can
	// carry email (smtp, or mailbox for development). Default: none;
	// members cannot choose email codes.
	EmailRaw json.RawMessage `json:"email,omitempty" caddy:"namespace=two_factor.senders inline_key=sender"`

	// Sender of codes by SMS: a two_factor.senders module that can carry
	// SMS (sns, or mailbox for development). Default: none; members
	// cannot choose SMS codes.
	SMSRaw json.RawMessage `json:"sms,omitempty" caddy:"namespace=two_factor.senders inline_key=sender"`

	// Region (ISO 3166 two-letter code) assumed for phone numbers entered
	// without a country code. Default: JP.
	PhoneRegion string `json:"phone_region,omitempty"`

	// Regions whose phone numbers may be enrolled for SMS; numbers from
	// elsewhere are refused, which keeps SMS pumping to premium foreign
	// numbers out. Default: phone_region only.
	PhoneCountries []string `json:"phone_countries,omitempty"`

	// How long an emailed code is valid: 1m to 10m. Default: 10m.
	EmailCodeTTL caddy.Duration `json:"email_code_ttl,omitempty"`

	// How long a code sent by SMS is valid: 1m to 10m. Default: 5m.
	SMSCodeTTL caddy.Duration `json:"sms_code_ttl,omitempty"`

	// Tries allowed on one emailed or texted code before it is void, 1 to
	// 10. Wrong tries also count toward max_failures. Default: 5.
	CodeAttempts int `json:"code_attempts,omitempty"`

	// How long a member waits before another code is sent by the same
	// method, 10s to 10m. Default: 60s.
	ResendCooldown caddy.Duration `json:"resend_cooldown,omitempty"`

	// Codes sent per clock hour to one member, 1 to 100. Default: 5.
	HourlySendsPerUser int `json:"hourly_sends_per_user,omitempty"`

	// Codes sent per clock hour to one address or number, whoever asks, 1
	// to 100. Default: 5.
	HourlySendsPerDestination int `json:"hourly_sends_per_destination,omitempty"`

	// Codes sent per clock hour at the request of one client address
	// (IPv6 by /64), at most 100000; -1 turns this limit off. Default: 20.
	HourlySendsPerAddress int `json:"hourly_sends_per_address,omitempty"`

	// SMS sent per clock hour by the whole site, 1 to 1000000: a ceiling
	// on SNS spend whatever happens. Reaching it logs an error.
	// Default: 100.
	HourlySMSSite int `json:"hourly_sms_site,omitempty"`

	// How many members' second-factor records each instance keeps in
	// memory for the verified path, from 1000 to 10000000. Past it the
	// least used are forgotten first, so members active all the time stay
	// in memory however many others pass; a record is kept 2s after it
	// was read (changes reach other instances at once by notice). Each
	// costs about 1.2 KB for a member with an app, recovery codes and a
	// browser, up to about 1 KB more with the address ranges a rule with
	// recheck_new_network keeps (see the README). Default: 100000.
	MemberCacheSize int `json:"member_cache_size,omitempty"`

	// Four-eyes resets: when set, an admin's reset of a member's second
	// factor is a request that takes effect only when an approver other
	// than the requester, and never the member, approves it within this
	// time; unapproved, it lapses. 10m to 168h, or 0 for off.
	// Default: 0 (off: a reset happens when asked).
	ResetApproval caddy.Duration `json:"reset_approval,omitempty"`

	// Members who may use the admin pages (under each site's prefix,
	// admin/), each with a role: viewer (reads the member list, a
	// member's page, reconciles a list), support (also unlocks, forgets
	// devices, ends sessions, resets) or approver (also approves another
	// admin's reset). IDs are compared as the identity gives them, after
	// its id_case. Admins pass the second factor like every member, with
	// one of admin_methods. Default: none.
	Admins []AdminEntry `json:"admins,omitempty"`

	// Take the admin role of members not listed in admins from the
	// identity: the "role" field of the identity endpoint's answer, or
	// the identity's role_header. Whatever sets that field or header can
	// make anyone an admin: the member site, or the handler before
	// two_factor, must set it (and remove any copy the client sent).
	// Only exactly viewer, support or approver grant a role.
	// Default: false.
	AdminRolesFromIdentity bool `json:"admin_roles_from_identity,omitempty"`

	// The second factors that open the admin pages: totp (an
	// authenticator app), webauthn (a passkey or security key) or both.
	// webauthn needs webauthn on every handler (its admin pages are under
	// its prefix); listed alone, it makes the admin pages refuse anything
	// but a passkey or security key, which a phishing page cannot replay.
	// Email and SMS codes are refused here: whoever holds an admin's
	// password and mailbox, or swaps their SIM, would pass them. Recovery
	// codes and remembered devices never open the admin pages.
	// Default: totp.
	AdminMethods []string `json:"admin_methods,omitempty"`

	// This instance's name in the audit trail: unique among the
	// instances that share the store (each keeps its own hash chain, and
	// two writing under one name would fork it), at most 200 bytes.
	// Default: the host name.
	InstanceName string `json:"instance_name,omitempty"`

	// How long the audit trail keeps a record, 1d to 3650d; older ones
	// are trimmed hourly in the background. Default: 400d.
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`
	// A summary emailed to admins once a week, for the whole site: member
	// coverage, verifications and codes sent, non-delivery by channel,
	// lockouts, resets and admins' actions, time to recover, resets
	// pending approval, each beside the week before. Needs the email
	// sender. Default: none (off).
	WeeklyReport *WeeklyReport `json:"weekly_report,omitempty"`

	logger  *zap.Logger
	audit   *zap.Logger
	trailW  *audit.Writer
	metrics *metrics
	skips   *skipNotes // the network skips audited (skips.go)
	ctx     caddy.Context
	cfg     challenge.Config
	secrets [][]byte // the configured keys, placeholders replaced
	storage StoreModule
	email   notify.Sender // nil when email codes are not configured
	sms     notify.Sender // nil when SMS codes are not configured

	storeIdentity string // a shared store's, for knownStores
	knownStores   knownStores
	*running
}

// AdminEntry is one admin of the admin pages.
type AdminEntry struct {
	// The admin's member ID, as the identity gives it. Required.
	ID string `json:"id"`
	// viewer, support or approver. Required.
	Role string `json:"role"`
}

// running is the app's state from Start on.
type running struct {
	started chan struct{} // closed when Start has run, successfully or not
	rt      atomic.Pointer[flow.Backend]
	ready   atomic.Bool  // the key check passed
	lost    atomic.Bool  // the store lost its data since
	stale   atomic.Int64 // member records under an older key, as last noted
	bg      background
	site    atomic.Pointer[noticeSite] // for admins' notices to members
	// foldIDs and exactIDs are set when a handler folds member IDs
	// (id_case fold) or compares them exactly. Where every handler folds,
	// the admin endpoint folds the IDs it is given the same way, so
	// "Alice" finds the member stored as "alice"; where sites differ, it
	// takes them as typed, for "Bob" may be a member of an exact site.
	foldIDs, exactIDs atomic.Bool
	seen              *seenRecorder // set before rt; nil if Start failed before
	figures           atomic.Pointer[figures]
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision applies defaults, replaces the keys' placeholders and loads
// the store and sender modules. It opens nothing: `caddy validate` stops
// after Validate, and must leave the store and the data directory alone.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.audit = a.logger.Named("audit")
	a.running = &running{started: make(chan struct{})}
	m, err := newMetrics(ctx.GetMetricsRegistry(), a)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	a.metrics = m
	a.skips = newSkipNotes()
	a.trailW = audit.NewWriter(a.logger, m.auditDropped.Inc)
	a.trailW.Throttle(auditPerMinute, clock.Now)
	a.audit = counted(a.audit, m.observe, a.countFigures)
	a.audit = audit.Tee(a.audit, a.trailW, clock.Now)
	if a.AuditRetention == 0 {
		a.AuditRetention = caddy.Duration(defaultAuditRetention)
	}
	a.cfg = challenge.Config{
		Period:             time.Duration(a.TOTPPeriod),
		Digits:             a.TOTPDigits,
		MaxFailures:        a.MaxFailures,
		MaxAddressFailures: a.MaxAddressFailures,
		FailureWindow:      time.Duration(a.FailureWindow),
		Lockout:            time.Duration(a.Lockout),
		MaxLockout:         time.Duration(a.MaxLockout),
		EnrolTTL:           time.Duration(a.EnrolmentTimeout),

		EmailCodeTTL:        time.Duration(a.EmailCodeTTL),
		SMSCodeTTL:          time.Duration(a.SMSCodeTTL),
		CodeAttempts:        a.CodeAttempts,
		ResendCooldown:      time.Duration(a.ResendCooldown),
		SendsPerUser:        a.HourlySendsPerUser,
		SendsPerDestination: a.HourlySendsPerDestination,
		SendsPerAddress:     a.HourlySendsPerAddress,
		SMSPerHour:          a.HourlySMSSite,
		CacheSize:           a.MemberCacheSize,

		Noticed: m.noticed,
	}
	if a.TOTPSkew != nil {
		a.cfg.Skew = *a.TOTPSkew
		if a.cfg.Skew == 0 {
			a.cfg.Skew = challenge.SkewZero
		}
	}
	if a.TOTPDriftWindow != nil {
		a.cfg.DriftWindow = time.Duration(*a.TOTPDriftWindow)
		if a.cfg.DriftWindow == 0 {
			a.cfg.DriftWindow = challenge.DriftOff
		}
	}
	if len(a.AdminMethods) == 0 {
		a.AdminMethods = []string{challenge.MethodTOTP}
	}
	a.AdminMethods = distinct(a.AdminMethods)
	if a.PhoneRegion == "" {
		a.PhoneRegion = "JP"
	}
	a.PhoneRegion = strings.ToUpper(a.PhoneRegion)
	if len(a.PhoneCountries) == 0 {
		a.PhoneCountries = []string{a.PhoneRegion}
	}
	for i, c := range a.PhoneCountries {
		a.PhoneCountries[i] = strings.ToUpper(c)
	}

	repl := caddy.NewReplacer()
	for i, k := range a.Keys {
		v, err := repl.ReplaceOrErr(k, true, true)
		if err != nil {
			return fmt.Errorf("keys[%d]: %v", i, err)
		}
		a.secrets = append(a.secrets, []byte(strings.TrimSpace(v)))
	}

	if a.StoreRaw == nil {
		a.StoreRaw = json.RawMessage(`{"type":"embedded"}`)
	}
	mod, err := ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var ok bool
	if a.storage, ok = mod.(StoreModule); !ok {
		return fmt.Errorf("store: module %T is not a store", mod)
	}
	if id, ok := mod.(sharedStore); ok {
		a.storeIdentity = id.Identity()
	}
	a.knownStores = defaultKnownStores()
	if a.WeeklyReport != nil {
		a.WeeklyReport.provision()
	}

	if a.email, err = a.loadSender(ctx, a.EmailRaw, "EmailRaw", notify.ChannelEmail); err != nil {
		return fmt.Errorf("email: %w", err)
	}
	if a.sms, err = a.loadSender(ctx, a.SMSRaw, "SMSRaw", notify.ChannelSMS); err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	return nil
}

// loadSender loads the sender module in field (raw is its value), if
// configured, and checks that it can carry channel. Modules are used
// through notify.Sender, so a third-party sender plugs in like the
// built-in ones.
func (a *App) loadSender(ctx caddy.Context, raw json.RawMessage, field, channel string) (notify.Sender, error) {
	if raw == nil {
		return nil, nil
	}
	mod, err := ctx.LoadModule(a, field)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%T", mod)
	if m, ok := mod.(caddy.Module); ok {
		name = string(m.CaddyModule().ID)
	}
	s, ok := mod.(notify.Sender)
	if !ok {
		return nil, fmt.Errorf("module %s is not a sender (it has no Send method)", name)
	}
	if c, ok := mod.(notify.Carrier); ok && !c.Carries(channel) {
		use := map[string]string{notify.ChannelEmail: "email (use smtp, or mailbox for development)",
			notify.ChannelSMS: "SMS (use sns, or mailbox for development)"}[channel]
		return nil, fmt.Errorf("sender %s cannot send %s", name, use)
	}
	return s, nil
}

// Validate checks every setting, touching nothing.
func (a *App) Validate() error {
	if a.TOTPSkew != nil && *a.TOTPSkew < 0 {
		return fmt.Errorf("totp_skew %d: must be 0, 1 or 2", *a.TOTPSkew)
	}
	if a.TOTPDriftWindow != nil && *a.TOTPDriftWindow < 0 {
		return fmt.Errorf("totp_drift_window %s: must be between 0 (off) and 1h", time.Duration(*a.TOTPDriftWindow))
	}
	if err := a.cfg.Validate(); err != nil {
		return err
	}
	if !notify.ValidRegion(a.PhoneRegion) {
		return fmt.Errorf("phone_region %q: not a known two-letter region code", a.PhoneRegion)
	}
	for _, c := range a.PhoneCountries {
		if !notify.ValidRegion(c) {
			return fmt.Errorf("phone_countries %q: not a known two-letter region code", c)
		}
	}
	if d := time.Duration(a.ResetApproval); d != 0 && (d < minResetApproval || d > maxResetApproval) {
		return fmt.Errorf("reset_approval %s: must be between %s and %s, or 0 for off", d, minResetApproval, maxResetApproval)
	}
	seenAdmin := map[string]bool{}
	for i, ad := range a.Admins {
		switch {
		case ad.ID == "":
			return fmt.Errorf("admins[%d].id: required", i)
		case !flow.ValidRole(ad.Role):
			return fmt.Errorf("admins[%d].role %q: must be viewer, support or approver", i, ad.Role)
		case seenAdmin[ad.ID]:
			return fmt.Errorf("admins[%d].id %q: listed twice", i, ad.ID)
		}
		seenAdmin[ad.ID] = true
	}
	for _, m := range a.AdminMethods {
		if err := checkAdminMethod(m); err != nil {
			return err
		}
	}
	if r := time.Duration(a.AuditRetention); r < minAuditRetention || r > maxAuditRetention {
		return fmt.Errorf("audit_retention %s: must be between 1d and 3650d", r)
	}
	if n := a.InstanceName; n != "" && (len(n) > audit.MaxInstanceLen || strings.ContainsAny(n, "\x00\n\r")) {
		return fmt.Errorf("instance_name %q: must be at most %d bytes, without control characters", n, audit.MaxInstanceLen)
	}
	if a.WeeklyReport != nil {
		if err := a.WeeklyReport.validate(a.email != nil); err != nil {
			return err
		}
	}
	for i, k := range a.secrets {
		if len(k) < keyring.MinKeyLength {
			return fmt.Errorf("keys[%d]: the key is %d bytes; at least %d are required (for example: openssl rand -base64 32)", i, len(k), keyring.MinKeyLength)
		}
	}
	return nil
}

// checkAdminMethod refuses a method that may not open the admin pages.
func checkAdminMethod(m string) error {
	switch m {
	case challenge.MethodTOTP, challenge.MethodWebAuthn:
		return nil
	case challenge.MethodEmail, challenge.MethodSMS:
		return fmt.Errorf("admin_methods %s: not for the admin pages, where a stolen password with the admin's mailbox or a swapped SIM would pass; use totp or webauthn", m)
	}
	return fmt.Errorf("admin_methods %q: must be totp or webauthn", m)
}

// Start loads or creates the key, opens the store, checks that the keys
// read what it holds, and starts the watchers. Handlers that get requests
// before it finishes (Caddy starts apps in no set order) wait for it.
func (a *App) Start() error {
	defer close(a.started)
	a.bg.start(a.ctx)
	kr, err := a.keyring()
	if err != nil {
		return err
	}
	st, err := a.storage.OpenStore(a.bg.watchCtx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	st = countStoreErrors(st, a.metrics.storeErrors)
	engine, err := challenge.New(st, kr, a.cfg, clock.Now, a.audit)
	if err != nil {
		return err
	}
	// The instance's name in the audit trail and the daily figures.
	instance, err := a.instanceName()
	if err != nil {
		return err
	}
	trail, err := a.startTrail(st, kr, instance, clock.Now)
	if err != nil {
		return err
	}
	// Other instances' writes (a method disabled, a device forgotten)
	// reach this one's copies of user records at once.
	a.bg.watch(engine.FollowChanges)
	// One writer notes the members seen on protected paths; Stop lets it
	// write what is queued.
	a.seen = newSeenRecorder()
	a.bg.Go(func(ctx context.Context) { a.seen.run(ctx, engine) })
	// The day's figures, written every few seconds and once more at Stop.
	figs, err := newFigures(st, engine, a.logger, instance, time.Duration(a.AuditRetention))
	if err != nil {
		return err
	}
	a.figures.Store(figs)
	var due []func(context.Context, time.Time)
	if a.WeeklyReport.on() {
		due = append(due, a.reporter(st, engine, instance).due)
	}
	stop := a.bg.watchCtx.Done()
	a.bg.Go(func(ctx context.Context) { figs.run(ctx, stop, due...) })

	checkCtx, cancel := context.WithTimeout(a.bg.watchCtx, keyCheckTimeout)
	defer cancel()
	err = a.checkKey(checkCtx, engine)
	switch {
	case err == nil:
		a.ready.Store(true)
		a.surveyKeys(engine)
		if err := engine.CheckNotices(checkCtx); err != nil {
			a.logger.Warn("store: change notices cannot be sent, so other instances see a revocation "+
				"made here only when their copy expires (2s); for Redis, grant the channel (&<key_prefix>*)", zap.Error(err))
		}
	case errors.Is(err, challenge.ErrWrongKey):
		return errWrongKey
	case errors.Is(err, challenge.ErrStoreLost):
		a.reportLost(err)
	case errors.Is(err, store.ErrUnavailable):
		// A shared store that is down must not keep Caddy from loading:
		// protected paths answer 503 until the check passes.
		a.logger.Error("store unavailable; protected paths answer 503 until it is back", zap.Error(err))
	default:
		return fmt.Errorf("store: checking the keys against stored data: %w", err)
	}
	a.bg.watch(func(ctx context.Context) { a.watchStore(ctx, engine) })
	a.rt.Store(&flow.Backend{Engine: engine, Jar: session.NewJar(kr), Trail: trail, SyncTrail: a.trailW.Sync, Figures: a.readFigures})
	return nil
}

// Stop ends the watchers, and waits for notices still being sent, each
// within its own timeout.
func (a *App) Stop() error {
	if a.seen != nil {
		a.seen.close()
	}
	if a.trailW != nil {
		a.trailW.Close()
	}
	a.bg.stop()
	return nil
}

// startWait bounds how long a request waits for the app to start: a
// reload's new handlers can serve before the new app's Start has run.
const startWait = 10 * time.Second

// backend returns the engine and the jar once the store is open and
// trusted, or nil (the gateway then answers 503).
func (a *App) backend(ctx context.Context) *flow.Backend {
	b := a.rt.Load()
	if b == nil {
		select {
		case <-a.started:
		case <-ctx.Done():
			return nil
		case <-time.After(startWait):
			return nil
		}
	}
	return a.trusted()
}

// trusted returns the engine and the jar when the store is open, has
// passed its checks and has not lost its data; nil otherwise. It never
// waits.
func (a *App) trusted() *flow.Backend {
	b := a.rt.Load()
	if b == nil || !a.ready.Load() || a.lost.Load() {
		return nil
	}
	return b
}

// methodConfigured reports whether the site can offer method.
func (a *App) methodConfigured(method string) bool {
	return flow.MethodOffered(method, a.email, a.sms)
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
	// Required: at least one rule.
	Protect []*Rule `json:"protect,omitempty"`

	// Path prefix under which the gateway serves its pages (challenge,
	// enrolment, sign-out): it starts and ends with / and names a path.
	// Requests under it never reach the upstream. Default: /.2fa/.
	Prefix string `json:"prefix,omitempty"`

	// Where to send visitors who are not signed in at the member site
	// when they request a protected path: a same-site path such as
	// /login. The original path is appended as the "next" query
	// parameter. Default: none; the request passes through, so the member
	// site asks them to sign in itself.
	LoginURL string `json:"login_url,omitempty"`

	// The member site's own sign-out: a same-site path such as /logout.
	// The gateway's sign-out (under the prefix) goes on there after ending
	// the second-factor session, and the "Cancel and sign out" link of the
	// code and set-up pages leads through both. Default: none; the
	// gateway's sign-out ends only its own session and says so.
	LogoutURL string `json:"logout_url,omitempty"`

	// Where members land after verification when the page they asked for
	// is unknown or not a safe same-site path: a same-site path.
	// Default: /.
	TopPage string `json:"top_page,omitempty"`

	// Name shown on the gateway's pages, as the issuer in authenticator
	// apps, and in messages. Required when codes are sent by email or
	// SMS. Default: the request's host name.
	SiteName string `json:"site_name,omitempty"`

	// The site's public address, such as https://example.com (no path),
	// for the link to the settings page in security notices. It is taken
	// from here only, never from a request's Host header, which the client
	// chooses. Default: none; notices name the page's path instead.
	SiteURL string `json:"site_url,omitempty"`

	// "off" sends no email when a member passes the second factor in a
	// browser the gateway has not seen for them before; "on" sends one
	// (with an email sender configured). Default: on.
	NewDeviceNotice string `json:"new_device_notice,omitempty"`

	// Client address ranges (CIDR) from which a sign-in in a new browser
	// is not worth a notice, such as an office network. Default: none.
	TrustedNetworks []string `json:"trusted_networks,omitempty"`

	// How long a second-factor session lasts without any request, at
	// least 1m and at most session_lifetime. Default: 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`

	// How long a second-factor session lasts at most, however active: at
	// least session_idle and at most 30d. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// How recently a member must have entered a code (not used a
	// remembered device) to add, remove or change methods and recovery
	// codes, 1m to 1h; otherwise they are asked for one first.
	// Default: 10m.
	StepUp caddy.Duration `json:"step_up,omitempty"`

	// Passkeys and security keys (WebAuthn) as a second factor, with the
	// relying party taken from site_url, which it requires (see
	// WebAuthn). Default: off.
	WebAuthn *WebAuthn `json:"webauthn,omitempty"`

	// Directory of templates that replace the built-in ones, file by file
	// (challenge.html, enrol.html, layout.html, ...). Default: none.
	Templates string `json:"templates,omitempty"`

	app     *App
	flow    *flow.Flow
	source  identitySource
	admins  map[string]string // admin ID (after id_case) → role
	logger  *zap.Logger
	trusted []netip.Prefix
	// looseProxyWarned: warnLooseProxy has said its piece (a pointer:
	// Caddy copies a Handler by value).
	looseProxyWarned *atomic.Bool
}

// Rule is a set of protected paths with its policy.
type Rule struct {
	// Path patterns, as in Caddy's path matcher (/members/*, *.pdf, ...),
	// each starting with / or *. A pattern /dir/* also covers /dir. Matching
	// ignores case, and a path is matched both as sent and as servers
	// that cut ";parameters", read "\" as "/", drop trailing dots and
	// spaces, decode twice or keep "%2F" in a segment would read it; it
	// is protected if any form is. Required.
	Paths []string `json:"paths,omitempty"`

	// Path patterns inside Paths that are not protected, compared in the
	// case written and without % escapes. A path is exempt only if every
	// form of it (see Paths) matches one. Default: none.
	Except []string `json:"except,omitempty"`

	// "required": members without a second factor must set one up before
	// they continue (from a deadline, with enrolment_grace or
	// enrolment_from). "optional": they continue (the upstream is told they
	// have none) and are reminded now and then to set one up; members who
	// have one must still use it. Default: required.
	Enrolment string `json:"enrolment,omitempty"`

	// With enrolment required: a grace period, 1h to 400d, during which a
	// member without a second factor still passes, as on an optional
	// rule, counted from when the gateway first saw them on these paths.
	// The start is kept in the member's record for each path pattern, and
	// the earliest over the rule's patterns counts, so changing the grace
	// or adding a pattern does not start anyone's grace again. Not with
	// enrolment_from. Default: 0 (required at once).
	EnrolmentGrace caddy.Duration `json:"enrolment_grace,omitempty"`

	// With enrolment required: when enrolment becomes required for every
	// member; until then those without a second factor pass as on an
	// optional rule. A date, YYYY-MM-DD, meaning 00:00 UTC that day, or an
	// RFC 3339 time with its zone (2027-01-15T09:00:00+09:00). Not with
	// enrolment_grace. Default: none (required at once).
	EnrolmentFrom string `json:"enrolment_from,omitempty"`

	// How long "don't ask for a code on this device" lasts, 1m to 400d,
	// or "off" to hide the choice and refuse remembered devices on these
	// paths (for example an admin area). Default: 30d.
	RememberDevice string `json:"remember_device,omitempty"`

	// How often members without a second factor see the reminder page on
	// optional paths, and before the deadline of a rule with
	// enrolment_grace or enrolment_from, 1m to 400d. Default: 7d, and 1d
	// on a rule with a deadline.
	Reminder caddy.Duration `json:"reminder,omitempty"`

	// Second factors accepted on these paths: totp, webauthn, email, sms.
	// webauthn (passkeys and security keys) needs webauthn on this
	// handler; email and SMS need a sender in the two_factor app. A
	// member whose session was verified another way is asked again, with
	// one of these (a member without one verifies with theirs, then adds
	// one); a remembered device passes only if it was remembered after one
	// of these; a recovery code still lets a member in, and on to their
	// settings. "methods webauthn" accepts only factors a phishing page
	// cannot replay. Default: every method the site offers (totp always,
	// webauthn where this handler enables it).
	Methods []string `json:"methods,omitempty"`

	// With remember_device: a remembered device used from an address
	// range (the /24 of an IPv4 address, the /48 of an IPv6 one) the
	// member has never passed the second factor from asks for a code
	// once; afterwards the range is known for the member. Default: false.
	RecheckNewNetwork bool `json:"recheck_new_network,omitempty"`

	// Policies for requests from given client address ranges, overriding
	// this rule's; the first block with a range holding the client's
	// address applies, and a request whose address cannot be determined
	// gets the rule's own policy. The address is Caddy's client IP, which
	// follows X-Forwarded-For only from the servers' trusted_proxies.
	// Default: none.
	Networks []*NetworkPolicy `json:"networks,omitempty"`

	policy flow.Policy
	paths  caddyhttp.MatchPath
	// blocks are the policies of Networks, one per block; nets their
	// ranges in order, each pointing at its block's; label names the rule
	// in metrics and the audit trail.
	blocks []flow.Policy
	nets   []netMatch
	label  string
}

const (
	defaultPrefix      = "/.2fa/"
	defaultRemember    = 30 * 24 * time.Hour
	maxRemember        = 400 * 24 * time.Hour
	defaultReminder    = 7 * 24 * time.Hour
	minGrace           = time.Hour
	defaultSessionIdle = 30 * time.Minute
	defaultSessionLife = 12 * time.Hour
	maxSessionLife     = 30 * 24 * time.Hour
	defaultStepUp      = 10 * time.Minute
	enrolmentRequired  = "required"
	enrolmentOptional  = "optional"
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.two_factor",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision applies defaults and wires the handler to the two_factor app,
// the identity source and the pages.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("two_factor")
	if err != nil {
		return err
	}
	h.app = appIface.(*App)
	h.looseProxyWarned = new(atomic.Bool)

	if h.Prefix == "" {
		h.Prefix = defaultPrefix
	}
	if h.TopPage == "" {
		h.TopPage = "/"
	}
	if h.SessionIdle == 0 {
		h.SessionIdle = caddy.Duration(defaultSessionIdle)
	}
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(defaultSessionLife)
	}
	if h.StepUp == 0 {
		h.StepUp = caddy.Duration(defaultStepUp)
	}
	h.SiteURL = strings.TrimSuffix(h.SiteURL, "/")
	for _, n := range h.TrustedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("trusted_networks %q: %v", n, err)
		}
		h.trusted = append(h.trusted, p.Masked())
	}
	if err := h.provisionWebAuthn(); err != nil {
		return err
	}
	h.app.skipLifetime(time.Duration(h.SessionLifetime))
	for i, rule := range h.Protect {
		if err := rule.provision(ctx, h.app, h.WebAuthn != nil); err != nil {
			return fmt.Errorf("protect[%d]: %w", i, err)
		}
		if rule.skips() {
			h.app.skipRule(rule.label)
		}
		if d := rule.policy.Deadline; d != nil {
			// For the admin pages' deadlines; the engine is made at
			// Start, after every handler is provisioned.
			h.app.cfg.Deadlines = append(h.app.cfg.Deadlines, *d)
			if n := deadlinePatterns(h.app.cfg.Deadlines); n > challenge.MaxGraceMarks {
				return fmt.Errorf("protect[%d]: paths: the rules with enrolment deadlines have %d path patterns between them, at most %d",
					i, n, challenge.MaxGraceMarks)
			}
		}
	}
	if h.Identity == nil {
		return errors.New("identity: required (endpoint or header)")
	}
	if h.source, err = h.Identity.provision(h.logger); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	h.admins = adminRoles(h.app, h.Identity)
	if h.Identity.IDCase == "fold" {
		h.app.foldIDs.Store(true)
	} else {
		h.app.exactIDs.Store(true)
	}
	renderer, err := pages.New(h.Templates)
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	h.app.site.CompareAndSwap(nil, &noticeSite{name: h.SiteName, url: h.SiteURL, prefix: h.Prefix})
	h.flow = flow.New(flow.Config{
		Prefix:            h.Prefix,
		TopPage:           h.TopPage,
		LoginURL:          h.LoginURL,
		LogoutURL:         h.LogoutURL,
		TOTPPeriod:        time.Duration(h.app.TOTPPeriod),
		SiteName:          h.SiteName,
		SiteURL:           h.SiteURL,
		SessionIdle:       time.Duration(h.SessionIdle),
		SessionLifetime:   time.Duration(h.SessionLifetime),
		StepUp:            time.Duration(h.StepUp),
		ResetApproval:     time.Duration(h.app.ResetApproval),
		NewDeviceNotice:   h.NewDeviceNotice != "off",
		TrustedNetworks:   h.trusted,
		RecordNetworks:    h.rechecks(),
		PhoneRegion:       h.app.PhoneRegion,
		PhoneCountries:    h.app.PhoneCountries,
		RequiresEnrolment: h.requiresEnrolment(),
		Pages:             renderer,
		Logger:            h.logger,
		Email:             h.app.email,
		SMS:               h.app.sms,
		WebAuthn:          h.WebAuthn != nil,
		AdminMethods:      h.adminMethods(),
		Backend:           h.app.backend,
		Identify:          h.identify,
		PolicyFor:         h.policyFor,
		ClientIP:          clientIP,
		ClientAddr:        h.clientAddr,
		Go:                h.app.bg.Go,
		FlushSeen:         h.app.flushSeen,
		FoldID:            h.Identity.folder(),
		AdminNotice:       h.app.adminNotice,
	})
	return nil
}

// provision readies the rule; webAuthn says that its handler offers
// passkeys, which a rule without its own methods then accepts.
func (rule *Rule) provision(ctx caddy.Context, app *App, webAuthn bool) error {
	rule.paths = caddyhttp.MatchPath(withDirectories(rule.Paths))
	if err := rule.paths.Provision(ctx); err != nil {
		return fmt.Errorf("paths: %w", err)
	}
	rule.policy = flow.Policy{Optional: rule.Enrolment == enrolmentOptional, Reminder: time.Duration(rule.Reminder)}
	var err error
	if rule.policy.Deadline, err = rule.deadline(); err != nil {
		return err
	}
	if rule.policy.Reminder == 0 {
		rule.policy.Reminder = defaultReminder
		if rule.policy.Deadline != nil {
			rule.policy.Reminder = flow.DefaultDeadlineReminder
		}
	}
	if rule.policy.Remember, err = parseRemember(rule.RememberDevice); err != nil {
		return err
	}
	rule.policy.Methods = ruleMethods(rule.Methods, app, webAuthn)
	rule.policy.Recheck = rule.RecheckNewNetwork && rule.policy.Remember > 0
	rule.label = strings.Join(rule.Paths, " ")
	return rule.provisionNetworks()
}

// ruleMethods is the methods a rule (or a networks block) lists, without
// repeats, or when it lists none every method the site offers.
func ruleMethods(listed []string, app *App, webAuthn bool) []string {
	if len(listed) > 0 {
		return distinct(listed)
	}
	var out []string
	if webAuthn {
		out = append(out, challenge.MethodWebAuthn)
	}
	for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		if app.methodConfigured(m) {
			out = append(out, m)
		}
	}
	return out
}

// distinct is list without repeats, in its order.
func distinct(list []string) []string {
	var out []string
	for _, v := range list {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// deadline reads enrolment_grace and enrolment_from: nil for a rule
// without a deadline.
func (rule *Rule) deadline() (*challenge.Deadline, error) {
	grace := time.Duration(rule.EnrolmentGrace)
	if grace == 0 && rule.EnrolmentFrom == "" {
		return nil, nil
	}
	switch {
	case grace != 0 && rule.EnrolmentFrom != "":
		return nil, errors.New("enrolment_grace, enrolment_from: give one or the other, not both")
	case rule.Enrolment == enrolmentOptional && grace != 0:
		return nil, errors.New("enrolment_grace: needs enrolment required (an optional rule has no deadline)")
	case rule.Enrolment == enrolmentOptional:
		return nil, errors.New("enrolment_from: needs enrolment required (an optional rule has no deadline)")
	}
	d := &challenge.Deadline{Paths: rule.Paths, Grace: grace}
	if grace != 0 {
		if grace < minGrace || grace > maxRemember {
			return nil, fmt.Errorf("enrolment_grace %s: must be between 1h and 400d", grace)
		}
		return d, nil
	}
	from, err := parseEnrolmentFrom(rule.EnrolmentFrom)
	if err != nil {
		return nil, err
	}
	d.From = from
	return d, nil
}

// parseEnrolmentFrom reads a date (YYYY-MM-DD, 00:00 UTC) or an RFC 3339
// time with its zone.
func parseEnrolmentFrom(v string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		t, err = time.Parse(time.RFC3339, v)
	}
	if err != nil || t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("enrolment_from %q: must be a date, like 2027-01-15 (00:00 UTC), or an RFC 3339 time with its zone, like 2027-01-15T09:00:00+09:00", v)
	}
	return t.UTC(), nil
}

// parseRemember reads remember_device: a duration from 1m to 400d, "off"
// (returned as 0), or "" for the default.
func parseRemember(v string) (time.Duration, error) {
	switch v {
	case "":
		return defaultRemember, nil
	case "off":
		return 0, nil
	}
	d, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("remember_device %q: not a duration or off (%v)", v, err)
	}
	if d < time.Minute || d > maxRemember {
		return 0, fmt.Errorf("remember_device %s: must be between 1m and 400d, or off", v)
	}
	return d, nil
}

// validate checks the rule; webAuthn says that its handler offers
// passkeys.
func (rule *Rule) validate(app *App, webAuthn bool) error {
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
	for _, p := range rule.Except {
		if strings.Contains(p, "%") {
			// Caddy matches such a pattern against the escaped path, in
			// any case; an exception is matched decoded, in its case.
			return fmt.Errorf("except %q: write the path decoded, without %% escapes", p)
		}
	}
	switch rule.Enrolment {
	case "", enrolmentRequired, enrolmentOptional:
	default:
		return fmt.Errorf("enrolment %q: must be required or optional", rule.Enrolment)
	}
	if r := rule.policy.Reminder; r < time.Minute || r > maxRemember {
		return fmt.Errorf("reminder %s: must be between 1m and 400d", r)
	}
	if err := validateMethods("methods", rule.Methods, app, webAuthn); err != nil {
		return err
	}
	if rule.RecheckNewNetwork && rule.policy.Remember == 0 {
		return errors.New("recheck_new_network: needs remember_device (not off), whose devices it rechecks")
	}
	return rule.validateNetworks(app, webAuthn)
}

// validateMethods checks a methods list; field names it in errors.
func validateMethods(field string, methods []string, app *App, webAuthn bool) error {
	for _, m := range methods {
		switch m {
		case challenge.MethodWebAuthn:
			if !webAuthn {
				return fmt.Errorf("%s webauthn: needs webauthn on this handler (with site_url), which turns passkeys and security keys on", field)
			}
			continue
		case challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS:
		default:
			return fmt.Errorf("%s %q: must be totp, webauthn, email or sms", field, m)
		}
		if !app.methodConfigured(m) {
			return fmt.Errorf("%s %s: the two_factor app has no %s sender configured", field, m, m)
		}
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if !strings.HasPrefix(h.Prefix, "/") || !strings.HasSuffix(h.Prefix, "/") || len(h.Prefix) < 3 {
		return fmt.Errorf("prefix %q: must start and end with / and name a path, like /.2fa/", h.Prefix)
	}
	if flow.SafeReturnPath(h.TopPage) == "" {
		return fmt.Errorf("top_page %q: must be a same-site path starting with /", h.TopPage)
	}
	if h.LoginURL != "" && flow.SafeReturnPath(h.LoginURL) == "" {
		return fmt.Errorf("login_url %q: must be a same-site path starting with /", h.LoginURL)
	}
	if h.LogoutURL != "" && flow.SafeReturnPath(h.LogoutURL) == "" {
		return fmt.Errorf("logout_url %q: must be a same-site path starting with /", h.LogoutURL)
	}
	idle, life := time.Duration(h.SessionIdle), time.Duration(h.SessionLifetime)
	if idle < time.Minute || life < idle || life > maxSessionLife {
		return fmt.Errorf("session_idle %s, session_lifetime %s: need 1m <= idle <= lifetime <= 30d", idle, life)
	}
	if h.SiteURL != "" {
		u, err := url.Parse(h.SiteURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("site_url %q: must be an http or https address with no path, like https://example.com", h.SiteURL)
		}
	}
	if s := time.Duration(h.StepUp); s < time.Minute || s > time.Hour {
		return fmt.Errorf("step_up %s: must be between 1m and 1h", s)
	}
	switch h.NewDeviceNotice {
	case "", "on", "off":
	default:
		return fmt.Errorf("new_device_notice %q: must be on or off", h.NewDeviceNotice)
	}
	if len(h.Protect) == 0 {
		return errors.New("protect: no protected paths configured")
	}
	for i, rule := range h.Protect {
		if err := rule.validate(h.app, h.WebAuthn != nil); err != nil {
			return fmt.Errorf("protect[%d]: %w", i, err)
		}
		for _, s := range rule.shadowed() {
			h.logger.Warn("a networks range never applies: an earlier block's range holds it", zap.Strings("paths", rule.Paths), zap.String("range", s))
		}
		for _, s := range rule.riskySkips() {
			h.logger.Warn("a networks range that skips the code may hold more clients than meant (see the README's safety notes)",
				zap.Strings("paths", rule.Paths), zap.String("range", s))
		}
		if len(rule.policy.Methods) == 1 && rule.policy.Methods[0] == challenge.MethodSMS {
			h.logger.Warn("only SMS codes are accepted on these paths; SMS is the weakest method, so offer an authenticator app too",
				zap.Strings("paths", rule.Paths))
		}
	}
	if len(h.adminMethods()) == 0 {
		return errors.New("admin_methods webauthn (in the global two_factor option): needs webauthn on this handler, whose admin pages would otherwise accept no method; turn webauthn on here, or add totp to admin_methods")
	}
	if h.Identity.IDCase == "fold" {
		// Listed apart, two spellings would be one member here, with
		// whichever role came last.
		byFolded := map[string]string{}
		for i, ad := range h.app.Admins {
			if first, ok := byFolded[foldID(ad.ID)]; ok {
				return fmt.Errorf("admins[%d].id %q: the same member as %q under identity id_case fold", i, ad.ID, first)
			}
			byFolded[foldID(ad.ID)] = ad.ID
		}
	}
	if h.Identity.RoleHeader != "" && !h.app.AdminRolesFromIdentity {
		return errors.New("identity: role_header: needs admin roles from the identity (admins { from_identity } in the global two_factor option)")
	}
	if (h.app.email != nil || h.app.sms != nil) && h.SiteName == "" {
		// Otherwise the name in emails and texts would come from the
		// request's Host header, which the client chooses.
		return errors.New("site_name: required when codes are sent by email or SMS")
	}
	return h.Identity.validate()
}

// adminRoles maps the app's admins, their IDs compared as the identity's
// id_case compares members', to their roles.
func adminRoles(app *App, identity *Identity) map[string]string {
	out := make(map[string]string, len(app.Admins))
	for _, ad := range app.Admins {
		id := ad.ID
		if identity.IDCase == "fold" {
			id = foldID(id)
		}
		out[id] = ad.Role
	}
	return out
}

// adminMethods are the app's admin_methods that this handler offers:
// passkeys only where it enables webauthn.
func (h *Handler) adminMethods() []string {
	methods := h.app.AdminMethods
	if len(methods) == 0 {
		methods = flow.DefaultAdminMethods // the app is provisioned later in unit tests
	}
	var out []string
	for _, m := range methods {
		if m != challenge.MethodWebAuthn || h.WebAuthn != nil {
			out = append(out, m)
		}
	}
	return out
}

// requiresEnrolment reports whether any protected path requires a second
// factor.
func (h *Handler) requiresEnrolment() bool {
	for _, rule := range h.Protect {
		if !rule.policy.Optional {
			return true
		}
		for _, p := range rule.blocks {
			if !p.Optional {
				return true
			}
		}
	}
	return false
}

// rechecks reports whether some rule, or one of its networks blocks,
// rechecks remembered devices from new ranges: only then do verifications
// record the ranges members pass from.
func (h *Handler) rechecks() bool {
	for _, rule := range h.Protect {
		if rule.policy.Recheck || slices.ContainsFunc(rule.blocks, func(p flow.Policy) bool { return p.Recheck }) {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.App                   = (*App)(nil)
	_ caddy.Provisioner           = (*App)(nil)
	_ caddy.Validator             = (*App)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// deadlinePatterns counts the distinct path patterns of the rules with a
// deadline: a member's record keeps a mark for each, within
// challenge.MaxGraceMarks.
func deadlinePatterns(ds []challenge.Deadline) int {
	seen := map[string]bool{}
	for _, d := range ds {
		for _, p := range d.Paths {
			seen[p] = true
		}
	}
	return len(seen)
}
