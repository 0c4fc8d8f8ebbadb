// Package challenge is the second-factor engine: authenticator-app (TOTP)
// enrolment and verification with replay protection, per-account and
// per-address failure limits, remembered devices, and the per-user state the
// HTTP layer checks on every protected request. It is plain Go: no net/http,
// no Caddy, with the clock and the store injected, so tests drive it exactly.
package challenge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/cache"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

// Errors the HTTP layer maps to pages and statuses. Every code failure shows
// the user one generic message; the audit log keeps the precise reason.
var (
	ErrCodeInvalid     = errors.New("challenge: code incorrect")
	ErrMalformed       = errors.New("challenge: code malformed")
	ErrNotEnrolled     = errors.New("challenge: no second factor enrolled")
	ErrAlreadyEnrolled = errors.New("challenge: already enrolled")
	ErrExpired         = errors.New("challenge: pending enrolment expired or missing")
	ErrWrongKey        = errors.New("challenge: the configured keys cannot read existing data")
	ErrUnreadable      = errors.New("challenge: stored secret cannot be decrypted")

	// ErrStoreLost reports that the store no longer holds the value
	// CheckKey wrote: its data was lost (flushed, or restarted without
	// persistence). Members must then not be taken for never enrolled, so
	// it is a kind of store.ErrUnavailable and callers fail closed.
	ErrStoreLost = fmt.Errorf("%w: the store has lost its data (its key check value is gone)", store.ErrUnavailable)
)

// LimitedError reports that an action other than guessing (starting an
// enrolment, sending a code) was repeated too often; it may be tried again
// at Until.
type LimitedError struct {
	Until time.Time
	// Limit names what was hit, for the page and the audit trail: one of
	// the Limit constants.
	Limit string
}

// Limits a LimitedError can name.
const (
	LimitEnrolStarts = "enrol_starts"
	LimitCooldown    = "cooldown"    // resend wait for this user and method
	LimitUser        = "user_hourly" // codes sent to this user this hour
	LimitDestination = "destination" // codes sent to this address or number
	LimitAddress     = "address"     // codes requested from this client address
	LimitSMSSite     = "sms_site"    // site-wide SMS budget this hour
	// LimitWebAuthnStarts: passkey sign-ins begun by this user within
	// the challenge TTL.
	LimitWebAuthnStarts = "webauthn_starts"
)

func (e *LimitedError) Error() string {
	return "challenge: too many attempts until " + e.Until.UTC().Format(time.RFC3339)
}

// LockedError reports that an account or client address is locked out
// after too many wrong codes.
type LockedError struct {
	Until time.Time
	// Started marks the guess that caused the lockout, so the member is
	// told once, not on every refused attempt after.
	Started bool
}

func (e *LockedError) Error() string {
	return "challenge: locked until " + e.Until.UTC().Format(time.RFC3339)
}

// Config holds the engine's tunables. Zero fields take the defaults below.
type Config struct {
	// TOTP time-step length. Default 30s; at least 15s.
	Period time.Duration
	// Steps accepted either side of the current one. Default 1; at most 2.
	// Use SkewZero to ask for none.
	Skew int
	// Digits per TOTP code: 6 or 8. Default 6.
	Digits int
	// How far either side of now a wrong authenticator code is looked
	// for, to tell a member whose phone's clock is off by how much: the
	// code is still refused. Default 10m; at most 1h, and at least the
	// skew window (Skew × Period). Use DriftOff to turn it off.
	DriftWindow time.Duration
	// Wrong codes allowed per account in a row (since its last right
	// code, forgotten a day after the first) before lockout. Default 5.
	MaxFailures int
	// Window over which wrong codes per client address are counted.
	// Default 15m.
	FailureWindow time.Duration
	// How long the first lockout lasts once a limit is reached. Default
	// 15m.
	Lockout time.Duration
	// The longest an account's lockout lasts: each one within a day of
	// the last doubles, up to this. Default 4h, or Lockout when that is
	// longer.
	MaxLockout time.Duration
	// Wrong codes allowed per client address within FailureWindow.
	// Default 20; negative turns the address limit off.
	MaxAddressFailures int
	// How long a started enrolment may wait for its confirming code.
	// Default 10m.
	EnrolTTL time.Duration
	// How long an emailed code stays valid. Default 10m; at most 10m.
	EmailCodeTTL time.Duration
	// How long a code sent by SMS stays valid. Default 5m; at most 10m.
	SMSCodeTTL time.Duration
	// Tries allowed on one emailed or texted code; the code is void after.
	// Default 5.
	CodeAttempts int
	// Wait before another code may be sent to the same user by the same
	// method. Default 60s.
	ResendCooldown time.Duration
	// Codes sent per clock hour: to one user, to one destination, to one
	// client address, and by SMS site-wide (bounding SMS spend). Defaults
	// 5, 5, 20 and 100; a negative per-address cap turns it off.
	SendsPerUser        int
	SendsPerDestination int
	SendsPerAddress     int
	SMSPerHour          int
	// How long the hot path may trust a cached user record before reading
	// the store again. Writes through this engine update the cache at once,
	// and on a shared store other instances' writes arrive as notices
	// (FollowChanges); the TTL bounds how late a change is seen when a
	// notice is lost. On a store whose notices arrive in order, a copy is
	// trusted longer while the engine's own beats come back within the
	// TTL (see lease), which keeps that bound. Default 2s.
	CacheTTL time.Duration
	// CacheSize bounds the user records kept in memory; past it the
	// least used go first. Default UserCacheSize.
	CacheSize int
	// Noticed, when set, is called for each change notice this engine
	// publishes (false) or receives from the store (true), for the
	// metrics. It must be quick: it runs on the path that sends or
	// follows notices. Optional.
	Noticed func(received bool)

	// WebAuthn sets up passkeys and security keys; off while its RPID
	// is empty.
	WebAuthn WebAuthnConfig

	// Deadlines are the enrolment deadlines of the gateway's rules, for
	// the admin pages' "required from" dates. Optional.
	Deadlines []Deadline
}

// SkewZero requests a skew of zero steps (0 means "default").
const SkewZero = -1

// DriftOff turns the clock drift hint off (0 means "default").
const DriftOff time.Duration = -1

func (c *Config) setDefaults() {
	if c.Period == 0 {
		c.Period = 30 * time.Second
	}
	if c.Skew == 0 {
		c.Skew = 1
	} else if c.Skew == SkewZero {
		c.Skew = 0
	}
	if c.Digits == 0 {
		c.Digits = 6
	}
	if c.DriftWindow == 0 {
		c.DriftWindow = 10 * time.Minute
	} else if c.DriftWindow == DriftOff {
		c.DriftWindow = 0
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 5
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = 15 * time.Minute
	}
	if c.Lockout == 0 {
		c.Lockout = 15 * time.Minute
	}
	if c.MaxLockout == 0 {
		c.MaxLockout = max(4*time.Hour, c.Lockout)
	}
	if c.MaxAddressFailures == 0 {
		c.MaxAddressFailures = 20
	}
	if c.EnrolTTL == 0 {
		c.EnrolTTL = 10 * time.Minute
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 2 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = UserCacheSize
	}
	if c.EmailCodeTTL == 0 {
		c.EmailCodeTTL = 10 * time.Minute
	}
	if c.SMSCodeTTL == 0 {
		c.SMSCodeTTL = 5 * time.Minute
	}
	if c.CodeAttempts == 0 {
		c.CodeAttempts = 5
	}
	if c.ResendCooldown == 0 {
		c.ResendCooldown = time.Minute
	}
	if c.SendsPerUser == 0 {
		c.SendsPerUser = 5
	}
	if c.SendsPerDestination == 0 {
		c.SendsPerDestination = 5
	}
	if c.SendsPerAddress == 0 {
		c.SendsPerAddress = 20
	}
	if c.SMSPerHour == 0 {
		c.SMSPerHour = 100
	}
	c.WebAuthn.setDefaults()
}

// Validate reports the first invalid setting, naming it.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Period < 15*time.Second || c.Period%time.Second != 0:
		return fmt.Errorf("totp_period %s: must be whole seconds, at least 15s", c.Period)
	case c.Skew < 0 || c.Skew > 2:
		return fmt.Errorf("totp_skew %d: must be 0, 1 or 2", c.Skew)
	case c.Digits != 6 && c.Digits != 8:
		return fmt.Errorf("totp_digits %d: must be 6 or 8", c.Digits)
	case c.DriftWindow < 0 || c.DriftWindow > time.Hour:
		return fmt.Errorf("totp_drift_window %s: must be between 0 (off) and 1h", c.DriftWindow)
	case c.DriftWindow > 0 && c.DriftWindow < time.Duration(c.Skew)*c.Period:
		return fmt.Errorf("totp_drift_window %s: must be at least the accepted skew window (totp_skew × totp_period = %s), or 0 for off",
			c.DriftWindow, time.Duration(c.Skew)*c.Period)
	case c.MaxFailures < 1 || c.MaxFailures > 50:
		return fmt.Errorf("max_failures %d: must be between 1 and 50", c.MaxFailures)
	case c.FailureWindow < time.Second:
		return fmt.Errorf("failure_window %s: must be at least 1s", c.FailureWindow)
	case c.Lockout < time.Second:
		return fmt.Errorf("lockout %s: must be at least 1s", c.Lockout)
	case c.MaxLockout < c.Lockout || c.MaxLockout > 7*24*time.Hour:
		return fmt.Errorf("max_lockout %s: must be between lockout (%s) and 168h", c.MaxLockout, c.Lockout)
	case c.EnrolTTL < time.Minute || c.EnrolTTL > time.Hour:
		return fmt.Errorf("enrolment_timeout %s: must be between 1m and 1h", c.EnrolTTL)
	case c.CacheTTL < 0 || c.CacheTTL > time.Minute:
		return fmt.Errorf("cache ttl %s: must be between 0 and 1m", c.CacheTTL)
	case c.CacheSize < MinCacheSize || c.CacheSize > MaxCacheSize:
		return fmt.Errorf("member_cache_size %d: must be between %d and %d", c.CacheSize, MinCacheSize, MaxCacheSize)
	case c.EmailCodeTTL < time.Minute || c.EmailCodeTTL > 10*time.Minute:
		return fmt.Errorf("email_code_ttl %s: must be between 1m and 10m", c.EmailCodeTTL)
	case c.SMSCodeTTL < time.Minute || c.SMSCodeTTL > 10*time.Minute:
		return fmt.Errorf("sms_code_ttl %s: must be between 1m and 10m", c.SMSCodeTTL)
	case c.CodeAttempts < 1 || c.CodeAttempts > 10:
		return fmt.Errorf("code_attempts %d: must be between 1 and 10", c.CodeAttempts)
	case c.ResendCooldown < 10*time.Second || c.ResendCooldown > 10*time.Minute:
		return fmt.Errorf("resend_cooldown %s: must be between 10s and 10m", c.ResendCooldown)
	case c.SendsPerUser < 1 || c.SendsPerUser > 100:
		return fmt.Errorf("hourly_sends_per_user %d: must be between 1 and 100", c.SendsPerUser)
	case c.SendsPerDestination < 1 || c.SendsPerDestination > 100:
		return fmt.Errorf("hourly_sends_per_destination %d: must be between 1 and 100", c.SendsPerDestination)
	case c.SendsPerAddress > 100_000:
		return fmt.Errorf("hourly_sends_per_address %d: must be at most 100000, or negative for no limit", c.SendsPerAddress)
	case c.SMSPerHour < 1 || c.SMSPerHour > 1_000_000:
		return fmt.Errorf("hourly_sms_site %d: must be between 1 and 1000000", c.SMSPerHour)
	}
	return c.WebAuthn.validate()
}

// Actor is who is acting and from where, for limits and the audit trail.
// User comes from the trusted first-factor identity, never from the client.
type Actor struct {
	User      string
	IP        string
	UserAgent string
	// StepUp is the method the request's session was verified with, on
	// requests that stepped up ("" for none): it tells an app added after
	// an app code from one added after an email or recovery code.
	StepUp string
	// StepUpUnproven: that session was verified by an app or passkey
	// that was itself unproven then (session.Session.Unproven), so what
	// it adds is unproven too, whatever the member's factors are now.
	StepUpUnproven bool
	// Browser, on a verification, is the browser signing in, to record
	// with the verification's write (see Browser); nil leaves that to
	// SeenBrowser.
	Browser *Browser
	// Network is the range the actor's request comes from (flow's
	// NetworkOf), recorded as known for the member when they pass the
	// second factor (User.Networks), and checked when a rule rechecks a
	// remembered device from a new range. The zero Prefix records
	// nothing and is never known.
	Network netip.Prefix
}

// stepUpProven reports whether the actor's session shows more than a
// stolen password with a mailbox or phone would.
func (a Actor) stepUpProven(u *User) bool { return !a.StepUpUnproven && u.Proven(a.StepUp) }

// Engine runs the second-factor flows against a store.
type Engine struct {
	store  store.Store
	secret *keyring.Sealer
	cfg    Config
	now    func() time.Time
	audit  *zap.Logger
	users  *userCache
	codes  []byte // HMAC key for one-time codes
	dests  *keyring.Sealer
	destID []byte // HMAC key naming destinations in limit counters
	// emailID is the HMAC key naming addresses in the member list's
	// search indexes; a rotation indexes them again (BuildListing).
	emailID []byte
	// keys names the configured keys (keyring.Fingerprint), so a survey of
	// the records under older keys is not repeated for the same keys.
	keys string
	// storeID is the ID CheckKey found or made; nil before. Its absence
	// later means the store lost its data.
	storeID atomic.Pointer[string]
	stale   staleSet // records sealed under an older key
	// wa is the WebAuthn relying party, nil while WebAuthn is off;
	// aaguids the authenticator models allowed, nil for any.
	wa      *webauthn.WebAuthn
	aaguids map[uuid.UUID]bool
	// notices is the store as a Notifier, nil on a store not shared.
	notices store.Notifier
	// rechecked notes when a device refused from a new range was last
	// audited (recheckAuditEvery).
	rechecked *cache.Cache[string, int64]
}

// New returns an engine. now is the clock; audit receives one entry per
// security event (nil discards them).
func New(st store.Store, kr *keyring.Keyring, cfg Config, now func() time.Time, audit *zap.Logger) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	wa, aaguids, err := newWebAuthn(cfg.WebAuthn)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if audit == nil {
		audit = zap.NewNop()
	}
	notices, _ := st.(store.Notifier)
	return &Engine{
		store:     st,
		notices:   notices,
		secret:    kr.Sealer("secrets"),
		cfg:       cfg,
		now:       now,
		audit:     audit,
		users:     newUserCache(cfg.CacheSize, cfg.CacheTTL, notices != nil && notices.InOrder(), now),
		rechecked: cache.New[string, int64](cache.Options{Size: maxRechecksNoted}),
		codes:     kr.MACKey("one-time codes"),
		dests:     kr.Sealer("destinations"),
		destID:    kr.MACKey("destination limits"),
		emailID:   kr.MACKey("member list addresses"),
		keys:      kr.Fingerprint(),
		stale:     staleSet{ids: map[string]bool{}},
		wa:        wa,
		aaguids:   aaguids,
	}, nil
}

// The check value is this text and the store's ID: random, made when the
// store is first used, so a store emptied and started afresh is told
// apart from the one this gateway knew. Stores from before the ID have
// the text alone, and get an ID at the next check.
const keyCheckText = "caddy-twofactor key check"

const keyCheckKey = "meta:keycheck"

// CheckKey makes sure the configured keys can read the data already in the
// store, so a wrong or missing key stops the server instead of silently
// treating every enrolled user as not enrolled, and returns the store's ID.
// known is the ID this gateway saw in the store before, if any: an empty
// store is then not a new one but a lost one (ErrStoreLost), and a store
// with another ID is not the same store. With known empty, an empty store
// is taken for new and gets an ID. After a key rotation the value is
// written again under the current key.
func (e *Engine) CheckKey(ctx context.Context, known string) (string, error) {
	aad := []byte(keyCheckKey)
	for range 5 {
		sealed, err := e.store.Get(ctx, keyCheckKey)
		if errors.Is(err, store.ErrNotFound) {
			if known != "" {
				return "", ErrStoreLost
			}
			_, err = e.store.CompareAndSwap(ctx, keyCheckKey, nil, e.secret.Seal(nil, checkValue(newStoreID()), aad), 0)
			if err != nil {
				return "", err
			}
			continue // read what won, ours or another instance's
		}
		if err != nil {
			return "", err
		}
		id, err := e.storeIDOf(sealed)
		if err != nil {
			return "", err
		}
		if id == "" || e.secret.KeyIndex(sealed) != 0 {
			if id == "" {
				id = newStoreID()
			}
			if _, err := e.store.CompareAndSwap(ctx, keyCheckKey, sealed, e.secret.Seal(nil, checkValue(id), aad), 0); err != nil {
				return "", err
			}
			continue
		}
		if known != "" && id != known {
			return "", fmt.Errorf("%w: it is not the store this gateway used before (ID %s, was %s)", ErrStoreLost, id, known)
		}
		e.storeID.Store(&id)
		return id, nil
	}
	return "", fmt.Errorf("%w: the key check value kept changing", store.ErrUnavailable)
}

func newStoreID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func checkValue(id string) []byte { return []byte(keyCheckText + " " + id) }

// storeIDOf opens a check value: the ID, "" for a value from before IDs,
// or ErrWrongKey.
func (e *Engine) storeIDOf(sealed []byte) (string, error) {
	plain, err := e.secret.Open(nil, sealed, []byte(keyCheckKey))
	if err != nil {
		return "", ErrWrongKey
	}
	if string(plain) == keyCheckText {
		return "", nil
	}
	id, ok := strings.CutPrefix(string(plain), keyCheckText+" ")
	if !ok || id == "" {
		return "", ErrWrongKey
	}
	return id, nil
}

// Intact reports ErrStoreLost when the check value CheckKey found is gone
// or names another store. It is checked whenever a user has no record, so
// a store emptied under a running gateway never opens enrolment to someone
// who has only the password, even if another instance has started it
// afresh; and periodically by the app, to raise the alarm.
func (e *Engine) Intact(ctx context.Context) error {
	want := e.storeID.Load()
	if want == nil {
		return nil
	}
	sealed, err := e.store.Get(ctx, keyCheckKey)
	if errors.Is(err, store.ErrNotFound) {
		return ErrStoreLost
	}
	if err != nil {
		return err
	}
	id, err := e.storeIDOf(sealed)
	if err != nil {
		return err
	}
	if id != *want {
		return fmt.Errorf("%w: the store was started afresh (ID %s, was %s)", ErrStoreLost, id, *want)
	}
	return nil
}

// Audit writes one entry to the audit trail. The HTTP layer uses it for the
// events it decides itself (sign-out, refused cookies).
func (e *Engine) Audit(a Actor, name, result string, fields ...zap.Field) {
	e.logAudit(a, name, result, fields)
	e.recordActivity(a, name, result, fields)
}

// logAudit writes the event to the audit logger only.
func (e *Engine) logAudit(a Actor, name, result string, fields []zap.Field) {
	e.audit.Info(name, append([]zap.Field{
		zap.String("event", name),
		zap.String("result", result),
		zap.String("user", a.User),
		zap.String("ip", a.IP),
		zap.String("user_agent", a.UserAgent),
	}, fields...)...)
}
