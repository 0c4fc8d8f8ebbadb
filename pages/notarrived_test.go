package pages

import (
	"html"
	"strings"
	"testing"
)

// The "Didn't get it?" panel under an emailed or texted code: the advice
// of its channel in both languages, the report form, and after a report
// the thanks with the other ways first and no second report button.
func TestChallengeNotArrivedPanel(t *testing.T) {
	r := newRenderer(t, "")
	page := func(lang, method string) *Page {
		p := &Page{Lang: lang, Prefix: "/.2fa/", CSRF: "tok", ReturnTo: "/x", Method: method, CodeSent: true,
			SentTo: "a•••@example.com", RecoveryLeft: 3, Methods: []MethodOption{{Name: "totp", Usable: true}}}
		if method == "sms" {
			p.SentTo = "+81 •• •••• 5678"
		}
		return p
	}
	for _, c := range []struct {
		lang, method, from string
		want, not          []string
	}{
		{"en", "email", "no-reply@example.com",
			[]string{"Didn't get it?", "spam or junk folder", "Add no-reply@example.com to your contacts", "Check that a•••@example.com is the address"},
			[]string{"carriers", "airplane"}},
		{"en", "email", "", []string{"spam or junk folder"}, []string{"safe senders"}},
		{"en", "sms", "",
			[]string{"Didn't get it?", "short codes", "+81 •• •••• 5678, the number as registered in international format", "airplane mode", "roaming"},
			[]string{"spam or junk", "safe senders"}},
		{"ja", "email", "no-reply@example.com",
			[]string{"コードが届きませんか？", "迷惑メールフォルダ", "no-reply@example.com を連絡先", "a•••@example.com"}, []string{"機内モード"}},
		{"ja", "sms", "", []string{"コードが届きませんか？", "短縮番号", "+81 •• •••• 5678（国際形式）", "機内モード", "ローミング"}, []string{"迷惑メールフォルダ"}},
	} {
		p := page(c.lang, c.method)
		p.SentFrom = c.from
		body := render(t, r, "challenge", p, false).Body.String()
		text := html.UnescapeString(body)
		panel := text[strings.Index(text, `<details class="not-arrived">`)+1:]
		panel = panel[:strings.Index(panel, "</details>")]
		for _, w := range c.want {
			if !strings.Contains(panel, w) {
				t.Errorf("%s %s: the panel lacks %q:\n%s", c.lang, c.method, w, panel)
			}
		}
		for _, w := range c.not {
			if strings.Contains(panel, w) {
				t.Errorf("%s %s: the panel has the other channel's %q", c.lang, c.method, w)
			}
		}
		report := form(body, "/.2fa/challenge/not-arrived")
		for _, w := range []string{`name="csrf" value="tok"`, `name="method" value="` + c.method + `"`, `<button type="submit" class="secondary">`} {
			if !strings.Contains(report, w) {
				t.Errorf("%s %s: report form lacks %s:\n%s", c.lang, c.method, w, report)
			}
		}
		if !strings.Contains(panel, `href="#other-ways"`) || !strings.Contains(body, `id="other-ways"`) {
			t.Errorf("%s %s: the panel does not point to the other ways", c.lang, c.method)
		}
		if strings.Contains(body, "<script") && !strings.Contains(body, "countdown.js") {
			t.Errorf("%s %s: a script beyond the countdown", c.lang, c.method)
		}

		// Reported: thanks, the other ways before the code form, the
		// resend form as before, no panel.
		p.Reported = true
		body = render(t, r, "challenge", p, false).Body.String()
		thanks := map[string]string{"en": "Thanks, we&#39;ve noted it.", "ja": "ご報告ありがとうございます。"}[c.lang]
		ti, wi, ci := strings.Index(body, thanks), strings.Index(body, `id="other-ways"`), strings.Index(body, `name="code"`)
		if ti < 0 || wi < ti || ci < wi || strings.Count(body, `id="other-ways"`) != 1 {
			t.Errorf("%s %s reported: thanks at %d, other ways at %d, code at %d:\n%s", c.lang, c.method, ti, wi, ci, body)
		}
		if strings.Contains(body, "not-arrived") || form(body, "/.2fa/challenge/send") == "" {
			t.Errorf("%s %s reported: panel shown again, or no resend form:\n%s", c.lang, c.method, body)
		}
	}

	// Reported, with no other way: say so.
	p := page("en", "sms")
	p.Reported, p.Methods, p.RecoveryLeft = true, nil, 0
	if body := render(t, r, "challenge", p, false).Body.String(); !strings.Contains(body, "You have no other way to sign in here.") {
		t.Errorf("reported without other ways:\n%s", body)
	}
	// No code sent yet: no panel.
	p = page("en", "email")
	p.CodeSent = false
	if body := render(t, r, "challenge", p, false).Body.String(); strings.Contains(body, "not-arrived") {
		t.Errorf("the panel before any code was sent:\n%s", body)
	}
}
