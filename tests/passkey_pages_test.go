package tests

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// The member pages for passkeys through Caddy, without a browser: the
// challenge's passkey section, the enrolment page and its guards, the
// settings page's list with rename and remove. The script's own part is
// tests/browser_passkey_test.go's.

// passkeyPagesPolicy is passkeyPolicy with a path that accepts only the
// app.
const passkeyPagesPolicy = passkeyPolicy + `
	protect /app-only/* {
		methods totp
	}
`

// passkeySignIn signs the browser in with a passkey for returnTo.
func (b *browser) passkeySignIn(a *testwebauthn.Authenticator, returnTo string) {
	b.t.Helper()
	options, tok := b.passkeyBegin(returnTo)
	if got := b.passkeyFinish(a, options, tok, "?return_to="+url.QueryEscape(returnTo)).answer(b.t, http.StatusOK); got["redirect"] != returnTo {
		b.t.Fatalf("passkey sign-in: %v, want on to %s", got, returnTo)
	}
}

// firstPasskey registers a passkey as the member's first method and makes
// their recovery codes; it returns the credential's ID.
func (b *browser) firstPasskey(a *testwebauthn.Authenticator, name string) string {
	b.t.Helper()
	got := b.registerPasskey(a, "/echo/x", name)
	r := b.get(got["redirect"])
	if r.status != http.StatusOK {
		b.t.Fatalf("the recovery step after a first passkey: %d %s", r.status, r.body)
	}
	r = b.post("/.2fa/recovery", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/echo/x"}})
	if len(recoveryCodes(r.body)) != 10 {
		b.t.Fatalf("no recovery codes after a first passkey: %d %s", r.status, r.body)
	}
	return got["credential"]
}

// passkeySection is the challenge's passkey section, "" when it has none.
func passkeySection(body string) string {
	i := strings.Index(body, `<section id="passkey"`)
	if i < 0 {
		return ""
	}
	return body[i : i+strings.Index(body[i:], "</section>")]
}

// The challenge shows the passkey first, above the code form, only to a
// member with a passkey and where the path accepts one; with only a
// passkey, the page says it needs JavaScript and offers the recovery code.
func TestPasskeyChallengePage(t *testing.T) {
	e := start(t, setup{policy: passkeyPagesPolicy})
	key := testwebauthn.New(e.origin())
	b := e.browser()
	b.login("alice")
	b.firstPasskey(key, "YubiKey")

	c := e.browser()
	c.login("alice")
	r := c.get("/.2fa/challenge?return_to=%2Fecho%2Fx")
	section := passkeySection(r.body)
	if r.status != http.StatusOK || section == "" || !strings.Contains(section, " hidden ") ||
		!strings.Contains(section, `<h2 id="passkey-heading">Use your passkey or security key</h2>`) ||
		!strings.Contains(section, `<button type="button" id="passkey-signin">`) ||
		!strings.Contains(section, `<input type="checkbox" name="remember" value="1">`) {
		t.Fatalf("a member with only a passkey: %d, passkey section:\n%s", r.status, section)
	}
	for _, want := range []string{"static/webauthn.js", "<noscript>", "needs JavaScript", "challenge?method=recovery&amp;return_to=%2Fecho%2Fx"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("a member with only a passkey: the challenge lacks %q", want)
		}
	}
	if strings.Contains(r.body, `name="code"`) {
		t.Error("a member with only a passkey gets a code form")
	}

	// With the app too: the passkey first, the app's form below it as
	// before, and no "needs JavaScript".
	c.passkeySignIn(key, "/echo/x")
	c.enrol("/echo/x")
	d := e.browser()
	d.login("alice")
	r = d.get("/.2fa/challenge?return_to=%2Fecho%2Fx")
	pk, code := strings.Index(r.body, `<section id="passkey"`), strings.Index(r.body, `name="code"`)
	if pk < 0 || code < 0 || pk > code || strings.Contains(r.body, "<noscript>") {
		t.Fatalf("passkey and app: the passkey at %d, the code at %d, want the passkey first:\n%s", pk, code, r.body)
	}
	// A path that accepts only the app: no passkey there.
	r = d.get("/.2fa/challenge?return_to=%2Fapp-only%2Fx")
	if strings.Contains(r.body, `id="passkey"`) || strings.Contains(r.body, "webauthn.js") || !strings.Contains(r.body, `name="code"`) {
		t.Fatalf("a path accepting only the app offers the passkey:\n%s", r.body)
	}
	// Where remembering is off, the passkey comes without the box.
	r = d.get("/.2fa/challenge?return_to=%2Fadmin%2Fx")
	if s := passkeySection(r.body); s == "" || strings.Contains(s, `name="remember"`) {
		t.Fatalf("remember_device off: passkey section:\n%s", s)
	}

	// A member without a passkey sees the page as before.
	bob := e.browser()
	bob.login("bob")
	bob.enrol("/echo/x")
	other := e.browser()
	other.login("bob")
	r = other.get("/.2fa/challenge?return_to=%2Fecho%2Fx")
	if r.status != http.StatusOK || strings.Contains(r.body, `id="passkey"`) || strings.Contains(r.body, "webauthn.js") {
		t.Fatalf("bob, without a passkey: %d\n%s", r.status, r.body)
	}
}

// The method picker offers passkeys first when they are on; their page
// keeps the enrolment guards; the authenticator is told the member's
// email address.
func TestPasskeyEnrolPage(t *testing.T) {
	e := start(t, setup{policy: passkeyPagesPolicy})
	b := e.browser()
	b.login("alice")
	r := b.get("/.2fa/enrol?return_to=%2Fecho%2Fx")
	pk, app := strings.Index(r.body, `href="/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx"`), strings.Index(r.body, "Set up an authenticator app")
	if r.status != http.StatusOK || pk < 0 || app < 0 || pk > app {
		t.Fatalf("the picker: %d, passkey at %d, app at %d:\n%s", r.status, pk, app, r.body)
	}
	b.header = http.Header{"User-Agent": {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}}
	r = b.get("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx")
	for _, want := range []string{
		`<form id="passkey-register" method="post" hidden`,
		`<input id="passkey-name" name="name" type="text" maxlength="64" required autocomplete="off" value="Passkey on Windows"`,
		`<button type="submit" id="passkey-create">`, `id="passkey-error"`, "static/webauthn.js",
	} {
		if r.status != http.StatusOK || !strings.Contains(r.body, want) {
			t.Fatalf("the passkey page: %d, lacks %q:\n%s", r.status, want, r.body)
		}
	}
	b.header = nil
	r = b.get("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx")
	if !strings.Contains(r.body, `value="Passkey"`) {
		t.Errorf("no system known: want the name \"Passkey\"")
	}
	b.lang = "ja"
	r = b.get("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx")
	if !strings.Contains(r.body, "パスキーまたはセキュリティキーを設定") || !strings.Contains(r.body, `value="パスキー"`) {
		t.Errorf("ja: the passkey page is not in Japanese:\n%s", r.body)
	}
	b.lang = "en"

	// The name the authenticator shows: the identity's email address.
	tok := b.csrfToken(t)
	r = b.postJSON("/.2fa/webauthn/register/begin?return_to=%2Fecho%2Fx", tok, nil)
	var options struct {
		PublicKey struct {
			User struct {
				Name        string `json:"name"`
				DisplayName string `json:"displayName"`
			} `json:"user"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(r.body), &options); err != nil || options.PublicKey.User.Name != "alice@example.com" ||
		options.PublicKey.User.DisplayName != "alice@example.com" {
		t.Fatalf("register/begin: %v, user %+v, want alice's email address", err, options.PublicKey.User)
	}

	// Where the path accepts only the app: back to the picker, which does
	// not offer them.
	r = b.get("/.2fa/enrol/webauthn?return_to=%2Fapp-only%2Fx")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/enrol?return_to=%2Fapp-only%2Fx" {
		t.Fatalf("a path accepting only the app: %d %q", r.status, r.location())
	}
	if r = b.get("/.2fa/enrol?return_to=%2Fapp-only%2Fx"); strings.Contains(r.body, "enrol/webauthn") {
		t.Fatal("the picker offers a passkey where the path accepts only the app")
	}

	// An enrolled member adds one only after a recent code, and comes
	// back to this page after it.
	b.enrol("/echo/x")
	e.clock.Advance(11 * 60e9)
	r = b.get("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx&from=settings")
	want := "/.2fa/challenge?return_to=" + url.QueryEscape("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx")
	if r.status != http.StatusSeeOther || r.location() != want {
		t.Fatalf("without a recent code: %d %q, want %q", r.status, r.location(), want)
	}
	// Passkeys off (one Caddy per test process: this one replaces e's).
	off := start(t, setup{})
	o := off.browser()
	o.login("alice")
	if r := o.get("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx"); r.status != http.StatusSeeOther {
		t.Fatalf("passkeys off: %d", r.status)
	}
	if r := o.get("/.2fa/enrol?return_to=%2Fecho%2Fx"); strings.Contains(r.body, "enrol/webauthn") || strings.Contains(r.body, "Passkey") {
		t.Fatal("passkeys off: the picker offers them")
	}
}

// After a first passkey the recovery-code step speaks of the passkey; one
// added from the settings page leads back there with a confirmation.
func TestPasskeyFirstCodesAndAdded(t *testing.T) {
	e := start(t, setup{policy: passkeyPagesPolicy})
	key := testwebauthn.New(e.origin())
	b := e.browser()
	b.login("alice")
	got := b.registerPasskey(key, "/echo/x", "YubiKey")
	r := b.get(got["redirect"])
	for _, want := range []string{"<h1>Make your recovery codes</h1>", "Your passkey or security key is set up", "If you ever lose your passkey"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the recovery step after a first passkey lacks %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "You signed in with a recovery code") {
		t.Error("the first set is worded as a replacement after a recovery code")
	}
	r = b.post("/.2fa/recovery", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/echo/x"}})
	if !strings.Contains(r.body, "If your passkey or security key is ever out of reach") || len(recoveryCodes(r.body)) != 10 {
		t.Errorf("the first codes after a passkey:\n%s", r.body)
	}

	// A second one from the settings page.
	second := testwebauthn.New(e.origin())
	tok := b.csrf("/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx&from=settings")
	q := "?return_to=%2Fecho%2Fx&from=settings"
	r = b.postJSON("/.2fa/webauthn/register/begin"+q, tok, nil)
	cred, err := second.Create([]byte(r.body))
	if err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	got = b.postJSON("/.2fa/webauthn/register/finish"+q+"&name=Phone", tok, cred).answer(t, http.StatusOK)
	if got["redirect"] != "/.2fa/methods?return_to=%2Fecho%2Fx&added=webauthn" {
		t.Fatalf("added from the settings page: %v", got)
	}
	r = b.get(got["redirect"])
	if !strings.Contains(r.body, "Your passkey or security key is set up: use it to verify from now on.") ||
		strings.Count(r.body, `<li class="passkey" data-credential=`) != 2 {
		t.Fatalf("the settings page after adding: %d\n%s", r.status, r.body)
	}
}

// The settings page lists each passkey; rename and remove work from it;
// the last method keeps no "Remove", and a forced removal is refused with
// the reason shown.
func TestPasskeySettingsPage(t *testing.T) {
	e := start(t, setup{policy: passkeyPagesPolicy})
	key := testwebauthn.New(e.origin())
	b := e.browser()
	b.login("alice")
	id := b.firstPasskey(key, "YubiKey")

	r := b.get("/.2fa/methods?return_to=%2Fecho%2Fx")
	li := strings.Index(r.body, `<li class="passkey" data-credential="`+id+`">`)
	if r.status != http.StatusOK || li < 0 {
		t.Fatalf("settings: %d, no element for %s:\n%s", r.status, id, r.body)
	}
	item := r.body[li : li+strings.Index(r.body[li:], "</li>")]
	for _, want := range []string{"<h3 id=\"passkey-" + id + "\">YubiKey</h3>", "Added <time", "Not used yet",
		`action="/.2fa/webauthn/rename"`, "This is your only way to verify"} {
		if !strings.Contains(item, want) {
			t.Errorf("the passkey's entry lacks %q:\n%s", want, item)
		}
	}
	if strings.Contains(item, `action="/.2fa/webauthn/remove"`) {
		t.Error("the only method offers Remove")
	}
	if !strings.Contains(r.body, `href="/.2fa/enrol/webauthn?return_to=%2Fecho%2Fx&amp;from=settings"`) {
		t.Error("no link to add a passkey")
	}

	// Forced anyway: refused, with the reason on the page.
	tok := inputValue(r.body, "csrf")
	r = b.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {id}, "confirm": {"yes"}, "from": {"settings"}})
	if r.status != http.StatusConflict || !strings.Contains(r.body, "This is your only way to verify, and this site requires one.") ||
		strings.Count(r.body, `<li class="passkey"`) != 1 {
		t.Fatalf("removing the only method: %d\n%s", r.status, r.body)
	}

	// Rename: a bad name names the problem; a good one shows.
	r = b.post("/.2fa/webauthn/rename", url.Values{"csrf": {tok}, "credential": {id}, "name": {strings.Repeat("x", 65)}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Give it a name of 1 to 64 characters") {
		t.Fatalf("a name too long: %d\n%s", r.status, r.body)
	}
	// A direction override would show "Phone" as "enohP".
	r = b.post("/.2fa/webauthn/rename", url.Values{"csrf": {tok}, "credential": {id}, "name": {"My \u202eenohP"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "invisible formatting characters") {
		t.Fatalf("a name with a direction override: %d\n%s", r.status, r.body)
	}
	r = b.post("/.2fa/webauthn/rename", url.Values{"csrf": {tok}, "credential": {id}, "name": {"Blue <key>"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	r = b.get(r.location())
	if !strings.Contains(r.body, "<h3 id=\"passkey-"+id+"\">Blue &lt;key&gt;</h3>") || !strings.Contains(r.body, "The passkey or security key was renamed.") {
		t.Fatalf("after renaming:\n%s", r.body)
	}

	// With the app too, it can go, in a session verified by a passkey.
	b.enrol("/echo/x")
	options, tok := b.passkeyBegin("/echo/x")
	b.passkeyFinish(key, options, tok, "?return_to=%2Fecho%2Fx").answer(t, http.StatusOK)
	r = b.get("/.2fa/methods?return_to=%2Fecho%2Fx")
	if !strings.Contains(r.body, `action="/.2fa/webauthn/remove"`) {
		t.Fatalf("with two methods, no Remove:\n%s", r.body)
	}
	r = b.post("/.2fa/webauthn/remove", url.Values{"csrf": {inputValue(r.body, "csrf")}, "credential": {id}, "confirm": {"yes"}, "return_to": {"/echo/x"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	r = b.get(r.location())
	if strings.Contains(r.body, `<li class="passkey"`) || !strings.Contains(r.body, "The passkey or security key was removed.") ||
		!strings.Contains(r.body, "You have no passkey or security key yet.") {
		t.Fatalf("after removing:\n%s", r.body)
	}
}
