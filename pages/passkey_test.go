package pages

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// passkeyErrorKeys are the keys static/webauthn.js may need a message
// for: those the webauthn JSON routes answer with (flow/webauthn.go), and
// the script's own for a cancelled ceremony, an authenticator already
// registered and anything else.
var passkeyErrorKeys = []string{
	"passkey_refused", "passkey_expired", "passkey_not_allowed", "too_many_passkeys", "passkey_name_invalid",
	"locked", "too_many_attempts", "method_unavailable", "unavailable",
	"passkey_cancelled", "passkey_exists", "passkey_failed",
}

var passkeyMessage = regexp.MustCompile(`<li data-key="([a-z_]+)">([^<]*)</li>`)

// checkPasskeyMessages checks that a page with a passkey part carries a
// message for every key the script may show, in the page's language, and
// the box it shows them in.
func checkPasskeyMessages(t *testing.T, where, body string) {
	t.Helper()
	got := map[string]string{}
	for _, m := range passkeyMessage.FindAllStringSubmatch(body, -1) {
		got[m[1]] = m[2]
	}
	for _, k := range passkeyErrorKeys {
		if strings.TrimSpace(got[k]) == "" {
			t.Errorf("%s: no message for the passkey script's key %q", where, k)
		}
	}
	if !strings.Contains(body, `<ul id="passkey-messages" hidden>`) ||
		!strings.Contains(body, `<p class="error" id="passkey-error" role="alert" hidden></p>`) {
		t.Errorf("%s: no hidden message list or #passkey-error alert", where)
	}
}

// The challenge offers the passkey first, in a section the script shows,
// with its own "remember" box where the rule allows it; without a
// passkey, neither the section nor the script.
func TestPasskeyChallenge(t *testing.T) {
	r := newRenderer(t, "")
	for _, lang := range languages {
		p := fullPage(lang)
		p.Method, p.CodeSent, p.Error = "totp", false, ""
		body := render(t, r, "challenge", p, false).Body.String()
		section := strings.Index(body, `<section id="passkey" class="passkey" aria-labelledby="passkey-heading" hidden data-begin="/.2fa/webauthn/login/begin" data-finish="/.2fa/webauthn/login/finish">`)
		code := strings.Index(body, `<form method="post" action="/.2fa/challenge">`)
		if section < 0 || code < 0 || section > code {
			t.Fatalf("%s: the passkey section (at %d) is not hidden and before the code form (at %d):\n%s", lang, section, code, body)
		}
		end := section + strings.Index(body[section:], "</section>")
		part := body[section:end]
		for _, want := range []string{
			`<h2 id="passkey-heading">` + p.T("passkey_use") + `</h2>`,
			`<button type="button" id="passkey-signin">`,
			`<input type="checkbox" name="remember" value="1">`,
			`<input type="hidden" name="csrf" value="csrf-token-value">`,
			`<input type="hidden" name="return_to" value="/members/page?x=1">`,
			html.EscapeString(p.T("passkey_other_below")),
		} {
			if !strings.Contains(part, want) {
				t.Errorf("%s: the passkey section lacks %q:\n%s", lang, want, part)
			}
		}
		if lang == "ja" && !strings.Contains(part, "パスキーまたはセキュリティキーを使う") {
			t.Errorf("ja: heading not in Japanese:\n%s", part)
		}
		// The code form and the other ways stay as without a passkey.
		if !strings.Contains(body, `id="other-ways"`) || !strings.Contains(body, `name="code"`) {
			t.Errorf("%s: the other methods are gone with a passkey", lang)
		}

		p.PasskeyRemember = false
		body = render(t, r, "challenge", p, false).Body.String()
		if strings.Count(body, `name="remember"`) != 1 {
			t.Errorf("%s: without passkey remembering, want only the code form's box", lang)
		}

		p.Passkey = false
		body = render(t, r, "challenge", p, false).Body.String()
		if strings.Contains(body, `id="passkey"`) || strings.Contains(body, "webauthn.js") {
			t.Errorf("%s: a member without a passkey gets the passkey section or script", lang)
		}
	}
}

// A passkey as the only method here: no code form, and without the script
// the page says the passkey needs it and offers the recovery code.
func TestPasskeyOnlyChallenge(t *testing.T) {
	r := newRenderer(t, "")
	for _, lang := range languages {
		p := fullPage(lang)
		p.Method, p.Methods, p.PasskeyOnly, p.CodeSent, p.ShowRemember, p.Error = "webauthn", nil, true, false, false, ""
		body := render(t, r, "challenge", p, false).Body.String()
		for _, want := range []string{
			`<noscript><p class="notice">` + html.EscapeString(p.T("passkey_needs_js")) + `</p></noscript>`,
			`<p class="notice" id="passkey-unsupported" hidden>`,
			`challenge?method=recovery&amp;return_to=`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the passkey-only challenge lacks %q", lang, want)
			}
		}
		if strings.Contains(body, `name="code"`) || strings.Contains(body, html.EscapeString(p.T("passkey_other_below"))) {
			t.Errorf("%s: a code form or \"other methods below\" with a passkey only", lang)
		}
	}
}

// The enrolment form keeps the ids the script and the browser tests use,
// hidden until the script shows it.
func TestPasskeyEnrolPage(t *testing.T) {
	r := newRenderer(t, "")
	for _, lang := range languages {
		p := fullPage(lang)
		p.Error = ""
		p.FromSettings = true
		body := render(t, r, "enrol_webauthn", p, false).Body.String()
		for _, want := range []string{
			`<form id="passkey-register" method="post" hidden data-begin="/.2fa/webauthn/register/begin" data-finish="/.2fa/webauthn/register/finish">`,
			`<input id="passkey-name" name="name" type="text" maxlength="64" required autocomplete="off" value="Passkey on Windows" aria-describedby="passkey-name-hint">`,
			`<button type="submit" id="passkey-create">`,
			`<input type="hidden" name="from" value="settings">`,
			`<noscript><p class="notice">` + html.EscapeString(p.T("passkey_needs_js_enrol")) + `</p></noscript>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the passkey enrolment page lacks %q:\n%s", lang, want, body)
			}
		}
		// The picker offers passkeys first when they are on.
		p.Methods = []MethodOption{{Name: "webauthn", Usable: true}, {Name: "totp", Usable: true}}
		body = render(t, r, "enrol_start", p, false).Body.String()
		pk, app := strings.Index(body, `href="/.2fa/enrol/webauthn?return_to=%2Fmembers%2Fpage%3Fx%3D1&amp;from=settings"`), strings.Index(body, p.T("set_up_totp"))
		if pk < 0 || app < 0 || pk > app {
			t.Errorf("%s: the picker does not offer the passkey first (at %d, the app at %d)", lang, pk, app)
		}
	}
}

// The settings page lists each credential with its rename and remove
// forms, and the reason instead of "Remove" for the last method.
func TestPasskeySettings(t *testing.T) {
	r := newRenderer(t, "")
	for _, lang := range languages {
		p := fullPage(lang)
		p.Error = ""
		body := render(t, r, "methods", p, false).Body.String()
		for _, c := range p.Passkeys {
			li := strings.Index(body, `<li class="passkey" data-credential="`+c.ID+`">`)
			if li < 0 {
				t.Fatalf("%s: no element for credential %s:\n%s", lang, c.ID, body)
			}
			item := body[li : li+strings.Index(body[li:], "</li>")]
			for _, want := range []string{
				`<h3 id="passkey-` + c.ID + `">` + c.Name + `</h3>`,
				`action="/.2fa/webauthn/rename"`, `<input type="hidden" name="credential" value="` + c.ID + `">`,
				`<input id="rename-` + c.ID + `" name="name" type="text" maxlength="64"`,
				`action="/.2fa/webauthn/remove"`, `name="confirm" value="yes" required`,
				p.T(c.Kind),
			} {
				if !strings.Contains(item, want) {
					t.Errorf("%s: credential %s lacks %q:\n%s", lang, c.ID, want, item)
				}
			}
		}
		if !strings.Contains(body, `href="/.2fa/enrol/webauthn?return_to=`) || !strings.Contains(body, p.T("passkey_add")) {
			t.Errorf("%s: no link to add a passkey", lang)
		}

		p.Passkeys = p.Passkeys[:1]
		p.Passkeys[0].Kept = true
		body = render(t, r, "methods", p, false).Body.String()
		if strings.Contains(body, `action="/.2fa/webauthn/remove"`) || !strings.Contains(body, html.EscapeString(p.T("passkey_remove_kept"))) {
			t.Errorf("%s: the last method offers \"Remove\" or lacks the reason", lang)
		}
	}
}

// webauthn.js is served with the hash the pages and the CSP name, calls
// only the gateway, and holds no message text: the page gives it.
func TestWebAuthnScript(t *testing.T) {
	rec := httptest.NewRecorder()
	ServeStatic(rec, httptest.NewRequest(http.MethodGet, "/.2fa/static/webauthn.js", nil), "webauthn.js")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("webauthn.js: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if sum := sha256.Sum256(rec.Body.Bytes()); "sha256-"+base64.StdEncoding.EncodeToString(sum[:]) != webauthnIntegrity {
		t.Errorf("webauthn.js served with a hash other than its integrity %s", webauthnIntegrity)
	}
	js := rec.Body.String()
	for _, bad := range []string{"http:", "https:", "//cdn", "import ", "XMLHttpRequest", "innerHTML", "eval(", "new Function",
		"document.write", "localStorage", "sessionStorage", "cookie", "=>", "let ", "const "} {
		if strings.Contains(js, bad) {
			t.Errorf("webauthn.js contains %q", bad)
		}
	}
	for _, want := range []string{"navigator.credentials.get", "navigator.credentials.create", "X-CSRF-Token", "NotAllowedError",
		`"passkey-signin"`, `"passkey-register"`, `"passkey-error"`, `"passkey-messages"`, "location.assign", "PublicKeyCredential"} {
		if !strings.Contains(js, want) {
			t.Errorf("webauthn.js lacks %q", want)
		}
	}
	for _, k := range passkeyErrorKeys {
		for _, lang := range languages {
			if text := catalogs[lang][k]; text != "" && strings.Contains(js, text) {
				t.Errorf("webauthn.js holds the %s text of %q", lang, k)
			}
		}
	}
}
