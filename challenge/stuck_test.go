package challenge

import (
	"testing"
	"time"
)

// recoveredAfter returns the recovered_after field of each successful
// verify event, in order: -1 where it is absent.
func (f *fixture) recoveredAfter() []int64 {
	var out []int64
	for _, e := range f.audit.FilterMessage("verify").All() {
		m := e.ContextMap()
		if m["result"] != "success" {
			continue
		}
		v, ok := m["recovered_after"].(int64)
		if !ok {
			v = -1
		}
		out = append(out, v)
	}
	return out
}

func sameInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A lockout starts the member's stuck time; a second lockout before they
// get back in keeps the first start; their next right app code ends it
// and says how long it took, once.
func TestStuckFromLockoutToNextVerification(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 3, Lockout: time.Minute, MaxAddressFailures: 1000})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	if err := guessWrong(t, f.e, f.clk, a, secret, 3); !isLocked(err) {
		t.Fatalf("third wrong code: %v, want a lockout", err)
	}
	start := f.clk.Now()
	if u, _ := f.e.record(ctx, "alice"); u == nil || !u.StuckSince.Equal(start) {
		t.Fatalf("after the lockout stuck_since = %v, want %v", u.StuckSince, start)
	}
	f.clk.Advance(2 * time.Minute) // the lockout is over: locked again
	if err := guessWrong(t, f.e, f.clk, a, secret, 3); !isLocked(err) {
		t.Fatalf("second round: %v, want a lockout", err)
	}
	if u, _ := f.e.record(ctx, "alice"); !u.StuckSince.Equal(start) {
		t.Fatalf("after a second lockout stuck_since = %v, want the first start %v", u.StuckSince, start)
	}
	f.clk.Advance(3*time.Minute + 30*time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	// 2m + 3m30s from the first lockout; the next sign-in is not stuck.
	if got, want := f.recoveredAfter(), []int64{330, -1}; !sameInts(got, want) {
		t.Fatalf("recovered_after on the sign-ins = %v, want %v", got, want)
	}
	if u, _ := f.e.record(ctx, "alice"); !u.StuckSince.IsZero() {
		t.Fatalf("stuck_since = %v after getting back in, want none", u.StuckSince)
	}
}

// A recovery code gets the member in, but not back to their methods: the
// time runs until their next verification with one of them, and another
// recovery code on the way keeps the first start.
func TestStuckFromRecoveryCodeToNextVerification(t *testing.T) {
	f := newFixture(t, Config{})
	secret, codes := f.enrolWithCodes()
	a := Actor{User: "alice", IP: "192.0.2.1"}
	if _, err := f.e.UseRecoveryCode(ctx, a, codes[0]); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(40 * time.Second)
	if _, err := f.e.UseRecoveryCode(ctx, a, codes[1]); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(50 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	if got, want := f.recoveredAfter(), []int64{-1, -1, 90}; !sameInts(got, want) {
		t.Fatalf("recovered_after on the sign-ins = %v, want %v", got, want)
	}
}

// A lockout of someone with no factors writes no record for them: the
// member list would show a stranger as a member.
func TestLockoutOfStrangerWritesNoRecord(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 2, MaxAddressFailures: 1000})
	a := Actor{User: "mallory", IP: "192.0.2.9"}
	for range 2 {
		_, _ = f.e.VerifyTOTP(ctx, a, "123456")
	}
	if n := f.count("lockout", "result", "account_locked"); n != 1 {
		t.Fatalf("%d lockouts, want 1", n)
	}
	if u, err := f.e.record(ctx, "mallory"); err != nil || u != nil {
		t.Fatalf("record after the lockout: %+v, %v; want none", u, err)
	}
}

// An emailed code ends the stuck time like an app code: the member locked
// out of their app gets back in with a code by email 10 minutes later.
func TestStuckEndsWithEmailCode(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 3, Lockout: time.Minute, MaxAddressFailures: 1000})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, "alice@example.com", false)
	if err := guessWrong(t, f.e, f.clk, a, secret, 3); !isLocked(err) {
		t.Fatalf("third wrong code: %v, want a lockout", err)
	}
	f.clk.Advance(10 * time.Minute)
	code := f.sendVerify(a, MethodEmail, "flow", "")
	if _, _, err := f.e.VerifyCode(ctx, a, "flow", code); err != nil {
		t.Fatal(err)
	}
	if got, want := f.recoveredAfter(), []int64{600}; !sameInts(got, want) {
		t.Fatalf("recovered_after on the sign-ins = %v, want %v", got, want)
	}
}
