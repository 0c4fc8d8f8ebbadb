package twofactor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/session"
	"github.com/caddy-twofactor/twofactor/store"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the infrastructure shared by every site that uses the two_factor
// handler: keys, the store and the second-factor engine. It is optional in
// the config; without it the embedded defaults apply.
type App struct {
	// Master keys that encrypt authenticator secrets and seal cookies,
	// newest first. The first key encrypts new data; every key is tried
	// when reading, so a replaced key can stay listed until the data
	// written under it is gone. Each key must be at least 32 bytes after
	// placeholders are replaced; use {env.*} or {file.*} placeholders so
	// the key never sits in the config. Default: a random key generated on
	// first start and kept in Caddy's data directory (two_factor/key,
	// mode 0600).
	Keys []string `json:"keys,omitempty"`

	// Where enrolments, counters and remembered devices are kept.
	// Default: the embedded store in Caddy's data directory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=two_factor.stores inline_key=type"`

	// Length of an authenticator-app time step. Default: 30s.
	TOTPPeriod caddy.Duration `json:"totp_period,omitempty"`

	// Time steps accepted before and after the current one, to allow for
	// clock drift on phones: 0, 1 or 2. Default: 1.
	TOTPSkew *int `json:"totp_skew,omitempty"`

	// Digits in an authenticator-app code: 6 or 8. Default: 6.
	TOTPDigits int `json:"totp_digits,omitempty"`

	// Wrong codes allowed per account within failure_window before the
	// account is locked out. Shared by every method and every session.
	// Default: 5.
	MaxFailures int `json:"max_failures,omitempty"`

	// Wrong codes allowed per client address within failure_window; -1
	// turns the address limit off. The address is Caddy's client IP, so
	// behind a load balancer configure trusted_proxies, or every member
	// shares the balancer's address. Default: 20.
	MaxAddressFailures int `json:"max_address_failures,omitempty"`

	// The window over which wrong codes are counted. Default: 15m.
	FailureWindow caddy.Duration `json:"failure_window,omitempty"`

	// How long a lockout lasts at least. Default: 15m.
	Lockout caddy.Duration `json:"lockout,omitempty"`

	// How long a started enrolment waits for its confirming code.
	// Default: 10m.
	EnrolmentTimeout caddy.Duration `json:"enrolment_timeout,omitempty"`

	// Sender of codes by email: smtp, or mailbox for development.
	// Default: none; members cannot choose email codes.
	EmailRaw json.RawMessage `json:"email,omitempty" caddy:"namespace=two_factor.senders inline_key=sender"`

	// Sender of codes by SMS: sns, or mailbox for development.
	// Default: none; members cannot choose SMS codes.
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

	// Tries allowed on one emailed or texted code before it is void.
	// Wrong tries also count toward max_failures. Default: 5.
	CodeAttempts int `json:"code_attempts,omitempty"`

	// How long a member waits before another code is sent by the same
	// method. Default: 60s.
	ResendCooldown caddy.Duration `json:"resend_cooldown,omitempty"`

	// Codes sent per clock hour to one member. Default: 5.
	HourlySendsPerUser int `json:"hourly_sends_per_user,omitempty"`

	// Codes sent per clock hour to one address or number, whoever asks.
	// Default: 5.
	HourlySendsPerDestination int `json:"hourly_sends_per_destination,omitempty"`

	// Codes sent per clock hour at the request of one client address
	// (IPv6 by /64); -1 turns this limit off. Default: 20.
	HourlySendsPerAddress int `json:"hourly_sends_per_address,omitempty"`

	// SMS sent per clock hour by the whole site, a ceiling on SNS spend
	// whatever happens. Reaching it logs an error. Default: 100.
	HourlySMSSite int `json:"hourly_sms_site,omitempty"`

	engine *challenge.Engine
	ready  *atomic.Bool // the key check passed
	lost   *atomic.Bool // the store lost its data since

	storeIdentity string // a shared store's, for knownStores
	knownStores   knownStores
	codec         *session.Codec
	csrf          *session.CSRF
	store         store.Store
	email         notify.Sender // nil when email codes are not configured
	sms           notify.Sender // nil when SMS codes are not configured
	logger        *zap.Logger
	audit         *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves the keys, opens the store and checks that the keys can
// read what the store already holds.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.audit = a.logger.Named("audit")

	cfg := challenge.Config{
		Period:             time.Duration(a.TOTPPeriod),
		Digits:             a.TOTPDigits,
		MaxFailures:        a.MaxFailures,
		MaxAddressFailures: a.MaxAddressFailures,
		FailureWindow:      time.Duration(a.FailureWindow),
		Lockout:            time.Duration(a.Lockout),
		EnrolTTL:           time.Duration(a.EnrolmentTimeout),

		EmailCodeTTL:        time.Duration(a.EmailCodeTTL),
		SMSCodeTTL:          time.Duration(a.SMSCodeTTL),
		CodeAttempts:        a.CodeAttempts,
		ResendCooldown:      time.Duration(a.ResendCooldown),
		SendsPerUser:        a.HourlySendsPerUser,
		SendsPerDestination: a.HourlySendsPerDestination,
		SendsPerAddress:     a.HourlySendsPerAddress,
		SMSPerHour:          a.HourlySMSSite,
	}
	if a.TOTPSkew != nil {
		if *a.TOTPSkew < 0 {
			return fmt.Errorf("totp_skew %d: must be 0, 1 or 2", *a.TOTPSkew)
		}
		cfg.Skew = *a.TOTPSkew
		if cfg.Skew == 0 {
			cfg.Skew = challenge.SkewZero
		}
	}
	// Settings first: a typo should not wait for the store to open.
	if err := cfg.Validate(); err != nil {
		return err
	}

	if err := a.provisionPhone(); err != nil {
		return err
	}
	if err := a.provisionSenders(ctx); err != nil {
		return err
	}

	kr, err := a.keyring()
	if err != nil {
		return err
	}

	if a.StoreRaw == nil {
		a.StoreRaw = json.RawMessage(`{"type":"embedded"}`)
	}
	mod, err := ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	st, ok := mod.(store.Store)
	if !ok {
		return fmt.Errorf("store: module %T does not implement a store", mod)
	}
	a.store = st

	a.engine, err = challenge.New(st, kr, cfg, clock.Now, a.audit)
	if err != nil {
		return err
	}
	a.codec = session.NewCodec(kr)
	a.csrf = session.NewCSRF(kr)
	// Other instances' writes (a method disabled, a device forgotten)
	// reach this one's copies of user records at once.
	go a.engine.FollowChanges(ctx)

	a.ready = new(atomic.Bool)
	a.lost = new(atomic.Bool)
	if id, ok := mod.(identified); ok {
		a.storeIdentity = id.Identity()
	}
	a.knownStores = defaultKnownStores()
	checkCtx, cancel := context.WithTimeout(ctx, keyCheckTimeout)
	defer cancel()
	err = a.checkKey(checkCtx)
	switch {
	case err == nil:
		a.ready.Store(true)
		if err := a.engine.CheckNotices(checkCtx); err != nil {
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
	go a.watchStore(ctx)
	return nil
}

var errWrongKey = errors.New("keys: the configured keys cannot decrypt the data already in the store; " +
	"configure the key that wrote it (a replaced key can stay listed after the new one)")

const (
	keyCheckTimeout = 5 * time.Second
	storeCheckEvery = time.Second
)

// checkKey runs the engine's key check against the ID this machine
// remembers for a shared store, and remembers the ID it finds.
func (a *App) checkKey(ctx context.Context) error {
	if a.storeIdentity == "" {
		_, err := a.engine.CheckKey(ctx, "")
		return err
	}
	known, err := a.knownStores.get(a.storeIdentity)
	if err != nil {
		return fmt.Errorf("store: reading the IDs of stores used before: %w", err)
	}
	id, err := a.engine.CheckKey(ctx, known)
	if err != nil {
		return err
	}
	if err := a.knownStores.put(a.storeIdentity, id); err != nil {
		a.logger.Warn("store: cannot remember the store's ID; a restart that finds it empty will take it for new",
			zap.String("file", a.knownStores.path), zap.Error(err))
	}
	return nil
}

// reportLost closes the gateway on a store that lost its data, saying so
// once, loudly, with what to do.
func (a *App) reportLost(err error) {
	if a.lost.Swap(true) {
		return
	}
	accept := "reload Caddy (caddy reload --force) to start with an empty store"
	if a.storeIdentity != "" {
		accept = fmt.Sprintf("delete the store's entry from %s on every machine and reload Caddy "+
			"(caddy reload --force) to start with an empty store", a.knownStores.path)
	}
	a.logger.Error("STORE DATA LOST: the store no longer holds the gateway's data, so enrolments may be gone; "+
		"protected paths answer 503. Restore the store's data (the gateway opens again by itself), or "+
		accept+", in which every member enrols again", zap.Error(err))
}

// watchStore opens the gateway once the key check passes (when the store
// was down at start), then keeps checking that the store still holds its
// data. A store that lost it (flushed, restarted without persistence, or
// started afresh by another instance) closes the gateway: every member
// would otherwise look never enrolled. It opens again if the data comes
// back (a backup restored).
func (a *App) watchStore(ctx caddy.Context) {
	t := time.NewTicker(storeCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		checkCtx, cancel := context.WithTimeout(ctx, keyCheckTimeout)
		var err error
		if a.ready.Load() {
			err = a.engine.Intact(checkCtx)
		} else {
			err = a.checkKey(checkCtx)
		}
		cancel()
		switch {
		case err == nil:
			if !a.ready.Swap(true) {
				a.logger.Info("store available")
			}
			if a.lost.Swap(false) {
				a.logger.Info("store data back; the gateway is open again")
			}
		case errors.Is(err, challenge.ErrStoreLost):
			a.reportLost(err)
		case errors.Is(err, challenge.ErrWrongKey):
			// Closed until Caddy is given the key (a reload).
			a.ready.Store(false)
			a.logger.Error("store cannot be used", zap.Error(errWrongKey))
			return
		}
	}
}

// Ready reports whether the store has passed the key check, so the
// gateway can decide who passes.
func (a *App) Ready() bool { return a.ready != nil && a.ready.Load() && !a.lost.Load() }

// provisionPhone checks the phone-number settings.
func (a *App) provisionPhone() error {
	if a.PhoneRegion == "" {
		a.PhoneRegion = "JP"
	}
	a.PhoneRegion = strings.ToUpper(a.PhoneRegion)
	if !notify.ValidRegion(a.PhoneRegion) {
		return fmt.Errorf("phone_region %q: not a known two-letter region code", a.PhoneRegion)
	}
	if len(a.PhoneCountries) == 0 {
		a.PhoneCountries = []string{a.PhoneRegion}
	}
	for i, c := range a.PhoneCountries {
		a.PhoneCountries[i] = strings.ToUpper(c)
		if !notify.ValidRegion(a.PhoneCountries[i]) {
			return fmt.Errorf("phone_countries %q: not a known two-letter region code", c)
		}
	}
	return nil
}

// provisionSenders loads the email and SMS senders, checking each can
// carry what it is configured for.
func (a *App) provisionSenders(ctx caddy.Context) error {
	if a.EmailRaw != nil {
		mod, err := ctx.LoadModule(a, "EmailRaw")
		if err != nil {
			return fmt.Errorf("email: %w", err)
		}
		switch s := mod.(type) {
		case *SMTPSender:
			a.email = s
		case *MailboxSender:
			a.email = s
		default:
			return fmt.Errorf("email: sender %T cannot send email (use smtp, or mailbox for development)", mod)
		}
	}
	if a.SMSRaw != nil {
		mod, err := ctx.LoadModule(a, "SMSRaw")
		if err != nil {
			return fmt.Errorf("sms: %w", err)
		}
		switch s := mod.(type) {
		case *SNSSender:
			a.sms = s
		case *MailboxSender:
			a.sms = s
		default:
			return fmt.Errorf("sms: sender %T cannot send SMS (use sns, or mailbox for development)", mod)
		}
	}
	return nil
}

// methodConfigured reports whether the site can offer the method.
func (a *App) methodConfigured(method string) bool {
	switch method {
	case challenge.MethodTOTP:
		return true
	case challenge.MethodEmail:
		return a.email != nil
	case challenge.MethodSMS:
		return a.sms != nil
	}
	return false
}

// keyring resolves the configured keys, or loads or creates the generated
// key when none is configured.
func (a *App) keyring() (*keyring.Keyring, error) {
	if len(a.Keys) == 0 {
		k, err := loadOrCreateKeyFile(filepath.Join(caddy.AppDataDir(), "two_factor", "key"))
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		return keyring.New(k)
	}
	repl := caddy.NewReplacer()
	var secrets [][]byte
	for i, k := range a.Keys {
		v, err := repl.ReplaceOrErr(k, true, true)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %v", i, err)
		}
		v = strings.TrimSpace(v)
		if len(v) < keyring.MinKeyLength {
			return nil, fmt.Errorf("keys[%d]: the key is %d bytes; at least %d are required (for example: openssl rand -base64 32)", i, len(v), keyring.MinKeyLength)
		}
		secrets = append(secrets, []byte(v))
	}
	kr, err := keyring.New(secrets...)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return kr, nil
}

// loadOrCreateKeyFile returns the key in path, creating it with a random
// key (mode 0600) on first use. O_EXCL makes two processes starting at once
// agree on one key.
func loadOrCreateKeyFile(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		k := []byte(strings.TrimSpace(string(b)))
		if len(k) < keyring.MinKeyLength {
			return nil, fmt.Errorf("generated key file %s is damaged (%d bytes); restore it from a backup", path, len(k))
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading generated key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	k := base64.StdEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return loadOrCreateKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("creating generated key: %w", err)
	}
	if _, err := f.WriteString(k + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	// Losing this file would make every enrolment unreadable.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return []byte(k), nil
}

// Start implements caddy.App.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
