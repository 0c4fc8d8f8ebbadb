package challenge

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"slices"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// secretSize is the TOTP key length in bytes: 160 bits, as RFC 4226
// recommends and every authenticator app supports.
const secretSize = 20

// maxCodeInput bounds the input examined at all, before any other work.
const maxCodeInput = 64

// NormalizeCode returns the code's ASCII digits, with surrounding and inner
// spaces and hyphens removed, or ErrMalformed. Other characters, including
// non-ASCII digits, are refused.
func NormalizeCode(input string, digits int) (string, error) {
	return normalize(input, digits, func(c byte) (byte, bool) { return c, c >= '0' && c <= '9' })
}

// normalize keeps the characters of input that symbol accepts (as symbol
// maps them), drops spaces, tabs and hyphens people type between groups,
// and refuses anything else or a result that is not length long.
func normalize(input string, length int, symbol func(byte) (byte, bool)) (string, error) {
	if len(input) > maxCodeInput {
		return "", ErrMalformed
	}
	var b [maxCodeInput]byte
	n := 0
	for i := 0; i < len(input); i++ {
		c := input[i]
		if c == ' ' || c == '-' || c == '\t' {
			continue
		}
		c, ok := symbol(c)
		if !ok {
			return "", ErrMalformed
		}
		b[n] = c
		n++
	}
	if n != length {
		return "", ErrMalformed
	}
	return string(b[:n]), nil
}

// Enrolment is what the enrolment page shows. It holds the secret in the
// clear: render it once, with no-store, and never log it.
type Enrolment struct {
	Secret  string // base32, for manual entry
	URI     string // otpauth:// URI
	QRCode  []byte // PNG of URI
	Issuer  string
	Account string
}

type pendingTOTP struct {
	Secret  []byte `json:"secret"` // sealed
	Flow    []byte `json:"flow"`   // SHA-256 of the flow token
	Expires int64  `json:"expires"`
	Issuer  string `json:"issuer"`
	Account string `json:"account"`
	Factors string `json:"factors"` // User.factors when it started
	// Replace marks a new phone for a member who has the app already:
	// confirming swaps the secret.
	Replace bool `json:"replace,omitempty"`
}

func pendingKey(user string) string { return "enrol:" + tag(user) }

func secretAAD(kind, user string) []byte { return []byte(kind + "\x00v1\x00" + user) }

func flowHash(flow string) []byte {
	h := sha256.Sum256([]byte("enrol flow\x00" + flow))
	return h[:]
}

// maxEnrolStarts bounds enrolments started per user within EnrolTTL: each
// one is a durable write and a QR code to draw.
const maxEnrolStarts = 10

// firstFactor prepares a record that is about to get its first method: a
// new epoch, so nothing issued before enrolment (say, before an admin
// reset) carries over.
func firstFactor(u *User) {
	if !u.Enrolled() {
		u.Epoch++
	}
}

// StartTOTP begins authenticator-app enrolment with a fresh secret. The
// pending secret is bound to flow (a token only the browser that started it
// holds) and expires after Config.EnrolTTL; starting again replaces it.
func (e *Engine) StartTOTP(ctx context.Context, a Actor, issuer, account, flow string) (*Enrolment, error) {
	return e.startTOTP(ctx, a, issuer, account, flow, false)
}

// StartTOTPReplacement begins setting up the authenticator app on a new
// phone for a member who has it on the old one. The old secret keeps
// working until the new one is confirmed, so the member is never left
// without the app; the caller must have checked a recent second factor.
func (e *Engine) StartTOTPReplacement(ctx context.Context, a Actor, issuer, account, flow string) (*Enrolment, error) {
	return e.startTOTP(ctx, a, issuer, account, flow, true)
}

func (e *Engine) startTOTP(ctx context.Context, a Actor, issuer, account, flow string, replace bool) (*Enrolment, error) {
	n, err := e.store.Increment(ctx, "enrolstart:"+tag(a.User), e.cfg.EnrolTTL)
	if err != nil {
		return nil, err
	}
	if n > maxEnrolStarts {
		e.Audit(a, "enrol_start", "refused", zap.String("reason", "too_often"))
		return nil, &LimitedError{Until: e.now().Add(e.cfg.EnrolTTL), Limit: LimitEnrolStarts}
	}
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, err
	}
	if (u.TOTP != nil) != replace {
		if replace {
			return nil, ErrNotEnrolled
		}
		return nil, ErrAlreadyEnrolled
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	p := pendingTOTP{
		Secret:  e.secret.Seal(nil, secret, secretAAD("pending-totp", a.User)),
		Flow:    flowHash(flow),
		Expires: e.now().Add(e.cfg.EnrolTTL).Unix(),
		Issuer:  issuer,
		Account: account,
		Factors: u.factors(),
		Replace: replace,
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if err := e.store.Set(ctx, pendingKey(a.User), raw, e.cfg.EnrolTTL); err != nil {
		return nil, err
	}
	e.Audit(a, "enrol_start", "success", zap.String("method", "totp"))
	return e.enrolment(secret, issuer, account)
}

// PendingTOTP returns the enrolment started by flow, to show it again after
// a wrong confirmation code.
func (e *Engine) PendingTOTP(ctx context.Context, a Actor, flow string) (*Enrolment, error) {
	p, secret, err := e.pending(ctx, a, flow)
	if err != nil {
		return nil, err
	}
	return e.enrolment(secret, p.Issuer, p.Account)
}

func (e *Engine) pending(ctx context.Context, a Actor, flow string) (*pendingTOTP, []byte, error) {
	raw, err := e.store.Get(ctx, pendingKey(a.User))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrExpired
	}
	if err != nil {
		return nil, nil, err
	}
	var p pendingTOTP
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, nil, ErrExpired
	}
	if subtle.ConstantTimeCompare(p.Flow, flowHash(flow)) != 1 || e.now().Unix() >= p.Expires {
		return nil, nil, ErrExpired
	}
	secret, err := open(e.secret, p.Secret, secretAAD("pending-totp", a.User))
	if err != nil {
		return nil, nil, err
	}
	return &p, secret, nil
}

func (e *Engine) enrolment(secret []byte, issuer, account string) (*Enrolment, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(e.cfg.Period / time.Second),
		Secret:      secret,
		Digits:      otp.Digits(e.cfg.Digits),
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		return nil, err
	}
	img, err := key.Image(240, 240)
	if err != nil {
		return nil, err
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return nil, err
	}
	return &Enrolment{Secret: key.Secret(), URI: key.URL(), QRCode: qr.Bytes(), Issuer: issuer, Account: account}, nil
}

// ConfirmTOTP completes enrolment when code is valid for the pending secret
// started by flow. A wrong code counts toward the lockout like any other.
// The accepted step is recorded, so the confirming code cannot be used
// again to pass the challenge.
func (e *Engine) ConfirmTOTP(ctx context.Context, a Actor, flow, code string) (*User, error) {
	code, malformed := NormalizeCode(code, e.cfg.Digits)
	at, err := e.begin(ctx, a)
	if err != nil {
		e.Audit(a, "enrol_confirm", "failure", zap.String("reason", reason(err)))
		return nil, err
	}
	p, secret, err := e.pending(ctx, a, flow)
	if err != nil {
		if errors.Is(err, ErrExpired) {
			e.Audit(a, "enrol_confirm", "failure", zap.String("reason", "expired"))
		}
		return nil, err
	}
	fail := func(cause error) (*User, error) {
		e.Audit(a, "enrol_confirm", "failure", zap.String("reason", reason(cause)))
		if err := e.failed(ctx, a, at); err != nil {
			return nil, err
		}
		return nil, cause
	}
	if malformed != nil {
		return fail(ErrMalformed)
	}
	step, ok := e.matchStep(secret, code, otp.AlgorithmSHA1, e.now())
	if !ok {
		return fail(ErrCodeInvalid)
	}
	sealed := e.secret.Seal(nil, secret, secretAAD("totp", a.User))
	u, err := e.updateUser(ctx, a.User, func(u *User) error {
		if u.TOTP != nil && !p.Replace {
			return ErrAlreadyEnrolled
		}
		if u.factors() != p.Factors {
			return ErrExpired
		}
		now := e.now().UTC()
		// Epoch moves on with every first factor, reset and removal of
		// the last method: above 0, the member had factors before.
		// A code from an unproven app proves no more than the app did.
		unproven := u.Epoch > 0 && !a.stepUpProven(u)
		firstFactor(u)
		if p.Replace {
			// The old phone's sessions and remembered devices end.
			u.Epoch++
			u.Devices = nil
		}
		u.TOTP = &TOTPMethod{Secret: sealed, Added: now, LastUsed: now, LastStep: step, Unproven: unproven}
		return nil
	})
	if err != nil {
		e.Audit(a, "enrol_confirm", "failure", zap.String("reason", reason(err)))
		return nil, err
	}
	// The record is committed; failing to clear the pending secret or the
	// counter only leaves garbage that expires.
	_ = e.store.Delete(ctx, pendingKey(a.User))
	_ = e.succeeded(ctx, a, at)
	e.Audit(a, "enrol_confirm", "success", zap.String("method", "totp"), zap.Bool("unproven", u.TOTP.Unproven))
	return u, nil
}

// VerifyTOTP checks a code from the user's authenticator app. The guess is
// counted before evaluation; a code whose time step is not newer than the
// last accepted one is refused as a replay.
func (e *Engine) VerifyTOTP(ctx context.Context, a Actor, code string) (*User, error) {
	code, malformed := NormalizeCode(code, e.cfg.Digits)
	s, err := e.startSignIn(ctx, a, malformed == nil, nil, nil)
	if err != nil {
		e.Audit(a, "verify", "failure", zap.String("method", "totp"), zap.String("reason", reason(err)))
		return nil, err
	}
	s.method = MethodTOTP
	fail := func(cause error) (*User, error) {
		fields := []zap.Field{zap.String("method", "totp"), zap.String("reason", reason(cause))}
		var drift *ClockDriftError
		if errors.As(cause, &drift) {
			fields = append(fields, zap.Int64("drift_seconds", int64(drift.Offset/time.Second)))
		}
		s.audit(ctx, "verify", "failure", fields...)
		if err := s.failed(ctx); err != nil {
			return nil, err
		}
		return nil, cause
	}
	if malformed != nil {
		return fail(ErrMalformed)
	}
	r, err := s.record(ctx)
	if err != nil {
		return nil, err
	}
	u := r.u
	if u.TOTP == nil {
		return fail(ErrNotEnrolled)
	}
	secret, err := open(e.secret, u.TOTP.Secret, secretAAD("totp", a.User))
	if err != nil {
		// Never fall back to "not enrolled": that would hand the account
		// to whoever holds the password.
		e.Audit(a, "verify", "error", zap.String("method", "totp"), zap.String("reason", "secret_unreadable"))
		return nil, err
	}
	step, ok := e.matchStep(secret, code, otp.AlgorithmSHA1, e.now())
	if !ok {
		now := e.now()
		if at, drifted := e.drift(secret, code, otp.AlgorithmSHA1, now); drifted {
			cur := e.step(now)
			switch {
			case at <= u.TOTP.LastStep || slices.Contains(u.TOTP.Hinted, at):
				// A code used (or hinted) before, typed again later: a
				// replay to the audit log, and no word about clocks to
				// whoever holds it.
				e.Audit(a, "totp_replay", "refused", zap.Int64("step", at))
				return fail(fmt.Errorf("%w: %w", ErrCodeInvalid, errReplayed))
			case at > cur && e.hint(ctx, a.User, secret, at) != nil:
				// The hint says this code will be right later; unless that
				// is noted, so that it is refused then, say nothing.
				return fail(ErrCodeInvalid)
			}
			return fail(&ClockDriftError{Offset: time.Duration(at-cur) * e.cfg.Period})
		}
		return fail(ErrCodeInvalid)
	}
	errReplay := errors.New("replay")
	recovered := int64(-1)
	u, err = e.writeUser(ctx, a.User, r, s.seen(func(u *User) error {
		if u.TOTP == nil || !e.sameSecret(u, secret) {
			return ErrCodeInvalid // the factor changed under us
		}
		if step <= u.TOTP.LastStep || slices.Contains(u.TOTP.Hinted, step) {
			return errReplay
		}
		u.TOTP.LastStep = step
		u.TOTP.LastUsed = e.now().UTC()
		recovered = e.unstuck(u)
		return nil
	}))
	switch {
	case errors.Is(err, errReplay):
		e.Audit(a, "totp_replay", "refused", zap.Int64("step", step))
		// Wrong to the caller; "replay" in the verify event's reason.
		return fail(fmt.Errorf("%w: %w", ErrCodeInvalid, errReplayed))
	case errors.Is(err, ErrCodeInvalid):
		return fail(ErrCodeInvalid)
	case err != nil:
		return nil, err
	}
	// The step is used up: the sign-in stands even if clearing the
	// failure count fails.
	s.succeeded(ctx, nil, "verify", recoveredField([]zap.Field{zap.String("method", "totp")}, recovered)...)
	return u, nil
}

// sameSecret reports whether u's authenticator secret is secret. The
// secrets are compared, not their sealed forms: another write may have
// sealed the same secret again under a newer key.
func (e *Engine) sameSecret(u *User, secret []byte) bool {
	cur, err := e.secret.Open(nil, u.TOTP.Secret, secretAAD("totp", u.ID))
	return err == nil && subtle.ConstantTimeCompare(cur, secret) == 1
}

// matchStep returns the newest time step within the skew window whose code
// equals code. Every candidate is computed and compared in constant time, so
// the response time does not tell which step matched.
func (e *Engine) matchStep(secret []byte, code string, alg otp.Algorithm, now time.Time) (int64, bool) {
	cur := e.step(now)
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	var matched int64
	found := false
	for s := cur - int64(e.cfg.Skew); s <= cur+int64(e.cfg.Skew); s++ {
		if s < 0 {
			continue
		}
		if e.codeIs(b32, s, alg, code) {
			matched, found = s, true
		}
	}
	return matched, found
}

// codeIs reports, in constant time, whether code is the code of time step
// s for the base32 secret b32.
func (e *Engine) codeIs(b32 string, s int64, alg otp.Algorithm, code string) bool {
	want, err := hotp.GenerateCodeCustom(b32, uint64(s), hotp.ValidateOpts{
		Digits:    otp.Digits(e.cfg.Digits),
		Algorithm: alg,
	})
	return err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1
}

// ClockDriftError refuses an authenticator code that is wrong now but
// right for a time step outside the accepted skew, within the drift
// window: the phone's clock is off. It is a wrong code in every other
// respect (errors.Is(err, ErrCodeInvalid) holds, and it counted as a
// failure); it only lets the page tell the member how far off.
type ClockDriftError struct {
	// How far ahead of the server the phone's clock looks, in whole
	// time steps: positive when the phone is fast, negative when slow.
	Offset time.Duration
}

func (e *ClockDriftError) Error() string {
	return fmt.Sprintf("%v: it matches the phone's clock %s off", ErrCodeInvalid, e.Offset)
}

func (e *ClockDriftError) Unwrap() error { return ErrCodeInvalid }

// drift looks for code among the time steps outside the skew window and
// within the drift window, and returns the offset of the nearest one that
// matches. It runs only after matchStep found no match, so a right code
// costs nothing more. It is no oracle: it is computed only for a code that
// is refused anyway, and that code has already been counted toward
// max_failures (begin counts every guess before it is evaluated), so a
// guesser gets no more tries than the failure limits allow. A guess that
// happens to match a step ahead of the clock (a "fast" hint) would be a
// code that is right later, making each counted guess worth the steps
// ahead in the window as well as the 2·skew+1 accepted now; so such a
// step is kept in TOTPMethod.Hinted and refused when its time comes, and
// a guess is worth what it was before. LastStep is untouched, so the
// member's next code from a corrected clock (any other step) still works.
//
// Ahead of the clock it starts a step further out than behind: a code
// for the step just past the skew is still on a slightly fast phone when
// the clock reaches it, and the member who retypes it must not find it
// refused as hinted (it gets the plain wrong-code answer instead).
func (e *Engine) drift(secret []byte, code string, alg otp.Algorithm, now time.Time) (step int64, found bool) {
	reach := int64(e.cfg.DriftWindow / e.cfg.Period)
	skew := int64(e.cfg.Skew)
	if reach <= skew {
		return 0, false
	}
	cur := e.step(now)
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	// Nearest first, fast before slow at equal distance; every candidate
	// is computed and compared, so the time taken tells nothing either.
	for k := skew + 1; k <= reach; k++ {
		for _, s := range []int64{cur + k, cur - k} {
			if s < 0 || s == cur+skew+1 {
				continue
			}
			if e.codeIs(b32, s, alg, code) && !found {
				step, found = s, true
			}
		}
	}
	return step, found
}

// hint records that a drift hint named step, ahead of the clock, for the
// member's app (TOTPMethod.Hinted).
func (e *Engine) hint(ctx context.Context, user string, secret []byte, step int64) error {
	cur := e.step(e.now())
	_, err := e.updateUser(ctx, user, func(u *User) error {
		if u.TOTP == nil || !e.sameSecret(u, secret) {
			return ErrCodeInvalid // the factor changed: nothing to hint
		}
		kept := u.TOTP.Hinted[:0]
		for _, s := range u.TOTP.Hinted {
			if s >= cur-int64(e.cfg.Skew) && s != step {
				kept = append(kept, s)
			}
		}
		u.TOTP.Hinted = append(kept, step)
		if n := len(u.TOTP.Hinted); n > maxHinted {
			u.TOTP.Hinted = u.TOTP.Hinted[n-maxHinted:]
		}
		return nil
	})
	return err
}

// step is the TOTP time step now falls in.
func (e *Engine) step(now time.Time) int64 {
	period := int64(e.cfg.Period / time.Second)
	t := now.Unix()
	cur := t / period
	if t < 0 && t%period != 0 {
		cur--
	}
	return cur
}

// reason names an error for the audit log.
// errReplayed marks a code refused because its time step was used: the
// member sees a wrong code, the audit log says which.
var errReplayed = errors.New("challenge: code already used")

func reason(err error) string {
	var locked *LockedError
	var drift *ClockDriftError
	switch {
	case errors.As(err, &locked):
		return "locked"
	case errors.As(err, &drift):
		return "clock_drift"
	case errors.Is(err, errReplayed):
		return "replay"
	case errors.Is(err, ErrCodeInvalid):
		return "incorrect"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrNotEnrolled):
		return "not_enrolled"
	case errors.Is(err, ErrExpired), errors.Is(err, ErrCodeExpired):
		return "expired"
	case errors.Is(err, ErrCodeVoid):
		return "void"
	case errors.Is(err, ErrNoDestination):
		return "no_destination"
	case errors.Is(err, ErrLastMethod):
		return "last_method"
	case errors.Is(err, ErrAlreadyEnrolled):
		return "already_enrolled"
	case errors.Is(err, store.ErrUnavailable):
		return "store_unavailable"
	}
	var in *InputError
	if errors.As(err, &in) {
		// An admin action refused: the field, not the value given.
		return "invalid_" + in.Field
	}
	return fmt.Sprintf("error: %T", err)
}
