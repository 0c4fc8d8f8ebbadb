package challenge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"time"

	"go.uber.org/zap"
)

// Recovery codes: a set of single-use codes shown once, for when the
// member's phone or mailbox is out of reach. The store keeps them sealed
// (AES-GCM under the configured keys, so they survive a key rotation and a
// copy of the store alone cannot be searched for them), each as a salted
// SHA-256. Every check compares against every slot, used or not, so the
// time taken does not depend on which code matched.

const (
	// RecoveryCodeCount is how many codes a set has.
	RecoveryCodeCount = 10
	// recoveryAlphabet leaves out letters and digits that read alike
	// (0/o, 1/l/i) so codes copied from paper type back right.
	recoveryAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"
	// recoveryLength is the characters in a code: 12 of 31 symbols,
	// about 59 bits, typed as three groups of four.
	recoveryLength = 12
)

// ErrNoRecoveryCodes reports that the user has no recovery codes to use.
var ErrNoRecoveryCodes = errors.New("challenge: no recovery codes")

// RecoverySet is the sealed part of a user's recovery codes.
type recoverySet struct {
	Salt   []byte   `json:"salt"`
	Hashes [][]byte `json:"hashes"`
	Used   []bool   `json:"used"`
}

// RecoveryCodes is a user's recovery-code set as stored on the record.
type RecoveryCodes struct {
	Sealed  []byte    `json:"sealed"`
	Created time.Time `json:"created"`
	// Left is how many codes are unused, so pages need not unseal.
	Left     int       `json:"left"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

func recoveryAAD(user string) []byte { return secretAAD("recovery", user) }

func recoveryHash(salt []byte, code string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(code))
	return h.Sum(nil)
}

// NormalizeRecoveryCode returns the code's characters in lower case
// without spaces and hyphens, or ErrMalformed.
func NormalizeRecoveryCode(input string) (string, error) {
	return normalize(input, recoveryLength, func(c byte) (byte, bool) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c, isRecoverySymbol(c)
	})
}

func isRecoverySymbol(c byte) bool {
	for i := 0; i < len(recoveryAlphabet); i++ {
		if recoveryAlphabet[i] == c {
			return true
		}
	}
	return false
}

// FormatRecoveryCode groups a normalised code for display: abcd-efgh-jkmn.
func FormatRecoveryCode(code string) string {
	if len(code) != recoveryLength {
		return code
	}
	return code[0:4] + "-" + code[4:8] + "-" + code[8:12]
}

func randomRecoveryCode() (string, error) {
	var b [recoveryLength]byte
	// Rejection sampling keeps every symbol equally likely.
	const limit = 256 - 256%len(recoveryAlphabet)
	var buf [32]byte
	n := 0
	for n < recoveryLength {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, v := range buf {
			if int(v) >= limit || n == recoveryLength {
				continue
			}
			b[n] = recoveryAlphabet[int(v)%len(recoveryAlphabet)]
			n++
		}
	}
	return string(b[:]), nil
}

// GenerateRecoveryCodes gives the user a new set of recovery codes,
// voiding any earlier set, and returns them formatted for display. They
// are never shown again.
func (e *Engine) GenerateRecoveryCodes(ctx context.Context, a Actor) ([]string, error) {
	set := recoverySet{Salt: make([]byte, 16), Used: make([]bool, RecoveryCodeCount)}
	if _, err := rand.Read(set.Salt); err != nil {
		return nil, err
	}
	codes := make([]string, RecoveryCodeCount)
	for i := range codes {
		c, err := randomRecoveryCode()
		if err != nil {
			return nil, err
		}
		codes[i] = FormatRecoveryCode(c)
		set.Hashes = append(set.Hashes, recoveryHash(set.Salt, c))
	}
	plain, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	sealed := e.secret.Seal(nil, plain, recoveryAAD(a.User))
	replaced := false
	_, err = e.updateUser(ctx, a.User, func(u *User) error {
		if !u.Enrolled() {
			return ErrNotEnrolled
		}
		replaced = u.Recovery != nil
		u.Recovery = &RecoveryCodes{Sealed: sealed, Created: e.now().UTC(), Left: RecoveryCodeCount}
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.Audit(a, "recovery_codes_generated", "success", zap.Bool("replaced", replaced))
	return codes, nil
}

// UseRecoveryCode passes the challenge with one of the user's recovery
// codes, which is then used up. The guess counts toward the account
// lockout like any other code. It returns the user, whose Recovery.Left
// says how many codes remain.
func (e *Engine) UseRecoveryCode(ctx context.Context, a Actor, input string) (*User, error) {
	code, malformed := NormalizeRecoveryCode(input)
	at, err := e.begin(ctx, a)
	if err != nil {
		e.Audit(a, "verify", "failure", zap.String("method", MethodRecovery), zap.String("reason", reason(err)))
		return nil, err
	}
	fail := func(cause error) (*User, error) {
		e.Audit(a, "verify", "failure", zap.String("method", MethodRecovery), zap.String("reason", reason(cause)))
		if err := e.failed(ctx, a, at); err != nil {
			return nil, err
		}
		return nil, cause
	}
	if malformed != nil {
		return fail(ErrMalformed)
	}
	errNoMatch := errors.New("no match")
	u, err := e.updateUser(ctx, a.User, func(u *User) error {
		if u.Recovery == nil || !u.Enrolled() {
			return ErrNoRecoveryCodes
		}
		plain, err := open(e.secret, u.Recovery.Sealed, recoveryAAD(a.User))
		if err != nil {
			return err
		}
		var set recoverySet
		if err := json.Unmarshal(plain, &set); err != nil || len(set.Used) != len(set.Hashes) {
			return ErrUnreadable
		}
		want := recoveryHash(set.Salt, code)
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
			Left: left, LastUsed: e.now().UTC(),
		}
		// A recovery code usually means a lost phone: every other session
		// and remembered device ends (the caller starts a new session).
		u.Epoch++
		u.Devices = nil
		return nil
	})
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
	_ = e.succeeded(ctx, a, at)
	e.Audit(a, "verify", "success", zap.String("method", MethodRecovery), zap.Int("recovery_codes_left", u.Recovery.Left))
	return u, nil
}
