package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// With reset_approval on, one admin cannot do by removing a passkey what a
// reset needs two admins for: removing a member's last way to verify is
// refused on the admin page, the admin API and the CLI, nothing changes,
// and each refusal is audited with the admin and the reason. A passkey
// the member can do without (they keep the app) still goes, on the page
// and through the API.
func TestPasskeyRemovalUnderResetApproval(t *testing.T) {
	s := approvalPagesSetup(t)
	s.policy = passkeyIn(s.policy)
	e := start(t, s)
	sam, _ := asMember(e, "sam")

	// carol's only factor is a passkey (and her recovery codes).
	carol := e.browser()
	carol.header.Set("X-Member", "carol")
	key := testwebauthn.New(e.origin())
	only := carol.firstPasskey(key, "Only key")

	r := adminAct(sam, "remove-passkey", "carol", "lost her key", "credential", only)
	if r.status != http.StatusConflict || !strings.Contains(r.body, "Nothing was changed") || !strings.Contains(r.body, "Request a reset instead") {
		t.Fatalf("support removes carol's last passkey on the page: %d %q\n%s", r.status, r.location(), r.body)
	}
	status, msg := adminPost(t, e, "/two-factor/members/remove-passkey",
		`{"member": "carol", "credential": "`+only+`", "reason": "lost her key"}`)
	if status != http.StatusConflict || !strings.HasPrefix(msg, "credential: ") || !strings.Contains(msg, "request a reset instead") {
		t.Fatalf("the admin API removes carol's last passkey: %d %q", status, msg)
	}
	out, code := twoFactorCLI(t, "members", "remove-passkey", "--address", e.admin, "carol", only, "--reason", "lost her key")
	if code != 1 || !strings.Contains(out, "request a reset instead") {
		t.Fatalf("the CLI removes carol's last passkey: exit %d\n%s", code, out)
	}
	// Nothing changed: her session still passes, and the password alone
	// is still asked for the passkey, not sent to enrolment.
	if !passes(carol) {
		t.Fatal("carol's session ended by a refused removal")
	}
	stranger := e.browser()
	stranger.header.Set("X-Member", "carol")
	if g := stranger.get("/echo/x"); g.status != http.StatusFound || strings.HasPrefix(g.location(), "/.2fa/enrol") {
		t.Fatalf("the password alone after the refusals: %d %q, want the challenge", g.status, g.location())
	}
	var refused []map[string]any
	for _, a := range e.audit() {
		if a["event"] == "admin_passkey_removed" && a["user"] == "carol" {
			if a["result"] != "refused" || a["reason"] != "reset_approval" || a["admin_reason"] != "lost her key" {
				t.Errorf("a refusal audited as: %v", a)
			}
			refused = append(refused, a)
		}
	}
	if len(refused) != 3 || refused[0]["actor"] != "sam (support)" || refused[1]["actor"] != "admin endpoint" || refused[2]["actor"] != "admin endpoint" {
		t.Fatalf("refusals audited: %v", refused)
	}

	// dave keeps the app: his passkeys go, one through the API, the
	// other on the page.
	dave, _ := asMember(e, "dave")
	first := dave.registerPasskey(testwebauthn.New(e.origin()), "/echo/x", "Old phone")["credential"]
	second := dave.registerPasskey(testwebauthn.New(e.origin()), "/echo/x", "Laptop")["credential"]
	body, _ := json.Marshal(map[string]string{"member": "dave", "credential": first, "reason": "phone stolen"})
	if status, msg := adminPost(t, e, "/two-factor/members/remove-passkey", string(body)); status != http.StatusOK {
		t.Fatalf("the admin API removes a passkey beside the app: %d %q", status, msg)
	}
	r = adminAct(sam, "remove-passkey", "dave", "laptop stolen", "credential", second)
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id=dave&done=remove-passkey" {
		t.Fatalf("support removes a passkey beside the app: %d %q\n%s", r.status, r.location(), r.body)
	}
	status, got, _ := adminGet(t, e, "/two-factor/members?id=dave")
	var d struct {
		Credentials []struct{ ID string } `json:"credentials"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(got), &d) != nil || len(d.Credentials) != 0 {
		t.Fatalf("dave after: %d %s", status, got)
	}
}
