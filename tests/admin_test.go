package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The admin API and `caddy two-factor` against a running Caddy: the CLI is
// this test binary run as the caddy command, talking to the admin
// endpoint of the Caddy running in the test process.

// twoFactorCLI runs `caddy two-factor args...` and returns its output and
// exit code.
func twoFactorCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := caddyCmd(t.TempDir(), append([]string{"two-factor"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("caddy two-factor %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// adminSetup is a gateway with its admin endpoint on, the given keys and
// global lines, on the store at db.
func adminSetup(db string, keys []string, lines ...string) setup {
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = strconv.Quote(k)
	}
	global := append([]string{"keys " + strings.Join(quoted, " "), fmt.Sprintf("store embedded %q", db)}, lines...)
	return setup{admin: true, dbPath: db, global: strings.Join(global, "\n\t\t")}
}

// Unlock lifts a lockout at once: the member passes with the right code
// right after, with every try again, and the audit trail names the admin
// endpoint and the reason.
func TestAdminUnlockThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}, "max_failures 3", "lockout 1h"))
	_, secret := enrolled(e, "alice")
	e.nextStep()
	b := e.browser()
	b.login("alice")
	for i := 1; i <= 3; i++ {
		b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
	}
	// The challenge page shows the lockout instead of a form, so post
	// with a form token from another page.
	tok := b.csrf("/.2fa/logout")
	r := b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("right code while locked out: %d", r.status)
	}

	out, code := twoFactorCLI(t, "members", "unlock", "--address", e.admin, "alice", "--reason", "called support, ID checked")
	if code != 0 || !strings.Contains(out, "alice: unlocked; every try is back.") {
		t.Fatalf("unlock: exit %d\n%s", code, out)
	}
	for i := 1; i <= 2; i++ {
		if r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d after unlock: %d, want a fresh try", i, r.status)
		}
	}
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("right code after unlock: %d %s", r.status, r.body)
	}
	// The member sees the unlock among their recent activity.
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); page.status != http.StatusOK || !strings.Contains(page.body, "Unlocked by an administrator") {
		t.Fatalf("settings page after unlock: %d\n%s", page.status, page.body)
	}
	found := false
	for _, a := range e.audit() {
		if a["event"] == "admin_unlock" && a["user"] == "alice" && a["actor"] == "admin endpoint" &&
			a["admin_reason"] == "called support, ID checked" && a["was_locked"] == true {
			found = true
		}
	}
	if !found {
		t.Fatalf("no admin_unlock audit entry with actor and reason: %v", e.audit())
	}

	// --json for scripts.
	out, code = twoFactorCLI(t, "members", "unlock", "--address", e.admin, "--json", "--ip", "192.0.2.7", "--reason", "office")
	var res struct {
		WasLocked *bool `json:"was_locked"`
	}
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &res) != nil || res.WasLocked == nil || *res.WasLocked {
		t.Fatalf("unlock --json of an address never locked: exit %d\n%s", code, out)
	}
}

// A bad request is refused with a JSON error naming the field, by the API
// and through the CLI, which exits 2.
func TestAdminBadRequests(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	for body, field := range map[string]string{
		`{"member": "alice"}`:                              "reason",
		`{"member": "alice", "reason": "x", "extra": 1}`:   "extra",
		`{"reason": "x"}`:                                  "member",
		`{"member": "a", "address": "::1", "reason": "x"}`: "address",
		`{"address": "not an ip", "reason": "x"}`:          "address",
		`{"member": 7, "reason": "x"}`:                     "member",
	} {
		resp, err := http.Post("http://"+e.admin+"/two-factor/members/unlock", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var apiErr struct {
			Error string `json:"error"`
		}
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(raw, &apiErr) != nil || !strings.HasPrefix(apiErr.Error, field+": ") {
			t.Errorf("%s: %d %s, want 400 with a JSON error naming %s", body, resp.StatusCode, raw, field)
		}
	}

	out, code := twoFactorCLI(t, "members", "unlock", "--address", e.admin, "alice")
	if code != 2 || !strings.Contains(out, "reason: required") {
		t.Fatalf("unlock without a reason: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "members", "unlock", "--address", e.admin, "--json", "alice")
	if code != 2 || !strings.HasPrefix(out, `{"error":"reason: required`) {
		t.Fatalf("unlock --json without a reason: exit %d\n%s", code, out)
	}
	// Nothing listening: exit 1.
	e.stop()
	if _, code := twoFactorCLI(t, "stats", "--address", "127.0.0.1:1"); code != 1 {
		t.Fatalf("stats with no instance: exit %d, want 1", code)
	}
}

// SC-4 finished by rekey: after a rotation, `caddy two-factor rekey` moves
// every record to the new key and reports 0 remaining, so Caddy restarted
// with the new key alone lets in members not seen since the rotation.
func TestAdminRekeyThroughCLI(t *testing.T) {
	const newKey = "rotation-new-key-0123456789abcdefghijkl"
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	_, aliceSecret := enrolled(e, "alice")
	_, bobSecret := enrolled(e, "bob")

	s := adminSetup(db, []string{newKey, testKey})
	s.clock = e.clock
	rotated := start(t, s)
	out, code := twoFactorCLI(t, "rekey", "--address", rotated.admin)
	if code != 0 || !strings.Contains(out, "re-sealed 2 under the current key; 0 remain under older keys") {
		t.Fatalf("rekey: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "stats", "--address", rotated.admin)
	if code != 0 || !strings.Contains(out, "Member records under an older key:  0 (every record counted)") {
		t.Fatalf("stats after rekey: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "stats", "--address", rotated.admin, "--json")
	var stats struct {
		Stale    *int `json:"stale_records"`
		Complete bool `json:"stale_count_complete"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &stats) != nil || stats.Stale == nil || *stats.Stale != 0 || !stats.Complete {
		t.Fatalf("stats after rekey: exit %d\n%s", code, out)
	}

	s = adminSetup(db, []string{newKey})
	s.clock = e.clock
	removed := start(t, s)
	removed.nextStep()
	for user, secret := range map[string]string{"alice": aliceSecret, "bob": bobSecret} {
		b := removed.browser()
		b.login(user)
		if r := b.verify(removed.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
			t.Fatalf("%s on the new key alone after rekey: %d %s", user, r.status, r.body)
		}
	}
}

// Members enrolled or not: one enrolled, one who only visited a protected
// path. The list shows both (the visit is noted in the background, and a
// listing first waits for the notes queued before it), show details the
// enrolled one, and reconcile sorts 10,000 IDs into the three groups.
func TestAdminMembersThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	enrolled(e, "alice")
	b := e.browser()
	b.login("bob")
	if r := b.get("/members/"); r.status == http.StatusOK && strings.Contains(r.body, "members only") {
		t.Fatalf("bob passed without a second factor")
	}

	out, code := twoFactorCLI(t, "members", "list", "--address", e.admin, "--json")
	var list struct {
		Members []struct {
			ID        string   `json:"id"`
			Enrolled  bool     `json:"enrolled"`
			Methods   []string `json:"methods"`
			LastSeen  *string  `json:"last_seen"`
			FirstSeen *string  `json:"first_seen"`
		} `json:"members"`
		Counts struct {
			Members, Seen, Enrolled int
		} `json:"counts"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Members) != 2 {
		t.Fatalf("members list --json: exit %d\n%s", code, out)
	}
	alice, bob := list.Members[0], list.Members[1]
	if alice.ID != "alice" || !alice.Enrolled || len(alice.Methods) != 1 || alice.Methods[0] != "totp" ||
		bob.ID != "bob" || bob.Enrolled || bob.FirstSeen == nil || bob.LastSeen == nil {
		t.Fatalf("members list: %+v", list.Members)
	}
	if list.Counts.Members != 2 || list.Counts.Enrolled != 1 {
		t.Fatalf("counts: %+v", list.Counts)
	}
	out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--not-enrolled")
	if code != 0 || !strings.Contains(out, "bob ") || strings.Contains(out, "alice ") || !strings.Contains(out, "enrolled: 1") {
		t.Fatalf("members list --not-enrolled: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "members", "show", "--address", e.admin, "alice")
	if code != 0 || !strings.Contains(out, "Enrolled:      yes") || !strings.Contains(out, "totp") {
		t.Fatalf("members show alice: exit %d\n%s", code, out)
	}
	if out, code = twoFactorCLI(t, "members", "show", "--address", e.admin, "nobody"); code != 1 {
		t.Fatalf("members show of an unknown member: exit %d\n%s", code, out)
	}
	if out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--limit", "0"); code != 2 || !strings.Contains(out, "limit: ") {
		t.Fatalf("members list --limit 0: exit %d\n%s", code, out)
	}

	ids := []string{"alice", "bob"}
	for i := len(ids); i < 10_000; i++ {
		ids = append(ids, fmt.Sprintf("member-%05d", i))
	}
	file := filepath.Join(t.TempDir(), "members.txt")
	if err := os.WriteFile(file, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = twoFactorCLI(t, "members", "reconcile", "--address", e.admin, "--json", file)
	var rec struct {
		Enrolled        []string `json:"enrolled"`
		SeenNotEnrolled []string `json:"seen_not_enrolled"`
		NeverSeen       []string `json:"never_seen"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil {
		t.Fatalf("members reconcile: exit %d\n%.500s", code, out)
	}
	if len(rec.Enrolled) != 1 || rec.Enrolled[0] != "alice" || len(rec.SeenNotEnrolled) != 1 || rec.SeenNotEnrolled[0] != "bob" ||
		len(rec.NeverSeen) != 9_998 || rec.NeverSeen[0] != "member-00002" {
		t.Fatalf("reconcile: %d enrolled, %v seen not enrolled, %d never seen", len(rec.Enrolled), rec.SeenNotEnrolled, len(rec.NeverSeen))
	}
	out, code = twoFactorCLI(t, "members", "reconcile", "--address", e.admin, file)
	if code != 0 || !strings.Contains(out, "Seen, not enrolled: 1\n  bob\n") || !strings.Contains(out, "Never seen:         9998") {
		t.Fatalf("members reconcile: exit %d\n%.500s", code, out)
	}
}
