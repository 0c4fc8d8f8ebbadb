package challenge

import (
	"errors"
	"testing"
	"time"
)

// A report that a code never came: once per code, only for a live code
// this browser asked for by that method, and never a send.
func TestReportNotArrived(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(a, MethodSMS, alicePhone, false)
	f.clk.Advance(time.Hour)
	sent := f.ob.count()
	reports := func() int { return f.count("code_not_arrived", "result", "success") }

	// Nothing sent to this browser yet: nothing to report.
	for _, m := range []string{MethodEmail, MethodSMS, MethodTOTP, ""} {
		if ok, err := f.e.ReportNotArrived(ctx, a, "v", m); ok || !errors.Is(err, ErrNothingToReport) {
			t.Fatalf("report %q before any send: %v %v, want ErrNothingToReport", m, ok, err)
		}
	}

	f.sendVerify(a, MethodEmail, "v", "")
	sent++
	// Another method than the one the code went by, another browser,
	// another member: nothing to report.
	for _, c := range []struct {
		a            Actor
		flow, method string
	}{{a, "v", MethodSMS}, {a, "other-browser", MethodEmail}, {Actor{User: "bob"}, "v", MethodEmail}} {
		if ok, err := f.e.ReportNotArrived(ctx, c.a, c.flow, c.method); ok || !errors.Is(err, ErrNothingToReport) {
			t.Fatalf("report %+v: %v %v, want ErrNothingToReport", c, ok, err)
		}
	}
	if reports() != 0 {
		t.Fatalf("refused reports were recorded: %d", reports())
	}

	// The first report is recorded, with the masked address; every later
	// one for the same code is acknowledged and not counted.
	for i := range 20 {
		ok, err := f.e.ReportNotArrived(ctx, a, "v", MethodEmail)
		if err != nil || ok != (i == 0) {
			t.Fatalf("report %d: %v %v, want recorded only the first time", i, ok, err)
		}
	}
	if reports() != 1 || f.count("code_not_arrived", "to", Mask(MethodEmail, aliceMail)) != 1 ||
		f.count("code_not_arrived", "method", MethodEmail) != 1 {
		t.Fatalf("code_not_arrived events: %v", f.auditText())
	}
	if f.ob.count() != sent {
		t.Fatalf("reports sent %d messages", f.ob.count()-sent)
	}
	for _, line := range f.auditText() {
		for _, clear := range clearDestinations {
			if containsCode(line, clear) {
				t.Fatalf("the audit names %q: %s", clear, line)
			}
		}
	}
	// Reports do not touch the resend cooldown: a resend still waits.
	if _, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver); err == nil {
		t.Fatal("a resend within the cooldown went out after reports")
	}

	// A new code (by SMS now) is a new report, once.
	f.clk.Advance(f.e.cfg.ResendCooldown)
	f.sendVerify(a, MethodSMS, "v", "")
	sent++
	if ok, err := f.e.ReportNotArrived(ctx, a, "v", MethodEmail); ok || !errors.Is(err, ErrNothingToReport) {
		t.Fatalf("email report after the SMS code replaced it: %v %v", ok, err)
	}
	for i := range 3 {
		if ok, err := f.e.ReportNotArrived(ctx, a, "v", MethodSMS); err != nil || ok != (i == 0) {
			t.Fatalf("SMS report %d: %v %v", i, ok, err)
		}
	}
	if reports() != 2 || f.count("code_not_arrived", "to", Mask(MethodSMS, alicePhone)) != 1 {
		t.Fatalf("code_not_arrived events after the SMS code: %v", f.auditText())
	}

	// Past the code's lifetime: nothing to report.
	f.clk.Advance(f.e.cfg.SMSCodeTTL)
	if ok, err := f.e.ReportNotArrived(ctx, a, "v", MethodSMS); ok || !errors.Is(err, ErrNothingToReport) {
		t.Fatalf("report after expiry: %v %v", ok, err)
	}

	// A code that was used arrived: nothing to report.
	c := f.sendVerify(a, MethodEmail, "v", "")
	sent++
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.e.ReportNotArrived(ctx, a, "v", MethodEmail); ok || !errors.Is(err, ErrNothingToReport) {
		t.Fatalf("report after the code was used: %v %v", ok, err)
	}
	if reports() != 2 || f.ob.count() != sent {
		t.Fatalf("%d reports and %d sends, want 2 and %d", reports(), f.ob.count(), sent)
	}
}
