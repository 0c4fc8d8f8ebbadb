package tests

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// What follows a passkey through the rest of the gateway: the member's
// notices, the metrics, the admin's view and removal, export and import,
// and removal reaching every instance.

// passkeyIn is a policy with passkeys on: the relying party from
// site_url on the gateway's port, as passkeyPolicy.
func passkeyIn(policy string) string {
	return policy + "\n\tsite_url http://localhost:{PORT}\n\twebauthn\n"
}

// credentialMaterial are the forms a credential's ID may take in a file
// or an answer: base64 (both alphabets) and hex.
func credentialMaterial(a *testwebauthn.Authenticator) []string {
	return []string{base64.RawURLEncoding.EncodeToString(a.CredID), base64.StdEncoding.EncodeToString(a.CredID), hex.EncodeToString(a.CredID)}
}

// The member is told by email of a passkey added and removed, naming it,
// in the browser's language; an admin's removal through the CLI tells
// them too. members show lists the passkeys, the admin API's member
// answer carries them without credential material, and the removal is
// audited with the admin endpoint and the reason.
func TestPasskeyNotices(t *testing.T) {
	c := startCodesSetup(t, setup{admin: true, policy: passkeyIn(codePolicy)}, "")
	b := c.browser()
	b.login("alice")
	secret := b.enrol("/members/")
	blue := testwebauthn.New(c.origin())
	c.notice("alice@example.com", "A new way to verify was added")
	b.registerPasskey(blue, "/members/", "Blue YubiKey")
	m := c.notice("alice@example.com", "A passkey or security key was added")
	for _, want := range []string{`Added: "Blue YubiKey"`, "127.0.0.1", "/.2fa/methods"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("passkey added notice lacks %q:\n%s", want, m.Text)
		}
	}
	if n := c.count("alice@example.com", "A new way to verify was added"); n != 1 {
		t.Errorf("%d method-added notices, want the app's only: a passkey has its own", n)
	}

	// Removed from a Japanese browser, after signing in with the key.
	ja := c.browser()
	ja.lang = "ja"
	ja.login("alice")
	options, tok := ja.passkeyBegin("/members/")
	ja.passkeyFinish(blue, options, tok, "?return_to=%2Fmembers%2F").answer(t, http.StatusOK)
	id := credentialOf(t, c.env, "alice", "Blue YubiKey")
	tok = ja.csrf("/.2fa/methods")
	if r := ja.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {id}, "confirm": {"yes"}}); r.status != http.StatusSeeOther {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	m = c.notice("alice@example.com", "パスキーまたはセキュリティキーが削除されました")
	if !strings.Contains(m.Text, "「Blue YubiKey」") || !strings.Contains(m.Subject, "【Test Members】") {
		t.Errorf("Japanese removal notice:\n%s\n%s", m.Subject, m.Text)
	}

	// An admin removes a stolen one through the CLI.
	phone := testwebauthn.New(c.origin())
	ja.registerPasskey(phone, "/members/", "Work phone")
	out, code := twoFactorCLI(t, "members", "show", "--address", c.admin, "alice")
	id = credentialOf(t, c.env, "alice", "Work phone")
	if code != 0 || !strings.Contains(out, "PASSKEY") || !strings.Contains(out, id) || !strings.Contains(out, "Work phone") {
		t.Fatalf("members show: exit %d\n%s", code, out)
	}
	status, body, _ := adminGet(t, c.env, "/two-factor/members?id=alice")
	if status != http.StatusOK || !strings.Contains(body, `"credentials":[{"id":"`+id+`","name":"Work phone"`) || strings.Contains(body, "sealed") {
		t.Fatalf("the member's JSON: %d %s", status, body)
	}
	for _, s := range credentialMaterial(phone) {
		if strings.Contains(body, s) || strings.Contains(out, s) {
			t.Fatalf("the admin's view carries the credential ID %s", s)
		}
	}
	for _, bad := range []struct{ args, want string }{
		{"alice " + id, "reason: required"},
		{"alice --reason lost", "credential: required"},
		{"alice 00ff --reason lost", "credential: the member has no passkey"},
		{"nobody " + id + " --reason lost", "member: no second-factor record"},
	} {
		args := append([]string{"members", "remove-passkey", "--address", c.admin}, strings.Fields(bad.args)...)
		if out, code := twoFactorCLI(t, args...); code != 2 || !strings.Contains(out, bad.want) {
			t.Errorf("remove-passkey %s: exit %d\n%s", bad.args, code, out)
		}
	}
	out, code = twoFactorCLI(t, "members", "remove-passkey", "--address", c.admin, "alice", id, "--reason", "phone reported stolen")
	if code != 0 || !strings.Contains(out, `"Work phone" removed`) {
		t.Fatalf("remove-passkey: exit %d\n%s", code, out)
	}
	// The member site's address is not an enrolled one: the notice waits
	// for alice's next visit past the second factor, which tells her.
	if c.count("alice@example.com", "removed by an administrator") != 0 {
		t.Fatal("told before a visit")
	}
	c.nextStep()
	d := c.browser()
	d.login("alice")
	if r := d.verify(c.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify with the app: %d", r.status)
	}
	d.get("/members/")
	m = c.notice("alice@example.com", "removed by an administrator")
	if !strings.Contains(m.Text, `Removed: "Work phone"`) || !strings.Contains(m.Text, "an administrator of Test Members") {
		t.Errorf("admin removal notice:\n%s", m.Text)
	}
	found := false
	for _, a := range c.audit() {
		if a["event"] == "admin_passkey_removed" && a["result"] == "success" && a["user"] == "alice" &&
			a["actor"] == "admin endpoint" && a["admin_reason"] == "phone reported stolen" && a["credential"] == id[:8] {
			found = true
		}
	}
	if !found {
		t.Fatal("no admin_passkey_removed audit entry with the admin endpoint and the reason")
	}
	// It signs in nowhere now.
	if r := d.postJSON("/.2fa/webauthn/login/begin", d.csrfToken(t), nil); r.status != http.StatusConflict {
		t.Fatalf("sign-in begun after the admin's removal: %d %s", r.status, r.body)
	}
}

// passkeyInstances runs two gateway processes on one Redis, with
// passkeys on and one relying party for both (the site's public address,
// whichever instance serves the request), and an authenticator for it.
func passkeyInstances(t *testing.T) (a, b *instance, key *testwebauthn.Authenticator) {
	t.Helper()
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n", testKey, srv.Addr)
	const site = "http://localhost:18443"
	ins := startInstances(t, 2, global, defaultPolicy+"\n\tsite_url "+site+"\n\twebauthn\n", membersite.DemoMembers())
	return ins[0], ins[1], testwebauthn.New(site)
}

// credentialOf is the gateway's ID of the member's passkey named name,
// from the admin API (the settings page's forms carry the same).
func credentialOf(t *testing.T, e *env, member, name string) string {
	t.Helper()
	status, body, _ := adminGet(t, e, "/two-factor/members?id="+url.QueryEscape(member))
	var d struct {
		Credentials []struct{ ID, Name string } `json:"credentials"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil {
		t.Fatalf("member %s: %d %s", member, status, body)
	}
	for _, c := range d.Credentials {
		if c.Name == name {
			return c.ID
		}
	}
	t.Fatalf("member %s has no passkey %q: %s", member, name, body)
	return ""
}

// passkeyUser has alice set up the app and a passkey named name whose
// signature counter starts at counter, and sign in with the passkey in
// another browser, which it returns with the authenticator.
func passkeyUser(e *env, name string, counter uint32) (*testwebauthn.Authenticator, *browser) {
	e.t.Helper()
	key := testwebauthn.New(e.origin())
	key.Counter = counter
	b := e.browser()
	b.login("alice")
	b.enrol("/echo/x")
	b.registerPasskey(key, "/echo/x", name)
	c := e.browser()
	c.login("alice")
	options, tok := c.passkeyBegin("/echo/x")
	c.passkeyFinish(key, options, tok, "").answer(e.t, http.StatusOK)
	return key, c
}

// The metrics count passkeys by method: a sign-in, a refused answer (a
// phishing page's origin), a counter that went backwards (a cloned key),
// the registration and the member's removal.
func TestPasskeyMetrics(t *testing.T) {
	e := start(t, setup{admin: true, policy: passkeyPolicy})
	key, c := passkeyUser(e, "key", 10)
	key.Origin = "https://members.example.evil"
	options, tok := c.passkeyBegin("/echo/x")
	c.passkeyFinish(key, options, tok, "").answer(t, http.StatusUnauthorized)
	key.Origin = e.origin()
	clone := *key
	clone.Counter = 3
	options, tok = c.passkeyBegin("/echo/x")
	c.passkeyFinish(&clone, options, tok, "").answer(t, http.StatusUnauthorized)

	id := credentialOf(t, e, "alice", "key")
	tok = c.csrf("/.2fa/methods")
	if r := c.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {id}, "confirm": {"yes"}}); r.status != http.StatusSeeOther {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}

	families := scrape(t, e)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"caddy_two_factor_verifications_total", map[string]string{"method": "webauthn", "result": "ok"}, 1},
		{"caddy_two_factor_verifications_total", map[string]string{"method": "webauthn", "result": "wrong"}, 1},
		{"caddy_two_factor_verifications_total", map[string]string{"method": "webauthn", "result": "counter_regressed"}, 1},
		{"caddy_two_factor_enrolments_total", map[string]string{"method": "webauthn"}, 1},
		{"caddy_two_factor_enrolments_total", map[string]string{"method": "totp"}, 1},
		{"caddy_two_factor_removals_total", map[string]string{"method": "webauthn"}, 1},
	} {
		if got, ok := metricValue(families, want.name, want.labels); !ok || got != want.value {
			t.Errorf("%s%v = %v (found %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
	if got, ok := metricValue(families, "caddy_two_factor_verifications_total", map[string]string{"method": "other", "result": "error"}); ok {
		t.Errorf("a passkey event counted as another method: %v", got)
	}
}

// The admin member page lists the member's passkeys and removes one: a
// reason required, an unknown one named, a viewer refused; the removal
// is audited with the admin and the reason, and the member list filters
// and counts passkeys.
func TestAdminPagesPasskeys(t *testing.T) {
	s := adminPagesSetup(t)
	s.policy = passkeyPolicy
	e := start(t, s)
	admin, _ := enrolled(e, "admin")
	member, _ := enrolled(e, "alice")
	key := testwebauthn.New(e.origin())
	key.Flags |= testwebauthn.FlagBE | testwebauthn.FlagBS
	member.registerPasskey(key, "/members/", "Laptop <passkey>")
	id := credentialOf(t, e, "alice", "Laptop <passkey>")

	r := admin.get("/.2fa/admin/member?id=alice")
	for _, want := range []string{"Passkeys and security keys", "Laptop &lt;passkey&gt;", "Synced passkey (backed up)", "Not reported",
		"admin/member/remove-passkey", `value="` + id + `"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the member page lacks %q", want)
		}
	}
	for _, s := range credentialMaterial(key) {
		if strings.Contains(r.body, s) {
			t.Fatalf("the member page carries the credential ID %s", s)
		}
	}
	r = admin.get("/.2fa/admin/members?filter=webauthn")
	if r.status != http.StatusOK || !strings.Contains(r.body, "?id=alice") || strings.Contains(r.body, "?id=admin\"") {
		t.Fatalf("members with a passkey: %d\n%s", r.status, r.body)
	}

	if r := adminAct(admin, "remove-passkey", "alice", "", "credential", id); r.status != http.StatusBadRequest {
		t.Fatalf("without a reason: %d", r.status)
	}
	if r := adminAct(admin, "remove-passkey", "alice", "lost", "credential", "00ff"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "credential") {
		t.Fatalf("an unknown passkey: %d\n%s", r.status, r.body)
	}
	// alice is a viewer: she reads, she does not act.
	form := url.Values{"csrf": {member.csrf("/.2fa/logout")}, "member": {"alice"}, "reason": {"mine"}, "credential": {id}}
	if r := member.post("/.2fa/admin/member/remove-passkey", form); r.status != http.StatusForbidden {
		t.Fatalf("a viewer removing a passkey: %d", r.status)
	}
	options, tok := member.passkeyBegin("/members/")
	r = adminAct(admin, "remove-passkey", "alice", "laptop stolen", "credential", id)
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id=alice&done=remove-passkey" {
		t.Fatalf("remove: %d %q %s", r.status, r.location(), r.body)
	}
	assertActorAudit(t, e, "admin_passkey_removed", "laptop stolen")
	// The ceremony begun before is refused (alice has no passkey left),
	// and the member's session ended with it.
	if got := member.passkeyFinish(key, options, tok, "").answer(t, http.StatusConflict); got["error"] != "method_unavailable" {
		t.Fatalf("the removed passkey: %v", got)
	}
	sentTo(t, member, "/.2fa/challenge", "after the admin removed a passkey")
	r = admin.get("/.2fa/admin/member?id=alice&done=remove-passkey")
	if !strings.Contains(r.body, "no longer verifies") || strings.Contains(r.body, "Laptop &lt;passkey&gt;</td>") ||
		!strings.Contains(r.body, "Passkey or security key removed by an administrator") {
		t.Fatalf("after the removal, the member page:\n%s", r.body)
	}
}

// A member's passkeys survive an export and an import into a fresh
// gateway: the same authenticator signs in there, and its signature
// counter came along (a lower one is refused as a clone would be). The
// file holds no credential ID or public key in the clear.
func TestPasskeyExportImport(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	s := adminSetup(db, []string{testKey})
	s.policy = passkeyPolicy
	e := start(t, s)
	key, _ := passkeyUser(e, "Blue key", 40) // its counter at 41 now

	file := filepath.Join(t.TempDir(), "backup.jsonl")
	if out, code := twoFactorCLI(t, "export", "--address", e.admin, "--output", file, "--reason", "new server"); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	backup, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	x := key.Key.PublicKey.X.Bytes()
	for _, s := range append(credentialMaterial(key), base64.RawURLEncoding.EncodeToString(x), base64.StdEncoding.EncodeToString(x), hex.EncodeToString(x)) {
		if strings.Contains(string(backup), s) {
			t.Fatalf("the backup holds credential material in the clear: %s", s)
		}
	}

	s2 := adminSetup(filepath.Join(t.TempDir(), "fresh.db"), []string{testKey})
	s2.policy, s2.clock = passkeyPolicy, e.clock
	r := start(t, s2)
	if out, code := twoFactorCLI(t, "import", "--address", r.admin, "--reason", "new server", file); code != 0 {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	key.Origin = r.origin() // the same relying party (localhost), the new gateway's port
	clone := *key
	clone.Counter = 20
	d := r.browser()
	d.login("alice")
	options, tok := d.passkeyBegin("/members/")
	if got := d.passkeyFinish(&clone, options, tok, "").answer(t, http.StatusUnauthorized); got["error"] != "passkey_refused" {
		t.Fatalf("a counter below the exported one: %v", got)
	}
	options, tok = d.passkeyBegin("/members/")
	if got := d.passkeyFinish(key, options, tok, "?return_to=%2Fmembers%2F").answer(t, http.StatusOK); got["redirect"] != "/members/" {
		t.Fatalf("the same key after the import: %v", got)
	}
	if s, h := d.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("through the new gateway: %d %q", s, h.Get("X-2fa-Method"))
	}
}

// Two gateway processes on one Redis: a passkey the member removes on
// one is refused at once on the other, for a ceremony begun before the
// removal, and the session it opened there ends within the revocation
// bound.
func TestPasskeyRemovalReachesEveryInstance(t *testing.T) {
	a, b, key := passkeyInstances(t)

	onA := a.browser()
	onA.login("alice")
	onA.enrolApp("/echo/x")
	got := onA.registerPasskey(key, "/echo/x", "key")
	id := got["credential"]

	signedIn := b.browser()
	signedIn.login("alice")
	options, tok := signedIn.passkeyBegin("/echo/x")
	signedIn.passkeyFinish(key, options, tok, "").answer(t, http.StatusOK)
	if s, _ := signedIn.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("signed in on B: %d", s)
	}
	pending := b.browser()
	pending.login("alice")
	options, tok = pending.passkeyBegin("/echo/x")

	form := url.Values{"csrf": {onA.csrf("/.2fa/methods")}, "credential": {id}, "confirm": {"yes"}}
	removed := time.Now()
	if r := onA.post("/.2fa/webauthn/remove", form); r.status != http.StatusSeeOther {
		t.Fatalf("remove on A: %d %s", r.status, r.body)
	}
	// alice has the app left, no passkey: nothing to sign in with.
	if got := pending.passkeyFinish(key, options, tok, "").answer(t, http.StatusConflict); got["error"] != "method_unavailable" {
		t.Fatalf("the removed key on B, right after: %v", got)
	}
	if took := untilRefused(t, signedIn, "/echo/x", removed, 2*time.Second); took > 2*time.Second {
		t.Fatalf("the session the key opened on B lasted %v", took)
	}
	if r := pending.postJSON("/.2fa/webauthn/login/begin", pending.csrfToken(t), nil); r.status != http.StatusConflict {
		t.Fatalf("a new sign-in on B: %d %s", r.status, r.body)
	}
}
