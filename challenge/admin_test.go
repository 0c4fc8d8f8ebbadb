package challenge

import (
	"errors"
	"testing"
	"time"
)

// An admin's unlock lifts the lockout at once, on both stores: the right
// code passes, the member has every try again, and the next lockout lasts
// Lockout, not double.
func TestUnlockLiftsLockout(t *testing.T) {
	cfg := Config{MaxFailures: 3, Lockout: time.Hour, MaxAddressFailures: 1000}
	for name, open := range lockoutEngines(t, cfg) {
		t.Run(name, func(t *testing.T) {
			e, clk := open(t)
			a := Actor{User: "alice", IP: "192.0.2.1"}
			f := &fixture{t: t, clk: clk}
			secret, _ := enrolOn(t, e, clk, a)
			clk.Advance(30 * time.Second)

			lockedFor(t, clk, guessWrong(t, e, clk, a, secret, 3), time.Hour)
			if _, err := e.Unlock(ctx, "admin endpoint", "", "alice"); !isInput(err, "reason") {
				t.Fatalf("unlock without a reason: %v, want an error naming reason", err)
			}
			if _, err := e.Unlock(ctx, "admin endpoint", "called support", ""); !isInput(err, "member") {
				t.Fatalf("unlock without a member: %v, want an error naming member", err)
			}
			res, err := e.Unlock(ctx, "admin endpoint", "called support", "alice")
			if err != nil {
				t.Fatal(err)
			}
			if !res.WasLocked || res.Failures != 0 {
				// The lockout started a new round, with no failures yet.
				t.Fatalf("unlock result %+v, want was locked, no failures in the new round", res)
			}
			// No address on record: the member hears of it at their next
			// visit.
			if u, err := e.State(ctx, "alice"); err != nil || res.Contact != "" || len(u.Pending) != 1 || u.Pending[0].Kind != "admin_unlock" {
				t.Fatalf("notice of the unlock: contact %q, pending %+v, %v", res.Contact, u.Pending, err)
			}
			if err := e.Locked(ctx, a); err != nil {
				t.Fatalf("after unlock: %v", err)
			}
			// The member sees it among their recent activity.
			if events, err := e.RecentActivity(ctx, "alice"); err != nil || len(events) == 0 || events[0].Event != "admin_unlock" {
				t.Fatalf("recent activity after unlock: %+v, %v", events, err)
			}
			// Full tries: max-1 wrong codes are only incorrect, then the
			// right one passes.
			if err := guessWrong(t, e, clk, a, secret, 2); !errors.Is(err, ErrCodeInvalid) {
				t.Fatalf("after unlock: %v, want fresh tries", err)
			}
			res, err = e.Unlock(ctx, "admin endpoint", "again", "alice")
			if err != nil || res.WasLocked || res.Failures != 2 {
				t.Fatalf("second unlock: %+v, %v; want 2 failures cleared, no lockout", res, err)
			}
			// Nothing was locked: nothing to tell.
			if u, _ := e.State(ctx, "alice"); len(u.Pending) != 1 {
				t.Fatalf("pending after an unlock of no lockout: %+v", u.Pending)
			}
			if err := guessWrong(t, e, clk, a, secret, 2); !errors.Is(err, ErrCodeInvalid) {
				t.Fatalf("after the second unlock: %v, want fresh tries", err)
			}
			if _, err := e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
				t.Fatalf("right code after unlock: %v", err)
			}
			// The unlock forgot the lockout: the next lasts Lockout again.
			clk.Advance(30 * time.Second)
			lockedFor(t, clk, guessWrong(t, e, clk, a, secret, 3), time.Hour)
		})
	}
}

func TestUnlockAddress(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50, MaxAddressFailures: 3, Lockout: time.Hour})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "2001:db8::1"}
	lockedFor(t, f.clk, guessWrong(t, f.e, f.clk, a, secret, 3), time.Hour)
	if _, err := f.e.UnlockAddress(ctx, "admin endpoint", "office", "not an address"); !isInput(err, "address") {
		t.Fatalf("unlock of a bad address: %v", err)
	}
	// Another address in the /64 unlocks it.
	res, err := f.e.UnlockAddress(ctx, "admin endpoint", "office", "2001:db8::2")
	if err != nil || !res.WasLocked {
		t.Fatalf("unlock address: %+v, %v", res, err)
	}
	if err := guessWrong(t, f.e, f.clk, a, secret, 2); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("after the address unlock: %v, want fresh tries", err)
	}
	if f.count("admin_unlock_address", "ip", "2001:db8::2") != 1 || f.count("admin_unlock_address", "admin_reason", "office") != 1 {
		t.Fatal("the address unlock is not audited with its reason")
	}
}

// Rekey moves every record to the current key, so the old key can go
// and members not seen since the rotation still pass.
func TestRekeyAfterRotation(t *testing.T) {
	f := newCodeFixture(t, Config{})
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	aliceSecret := f.enrol("alice")
	f.enrolCode(alice, MethodEmail, aliceMail, false)
	recovery, err := f.e.GenerateRecoveryCodes(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	bobSecret := f.enrol("bob")
	f.enrol("carol")
	// A record from before the users index is found too.
	if err := f.st.IndexDelete(ctx, usersIndex, "carol"); err != nil {
		t.Fatal(err)
	}

	f.e = f.engine(Config{}, otherKey, testKey)
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	res, err := f.e.Rekey(ctx, "admin endpoint")
	if err != nil {
		t.Fatal(err)
	}
	if want := (RekeyResult{Records: 3, Resealed: 3}); res != want {
		t.Fatalf("rekey: %+v, want %+v", res, want)
	}
	wantStale(t, f.e.StaleRecords(), StaleRecords{Complete: true})
	if f.count("admin_rekey", "actor", "admin endpoint") != 1 {
		t.Fatal("rekey not audited with its actor")
	}
	// Again: nothing to do.
	if res, err = f.e.Rekey(ctx, "admin endpoint"); err != nil || res != (RekeyResult{Records: 3}) {
		t.Fatalf("second rekey: %+v, %v", res, err)
	}

	f.e = f.engine(Config{}, otherKey)
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(30 * time.Second)
	for user, secret := range map[string]string{"alice": aliceSecret, "bob": bobSecret} {
		if _, err := f.e.VerifyTOTP(ctx, Actor{User: user}, f.code(secret, 0)); err != nil {
			t.Fatalf("%s on the new key alone after rekey: %v", user, err)
		}
	}
	code := f.sendVerify(alice, MethodEmail, "after", "")
	if _, _, err := f.e.VerifyCode(ctx, alice, "after", code); err != nil {
		t.Fatalf("email after rekey: %v", err)
	}
	if _, err := f.e.UseRecoveryCode(ctx, alice, recovery[0]); err != nil {
		t.Fatalf("recovery code after rekey: %v", err)
	}
}

// Records under a key no longer configured cannot move: rekey counts
// them as remaining and unreadable, and leaves them intact.
func TestRekeyCountsUnreadable(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	f.e = f.engine(Config{}, otherKey)
	f.enrol("bob")
	res, err := f.e.Rekey(ctx, "admin endpoint")
	if err != nil {
		t.Fatal(err)
	}
	if want := (RekeyResult{Records: 2, Remaining: 1, Unreadable: 1}); res != want {
		t.Fatalf("rekey: %+v, want %+v", res, want)
	}
	wantStale(t, f.e.StaleRecords(), StaleRecords{Count: 1, Missing: 1, Complete: true})
}

// On Redis, a rekey through one instance moves records another wrote,
// including one from before the users index.
func TestRekeyOnRedis(t *testing.T) {
	instance, clk := redisInstances(t)
	before := instance(testKey)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	secret, _ := enrolOn(t, before, clk, alice)
	enrolOn(t, before, clk, Actor{User: "bob", IP: "192.0.2.2"})
	if err := before.store.IndexDelete(ctx, usersIndex, "bob"); err != nil {
		t.Fatal(err)
	}
	res, err := instance(otherKey, testKey).Rekey(ctx, "admin endpoint")
	if err != nil || res != (RekeyResult{Records: 2, Resealed: 2}) {
		t.Fatalf("rekey: %+v, %v", res, err)
	}
	after := instance(otherKey)
	wantStale(t, countStale(t, after), StaleRecords{Complete: true})
	clk.Advance(30 * time.Second)
	f := &fixture{t: t, clk: clk}
	if _, err := after.VerifyTOTP(ctx, alice, f.code(secret, 0)); err != nil {
		t.Fatalf("alice on the new key alone after rekey: %v", err)
	}
}

func isInput(err error, field string) bool {
	var in *InputError
	return errors.As(err, &in) && in.Field == field
}
