package challenge

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// The admin actions on a member: each refuses a missing member or reason
// naming the field, changes only what it says, and is audited with the
// admin and the reason.
func TestAdminMemberActions(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	secret := f.enrol("alice")
	remember := func() [16]byte {
		t.Helper()
		id := [16]byte{byte(f.clk.Now().Unix())}
		if _, err := f.e.RememberDevice(ctx, a, id, 24*time.Hour, MethodTOTP); err != nil {
			t.Fatal(err)
		}
		return id
	}
	record := func() *User {
		t.Helper()
		u, err := f.e.State(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	for name, act := range map[string]func(ctx context.Context, actor, member, why string) (MemberResult, error){
		"reset": f.e.Reset, "forget-devices": f.e.ForgetDevices, "end-sessions": f.e.EndSessions,
	} {
		if _, err := act(ctx, "admin endpoint", "alice", " "); !isInput(err, "reason") {
			t.Errorf("%s without a reason: %v", name, err)
		}
		if _, err := act(ctx, "admin endpoint", "alice", string(make([]byte, 501))+"x"); !isInput(err, "reason") {
			t.Errorf("%s with a long reason: %v", name, err)
		}
		if _, err := act(ctx, "admin endpoint", "", "why"); !isInput(err, "member") {
			t.Errorf("%s without a member: %v", name, err)
		}
		if _, err := act(ctx, "admin endpoint", "nobody", "why"); !isInput(err, "member") {
			t.Errorf("%s of a member never seen: %v", name, err)
		}
	}
	if u, _, _ := f.e.loadUser(ctx, "nobody"); u.Rev != 0 {
		t.Fatal("an action on a member never seen created a record")
	}

	// End sessions: sessions issued until now end, factors and devices stay.
	dev := remember()
	before := record()
	issued := f.clk.Now().Unix()
	res, err := f.e.EndSessions(ctx, "admin endpoint", "alice", "lost laptop")
	if err != nil {
		t.Fatal(err)
	}
	u := record()
	if !u.SessionsEnded(issued) || u.Epoch != before.Epoch || !u.DeviceListed(dev) || !u.Enrolled() || res.Devices != 0 {
		t.Fatalf("after end-sessions: %+v, %+v", u, res)
	}
	f.clk.Advance(time.Second)
	if u.SessionsEnded(f.clk.Now().Unix()) {
		t.Fatal("a session issued after end-sessions is ended")
	}
	if !f.audited("admin_sessions", "lost laptop") {
		t.Fatal("end-sessions not audited with actor and reason")
	}

	// Forget devices: the device is refused, the factors stay.
	res, err = f.e.ForgetDevices(ctx, "admin endpoint", "alice", "shared computer")
	if err != nil || res.Devices != 1 {
		t.Fatalf("forget devices: %+v, %v", res, err)
	}
	if _, _, err := f.e.UseDevice(ctx, a, dev, 24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("forgotten device: %v", err)
	}
	if u := record(); !u.Enrolled() || u.DeviceListed(dev) {
		t.Fatalf("after forget-devices: %+v", u)
	}
	if !f.audited("admin_devices", "shared computer") {
		t.Fatal("forget-devices not audited")
	}

	// Reset: no methods, codes or devices; the epoch moves on; the old
	// code no longer passes.
	if _, err := f.e.GenerateRecoveryCodes(ctx, a); err != nil {
		t.Fatal(err)
	}
	dev = remember()
	before = record()
	res, err = f.e.Reset(ctx, "admin endpoint", "alice", "lost phone, ID checked")
	if err != nil || res.Devices != 1 || len(res.Methods) != 1 || res.Methods[0] != MethodTOTP {
		t.Fatalf("reset: %+v, %v", res, err)
	}
	u = record()
	if u.Enrolled() || u.Recovery != nil || u.Devices != nil || u.Epoch != before.Epoch+1 {
		t.Fatalf("after reset: %+v", u)
	}
	if _, _, err := f.e.UseDevice(ctx, a, dev, 24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("device after reset: %v", err)
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err == nil {
		t.Fatal("the old authenticator code passes after a reset")
	}
	if !f.audited("admin_reset", "lost phone, ID checked") {
		t.Fatal("reset not audited")
	}
}

// audited reports one successful audit entry of event for alice naming the
// admin endpoint and the reason.
func (f *fixture) audited(event, why string) bool {
	n := 0
	for _, e := range f.audit.FilterMessage(event).All() {
		m := e.ContextMap()
		if m["result"] == "success" && m["user"] == "alice" && m["actor"] == "admin endpoint" && m["admin_reason"] == why {
			n++
		}
	}
	return n == 1
}

// On Redis, each admin action on A reaches B's per-request view as soon
// as the change notice arrives: the clock stands still, so B's copy never
// expires by age.
func TestAdminMemberActionsReachOtherInstance(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	enrolOn(t, a, clk, alice)
	device := [16]byte{1}
	if _, err := a.RememberDevice(ctx, alice, device, time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	onB := func(what string, ok func(*User) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			seen, err := b.State(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if ok(seen) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: B still has the old record after 5s: %+v", what, seen)
			}
			runtime.Gosched() // the notice arrives on another goroutine
		}
	}
	if seen, _ := b.State(ctx, "alice"); !seen.DeviceListed(device) {
		t.Fatalf("B's view before: %+v", seen)
	}
	issued := clk.Now().Unix()
	if _, err := a.EndSessions(ctx, "admin endpoint", "alice", "laptop stolen"); err != nil {
		t.Fatal(err)
	}
	onB("end-sessions", func(u *User) bool { return u.SessionsEnded(issued) })
	if _, err := a.ForgetDevices(ctx, "admin endpoint", "alice", "shared computer"); err != nil {
		t.Fatal(err)
	}
	onB("forget-devices", func(u *User) bool { return !u.DeviceListed(device) })
	if _, err := a.Reset(ctx, "admin endpoint", "alice", "lost phone"); err != nil {
		t.Fatal(err)
	}
	onB("reset", func(u *User) bool { return !u.Enrolled() })
}
