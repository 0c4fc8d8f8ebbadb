package challenge

import (
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// record reads user's record straight from the store.
func (f *fixture) record(user string) *User {
	f.t.Helper()
	raw, err := f.st.Get(ctx, userKey(user))
	if err != nil {
		f.t.Fatal(err)
	}
	u := &User{}
	if err := json.Unmarshal(raw, u); err != nil {
		f.t.Fatal(err)
	}
	return u
}

// plaintexts opens every sealed value of u with e's keys, in the order of
// sealedFields.
func plaintexts(t *testing.T, e *Engine, u *User) []string {
	t.Helper()
	var out []string
	for _, fld := range e.sealedFields(u) {
		p, err := fld.sealer.Open(nil, *fld.value, fld.aad)
		if err != nil {
			t.Fatalf("a sealed value of %s does not open: %v", u.ID, err)
		}
		out = append(out, string(p))
	}
	return out
}

func countStale(t *testing.T, e *Engine) StaleRecords {
	t.Helper()
	if err := e.IndexUsers(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := e.CountStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantStale(t *testing.T, got, want StaleRecords) {
	t.Helper()
	if got != want {
		t.Fatalf("stale records %+v, want %+v", got, want)
	}
}

// SC-4: a key rotation finishes. With the new key first and the old one
// kept, a sign-in moves everything the member's record holds sealed (app
// secret, email address, phone number, recovery codes) to the new key,
// still bound to the member; once the count of records under the old key
// says which remain, removing it leaves members who signed in meanwhile
// working, and refuses, saying why, only those not seen since.
func TestRotationMovesRecordsOnWrite(t *testing.T) {
	f := newCodeFixture(t, Config{})
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	bob := Actor{User: "bob", IP: "192.0.2.2"}
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	aliceSecret := f.enrol("alice")
	f.enrolCode(alice, MethodEmail, aliceMail, false)
	f.enrolCode(alice, MethodSMS, alicePhone, false)
	recovery, err := f.e.GenerateRecoveryCodes(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	bobSecret := f.enrol("bob")
	bobRecovery, err := f.e.GenerateRecoveryCodes(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	wantStale(t, countStale(t, f.e), StaleRecords{Complete: true})
	sealedBefore := plaintexts(t, f.e, f.record("alice"))
	if len(sealedBefore) != 4 {
		t.Fatalf("alice's record holds %d sealed values, want 4", len(sealedBefore))
	}

	// The new key first, the old one kept.
	f.e = f.engine(Config{}, otherKey, testKey)
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// Reading a record counts it, before the count over every record.
	if _, err := f.e.State(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	wantStale(t, f.e.StaleRecords(), StaleRecords{Count: 1})
	wantStale(t, countStale(t, f.e), StaleRecords{Count: 2, Complete: true})

	if _, err := f.e.VerifyTOTP(ctx, alice, f.code(aliceSecret, 0)); err != nil {
		t.Fatalf("verify with both keys: %v", err)
	}
	u := f.record("alice")
	for _, fld := range f.e.sealedFields(u) {
		if i := fld.sealer.KeyIndex(*fld.value); i != 0 {
			t.Fatalf("after a sign-in a value of alice's is under key %d, want the current key", i)
		}
	}
	if got := plaintexts(t, f.e, u); !slices.Equal(got, sealedBefore) {
		t.Fatal("re-sealing changed what alice's record holds")
	}
	u.ID = "bob" // the same values, opened as bob's
	for _, fld := range f.e.sealedFields(u) {
		if _, err := fld.sealer.Open(nil, *fld.value, fld.aad); err == nil {
			t.Fatal("alice's re-sealed value opens as bob's: the binding to the member is lost")
		}
	}
	wantStale(t, f.e.StaleRecords(), StaleRecords{Count: 1, Complete: true})

	// The old key removed: alice, seen since, still passes every way.
	f.e = f.engine(Config{}, otherKey)
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatalf("the new key alone: %v", err)
	}
	wantStale(t, countStale(t, f.e), StaleRecords{Count: 1, Missing: 1, Complete: true})
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, alice, f.code(aliceSecret, 0)); err != nil {
		t.Fatalf("app after the old key went: %v", err)
	}
	for _, m := range []string{MethodEmail, MethodSMS} {
		code := f.sendVerify(alice, m, "after-"+m, "")
		if _, _, err := f.e.VerifyCode(ctx, alice, "after-"+m, code); err != nil {
			t.Fatalf("%s after the old key went: %v", m, err)
		}
	}
	if _, err := f.e.UseRecoveryCode(ctx, alice, recovery[0]); err != nil {
		t.Fatalf("recovery code after the old key went: %v", err)
	}

	// Bob, not seen since the rotation, is refused, and the error says why.
	_, err = f.e.VerifyTOTP(ctx, bob, f.code(bobSecret, 0))
	if !errors.Is(err, ErrKeyMissing) || !errors.Is(err, ErrUnreadable) {
		t.Fatalf("bob after the old key went: %v, want ErrKeyMissing", err)
	}
	if _, err := f.e.UseRecoveryCode(ctx, bob, bobRecovery[0]); !errors.Is(err, ErrKeyMissing) {
		t.Fatalf("bob's recovery code after the old key went: %v, want ErrKeyMissing", err)
	}

	// His record is intact: with the old key back he passes, and moves.
	f.e = f.engine(Config{}, otherKey, testKey)
	if _, err := f.e.VerifyTOTP(ctx, bob, f.code(bobSecret, 0)); err != nil {
		t.Fatalf("bob with the old key back: %v", err)
	}
	wantStale(t, countStale(t, f.e), StaleRecords{Count: 0, Complete: true})
}

// A write by another instance may seal the member's secret again between
// the code's check and the write of its step: the sign-in still stands,
// since the secrets are compared, not their sealed forms.
func TestVerifyWhileAnotherWriteReseals(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	kr, err := keyring.New(otherKey, testKey)
	if err != nil {
		t.Fatal(err)
	}
	other := f.engine(Config{}, otherKey, testKey)
	var writes atomic.Int32
	hs := hookStore{Store: f.st, before: func(op, key string) {
		// The first write is the step's, after the code was checked,
		// against the record read before: the other write comes first,
		// and the step's is made again on the record it wrote.
		if op == "cas" && key == userKey("alice") && writes.Add(1) == 1 {
			if err := other.RevokeSession(ctx, Actor{User: "alice"}, [16]byte{1}, f.clk.Now().Add(time.Hour)); err != nil {
				t.Error(err)
			}
		}
	}}
	e, err := New(hs, kr, Config{}, f.clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.VerifyTOTP(ctx, Actor{User: "alice"}, f.code(secret, 0)); err != nil {
		t.Fatalf("verify while another write re-sealed the secret: %v", err)
	}
	if writes.Load() < 2 {
		t.Fatal("the other write did not happen")
	}
	u := f.record("alice")
	if u.TOTP.LastStep != f.clk.Now().Unix()/30 || e.secret.KeyIndex(u.TOTP.Secret) != 0 {
		t.Fatalf("step %d, secret under key %d; want the step used and the current key", u.TOTP.LastStep, e.secret.KeyIndex(u.TOTP.Secret))
	}
}

// Every write lists the member in the users index; records written before
// the index existed are found by IndexUsers, IDs of any form.
func TestUsersIndex(t *testing.T) {
	f := newFixture(t, Config{})
	for _, id := range []string{"carol", "alice", "bob{x}:y"} {
		f.enrol(id)
	}
	page := func() []string {
		t.Helper()
		got, err := f.st.IndexPage(ctx, usersIndex, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := page(); !slices.Equal(got, []string{"alice", "bob{x}:y", "carol"}) {
		t.Fatalf("users index after three enrolments: %q", got)
	}

	// As before the index: records, no entries.
	if err := f.st.IndexDelete(ctx, usersIndex, "alice", "bob{x}:y", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Set(ctx, usersPrefix+"not-a-record-key", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	f.enrol("dave")
	if got := page(); !slices.Equal(got, []string{"dave"}) {
		t.Fatalf("users index after a new member's first write: %q", got)
	}
	if err := f.e.IndexUsers(ctx); err != nil {
		t.Fatal(err)
	}
	if got := page(); !slices.Equal(got, []string{"alice", "bob{x}:y", "carol", "dave"}) {
		t.Fatalf("users index after IndexUsers: %q", got)
	}
}

// On a shared Redis each instance counts what it has seen: the records
// it counted at start and those it has read or written since. Another
// instance's sign-in shows in this one's count when it next reads the
// record; until then the count errs on the side of keeping the old key.
func TestTwoInstancesRotation(t *testing.T) {
	instance, clk := redisInstances(t)
	before := instance(testKey)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	secret, _ := enrolOn(t, before, clk, alice)
	enrolOn(t, before, clk, Actor{User: "bob", IP: "192.0.2.2"})
	// Records from before the users index: it is rebuilt from the keys.
	if err := before.store.IndexDelete(ctx, usersIndex, "alice", "bob"); err != nil {
		t.Fatal(err)
	}

	a, b := instance(otherKey, testKey), instance(otherKey, testKey)
	wantStale(t, countStale(t, b), StaleRecords{Count: 2, Complete: true})
	clk.Advance(30 * time.Second)
	f := &fixture{t: t, clk: clk}
	if _, err := a.VerifyTOTP(ctx, alice, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	wantStale(t, b.StaleRecords(), StaleRecords{Count: 2, Complete: true})
	if _, err := b.State(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	wantStale(t, b.StaleRecords(), StaleRecords{Count: 1, Complete: true})

	after := instance(otherKey)
	wantStale(t, countStale(t, after), StaleRecords{Count: 1, Missing: 1, Complete: true})
	clk.Advance(30 * time.Second)
	if _, err := after.VerifyTOTP(ctx, alice, f.code(secret, 0)); err != nil {
		t.Fatalf("alice on the new key alone: %v", err)
	}
}

// redisInstances returns a maker of engines on one real Redis, each with
// its own client and the given keys, past the key check, and their clock.
func redisInstances(t *testing.T) (func(keys ...[]byte) *Engine, *clock.Fake) {
	srv := testredis.Start(t)
	clk := clock.NewFake(time.Now().Truncate(30 * time.Second).Add(time.Second))
	return func(keys ...[]byte) *Engine {
		t.Helper()
		kr, err := keyring.New(keys...)
		if err != nil {
			t.Fatal(err)
		}
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		t.Cleanup(func() { client.Close() })
		e, err := New(redis.New(client, "2fa:"), kr, Config{}, clk.Now, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.CheckKey(ctx, ""); err != nil {
			t.Fatal(err)
		}
		return e
	}, clk
}
