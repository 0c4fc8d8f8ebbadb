package challenge

import (
	"testing"
	"time"
)

// An app added by a member who had factors before, without a code from an
// earlier app, is unproven: the admin pages refuse it until an admin
// confirms it. A first enrolment, and an app replaced after an app code,
// are not.
func TestUnprovenApp(t *testing.T) {
	f := newCodeFixture(t, Config{})
	app := func(a Actor, replace bool) *User {
		t.Helper()
		start := f.e.StartTOTP
		if replace {
			start = f.e.StartTOTPReplacement
		}
		en, err := start(ctx, a, "Example", a.User, "flow-"+a.User)
		if err != nil {
			t.Fatal(err)
		}
		u, err := f.e.ConfirmTOTP(ctx, a, "flow-"+a.User, f.code(en.Secret, 0))
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(30 * time.Second)
		return u
	}
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	if u := app(alice, false); u.TOTP.Unproven {
		t.Fatal("a first enrolment is unproven")
	}
	if u := app(Actor{User: "alice", IP: "192.0.2.1", StepUp: MethodTOTP}, true); u.TOTP.Unproven {
		t.Fatal("an app replaced after an app code is unproven")
	}
	for _, stepUp := range []string{MethodEmail, MethodRecovery, ""} {
		if u := app(Actor{User: "alice", IP: "192.0.2.1", StepUp: stepUp}, true); !u.TOTP.Unproven {
			t.Fatalf("an app replaced after step-up %q is proven", stepUp)
		}
	}
	// A session verified by a passkey or app that was unproven then
	// proves nothing, whatever the member's factors are now.
	if u := app(Actor{User: "alice", IP: "192.0.2.1", StepUp: MethodTOTP, StepUpUnproven: true}, true); !u.TOTP.Unproven {
		t.Fatal("an app replaced in a session from an unproven factor is proven")
	}
	if _, err := f.e.ConfirmApp(ctx, "admin endpoint", "alice", ""); !isInput(err, "reason") {
		t.Fatalf("confirm without a reason: %v", err)
	}
	if _, err := f.e.ConfirmApp(ctx, "boss (approver)", "alice", "called her back"); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.e.State(ctx, "alice"); u.TOTP.Unproven || f.count("admin_app_confirmed", "actor", "boss (approver)") != 1 {
		t.Fatalf("after the confirmation: unproven %v, audited %d", u.TOTP.Unproven, f.count("admin_app_confirmed", "actor", "boss (approver)"))
	}
	if _, err := f.e.ConfirmApp(ctx, "boss (approver)", "alice", "again"); !isInput(err, "member") {
		t.Fatalf("confirming a proven app: %v", err)
	}

	// A reset, then the app again with the password alone: unproven.
	if _, err := f.e.Reset(ctx, "admin endpoint", "alice", "lost phone"); err != nil {
		t.Fatal(err)
	}
	if u := app(alice, false); !u.TOTP.Unproven {
		t.Fatal("an app after a reset is proven")
	}
	// Email first, then the app after an email code: unproven.
	bob := Actor{User: "bob", IP: "192.0.2.2"}
	f.enrolCode(bob, MethodEmail, "bob@example.com", false)
	if u := app(Actor{User: "bob", IP: "192.0.2.2", StepUp: MethodEmail}, false); !u.TOTP.Unproven {
		t.Fatal("an app added after an email code is proven")
	}
	if _, err := f.e.ConfirmApp(ctx, "admin endpoint", "carol", "who?"); !isInput(err, "member") {
		t.Fatalf("confirming a member with no record: %v", err)
	}
}

// A code from an unproven app proves nothing more: an app replaced after
// it stays unproven, as does one replaced after an email code first.
func TestAppReplacedAfterAnUnprovenAppStaysUnproven(t *testing.T) {
	f := newCodeFixture(t, Config{})
	bob := Actor{User: "bob", IP: "192.0.2.2"}
	f.enrolCode(bob, MethodEmail, "bob@example.com", false)
	for i, stepUp := range []string{MethodEmail, MethodTOTP} {
		start := f.e.StartTOTP
		if i > 0 {
			start = f.e.StartTOTPReplacement
		}
		a := Actor{User: "bob", IP: "192.0.2.2", StepUp: stepUp}
		en, err := start(ctx, a, "Example", "bob", "flow-bob")
		if err != nil {
			t.Fatal(err)
		}
		u, err := f.e.ConfirmTOTP(ctx, a, "flow-bob", f.code(en.Secret, 0))
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(30 * time.Second)
		if !u.TOTP.Unproven || u.Proven(MethodTOTP) {
			t.Fatalf("an app added after step-up %q, bob having only email then an unproven app: proven", stepUp)
		}
	}
}
