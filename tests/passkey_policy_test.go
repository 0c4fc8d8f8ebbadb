package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
	"github.com/caddy-twofactor/twofactor/session"
)

// Paths that accept only passkeys and security keys (methods webauthn),
// and admin pages that do (admin_methods webauthn), through Caddy, with
// the software authenticator answering the JSON routes as a page's
// script would.

// strongPolicy has /echo/strong/ accept only passkeys, remembered
// devices allowed; the rest of /echo/ accepts every method.
const strongPolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /echo/strong/* {
		methods webauthn
		remember_device 30d
	}
	protect /members/* /echo/* {
		remember_device 30d
	}
	site_name "Test Members"
	site_url http://localhost:{PORT}
	webauthn
`

const (
	strongPath = "/echo/strong/x"
	strongBack = "return_to=%2Fecho%2Fstrong%2Fx"
)

// startStrong starts a gateway with strongPolicy, where alice has signed
// in with the app she has just set up in b; key is an authenticator for
// the site, not registered yet.
func startStrong(t *testing.T) (e *env, key *testwebauthn.Authenticator, b *browser, secret string) {
	t.Helper()
	e = start(t, setup{policy: strongPolicy})
	b = e.browser()
	b.login("alice")
	return e, testwebauthn.New(e.origin()), b, b.enrol("/echo/x")
}

// refusedHere checks that b does not reach path: a page load goes to the
// challenge for it, a script's request gets 401, and the upstream sees
// neither.
func (b *browser) refusedHere(path, what string) {
	b.t.Helper()
	r := b.get(path)
	if r.status != http.StatusFound || r.location() != "/.2fa/challenge?return_to="+url.QueryEscape(path) || strings.Contains(r.body, `"headers"`) {
		b.t.Fatalf("%s, a page load: %d %q, want the challenge", what, r.status, r.location())
	}
	b.header.Set("Sec-Fetch-Mode", "cors")
	defer b.header.Del("Sec-Fetch-Mode")
	if r := b.get(path); r.status != http.StatusUnauthorized || strings.Contains(r.body, `"headers"`) {
		b.t.Fatalf("%s, a script: %d %s, want 401", what, r.status, r.body)
	}
}

// A session verified with the app passes ordinary paths but not a
// passkeys-only one: the challenge there says a passkey is needed and
// refuses an app code posted anyway; after a passkey sign-in the
// upstream is told webauthn.
func TestPasskeyOnlyPathRefusesAnAppSession(t *testing.T) {
	e, key, b, secret := startStrong(t)
	if s, h := b.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "totp" {
		t.Fatalf("an ordinary path after the app: %d %q", s, h.Get("X-2fa-Method"))
	}
	b.refusedHere(strongPath, "a session verified with the app")

	// The challenge says why, and a member with only the app verifies
	// with it and is then asked to add a passkey.
	page := b.get("/.2fa/challenge?" + strongBack)
	if page.status != http.StatusOK || !strings.Contains(page.body, "accepts only a passkey or security key") {
		t.Fatalf("the challenge for a passkeys-only path, to a member without one: %d\n%s", page.status, page.body)
	}
	r := b.verify(e.code(secret, 0), strongPath, true)
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/enrol?"+strongBack {
		t.Fatalf("an app code for a passkeys-only path: %d %q, want enrolment", r.status, r.location())
	}
	if hasDeviceCookie(b) {
		t.Fatal("a device was remembered after the app on a path that accepts only passkeys")
	}
	b.refusedHere(strongPath, "a fresh app session")

	// The passkey, added on the way (the app code was the step-up), opens
	// the path at once.
	got := b.registerPasskey(key, strongPath, "key")
	if got["redirect"] != strongPath {
		t.Fatalf("a passkey added for a passkeys-only path: %v", got)
	}
	if s, h := b.upstream(strongPath); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" || h.Get("X-2fa-User") != "alice" {
		t.Fatalf("after the passkey: %d %q %q", s, h.Get("X-2fa-Method"), h.Get("X-2fa-User"))
	}

	// Another browser: the app opens /echo/, not /echo/strong/, where
	// the challenge offers the passkey and refuses an app code.
	c := e.browser()
	c.login("alice")
	e.nextStep()
	if r := c.verify(e.code(secret, 0), "/echo/x", false); r.status != http.StatusSeeOther || r.location() != "/echo/x" {
		t.Fatalf("the app on an ordinary path: %d %q", r.status, r.location())
	}
	c.refusedHere(strongPath, "another browser's app session")
	e.nextStep()
	tok := c.csrf("/.2fa/challenge?" + strongBack)
	r = c.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {strongPath}, "method": {"totp"}, "code": {e.code(secret, 0)}})
	if r.status != http.StatusBadRequest {
		t.Fatalf("an app code posted for a passkeys-only path by a member with a passkey: %d %q", r.status, r.location())
	}
	c.refusedHere(strongPath, "after a refused app code")
	options, tok := c.passkeyBegin(strongPath)
	got = c.passkeyFinish(key, options, tok, "?"+strongBack).answer(t, http.StatusOK)
	if got["redirect"] != strongPath {
		t.Fatalf("a passkey sign-in for a passkeys-only path: %v", got)
	}
	if s, h := c.upstream(strongPath); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("signed in with the passkey: %d %q", s, h.Get("X-2fa-Method"))
	}
	if s, h := c.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("an ordinary path after the passkey: %d %q", s, h.Get("X-2fa-Method"))
	}
}

// A device remembered after the app passes an ordinary path but not a
// passkeys-only one, where its refusal is audited and it stays good
// elsewhere; one remembered after a passkey passes both.
func TestPasskeyOnlyPathRememberedDevices(t *testing.T) {
	e, key, b, secret := startStrong(t)
	b.registerPasskey(key, "/echo/x", "key")

	app := e.browser()
	app.login("alice")
	if r := app.verify(e.code(secret, 0), "/echo/x", true); r.status != http.StatusSeeOther {
		t.Fatalf("the app, remembered: %d", r.status)
	}
	device := app.cookie(session.DeviceCookie)
	if device == nil {
		t.Fatal("no remembered device after the app")
	}
	d := e.browser()
	d.login("alice")
	d.setCookie(device.Name, device.Value)
	d.refusedHere(strongPath, "a device remembered after the app")
	if n := auditOf(e, "device_used", "alice", map[string]any{"result": "refused", "reason": "method_not_accepted", "method": "totp"}); n != 2 {
		t.Fatalf("%d refusals of the device audited, want 2", n)
	}
	if s, h := d.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "device" {
		t.Fatalf("the same device on an ordinary path: %d %q", s, h.Get("X-2fa-Method"))
	}
	// The session the device began is held to the device's method too.
	d.refusedHere(strongPath, "the session a device remembered after the app began")

	pk := e.browser()
	pk.login("alice")
	options, tok := pk.passkeyBegin(strongPath)
	pk.passkeyFinish(key, options, tok, "?"+strongBack+"&remember=1").answer(t, http.StatusOK)
	device = pk.cookie(session.DeviceCookie)
	if device == nil {
		t.Fatal("no remembered device after the passkey")
	}
	for _, path := range []string{strongPath, "/echo/x"} {
		f := e.browser()
		f.login("alice")
		f.setCookie(device.Name, device.Value)
		if s, h := f.upstream(path); s != http.StatusOK || h.Get("X-2fa-Method") != "device" {
			t.Fatalf("a device remembered after the passkey on %s: %d %q", path, s, h.Get("X-2fa-Method"))
		}
	}
}

// A recovery code still lets a member in on a passkeys-only path: to the
// new set of codes, with the way to the settings page, where a passkey
// may be added; then through.
func TestPasskeyOnlyPathRecoveryCode(t *testing.T) {
	e := start(t, setup{policy: strongPolicy})
	alice, _ := enrolled(e, "alice")
	codes := alice.recovery

	x := e.browser()
	x.login("alice")
	r := x.useRecovery(codes[0], strongPath)
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/recovery?"+strongBack {
		t.Fatalf("a recovery code for a passkeys-only path: %d %q", r.status, r.location())
	}
	page := x.get(r.location())
	if page.status != http.StatusOK || !strings.Contains(page.body, `href="/.2fa/methods?`+strongBack) {
		t.Fatalf("the renewal step, with the way to the settings page: %d\n%s", page.status, page.body)
	}
	x.renewRecovery(strongPath)
	if s, h := x.upstream(strongPath); s != http.StatusOK || h.Get("X-2fa-Method") != "recovery" {
		t.Fatalf("after the new set: %d %q", s, h.Get("X-2fa-Method"))
	}
	if p := x.get("/.2fa/methods?" + strongBack); p.status != http.StatusOK {
		t.Fatalf("the settings page after a recovery code: %d %q", p.status, p.location())
	}
	got := x.registerPasskey(testwebauthn.New(e.origin()), strongPath, "new key")
	if got["credential"] == "" {
		t.Fatalf("a passkey added after the recovery code: %v", got)
	}
	if s, h := x.upstream(strongPath); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("after the passkey: %d %q", s, h.Get("X-2fa-Method"))
	}
}

// A member with no second factor is sent from a passkeys-only path to
// enrolment, may register a passkey as their first method, and passes.
func TestPasskeyOnlyPathFirstEnrolment(t *testing.T) {
	e := start(t, setup{policy: strongPolicy})
	b := e.browser()
	b.login("bob")
	if r := b.get(strongPath); r.status != http.StatusFound || r.location() != "/.2fa/enrol?"+strongBack {
		t.Fatalf("a member without a second factor: %d %q", r.status, r.location())
	}
	got := b.registerPasskey(testwebauthn.New(e.origin()), strongPath, "key")
	if got["redirect"] != "/.2fa/recovery?"+strongBack {
		t.Fatalf("a first passkey: %v", got)
	}
	b.renewRecovery(strongPath)
	if s, h := b.upstream(strongPath); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("after a first passkey: %d %q", s, h.Get("X-2fa-Method"))
	}
}

// admin_methods webauthn: an admin with only the app is told to add a
// passkey, a fresh app session opens nothing, a passkey sign-in opens the
// pages, and the admin API on Caddy's admin endpoint is not affected.
func TestAdminPagesWithPasskeysOnly(t *testing.T) {
	s := adminPagesSetup(t, "admin_methods webauthn")
	s.policy = passkeyPolicy
	e := start(t, s)
	key := testwebauthn.New(e.origin())
	admin := e.browser()
	admin.login("admin")
	secret := admin.enrol("/members/")
	r := admin.get("/.2fa/admin/")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "need a passkey or security key") ||
		!strings.Contains(r.body, "/.2fa/methods?return_to=%2F.2fa%2Fadmin%2F") {
		t.Fatalf("an admin with only the app: %d\n%s", r.status, r.body)
	}

	// With a passkey added, a session verified with the app, however
	// fresh, opens nothing, and the challenge on the way refuses an app
	// code; a passkey sign-in opens the pages.
	admin.registerPasskey(key, "/members/", "admin key")
	other := e.browser()
	other.login("admin")
	if r := other.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther || r.location() != "/members/" {
		t.Fatalf("the app on a member path: %d %q", r.status, r.location())
	}
	r = other.get("/.2fa/admin/")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/challenge?return_to=%2F.2fa%2Fadmin%2F" {
		t.Fatalf("a fresh app session on the admin pages: %d %q, want the challenge", r.status, r.location())
	}
	e.nextStep()
	if r := other.verify(e.code(secret, 0), "/.2fa/admin/", false); r.status != http.StatusBadRequest {
		t.Fatalf("an app code on the way to the admin pages: %d %q", r.status, r.location())
	}
	if n := auditOf(e, "verify", "admin", map[string]any{"method": "totp"}); n != 1 {
		t.Fatalf("%d app verifications of the admin, want 1: the code for the admin pages is refused unchecked", n)
	}
	options, tok := other.passkeyBegin("/.2fa/admin/")
	got := other.passkeyFinish(key, options, tok, "?return_to=%2F.2fa%2Fadmin%2F").answer(t, http.StatusOK)
	if got["redirect"] != "/.2fa/admin/" {
		t.Fatalf("a passkey sign-in for the admin pages: %v", got)
	}
	if r := other.get("/.2fa/admin/"); r.status != http.StatusOK {
		t.Fatalf("the admin pages after a passkey: %d %q", r.status, r.location())
	}

	// A passkey added after a reset, with the password alone (what a
	// stolen password can do once an admin was tricked into a reset),
	// opens nothing until another admin confirms it. (An admin with a
	// proven app cannot add one after a recovery code at all:
	// TestPlantedPasskeyRefusedForAGuardedAdmin.)
	enrolled(e, "alice")
	if status, msg := adminPost(t, e, "/two-factor/members/reset", `{"member": "alice", "reason": "lost phone, ID checked"}`); status/100 != 2 {
		t.Fatalf("resetting alice: %d %s", status, msg)
	}
	x := e.browser()
	x.login("alice")
	aliceKey := testwebauthn.New(e.origin())
	x.registerPasskey(aliceKey, "/members/", "alice key")
	r = x.get("/.2fa/admin/")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "another administrator must confirm it") {
		t.Fatalf("an admin's passkey added after a recovery code: %d\n%s", r.status, r.body)
	}
	if n := auditOf(e, "admin_refused", "alice", map[string]any{"reason": "app_unproven"}); n != 1 {
		t.Fatalf("%d refusals of the unproven passkey audited, want 1", n)
	}
	page := other.get("/.2fa/admin/member?id=alice").body
	if !strings.Contains(page, "alice key <span class=\"badge locked\">Not yet confirmed for the admin pages</span>") ||
		!strings.Contains(page, "Confirm the authenticator app and passkeys") {
		t.Fatalf("the admin member page does not mark alice's unproven passkey:\n%s", page)
	}
	if r := adminAct(other, "confirm-app", "alice", "called her back"); r.status != http.StatusSeeOther {
		t.Fatalf("confirming alice's passkey: %d %s", r.status, r.body)
	}
	// The session from the passkey while it was unproven stays so: a
	// fresh sign-in with it opens the pages.
	if r := x.get("/.2fa/admin/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("alice's session from her passkey while unproven, after the confirmation: %d %q", r.status, r.location())
	}
	options, tok = x.passkeyBegin("/.2fa/admin/")
	x.passkeyFinish(aliceKey, options, tok, "?return_to=%2F.2fa%2Fadmin%2F").answer(t, http.StatusOK)
	if r := x.get("/.2fa/admin/"); r.status != http.StatusOK {
		t.Fatalf("alice's confirmed passkey: %d %q", r.status, r.location())
	}
	if page := other.get("/.2fa/admin/member?id=alice").body; strings.Contains(page, "Not yet confirmed") {
		t.Fatalf("alice's passkey still marked unproven once confirmed:\n%s", page)
	}

	// The admin endpoint is Caddy's, guarded by its own access: no second
	// factor there.
	resp, err := http.Get("http://" + e.admin + "/two-factor/members")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the admin API with admin_methods webauthn: %d", resp.StatusCode)
	}
}
