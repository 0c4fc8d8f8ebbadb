package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// An admin's own factors are guarded as the admin pages are: with the
// admin's password and one recovery code (or their mailbox), an attacker
// can neither replace nor remove the app, and so never reaches the admin
// pages with an app of their own. A member who is no admin keeps the
// ordinary step-up, and the admin still renews recovery codes after using
// one.
func TestAdminFactorsNeedTheApp(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	owner, _ := enrolled(e, "admin")
	b := e.browser()
	b.login("admin")
	if r := b.useRecovery(owner.recovery[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("recovery code: %d", r.status)
	}
	codes := b.renewRecovery("/members/")
	if r := b.get("/.2fa/admin/"); r.status == http.StatusOK {
		t.Fatal("admin pages opened on a recovery-code session")
	}

	// Settings ask for the app again.
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if page.status != http.StatusSeeOther || !strings.Contains(page.location(), "/.2fa/challenge?") {
		t.Fatalf("settings on a recovery-code session of an admin: %d %s", page.status, page.location())
	}
	// A recovery code there leads back to the challenge, not to settings.
	if r := b.useRecovery(codes[0], "/.2fa/methods?return_to=%2Fmembers%2F"); r.status != http.StatusSeeOther {
		t.Fatalf("a second recovery code: %d", r.status)
	}
	b.renewRecovery("/members/")
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); page.status != http.StatusSeeOther || !strings.Contains(page.location(), "/.2fa/challenge?") {
		t.Fatalf("settings after a second recovery code: %d %s", page.status, page.location())
	}
	tok := b.csrf("/.2fa/logout")
	for _, post := range []struct {
		path string
		form url.Values
	}{
		{"/.2fa/enrol", url.Values{"replace": {"1"}}},
		{"/.2fa/methods/remove", url.Values{"method": {"totp"}}},
		{"/.2fa/methods/recovery", nil},
	} {
		form := url.Values{"csrf": {tok}, "return_to": {"/members/"}}
		for k, v := range post.form {
			form[k] = v
		}
		if r := b.post(post.path, form); r.status != http.StatusSeeOther || !strings.Contains(r.location(), "/.2fa/challenge?") {
			t.Errorf("POST %s on a recovery-code session of an admin: %d %s, want the challenge", post.path, r.status, r.location())
		}
	}
	for _, a := range e.audit() {
		if a["user"] == "admin" && a["event"] == "method_removed" {
			t.Fatalf("the admin's app was removed: %v", a)
		}
	}

	// bob is no admin: the same session may start a new app, as before.
	bobOwner, _ := enrolled(e, "bob")
	m := e.browser()
	m.login("bob")
	m.useRecovery(bobOwner.recovery[0], "/members/")
	m.renewRecovery("/members/")
	r := m.post("/.2fa/enrol", url.Values{"csrf": {m.csrf("/.2fa/logout")}, "return_to": {"/members/"}, "replace": {"1"}})
	if r.status != http.StatusOK || enrolmentSecret(t, r.body) == "" {
		t.Fatalf("a member who is no admin starting a new app after a recovery code: %d", r.status)
	}
}
