package pages

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	texttemplate "text/template"
	"text/template/parse"
)

// dynamicKeys are catalog keys the templates receive in fields (Error,
// Title, Message, LinkLabel) from the gateway's handlers.
var dynamicKeys = []string{
	// errors and messages
	"code_incorrect", "code_malformed", "locked", "csrf_failed", "sign_in_first", "unavailable",
	"enrol_expired", "signed_out", "not_found", "method_not_allowed", "bad_request",
	"second_factor_required",
	// headings
	"error_title", "title_challenge", "title_enrol", "title_remind", "title_logout",
	"title_signed_out", "title_locked", "title_unavailable", "title_sign_in", "title_not_found",
	// link labels
	"continue", "back_to_site",
}

func newRenderer(t *testing.T, dir string) *Renderer {
	t.Helper()
	r, err := New(dir)
	if err != nil {
		t.Fatalf("New(%q): %v", dir, err)
	}
	return r
}

func render(t *testing.T, r *Renderer, name string, p *Page, secure bool) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := r.Render(rec, http.StatusOK, name, p, secure); err != nil {
		t.Fatalf("Render(%s): %v", name, err)
	}
	return rec
}

// fullPage sets every field, so every branch that depends on one shows.
func fullPage(lang string) *Page {
	return &Page{
		Lang: lang, SiteName: "Members", Prefix: "/.2fa/", CSRF: "csrf-token-value", ReturnTo: "/members/page?x=1",
		Error: "locked", ErrorArgs: []any{5},
		ShowRemember: true, RememberDays: 30,
		QRCode: "data:image/png;base64,iVBORw0KGgo=", OTPAuthURI: "otpauth://totp/Members:alice?secret=JBSWY3DPEHPK3PXP",
		Secret: "JBSWY3DPEHPK3PXP", Issuer: "Members", Account: "alice@example.com",
		Title: "title_locked", Message: "locked", MessageArgs: []any{7}, Status: 429,
		Link: "/members/", LinkLabel: "back_to_site",
	}
}

// templateKeys collects the string literals passed to .T in the parse
// trees of every template, and reports calls whose key is not a literal.
func templateKeys(t *testing.T) map[string][]string {
	t.Helper()
	keys := make(map[string][]string) // key → templates using it
	for _, file := range templateNames() {
		b, err := embeddedTemplates.ReadFile("templates/" + file)
		if err != nil {
			t.Fatal(err)
		}
		set, err := texttemplate.New(file).Funcs(texttemplate.FuncMap(funcs)).Parse(string(b))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tmpl := range set.Templates() {
			if tmpl.Tree != nil {
				walk(tmpl.Tree.Root, func(key string) { keys[key] = append(keys[key], file+":"+tmpl.Name()) })
			}
		}
	}
	return keys
}

func walk(n parse.Node, found func(string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, found)
		}
	case *parse.ActionNode:
		walk(n.Pipe, found)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c, found)
		}
	case *parse.CommandNode:
		if len(n.Args) >= 2 {
			if f, ok := n.Args[0].(*parse.FieldNode); ok && f.Ident[len(f.Ident)-1] == "T" {
				if s, ok := n.Args[1].(*parse.StringNode); ok {
					found(s.Text)
				}
			}
		}
		for _, a := range n.Args {
			walk(a, found)
		}
	case *parse.IfNode:
		walk(n.Pipe, found)
		walk(n.List, found)
		walk(n.ElseList, found)
	case *parse.RangeNode:
		walk(n.Pipe, found)
		walk(n.List, found)
		walk(n.ElseList, found)
	case *parse.WithNode:
		walk(n.Pipe, found)
		walk(n.List, found)
		walk(n.ElseList, found)
	case *parse.TemplateNode:
		walk(n.Pipe, found)
	}
}

func TestCatalogsHaveSameKeys(t *testing.T) {
	en, ja := catalogs["en"], catalogs["ja"]
	if len(en) == 0 || len(ja) == 0 {
		t.Fatalf("empty catalog: en %d, ja %d keys", len(en), len(ja))
	}
	for k := range en {
		if _, ok := ja[k]; !ok {
			t.Errorf("key %q is in en.json but not in ja.json", k)
		}
	}
	for k := range ja {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is in ja.json but not in en.json", k)
		}
	}
	for lang, m := range catalogs {
		for k, v := range m {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: key %q has empty text", lang, k)
			}
		}
	}
}

// TestCatalogsNoDuplicateKeys catches a key written twice in one file,
// which encoding/json would silently resolve to the last one.
func TestCatalogsNoDuplicateKeys(t *testing.T) {
	for _, lang := range languages {
		b, err := embeddedMessages.ReadFile("messages/" + lang + ".json")
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if _, err := dec.Token(); err != nil { // {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			k := tok.(string)
			if seen[k] {
				t.Errorf("%s.json: duplicate key %q", lang, k)
			}
			seen[k] = true
			if _, err := dec.Token(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCatalogsFormatVerbs checks that both languages agree on format verbs,
// so arguments fit the Japanese text as well as the English.
func TestCatalogsFormatVerbs(t *testing.T) {
	verbs := regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)
	for k, en := range catalogs["en"] {
		a, b := verbs.FindAllString(en, -1), verbs.FindAllString(catalogs["ja"][k], -1)
		if strings.Join(a, " ") != strings.Join(b, " ") {
			t.Errorf("key %q: en verbs %v, ja verbs %v", k, a, b)
		}
	}
	if got := (&Page{Lang: "en"}).T("locked", 3); got != "Too many incorrect codes. Try again in 3 minutes." {
		t.Errorf("T(locked, 3) = %q", got)
	}
	if got := (&Page{Lang: "ja"}).T("locked", 3); !strings.Contains(got, "3分後") {
		t.Errorf("ja T(locked, 3) = %q", got)
	}
}

func TestTemplateKeysExist(t *testing.T) {
	keys := templateKeys(t)
	// The scan must actually find keys, or this test would pass vacuously.
	for _, k := range []string{"title_challenge", "verify", "remember_device", "code_label", "later", "sign_out"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("template scan did not find key %q; found %d keys", k, len(keys))
		}
	}
	all := make(map[string][]string, len(keys)+len(dynamicKeys))
	for k, where := range keys {
		all[k] = where
	}
	for _, k := range dynamicKeys {
		all[k] = append(all[k], "handlers")
	}
	for k, where := range all {
		for _, lang := range languages {
			if _, ok := catalogs[lang][k]; !ok {
				t.Errorf("key %q (used by %v) missing from %s.json", k, where, lang)
			}
		}
	}
}

func TestTUnknownKey(t *testing.T) {
	if got := (&Page{Lang: "ja"}).T("no_such_key"); got != "no_such_key" {
		t.Errorf("T(unknown) = %q, want the key", got)
	}
	var p *Page
	if got := p.T("verify"); got != "Verify" {
		t.Errorf("nil page T(verify) = %q", got)
	}
	if got := (&Page{Lang: "de"}).T("verify"); got != "Verify" {
		t.Errorf("unsupported language T(verify) = %q, want English", got)
	}
}

// TestRenderAllPages renders every page in both languages with every field
// set: no error, no catalog key left untranslated, Japanese pages free of
// the English texts.
func TestRenderAllPages(t *testing.T) {
	r := newRenderer(t, "")
	keyLike := regexp.MustCompile(`>\s*([a-z]+_[a-z_]+)\s*<`)
	for _, lang := range languages {
		for _, name := range pageNames {
			for _, required := range []bool{false, true} {
				p := fullPage(lang)
				p.Required = required
				body := render(t, r, name, p, true).Body.String()
				if !strings.HasPrefix(body, "<!doctype html>") || !strings.Contains(body, "</html>") {
					t.Errorf("%s/%s: not a whole document", lang, name)
				}
				if !strings.Contains(body, `<html lang="`+lang+`">`) {
					t.Errorf("%s/%s: no lang attribute", lang, name)
				}
				if !strings.Contains(body, `<link rel="stylesheet" href="/.2fa/static/style.css">`) {
					t.Errorf("%s/%s: no stylesheet", lang, name)
				}
				if m := keyLike.FindStringSubmatch(body); m != nil {
					t.Errorf("%s/%s: untranslated key %q", lang, name, m[1])
				}
				for _, bad := range []string{"<script", " style=", "<style", "http://", "https://", "%!"} {
					if strings.Contains(body, bad) {
						t.Errorf("%s/%s: output contains %q", lang, name, bad)
					}
				}
				if lang == "ja" {
					for _, en := range []string{"Verify", "Set up", "Later", "Sign out", "Continue", "authenticator app"} {
						if strings.Contains(body, en) {
							t.Errorf("ja/%s: English text %q", name, en)
						}
					}
				}
				for _, form := range regexp.MustCompile(`(?s)<form.*?</form>`).FindAllString(body, -1) {
					if !strings.Contains(form, `method="post"`) ||
						!strings.Contains(form, `<input type="hidden" name="csrf" value="csrf-token-value">`) ||
						!strings.Contains(form, `<input type="hidden" name="return_to" value="/members/page?x=1">`) {
						t.Errorf("%s/%s: form without method, csrf or return_to:\n%s", lang, name, form)
					}
				}
			}
		}
	}
}

func TestChallengePage(t *testing.T) {
	r := newRenderer(t, "")
	for lang, msg := range map[string]string{
		"ja": "認証コードが正しくありません。",
		"en": "The verification code is incorrect.",
	} {
		p := &Page{Lang: lang, SiteName: "Members", Prefix: "/.2fa/", CSRF: "tok123", ReturnTo: "/x", Error: "code_incorrect"}
		body := render(t, r, "challenge", p, false).Body.String()
		mi, ii := strings.Index(body, msg), strings.Index(body, `name="code"`)
		if mi < 0 || ii < 0 || mi > ii {
			t.Errorf("%s: message at %d, input at %d; want the message above the input:\n%s", lang, mi, ii, body)
		}
		alert := regexp.MustCompile(`<[a-z]+ [^>]*role="alert"[^>]*>([^<]*)<`).FindStringSubmatch(body)
		if alert == nil || alert[1] != msg {
			t.Errorf("%s: no role=alert element holding %q: %v", lang, msg, alert)
		}
		input := regexp.MustCompile(`<input [^>]*name="code"[^>]*>`).FindString(body)
		for _, attr := range []string{`type="text"`, `autocomplete="one-time-code"`, `inputmode="numeric"`,
			`pattern="[0-9]*"`, `maxlength="8"`, ` required`, ` autofocus`} {
			if !strings.Contains(input, attr) {
				t.Errorf("%s: code input %q lacks %s", lang, input, attr)
			}
		}
		if !strings.Contains(body, `<form method="post" action="/.2fa/challenge">`) {
			t.Errorf("%s: no form posting to the challenge", lang)
		}
		if !strings.Contains(body, `<input type="hidden" name="csrf" value="tok123">`) {
			t.Errorf("%s: csrf token not carried", lang)
		}
		if strings.Contains(body, `name="remember"`) {
			t.Errorf("%s: remember checkbox shown without ShowRemember", lang)
		}
	}

	body := render(t, r, "challenge", &Page{Lang: "en", Prefix: "/.2fa/", ShowRemember: true, RememberDays: 30}, false).Body.String()
	if !regexp.MustCompile(`<input type="checkbox" name="remember" value="1">`).MatchString(body) {
		t.Errorf("remember checkbox missing with ShowRemember:\n%s", body)
	}
	if !strings.Contains(body, "Don&#39;t ask for a code on this device for 30 days") {
		t.Errorf("remember label missing:\n%s", body)
	}
	if strings.Contains(body, `role="alert"`) {
		t.Error("alert shown without an error")
	}
	body = render(t, r, "challenge", &Page{Lang: "ja", Prefix: "/.2fa/", ShowRemember: true, RememberDays: 1}, false).Body.String()
	if !strings.Contains(body, "1日間") {
		t.Errorf("ja one-day label missing:\n%s", body)
	}
}

func TestEnrolPages(t *testing.T) {
	r := newRenderer(t, "")
	p := fullPage("en")
	p.Error = "code_incorrect"
	p.Secret = "JBSWY3DPEHPK3PXPQ"
	body := render(t, r, "enrol", p, false).Body.String()
	for _, want := range []string{
		`<img src="data:image/png;base64,iVBORw0KGgo=" alt="QR code for your authenticator app"`,
		`<a href="otpauth://totp/Members:alice?secret=JBSWY3DPEHPK3PXP">Open in an authenticator app on this device</a>`,
		`<code>JBSW Y3DP EHPK 3PXP Q</code>`,
		`alice@example.com`,
		`<form method="post" action="/.2fa/enrol/confirm">`,
		`autocomplete="one-time-code"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("enrol page lacks %s", want)
		}
	}
	if strings.Index(body, "The verification code is incorrect.") > strings.Index(body, `name="code"`) {
		t.Error("enrol: error below the input")
	}

	p = &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/r", Required: true}
	body = render(t, r, "enrol_start", p, false).Body.String()
	if !strings.Contains(body, `action="/.2fa/enrol"`) || !strings.Contains(body, "requires 2-step verification") {
		t.Errorf("enrol_start (required):\n%s", body)
	}
	if strings.Contains(body, `action="/.2fa/remind"`) {
		t.Error("required enrolment offers \"later\"")
	}
	p.Required = false
	body = render(t, r, "enrol_start", p, false).Body.String()
	if !strings.Contains(body, `action="/.2fa/remind"`) || strings.Contains(body, "requires 2-step verification") {
		t.Errorf("enrol_start (optional):\n%s", body)
	}
}

func TestMessagePage(t *testing.T) {
	r := newRenderer(t, "")
	body := render(t, r, "message", &Page{Lang: "ja", Prefix: "/.2fa/", Title: "title_locked", Message: "locked",
		MessageArgs: []any{15}, Link: "/top", LinkLabel: "continue"}, false).Body.String()
	for _, want := range []string{"<h1>しばらくお待ちください</h1>", "15分後", `<a class="button" href="/top">続ける</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %s:\n%s", want, body)
		}
	}
	body = render(t, r, "message", &Page{Lang: "en", Prefix: "/.2fa/", Message: "unavailable"}, false).Body.String()
	if !strings.Contains(body, "<h1>Something went wrong</h1>") || strings.Contains(body, "<a ") {
		t.Errorf("message page defaults:\n%s", body)
	}
}

func TestEscaping(t *testing.T) {
	r := newRenderer(t, "")
	evil := `"><script>alert('x')</script>`
	p := fullPage("en")
	p.ReturnTo = "/a?b=1&c=" + evil
	p.SiteName = "Site " + evil
	p.Account = "acct " + evil
	p.Issuer = "iss " + evil
	p.CSRF = `tok"en`
	for _, name := range pageNames {
		body := render(t, r, name, p, false).Body.String()
		if strings.Contains(body, "<script") || strings.Contains(body, `"><`+"script") {
			t.Errorf("%s: unescaped script:\n%s", name, body)
		}
		if strings.Contains(body, `value="tok"en"`) {
			t.Errorf("%s: csrf attribute broken out", name)
		}
	}
	body := render(t, r, "remind", p, false).Body.String()
	link := regexp.MustCompile(`<a class="button" href="([^"]*)"`).FindStringSubmatch(body)
	want := "/.2fa/enrol?return_to=%2fa%3fb%3d1%26c%3d%22%3e%3cscript%3ealert%28%27x%27%29%3c%2fscript%3e"
	if link == nil || !strings.EqualFold(link[1], want) {
		t.Errorf("remind link = %v, want %s", link, want)
	}
	if !strings.Contains(body, `value="/a?b=1&amp;c=&#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"`) {
		t.Errorf("return_to hidden field not escaped as expected:\n%s", body)
	}
	body = render(t, r, "enrol", p, false).Body.String()
	if !strings.Contains(body, "acct &#34;&gt;&lt;script&gt;") {
		t.Errorf("account not escaped:\n%s", body)
	}
	// A dangerous scheme in a link is neutralised.
	body = render(t, r, "message", &Page{Lang: "en", Message: "continue", Link: "javascript:alert(1)"}, false).Body.String()
	if strings.Contains(body, "javascript:") {
		t.Errorf("javascript: link rendered:\n%s", body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	r := newRenderer(t, "")
	want := map[string]string{
		"Cache-Control":          "no-store",
		"Pragma":                 "no-cache",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; " +
			"frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
		"Content-Type": "text/html; charset=utf-8",
	}
	for _, secure := range []bool{false, true} {
		rec := httptest.NewRecorder()
		if err := r.Render(rec, http.StatusUnauthorized, "challenge", &Page{Lang: "en", Prefix: "/p/"}, secure); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", rec.Code)
		}
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("secure=%v: %s = %q, want %q", secure, k, got, v)
			}
		}
		hsts := rec.Header().Get("Strict-Transport-Security")
		if secure && hsts != "max-age=31536000" {
			t.Errorf("HSTS = %q over https", hsts)
		}
		if !secure && hsts != "" {
			t.Errorf("HSTS = %q over http", hsts)
		}
	}
}

func TestLanguage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "en"},
		{"ja-JP,ja;q=0.9", "ja"},
		{"ja", "ja"},
		{"en-US", "en"},
		{"en-GB,en;q=0.9,ja;q=0.8", "en"},
		{"fr, ja;q=0.5", "ja"},
		{"ja;q=0.4, en;q=0.8", "en"},
		{"fr", "en"},
		{"de-DE,de;q=0.9", "en"},
		{"zh-CN", "en"},
		{"*", "en"},
		{"ja-Jpan-JP", "ja"},
		{"not a ;; valid = header", "en"},
		{strings.Repeat("ja,", 1000), "en"},
	} {
		if got := Language(tc.in); got != tc.want {
			t.Errorf("Language(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOverrideDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "challenge.html",
		`{{define "title"}}Custom{{end}}{{define "content"}}<p class="custom">CUSTOM {{.T "verify"}} {{.SiteName}}</p>{{end}}`)
	writeFile(t, dir, ".DS_Store", "ignored")
	r := newRenderer(t, dir)
	body := render(t, r, "challenge", &Page{Lang: "ja", SiteName: "<b>", Prefix: "/.2fa/"}, false).Body.String()
	if !strings.Contains(body, `<p class="custom">CUSTOM 認証する &lt;b&gt;</p>`) {
		t.Errorf("override not used:\n%s", body)
	}
	if !strings.Contains(body, "<title>Custom – &lt;b&gt;</title>") {
		t.Errorf("override not inside the embedded layout:\n%s", body)
	}
	// Other pages stay embedded.
	body = render(t, r, "logout", &Page{Lang: "en", Prefix: "/.2fa/"}, false).Body.String()
	if !strings.Contains(body, "Sign out of 2-step verification") {
		t.Errorf("logout page not the embedded one:\n%s", body)
	}

	// A replacement layout applies to every page.
	writeFile(t, dir, "layout.html", `<!doctype html><html lang="{{.Lang}}"><body class="mine">{{template "content" .}}</body></html>`)
	r = newRenderer(t, dir)
	body = render(t, r, "remind", &Page{Lang: "en", Prefix: "/.2fa/"}, false).Body.String()
	if !strings.Contains(body, `<body class="mine">`) || !strings.Contains(body, "Set up now") {
		t.Errorf("layout override not used:\n%s", body)
	}
}

func TestOverrideDirErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		want             []string
	}{
		{"unknown file", "challange.html", "x", []string{"challange.html", "not a known template"}},
		{"stylesheet", "style.css", "x", []string{"style.css"}},
		{"parse error", "enrol.html", `{{define "content"}}{{if .Error}}{{end}`, []string{"enrol.html"}},
		{"missing content", "logout.html", `{{define "title"}}x{{end}}`, []string{"logout.html", `"content"`}},
		{"missing template", "remind.html", `{{define "title"}}x{{end}}{{define "content"}}{{template "nope" .}}{{end}}`,
			[]string{"remind.html", "nope"}},
		{"unknown function", "message.html", `{{define "title"}}x{{end}}{{define "content"}}{{frob .}}{{end}}`,
			[]string{"message.html", "frob"}},
		{"broken layout", "layout.html", `<html>{{template "content" .}`, []string{"layout.html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, tc.file, tc.text)
			r, err := New(dir)
			if err == nil {
				t.Fatalf("New accepted %s", tc.file)
			}
			if r != nil {
				t.Error("non-nil Renderer with an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("New accepted a missing directory")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir); err == nil || !strings.Contains(err.Error(), "static") {
		t.Errorf("subdirectory: err = %v", err)
	}
}

func TestRenderExecutionError(t *testing.T) {
	dir := t.TempDir()
	// Fails only at execution, after writing some output.
	writeFile(t, dir, "challenge.html",
		`{{define "title"}}T{{end}}{{define "content"}}PARTIAL-OUTPUT {{index .ErrorArgs 5}}{{end}}`)
	r := newRenderer(t, dir)
	rec := httptest.NewRecorder()
	err := r.Render(rec, http.StatusOK, "challenge", &Page{Lang: "en", Prefix: "/.2fa/"}, true)
	if err == nil {
		t.Fatal("Render reported no error")
	}
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", rec.Code)
	}
	body := rec.Body.String()
	if strings.Contains(body, "PARTIAL") || strings.Contains(body, "<html") {
		t.Errorf("partial page written: %q", body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("500 cacheable")
	}

	// Unknown page and nil page are errors too.
	for _, c := range []struct {
		name string
		p    *Page
	}{{"nosuch", &Page{}}, {"challenge", nil}} {
		rec := httptest.NewRecorder()
		if err := newRenderer(t, "").Render(rec, 200, c.name, c.p, false); err == nil || rec.Code != 500 {
			t.Errorf("Render(%q, %v): err %v, status %d", c.name, c.p, err, rec.Code)
		}
	}
}

func TestServeStatic(t *testing.T) {
	get := func(name string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		ServeStatic(rec, httptest.NewRequest(http.MethodGet, "/.2fa/static/x", nil), name)
		return rec
	}
	rec := get("style.css")
	if rec.Code != http.StatusOK {
		t.Fatalf("style.css: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/css; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("Cache-Control %q", cc)
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	if !strings.Contains(rec.Body.String(), ".card") {
		t.Error("stylesheet body missing")
	}

	// Revalidation with the ETag.
	req := httptest.NewRequest(http.MethodGet, "/.2fa/static/style.css", nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec2 := httptest.NewRecorder()
	ServeStatic(rec2, req, "style.css")
	if rec2.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", rec2.Code)
	}

	for _, name := range []string{"", "x.css", "../x", "style.css/..", "./style.css", "../static/style.css",
		"/style.css", "style.css/", "STYLE.CSS", "..", "%2e%2e/x", "style.css\x00", "static/style.css"} {
		if rec := get(name); rec.Code != http.StatusNotFound {
			t.Errorf("%q: status %d, want 404", name, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	ServeStatic(rec, httptest.NewRequest(http.MethodPost, "/.2fa/static/style.css", nil), "style.css")
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
}

// TestNoInlineStylesOrScripts guards the CSP: it would block them anyway,
// silently breaking the page.
func TestNoInlineStylesOrScripts(t *testing.T) {
	for _, name := range templateNames() {
		b, _ := embeddedTemplates.ReadFile("templates/" + name)
		s := strings.ToLower(string(b))
		for _, bad := range []string{"<script", "<style", " style=", " onclick", " onload", " onsubmit", "javascript:"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	css, _ := embeddedStatic.ReadFile("static/style.css")
	for _, bad := range []string{"@import", "url(", "http:", "https:"} {
		if strings.Contains(string(css), bad) {
			t.Errorf("style.css refers to an external resource: %q", bad)
		}
	}
}

// TestTemplateFilesKnown keeps the embedded files and the list of
// overridable names in step.
func TestTemplateFilesKnown(t *testing.T) {
	got := templateNames()
	want := templateFiles()
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("embedded templates %v, known %v", got, want)
	}
}

func TestRenderConcurrent(t *testing.T) {
	r := newRenderer(t, "")
	done := make(chan struct{})
	for i := 0; i < 8; i++ {
		go func(i int) {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 50; j++ {
				_ = r.Render(httptest.NewRecorder(), 200, pageNames[(i+j)%len(pageNames)], fullPage(languages[j%2]), true)
			}
		}(i)
	}
	for i := 0; i < 8; i++ {
		<-done
	}
}
