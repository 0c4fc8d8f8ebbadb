package challenge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Recovery codes: a set of single-use codes shown once, for when the
// member's phone or mailbox is out of reach.
//
// A code is 16 symbols of Crockford's base32 (80 bits from crypto/rand),
// shown as four groups of four and typed in any case, with or without
// hyphens or spaces. The store keeps each code only as HMAC-SHA-256 under
// a random key of the set's own, and that key and the hashes only inside
// the set's blob, sealed (AES-256-GCM) under a key derived from the master
// key. So a copy of the store alone allows no guessing offline, and a key
// rotation that re-seals the blob carries the set over to the new master
// key: nothing else in it depends on the master key. Every check compares
// against every slot, used or not, so the time taken does not depend on
// which code matched.
//
// Sets made before carry no format and hold 12-symbol codes of a 31-symbol
// alphabet, each as SHA-256 of a salt sealed with them; they keep working
// until replaced.

const (
	// RecoveryCodeCount is how many codes a set has.
	RecoveryCodeCount = 10
	// recoveryAlphabet is Crockford's base32: digits and letters without
	// I, L and O, which read like 1 and 0 (and typed, count as them), nor
	// U, so codes copied from paper type back right.
	recoveryAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	// recoveryLength is the symbols in a code: 16 of 5 bits, 80 bits.
	recoveryLength = 16
	// recoveryFormatHMAC marks sets of those codes, HMAC'd under a set key.
	recoveryFormatHMAC = 2

	// legacyAlphabet and legacyLength are the codes of sets without a
	// format: 12 of 31 symbols, about 59 bits.
	legacyAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"
	legacyLength   = 12
)

// ErrNoRecoveryCodes reports that the user has no recovery codes to use.
var ErrNoRecoveryCodes = errors.New("challenge: no recovery codes")

// recoverySet is the sealed part of a user's recovery codes.
type recoverySet struct {
	// Format is recoveryFormatHMAC, or 0 for a set of legacy codes.
	Format int `json:"format,omitempty"`
	// Key is the set's HMAC key (format 2); Salt the legacy sets' salt.
	Key    []byte   `json:"key,omitempty"`
	Salt   []byte   `json:"salt,omitempty"`
	Hashes [][]byte `json:"hashes"`
	Used   []bool   `json:"used"`
}

// RecoveryCodes is a user's recovery-code set as stored on the record.
// Sealed holds the whole set, key and hashes, and is opaque to everything
// else: re-sealing it under a newer master key moves the set over.
type RecoveryCodes struct {
	Sealed  []byte    `json:"sealed"`
	Created time.Time `json:"created"`
	// Left is how many codes are unused, so pages need not unseal.
	Left int `json:"left"`
	// LastUsed is when a recovery code last let the member in, from this
	// set or an earlier one: a new set keeps it, so the settings page can
	// still ask the member to replace the method they lost.
	LastUsed time.Time `json:"last_used,omitzero"`
	// Renew says a code of this set was used: the member who used it is
	// to replace the set before going on, so that someone locked out of
	// their usual method never runs down a set they may have to rely on.
	Renew bool `json:"renew,omitempty"`
}

// MustRenewRecovery reports whether the member used a recovery code and
// has not replaced the set since.
func (u *User) MustRenewRecovery() bool {
	return u != nil && u.Recovery != nil && u.Recovery.Renew
}

// RecoveredAt is when the member last signed in with a recovery code,
// while they have neither added nor used a method since: until then their
// usual method may be lost, and the settings page says how to replace it.
func (u *User) RecoveredAt() (time.Time, bool) {
	if u == nil || u.Recovery == nil || u.Recovery.LastUsed.IsZero() {
		return time.Time{}, false
	}
	at := u.Recovery.LastUsed
	for _, m := range u.Methods() {
		added, used, _ := u.MethodDates(m)
		if added.After(at) || used.After(at) {
			return time.Time{}, false
		}
	}
	return at, true
}

func recoveryAAD(user string) []byte { return secretAAD("recovery", user) }

// hash is what the set stores for a normalised code.
func (s *recoverySet) hash(code string) []byte {
	if s.Format == 0 {
		h := sha256.New()
		h.Write(s.Salt)
		h.Write([]byte(code))
		return h.Sum(nil)
	}
	m := hmac.New(sha256.New, s.Key)
	m.Write([]byte(code))
	return m.Sum(nil)
}

// valid reports whether an opened set is one this engine can check.
func (s *recoverySet) valid() bool {
	switch {
	case len(s.Used) != len(s.Hashes):
		return false
	case s.Format == recoveryFormatHMAC:
		return len(s.Key) == recoveryKeySize
	case s.Format == 0:
		return len(s.Salt) > 0
	}
	return false
}

// recoveryKeySize is the set key's length: 256 bits, HMAC-SHA-256's
// output size.
const recoveryKeySize = 32

// NormalizeRecoveryCode returns a code as its set hashes it: 16 upper-case
// Crockford symbols (i and l read as 1, o as 0), or, for codes of sets
// made before, 12 lower-case symbols; spaces, tabs and hyphens are
// dropped. Anything else, or an input longer than a code could sensibly
// be typed, is ErrMalformed; the length is checked before anything else.
func NormalizeRecoveryCode(input string) (string, error) {
	if code, err := normalize(input, recoveryLength, crockfordSymbol); err == nil {
		return code, nil
	}
	return normalize(input, legacyLength, legacySymbol)
}

func crockfordSymbol(c byte) (byte, bool) {
	if c >= 'a' && c <= 'z' {
		c -= 'a' - 'A'
	}
	switch c {
	case 'I', 'L':
		c = '1'
	case 'O':
		c = '0'
	}
	return c, strings.IndexByte(recoveryAlphabet, c) >= 0
}

func legacySymbol(c byte) (byte, bool) {
	if c >= 'A' && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c, strings.IndexByte(legacyAlphabet, c) >= 0
}

// FormatRecoveryCode groups a normalised code in fours for display:
// 7K3M-Q9TX-4HPA-2WRE.
func FormatRecoveryCode(code string) string {
	var b strings.Builder
	for i := 0; i < len(code); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(code[i:min(i+4, len(code))])
	}
	return b.String()
}

// recoveryEncoding turns 10 random bytes into 16 symbols, each of the 32
// equally likely.
var recoveryEncoding = base32.NewEncoding(recoveryAlphabet).WithPadding(base32.NoPadding)

func randomRecoveryCode() (string, error) {
	var b [recoveryLength * 5 / 8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return recoveryEncoding.EncodeToString(b[:]), nil
}

// newRecoverySet holds the hashes of normalised codes under a new key.
func newRecoverySet(codes []string) (*recoverySet, error) {
	set := &recoverySet{Format: recoveryFormatHMAC, Key: make([]byte, recoveryKeySize), Used: make([]bool, len(codes))}
	if _, err := rand.Read(set.Key); err != nil {
		return nil, err
	}
	for _, c := range codes {
		set.Hashes = append(set.Hashes, set.hash(c))
	}
	return set, nil
}

// GenerateRecoveryCodes gives the user a new set of recovery codes,
// voiding any earlier set, and returns them formatted for display. They
// are never shown again.
func (e *Engine) GenerateRecoveryCodes(ctx context.Context, a Actor) ([]string, error) {
	raw := make([]string, RecoveryCodeCount)
	codes := make([]string, RecoveryCodeCount)
	for i := range raw {
		c, err := randomRecoveryCode()
		if err != nil {
			return nil, err
		}
		raw[i], codes[i] = c, FormatRecoveryCode(c)
	}
	set, err := newRecoverySet(raw)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	sealed := e.secret.Seal(nil, plain, recoveryAAD(a.User))
	replaced, renewed := false, false
	_, err = e.updateUser(ctx, a.User, func(u *User) error {
		if !u.Enrolled() {
			return ErrNotEnrolled
		}
		next := &RecoveryCodes{Sealed: sealed, Created: e.now().UTC(), Left: RecoveryCodeCount}
		replaced, renewed = u.Recovery != nil, u.MustRenewRecovery()
		if replaced {
			next.LastUsed = u.Recovery.LastUsed
		}
		u.Recovery = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.Audit(a, "recovery_codes_generated", "success", zap.Bool("replaced", replaced), zap.Bool("after_use", renewed))
	return codes, nil
}

// UseRecoveryCode passes the challenge with one of the user's recovery
// codes, which is then used up, and marks the set for renewal
// (MustRenewRecovery). The guess counts toward the account lockout like
// any other code. It returns the user, whose Recovery.Left says how many
// codes remain.
func (e *Engine) UseRecoveryCode(ctx context.Context, a Actor, input string) (*User, error) {
	// Capped and checked before anything is read or hashed.
	code, malformed := NormalizeRecoveryCode(input)
	s, err := e.startSignIn(ctx, a, malformed == nil, nil, nil)
	if err != nil {
		e.Audit(a, "verify", "failure", zap.String("method", MethodRecovery), zap.String("reason", reason(err)))
		return nil, err
	}
	s.method = MethodRecovery
	fail := func(cause error) (*User, error) {
		s.audit(ctx, "verify", "failure", zap.String("method", MethodRecovery), zap.String("reason", reason(cause)))
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
	errNoMatch := errors.New("no match")
	u, err := e.writeUser(ctx, a.User, r, s.seen(func(u *User) error {
		if u.Recovery == nil || !u.Enrolled() {
			return ErrNoRecoveryCodes
		}
		plain, err := open(e.secret, u.Recovery.Sealed, recoveryAAD(a.User))
		if err != nil {
			return err
		}
		var set recoverySet
		if err := json.Unmarshal(plain, &set); err != nil || !set.valid() {
			return ErrUnreadable
		}
		// A code of the other format hashes to nothing in the set.
		want := set.hash(code)
		slot := -1
		for i, h := range set.Hashes {
			if subtle.ConstantTimeCompare(h, want) == 1 && !set.Used[i] {
				slot = i
			}
		}
		if slot < 0 {
			return errNoMatch
		}
		set.Used[slot] = true
		next, err := json.Marshal(set)
		if err != nil {
			return err
		}
		left := 0
		for _, used := range set.Used {
			if !used {
				left++
			}
		}
		u.Recovery = &RecoveryCodes{
			Sealed: e.secret.Seal(nil, next, recoveryAAD(a.User)), Created: u.Recovery.Created,
			Left: left, LastUsed: e.now().UTC(), Renew: true,
		}
		// A recovery code usually means a lost phone: every other session
		// and remembered device ends (the caller starts a new session).
		u.Epoch++
		u.Devices = nil
		e.stuckByRecovery(u)
		return nil
	}))
	switch {
	case errors.Is(err, errNoMatch), errors.Is(err, ErrNoRecoveryCodes):
		return fail(ErrCodeInvalid)
	case errors.Is(err, ErrUnreadable):
		e.Audit(a, "verify", "error", zap.String("method", MethodRecovery), zap.String("reason", "secret_unreadable"))
		return nil, err
	case err != nil:
		return nil, err
	}
	// The code is used up: the sign-in stands even if clearing the
	// failure count fails, or the member would lose the code for nothing.
	s.succeeded(ctx, nil, "verify", zap.String("method", MethodRecovery), zap.Int("recovery_codes_left", u.Recovery.Left))
	return u, nil
}
