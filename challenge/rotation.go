package challenge

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"github.com/caddy-twofactor/twofactor/keyring"
)

// Key rotation. The first configured key seals; every configured key
// opens. A member's record moves to the current key whenever it is
// written (a sign-in writes it), and the engine counts the records still
// sealed, in part, under another key, so the operator knows when an
// older key can go.

// ErrKeyMissing reports that a member's data is sealed under a key that
// is no longer configured: until it is put back, that member cannot pass.
var ErrKeyMissing = fmt.Errorf("%w: it is sealed under a key that is no longer configured", ErrUnreadable)

// usersIndex lists, by ID, every member with a record.
const usersIndex = "users"

// sealedField is one value of a user record sealed with the keyring, with
// what it is bound to.
type sealedField struct {
	name   string // for messages: "totp secret", "email destination", ...
	sealer *keyring.Sealer
	value  *[]byte
	aad    []byte
}

// sealedFields lists every sealed value on u. Whatever else a record
// comes to hold sealed must be listed here, or a rotation leaves it behind.
func (e *Engine) sealedFields(u *User) []sealedField {
	var out []sealedField
	if u.TOTP != nil {
		out = append(out, sealedField{"totp secret", e.secret, &u.TOTP.Secret, secretAAD("totp", u.ID)})
	}
	for _, m := range []struct {
		name string
		c    *CodeMethod
	}{{MethodEmail, u.Email}, {MethodSMS, u.SMS}} {
		if m.c != nil && len(m.c.Destination) > 0 { // empty: follows the identity
			out = append(out, sealedField{m.name + " destination", e.dests, &m.c.Destination, destAAD(m.name, u.ID)})
		}
	}
	for i := range u.WebAuthnCredentials() {
		c := &u.WebAuthn.Credentials[i]
		out = append(out, sealedField{"webauthn credential", e.secret, &c.Sealed, credentialAAD(u.ID, c.ID)})
	}
	if u.Recovery != nil {
		out = append(out, sealedField{"recovery codes", e.secret, &u.Recovery.Sealed, recoveryAAD(u.ID)})
	}
	return out
}

// reseal seals again under the current key what u holds under an older
// one, bound to the same member. A value no configured key opens stays as
// it is: the member's next use of it fails closed.
func (e *Engine) reseal(u *User) {
	for _, f := range e.sealedFields(u) {
		if f.sealer.KeyIndex(*f.value) <= 0 {
			continue // current, or not ours to open
		}
		plain, err := f.sealer.Open(nil, *f.value, f.aad)
		if err != nil {
			continue
		}
		*f.value = f.sealer.Seal(nil, plain, f.aad)
	}
}

// keysOf reports whether u holds anything sealed under a key other than
// the current one, and whether under one no longer configured.
func (e *Engine) keysOf(u *User) (older, missing bool) {
	for _, f := range e.sealedFields(u) {
		switch f.sealer.KeyIndex(*f.value) {
		case 0:
		case -1:
			older, missing = true, true
		default:
			older = true
		}
	}
	return older, missing
}

// open opens a sealed value, telling one sealed under a key no longer
// configured (ErrKeyMissing) from one altered or bound to other data.
func open(s *keyring.Sealer, sealed, aad []byte) ([]byte, error) {
	plain, err := s.Open(nil, sealed, aad)
	if err == nil {
		return plain, nil
	}
	if s.KeyIndex(sealed) < 0 {
		return nil, ErrKeyMissing
	}
	return nil, ErrUnreadable
}

// StaleRecords is what this engine knows of member records sealed, in
// part, under a key other than the current one: those it counted when it
// started and those it has read or written since. Writes by other
// instances show when this one next reads the record.
type StaleRecords struct {
	// Count is how many there are. Each moves to the current key when it
	// is next written; the older key is needed until Count is 0.
	Count int
	// Missing is how many of them hold data under a key no longer
	// configured: those members are refused until it is put back.
	Missing int
	// Complete reports that the count over every record (CountStale) has
	// finished; until then Count covers only the records seen so far.
	Complete bool
}

// staleSet holds the IDs of the records StaleRecords counts: after a
// rotation, at most every member; it shrinks as they sign in.
type staleSet struct {
	mu       sync.Mutex
	ids      map[string]bool // ID → holds data under a missing key
	missing  int
	complete bool
}

// observe records what u, just read or written, is sealed under. A count
// that reads a record just before a sign-in rewrites it may keep it
// counted until its next read: the count errs on the side of keeping the
// older key.
func (e *Engine) observe(u *User) {
	older, missing := e.keysOf(u)
	s := &e.stale
	s.mu.Lock()
	defer s.mu.Unlock()
	if was := s.ids[u.ID]; was {
		s.missing--
	}
	if !older {
		delete(s.ids, u.ID)
		return
	}
	s.ids[u.ID] = missing
	if missing {
		s.missing++
	}
}

// StaleRecords returns the count of member records still sealed under a
// key other than the current one.
func (e *Engine) StaleRecords() StaleRecords {
	s := &e.stale
	s.mu.Lock()
	defer s.mu.Unlock()
	return StaleRecords{Count: len(s.ids), Missing: s.missing, Complete: s.complete}
}

// indexPage is how many members the engine reads from an index at a time.
const indexPage = 500

// IndexUsers adds to the users index every member record in the store.
// A record is listed when it is first written; this finds those written
// before the index existed, and any whose listing failed.
func (e *Engine) IndexUsers(ctx context.Context) error {
	return e.store.ScanKeys(ctx, usersPrefix, func(keys []string) error {
		ids := make([]string, 0, len(keys))
		for _, k := range keys {
			if id, ok := keyID(usersPrefix, k); ok {
				ids = append(ids, id)
			}
		}
		return e.store.IndexPut(ctx, usersIndex, ids...)
	})
}

// keyID is the member ID in the key of a member's record that begins with
// prefix: the inverse of userKey and seenKey.
func keyID(prefix, key string) (string, bool) {
	enc, ok := strings.CutPrefix(key, prefix+"{")
	if !ok {
		return "", false
	}
	if enc, ok = strings.CutSuffix(enc, "}"); !ok {
		return "", false
	}
	id, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(id) == 0 {
		return "", false
	}
	return string(id), true
}

// keysSurveyed marks (in metaIndex) the keys under which the last count
// (CountStale) found every record sealed under the current key.
func (e *Engine) keysSurveyed() string { return "keys_surveyed " + e.keys }

// StaleKnown reports whether a count already found every record under the
// current key with these same keys: every write seals under the current
// key, so none can have moved to an older one since, and a start or a
// reload need not read every record again. It then marks the count
// complete. During a rotation (some left under an older key) each start
// counts again, until none is left.
func (e *Engine) StaleKnown(ctx context.Context) (bool, error) {
	if ok, err := e.marked(ctx, e.keysSurveyed()); !ok || err != nil {
		return false, err
	}
	e.stale.mu.Lock()
	e.stale.complete = true
	e.stale.mu.Unlock()
	return true, nil
}

// CountStale reads every record in the users index (IndexUsers fills it
// with records from before it existed) and counts those sealed under a
// key other than the current one. It reads the whole store, a record at a
// time: run it in the background.
func (e *Engine) CountStale(ctx context.Context) (StaleRecords, error) {
	err := e.eachUser(ctx, func(u *User) error {
		e.observe(u)
		return nil
	})
	if err != nil {
		return StaleRecords{}, err
	}
	s := e.StaleRecords()
	if s.Count == 0 {
		if err := e.setMark(ctx, e.keysSurveyed()); err != nil {
			return s, err
		}
	}
	return s, nil
}

// eachUser calls visit with every readable member record in the users
// index, a page at a time, and then marks the count of records under an
// older key complete, since every record was read.
func (e *Engine) eachUser(ctx context.Context, visit func(u *User) error) error {
	err := e.eachIndexed(ctx, usersIndex, func(id string) error {
		u, err := e.record(ctx, id)
		if err != nil || u == nil {
			return err // nil: gone since listed, or refused whenever it is read
		}
		return visit(u)
	})
	if err != nil {
		return err
	}
	e.stale.mu.Lock()
	e.stale.complete = true
	e.stale.mu.Unlock()
	return nil
}

// eachIndexed calls visit with every member of the index, a page at a
// time.
func (e *Engine) eachIndexed(ctx context.Context, index string, visit func(id string) error) error {
	after := ""
	for {
		ids, err := e.store.IndexPage(ctx, index, after, indexPage)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := visit(id); err != nil {
				return err
			}
		}
		if len(ids) < indexPage {
			return nil
		}
		after = ids[len(ids)-1]
	}
}
