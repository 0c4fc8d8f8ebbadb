package tests

import (
	"strings"
	"testing"
)

// "Didn't get it?" in headless Chromium on a phone-sized screen: the panel
// is closed until tapped, opens without script, fits the screen, and its
// "Still nothing" button records the report and brings the thanks with
// the other ways first, with no CSP violation or console error.
func TestBrowserCodeNotArrived(t *testing.T) {
	c := startCodesSetup(t, setup{policy: codePolicy}, "")
	requireChromium(t)
	g := c.browser()
	g.login("alice")
	c.enrolEmail(g, "/members/", 1)
	c.enrolSMS(g, "090-1234-5678", "/members/", 1)

	b := c.chromium(t)
	console := b.watchConsole()
	b.setViewport(viewport{"phone", 390, 844, true})
	if r := b.signIn("alice", "/members/"); r.path != "/.2fa/challenge" || r.status != 200 {
		b.fatalf("signed in at %s (%d), want the challenge", r.url, r.status)
	}
	if r := b.submit(`form[action="/.2fa/challenge/send"] button[type=submit]`); r.query.Get("method") != "email" || r.status != 200 {
		b.fatalf("after Send code: %s (%d), want the email challenge", r.url, r.status)
	}
	sent := len(c.codeMails())

	type panelState struct {
		Found    bool    `json:"found"`
		Open     bool    `json:"open"`
		Visible  bool    `json:"visible"`
		Right    float64 `json:"right"`
		Width    float64 `json:"width"`
		Overflow int     `json:"overflow"`
		Text     string  `json:"text"`
	}
	panel := func() panelState {
		return evalJS[panelState](b, "the not-arrived panel", `(() => {
			const d = document.querySelector('details.not-arrived');
			const btn = d?.querySelector('form[action="/.2fa/challenge/not-arrived"] button');
			const r = btn ? btn.getBoundingClientRect() : {right: 0};
			return {
				found: !!btn, open: !!d?.open, visible: !!btn && btn.checkVisibility(),
				right: r.right, width: window.innerWidth,
				overflow: document.documentElement.scrollWidth - window.innerWidth,
				text: d ? d.innerText : '',
			};
		})()`)
	}
	if p := panel(); !p.Found || p.Open || p.Visible {
		b.fatalf("before tapping: %+v; want the panel closed, its button hidden", p)
	}
	b.click("details.not-arrived summary")
	p := panel()
	if !p.Open || !p.Visible || p.Right > p.Width || p.Overflow > 0 {
		b.fatalf("after tapping: %+v; want open, the button inside a %vpx screen, no overflow", p, p.Width)
	}
	for _, want := range []string{"spam or junk folder", "no-reply@example.com", "a•••@example.com", "Or sign in another way"} {
		if !strings.Contains(p.Text, want) {
			b.fatalf("the open panel lacks %q: %q", want, p.Text)
		}
	}
	r := b.submit(`form[action="/.2fa/challenge/not-arrived"] button[type=submit]`)
	if r.path != "/.2fa/challenge/not-arrived" || r.status != 200 {
		b.fatalf("after Still nothing: %s (%d)", r.url, r.status)
	}
	order := evalJS[struct {
		Thanks bool `json:"thanks"`
		First  bool `json:"first"`
		Panel  bool `json:"panel"`
	}](b, "the page after the report", `(() => {
		const ways = document.getElementById('other-ways'), code = document.getElementById('code');
		return {
			thanks: document.body.innerText.includes("Thanks, we've noted it."),
			first: !!ways && !!code && !!(ways.compareDocumentPosition(code) & Node.DOCUMENT_POSITION_FOLLOWING),
			panel: !!document.querySelector('details.not-arrived'),
		};
	})()`)
	if !order.Thanks || !order.First || order.Panel {
		b.fatalf("after the report: %+v; want thanks, the other ways before the code, no panel", order)
	}
	n := 0
	for _, a := range c.audit() {
		if a["event"] == "code_not_arrived" {
			n++
		}
	}
	if n != 1 || len(c.codeMails()) != sent {
		t.Fatalf("%d code_not_arrived events and %d new mails, want 1 and 0", n, len(c.codeMails())-sent)
	}
	b.checkNoCSPViolations()
	console.checkClean(t)
}
