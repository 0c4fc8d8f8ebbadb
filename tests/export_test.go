package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
)

// Moving from the embedded store to Redis is one export and one import:
// a member enrolled on the embedded store, with recovery codes and a
// remembered device, is exported by `caddy two-factor export` from the
// running Caddy; a Caddy on a real Redis with the same key imports it with
// `caddy two-factor import`; the member then passes with the remembered
// device, the same authenticator and a recovery code. A second import,
// into a store that now holds members, is refused naming --merge.
func TestExportEmbeddedImportRedis(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	enrolling, secret := enrolled(e, "alice")
	recovery := enrolling.recovery
	if len(recovery) != 10 {
		t.Fatalf("%d recovery codes at enrolment", len(recovery))
	}
	d := e.browser()
	d.login("alice")
	if r := d.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther || d.cookie("2fa_device") == nil {
		t.Fatalf("verify with remember: %d", r.status)
	}
	device := d.cookie("2fa_device").Value
	if got := d.get("/members/"); got.status != http.StatusOK {
		t.Fatalf("members page after verifying: %d", got.status)
	}
	e.nextStep()
	// bob is seen on a protected path, not enrolled.
	b := e.browser()
	b.login("bob")
	b.get("/members/")

	file := filepath.Join(t.TempDir(), "backup.jsonl")
	out, code := twoFactorCLI(t, "export", "--address", e.admin, "--output", file, "--reason", "moving to Redis")
	if code != 0 || !strings.Contains(out, "Exported 1 member records, 1 remembered devices, 1 activity lists and 2 seen records to "+file) {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v, want 0600", err, info.Mode())
	}
	backup, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(backup), secret) {
		t.Fatal("the backup holds the authenticator's secret in plaintext")
	}
	found := false
	for _, a := range e.audit() {
		if a["event"] == "admin_export" && a["actor"] == "admin endpoint" && a["admin_reason"] == "moving to Redis" && a["users"] == 1.0 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no admin_export audit entry with actor, reason and counts")
	}

	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tkey_prefix moved:\n\t\t}", testKey, srv.Addr)
	r := start(t, setup{admin: true, global: global, clock: e.clock})
	out, code = twoFactorCLI(t, "import", "--address", r.admin, "--reason", "moving to Redis", file)
	if code != 0 || !strings.Contains(out, "Written: 1 member records, 1 remembered devices, 1 activity lists and 2 seen records.") {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	found = false
	for _, a := range r.audit() {
		if a["event"] == "admin_import" && a["result"] == "success" && a["actor"] == "admin endpoint" &&
			a["admin_reason"] == "moving to Redis" && a["users"] == 1.0 && a["devices"] == 1.0 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no admin_import audit entry with actor, reason and counts")
	}

	// The remembered device skips the code on Redis.
	rd := r.browser()
	rd.login("alice")
	rd.setCookie("2fa_device", device)
	if got := rd.get("/members/"); got.status != http.StatusOK {
		t.Fatalf("remembered device after the move: %d %q", got.status, got.location())
	}
	// The same authenticator.
	a := r.browser()
	a.login("alice")
	if got := a.get("/members/"); got.status != http.StatusFound || !strings.HasPrefix(got.location(), "/.2fa/challenge") {
		t.Fatalf("alice without a session after the move: %d %q, want the challenge", got.status, got.location())
	}
	if got := a.verify(r.code(secret, 0), "/members/", false); got.status != http.StatusSeeOther {
		t.Fatalf("the same authenticator after the move: %d %s", got.status, got.body)
	}
	r.nextStep()
	// A recovery code.
	c := r.browser()
	c.login("alice")
	if got := c.useRecovery(recovery[0], "/members/"); got.status != http.StatusSeeOther {
		t.Fatalf("a recovery code after the move: %d %s", got.status, got.body)
	}
	// bob is listed, not enrolled.
	out, code = twoFactorCLI(t, "members", "list", "--address", r.admin, "--not-enrolled")
	if code != 0 || !strings.Contains(out, "bob ") {
		t.Fatalf("members list on Redis: exit %d\n%s", code, out)
	}

	// The store holds members now: refused, naming merge; --merge keeps
	// the store's records.
	out, code = twoFactorCLI(t, "import", "--address", r.admin, file)
	if code != 2 || !strings.Contains(out, "merge: the store already holds members") {
		t.Fatalf("import into a store with members: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "import", "--address", r.admin, "--merge", "--json", file)
	var res struct {
		Written, Kept struct{ Users, Devices int }
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Written.Users != 0 || res.Kept.Users != 1 {
		t.Fatalf("import --merge: exit %d\n%s", code, out)
	}
}

// Bad backups through the API and the CLI: refused with 400 naming the
// line and field (exit 2), and an export cut short is refused as
// incomplete. A missing file is named.
func TestImportBadBackupThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}))
	enrolled(e, "alice")
	dir := t.TempDir()
	full := filepath.Join(dir, "full.jsonl")
	if out, code := twoFactorCLI(t, "export", "--address", e.admin, "--output", full); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	backup, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(backup), "\n")
	cut := filepath.Join(dir, "cut.jsonl")
	if err := os.WriteFile(cut, []byte(strings.Join(lines[:len(lines)-2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong.jsonl")
	if err := os.WriteFile(wrong, []byte(strings.Replace(string(backup), `"version":1`, `"version":9`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	// Another gateway, another store: an empty one.
	s := adminSetup(filepath.Join(t.TempDir(), "other.db"), []string{testKey})
	s.clock = e.clock
	o := start(t, s)
	for file, says := range map[string]string{
		cut:   "without its end line",
		wrong: "backup line 1: version: 9",
	} {
		out, code := twoFactorCLI(t, "import", "--address", o.admin, file)
		if code != 2 || !strings.Contains(out, says) {
			t.Errorf("import %s: exit %d\n%s\nwant exit 2 saying %q", filepath.Base(file), code, out, says)
		}
	}
	out, code := twoFactorCLI(t, "import", "--address", o.admin, "--json", filepath.Join(dir, "missing.jsonl"))
	if code != 2 || !strings.HasPrefix(out, `{"error":"file: `) {
		t.Fatalf("import of a missing file: exit %d\n%s", code, out)
	}
	resp, err := http.Post("http://"+o.admin+"/two-factor/import?merge=yes", "application/json", strings.NewReader(string(backup)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("merge=yes: %d, want 400", resp.StatusCode)
	}
	// After all that, the store is still empty: the good backup goes in
	// without merge.
	if out, code := twoFactorCLI(t, "import", "--address", o.admin, full); code != 0 || !strings.Contains(out, "Written: 1 member records") {
		t.Fatalf("import after the refusals: exit %d\n%s", code, out)
	}
}
