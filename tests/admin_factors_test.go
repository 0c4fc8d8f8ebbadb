package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
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
	// That challenge takes no recovery code: it would be spent for a page
	// it does not open. The code stays good for the members' pages.
	challenge := b.get(page.location())
	if challenge.status != http.StatusOK || strings.Contains(challenge.body, "method=recovery") {
		t.Fatalf("challenge on the way to an admin's settings offers a recovery code: %d", challenge.status)
	}
	if r := b.useRecovery(codes[0], "/.2fa/methods?return_to=%2Fmembers%2F"); r.status != http.StatusBadRequest {
		t.Fatalf("a recovery code on the way to an admin's settings: %d", r.status)
	}
	if r := b.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("the same recovery code for the members' pages: %d", r.status)
	}
	b.renewRecovery("/members/")
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

// Reading members' data is audited too: a member's page, a search, a
// reconciliation, on the pages and through the admin endpoint, with the
// admin, where from, and never the address searched for.
func TestAdminReadsAudited(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	enrolled(e, "bob")
	admin, _ := enrolled(e, "admin")
	if r := admin.get("/.2fa/admin/member?id=bob"); r.status != http.StatusOK {
		t.Fatalf("member page: %d", r.status)
	}
	if r := admin.get("/.2fa/admin/members?q=" + url.QueryEscape("bob@example.com")); r.status != http.StatusOK {
		t.Fatalf("search: %d", r.status)
	}
	tok := admin.csrf("/.2fa/admin/reconcile")
	if r := admin.post("/.2fa/admin/reconcile", url.Values{"csrf": {tok}, "ids": {"bob\nnobody"}}); r.status != http.StatusOK {
		t.Fatalf("reconcile: %d", r.status)
	}
	if out, code := twoFactorCLI(t, "members", "show", "--address", e.admin, "bob"); code != 0 {
		t.Fatalf("members show: exit %d\n%s", code, out)
	}
	want := map[string]int{}
	for _, a := range e.audit() {
		switch ev, _ := a["event"].(string); ev {
		case "admin_member_viewed", "admin_members_searched", "admin_reconcile":
			if strings.Contains(fmt.Sprint(a), "bob@example.com") {
				t.Errorf("the address searched for is in the audit entry: %v", a)
			}
			switch a["actor"] {
			case "admin (approver)":
				if a["admin_ip"] != "127.0.0.1" {
					t.Errorf("%s from the pages without the admin's address: %v", ev, a)
				}
			case "admin endpoint":
			default:
				t.Errorf("%s with actor %v", ev, a["actor"])
			}
			want[ev+" "+fmt.Sprint(a["actor"])]++
		}
	}
	for _, k := range []string{"admin_member_viewed admin (approver)", "admin_members_searched admin (approver)",
		"admin_reconcile admin (approver)", "admin_member_viewed admin endpoint"} {
		if want[k] != 1 {
			t.Errorf("%d audit entries %q, want 1 (all: %v)", want[k], k, want)
		}
	}
}

// After a reset, an admin's new app opens the admin pages only once
// another approver confirms it: otherwise one support admin's reset would
// hand an approver's role to whoever holds that approver's password. The
// approver cannot confirm their own; the operator can, through the CLI.
func TestAdminAppAfterResetNeedsConfirmation(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}, "admins {\n\t\t\tadmin approver\n\t\t\tbob approver\n\t\t\talice approver\n\t\t}"))
	enrolled(e, "admin")
	bob, _ := enrolled(e, "bob")
	alice, _ := enrolled(e, "alice")
	if out, code := twoFactorCLI(t, "members", "reset", "--address", e.admin, "admin", "--reason", "lost phone"); code != 0 {
		t.Fatalf("reset: exit %d\n%s", code, out)
	}
	// Whoever holds the password enrols an app: not enough for the pages.
	b := e.browser()
	b.login("admin")
	b.enrol("/members/")
	if r := b.get("/.2fa/admin/"); r.status != http.StatusForbidden || !strings.Contains(r.body, "another administrator must confirm it") {
		t.Fatalf("admin pages with an app enrolled after a reset: %d", r.status)
	}
	page := bob.get("/.2fa/admin/member?id=admin")
	if !strings.Contains(page.body, "not yet confirmed for the admin pages") || !strings.Contains(page.body, "admin/member/confirm-app") {
		t.Fatalf("member page of an admin with an unproven app: %d", page.status)
	}
	if r := adminAct(bob, "confirm-app", "admin", ""); r.status != http.StatusBadRequest {
		t.Fatalf("confirm without a reason: %d", r.status)
	}
	if r := adminAct(bob, "confirm-app", "admin", "called back on the number on file"); r.status != http.StatusSeeOther {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if r := b.get("/.2fa/admin/"); r.status != http.StatusOK {
		t.Fatalf("admin pages after the confirmation: %d", r.status)
	}

	// bob, reset too, cannot confirm his own new app; the operator can.
	if out, code := twoFactorCLI(t, "members", "reset", "--address", e.admin, "bob", "--reason", "new phone"); code != 0 {
		t.Fatalf("reset bob: exit %d\n%s", code, out)
	}
	bob = e.browser()
	bob.login("bob")
	bob.enrol("/members/")
	// His unproven app opens no admin page, the confirmation of his own
	// included (the form token comes from another page).
	r := bob.post("/.2fa/admin/member/confirm-app", url.Values{"csrf": {bob.csrf("/.2fa/logout")}, "member": {"bob"}, "reason": {"it is mine"}})
	if r.status != http.StatusForbidden {
		t.Fatalf("confirming one's own app: %d", r.status)
	}
	if r := adminAct(alice, "confirm-app", "bob", "x"); r.status != http.StatusSeeOther {
		t.Fatalf("alice confirming bob: %d", r.status)
	}
	if out, code := twoFactorCLI(t, "members", "confirm-app", "--address", e.admin, "bob", "--reason", "again"); code != 2 || !strings.Contains(out, "member: has no authenticator app waiting") {
		t.Fatalf("confirm-app of a confirmed app: exit %d\n%s", code, out)
	}
	n := 0
	for _, a := range e.audit() {
		if a["event"] == "admin_app_confirmed" && a["result"] == "success" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d admin_app_confirmed audit entries, want 2", n)
	}
}
