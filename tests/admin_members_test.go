package tests

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// The admin actions on a member through `caddy two-factor`, against the
// running Caddy.

// A reset sends a verified member to enrolment at their next page load,
// and their old authenticator code no longer passes.
func TestAdminResetThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	b, secret := enrolled(e, "alice")
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("verified member before the reset: %d", r.status)
	}
	out, code := twoFactorCLI(t, "members", "reset", "--address", e.admin, "alice", "--reason", "lost phone, ID checked by video call")
	if code != 0 || !strings.Contains(out, "alice: reset: every method") {
		t.Fatalf("reset: exit %d\n%s", code, out)
	}
	sentTo(t, b, "/.2fa/enrol", "page load after the reset")
	e.nextStep()
	other := e.browser()
	other.login("alice")
	// The challenge page now sends to enrolment, so post with a form token
	// from another page.
	tok := other.csrf("/.2fa/logout")
	other.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}})
	sentTo(t, other, "/.2fa/enrol", "after the old authenticator code")
	assertAdminAudit(t, e, "admin_reset", "lost phone, ID checked by video call")
}

// End-sessions challenges the member again at their next request; their
// authenticator still passes and the app works after.
func TestAdminEndSessionsThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	b, secret := enrolled(e, "alice")
	out, code := twoFactorCLI(t, "members", "end-sessions", "--address", e.admin, "alice", "--reason", "laptop stolen")
	if code != 0 || !strings.Contains(out, "alice: every session ended") {
		t.Fatalf("end-sessions: exit %d\n%s", code, out)
	}
	sentTo(t, b, "/.2fa/challenge", "page load after end-sessions")
	e.nextStep()
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verifying after end-sessions: %d %s", r.status, r.body)
	}
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("the app after verifying again: %d", r.status)
	}
	// The member sees it among their recent activity.
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); page.status != http.StatusOK || !strings.Contains(page.body, "Sessions ended by an administrator") {
		t.Fatalf("settings page after end-sessions: %d\n%s", page.status, page.body)
	}
	assertAdminAudit(t, e, "admin_sessions", "laptop stolen")
}

// Forget-devices: a remembered device no longer skips the code.
func TestAdminForgetDevicesThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	_, secret := enrolled(e, "alice")
	e.nextStep()
	b := e.browser()
	b.login("alice")
	if r := b.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verifying, remembering the device: %d", r.status)
	}
	// A new member-site session in the same browser: the device skips the
	// code.
	b.login("alice")
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("remembered device before forget-devices: %d %q", r.status, r.location())
	}
	out, code := twoFactorCLI(t, "members", "forget-devices", "--address", e.admin, "alice", "--reason", "shared computer")
	if code != 0 || !strings.Contains(out, "alice: 1 remembered devices forgotten") {
		t.Fatalf("forget-devices: exit %d\n%s", code, out)
	}
	b.login("alice")
	sentTo(t, b, "/.2fa/challenge", "remembered device after forget-devices")
	assertAdminAudit(t, e, "admin_devices", "shared computer")
}

// A missing reason or member: exit 2 naming the field.
func TestAdminMemberActionsRefused(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	enrolled(e, "alice")
	for _, cmd := range []string{"reset", "forget-devices", "end-sessions"} {
		if out, code := twoFactorCLI(t, "members", cmd, "--address", e.admin, "alice"); code != 2 || !strings.Contains(out, "reason: required") {
			t.Errorf("%s without a reason: exit %d\n%s", cmd, code, out)
		}
		if out, code := twoFactorCLI(t, "members", cmd, "--address", e.admin, "--reason", "x"); code != 2 || !strings.Contains(out, "member: required") {
			t.Errorf("%s without a member: exit %d\n%s", cmd, code, out)
		}
		if out, code := twoFactorCLI(t, "members", cmd, "--address", e.admin, "--json", "bob", "--reason", "x"); code != 2 || !strings.HasPrefix(out, `{"error":"member: `) {
			t.Errorf("%s of a member never seen: exit %d\n%s", cmd, code, out)
		}
	}
	b := e.browser()
	b.login("alice")
	sentTo(t, b, "/.2fa/challenge", "alice after refused actions")
}

func assertAdminAudit(t *testing.T, e *env, event, why string) {
	t.Helper()
	for _, a := range e.audit() {
		if a["event"] == event && a["user"] == "alice" && a["actor"] == "admin endpoint" && a["admin_reason"] == why && a["result"] == "success" {
			return
		}
	}
	t.Fatalf("no %s audit entry with actor and reason: %v", event, e.audit())
}

// sentTo checks that a page load of /members/ redirects to page.
func sentTo(t *testing.T, b *browser, page, what string) {
	t.Helper()
	if r := b.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), page) {
		t.Fatalf("%s: %d %q, want a redirect to %s", what, r.status, r.location(), page)
	}
}
