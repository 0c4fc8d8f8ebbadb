package tests

// Codes by email and SMS in a real browser: headless Chromium (see
// browser_test.go) through the method picker, the code pages and "try
// another way", with the SMTP server and the SNS endpoint of codes_test.go
// receiving what the gateway sends. What only a browser shows is checked
// too: the resend button counts down, which needs static/countdown.js to
// load and run under the pages' Content-Security-Policy.

import (
	"context"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestBrowserEmailAndSMSCodes(t *testing.T) {
	began := time.Now()
	c := startCodes(t, "resend_cooldown 10s\n\t\thourly_sends_per_user 20")
	requireChromium(t)

	// 1. First visit: sign in at the member site's form, sent on to the
	// method picker; choose email, send, type the emailed code.
	a := c.chromium(t)
	aConsole := a.watchConsole()
	r := a.signIn("alice", "/members/")
	if r.path != "/.2fa/enrol" || r.query.Get("return_to") != "/members/" || r.status != 200 {
		a.fatalf("after signing in, an unenrolled member is at %s (%d), want the method picker", r.url, r.status)
	}
	a.checkStyled()
	r = a.submit(`a[href^="/.2fa/enrol/email"]`)
	if r.path != "/.2fa/enrol/email" || r.status != 200 {
		a.fatalf("after choosing email: %s (%d), want the email page", r.url, r.status)
	}
	if text := a.bodyText(); !strings.Contains(text, "a•••@example.com") {
		a.fatalf("the email page does not name the member's address, masked: %q", text)
	}
	r = a.submit(`form[action="/.2fa/enrol/email"] button[type=submit]`)
	if r.path != "/.2fa/enrol/code" || r.status != 200 {
		a.fatalf("after Send code: %s (%d), want the code page", r.url, r.status)
	}
	msg, code := c.mailCode(1)
	if len(msg.To) != 1 || msg.To[0] != "alice@example.com" {
		t.Fatalf("the confirmation went to %v", msg.To)
	}
	a.typeInto("#code", code)
	r = a.submit(`form[action="/.2fa/enrol/code"] button[type=submit]`)
	r = a.saveRecoveryCodes(r, "/.2fa/enrol")
	a.checkMembersVia(r, "alice", "email")
	a.checkNoCSPViolations()
	aConsole.checkClean(t)

	// Between the browsers: alice adds SMS too, over plain HTTP, so that
	// her challenge has another way. Her default stays email.
	c.clock.Advance(11 * time.Second)
	g := c.browser()
	g.login("alice")
	if r := g.send("email", "/members/"); r.status != 303 {
		t.Fatalf("send (HTTP client): %d: %s", r.status, r.body)
	}
	_, code = c.mailCode(2)
	if r := g.verifyCode("email", code, "/members/"); r.status != 303 {
		t.Fatalf("verify (HTTP client): %d: %s", r.status, r.body)
	}
	c.enrolSMS(g, "090-1234-5678", "/members/", 1)
	c.clock.Advance(11 * time.Second)

	// 2. A new browser, a new sign-in: the challenge offers email and
	// sends only when asked; then the resend button waits and counts down.
	b := c.chromium(t)
	bConsole := b.watchConsole()
	r = b.signIn("alice", "/members/")
	if r.path != "/.2fa/challenge" || r.query.Get("return_to") != "/members/" || r.status != 200 {
		b.fatalf("an enrolled member on a new browser is at %s (%d), want the challenge page", r.url, r.status)
	}
	if text := b.bodyText(); !strings.Contains(text, "We will email a code to a•••@example.com") {
		b.fatalf("the challenge does not offer email: %q", text)
	}
	if evalJS[bool](b, "the code input", `!!document.getElementById('code')`) {
		b.fatalf("the challenge asks for a code before one was sent")
	}
	if n := len(c.codeMails()); n != 2 {
		t.Fatalf("opening the challenge sent mail: %d messages, want 2", n)
	}
	r = b.submit(`form[action="/.2fa/challenge/send"] button[type=submit]`)
	if r.path != "/.2fa/challenge" || r.query.Get("method") != "email" || r.status != 200 {
		b.fatalf("after Send code: %s (%d), want the email challenge", r.url, r.status)
	}
	b.checkStyled()
	first := b.resendButton()
	if !first.Disabled || first.Wait != "10" || first.Seconds < 8 || first.Seconds > 10 {
		b.fatalf("resend button right after sending: %+v; want disabled, data-wait 10, counting from 10", first)
	}
	time.Sleep(2100 * time.Millisecond) // real time: the browser's clock drives the countdown
	later := b.resendButton()
	if !later.Disabled || later.Seconds >= first.Seconds || later.Seconds < 1 {
		b.fatalf("resend button about 2 s later: %+v, before %+v; want still disabled with a smaller number (countdown.js not running?)", later, first)
	}
	if !evalJS[bool](b, "the script's load", `performance.getEntriesByType('resource').some(e => new URL(e.name).pathname === '/.2fa/static/countdown.js')`) {
		b.fatalf("the page did not load /.2fa/static/countdown.js")
	}

	// When the wait is over, the script makes the button usable again, and
	// it resends. (The gateway's clock is the test's: moved on to match.)
	for deadline := time.Now().Add(12 * time.Second); ; {
		st := b.resendButton()
		if !st.Disabled {
			if st.Text != "Resend code" {
				b.fatalf("the usable resend button says %q, want %q", st.Text, "Resend code")
			}
			break
		}
		if time.Now().After(deadline) {
			b.fatalf("the resend button is still disabled after its wait: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.clock.Advance(11 * time.Second)
	r = b.submit(`form[action="/.2fa/challenge/send"] button[type=submit]`)
	if r.path != "/.2fa/challenge" || r.query.Get("method") != "email" || r.status != 200 {
		b.fatalf("after Resend code: %s (%d), want the email challenge", r.url, r.status)
	}
	if st := b.resendButton(); !st.Disabled || st.Seconds < 8 || st.Seconds > 10 {
		b.fatalf("resend button after resending: %+v; want disabled, counting from 10", st)
	}
	_, old := c.mailCode(3)
	_, code = c.mailCode(4)
	if old != code {
		// The resent code replaced the first one.
		b.typeInto("#code", old)
		if r := b.submit(`form[action="/.2fa/challenge"] button[type=submit]`); r.path != "/.2fa/challenge" || r.status != 401 {
			b.fatalf("the replaced code: %s (%d), want the challenge again with 401", r.url, r.status)
		}
	}
	b.typeInto("#code", code)
	r = b.submit(`form[action="/.2fa/challenge"] button[type=submit]`)
	b.checkMembersVia(r, "alice", "email")
	b.checkNoCSPViolations()
	bConsole.checkClean(t, "/.2fa/challenge") // the replaced code's 401

	// 3. "Try another way": a third browser picks SMS from the list, sees
	// the SMS send form, and signs in with the texted code.
	c.clock.Advance(11 * time.Second)
	s := c.chromium(t)
	sConsole := s.watchConsole()
	if r := s.signIn("alice", "/members/"); r.path != "/.2fa/challenge" || r.status != 200 {
		s.fatalf("third browser: at %s (%d), want the challenge page", r.url, r.status)
	}
	ways := evalJS[[]string](s, "the other ways", `[...document.querySelectorAll('#other-ways ~ ul a')].map(a => a.textContent.trim())`)
	if len(ways) != 2 || ways[0] != "Text a code to +81 •• •••• 5678" || ways[1] != "Use a recovery code" {
		s.fatalf("try another way lists %q, want the masked phone number and recovery codes", ways)
	}
	r = s.submit(`section[aria-labelledby="other-ways"] a[href*="method=sms"]`)
	if r.path != "/.2fa/challenge" || r.query.Get("method") != "sms" || r.query.Get("return_to") != "/members/" || r.status != 200 {
		s.fatalf("after choosing SMS: %s (%d)", r.url, r.status)
	}
	form := evalJS[struct {
		Method string `json:"method"`
		Button string `json:"button"`
		Text   string `json:"text"`
		Email  bool   `json:"email"`
	}](s, "the SMS send form", `(() => {
		const f = document.querySelector('form[action="/.2fa/challenge/send"]');
		return {
			method: f?.querySelector('input[name="method"]')?.value ?? '',
			button: f?.querySelector('button[type=submit]')?.textContent.trim() ?? '',
			text: document.body.innerText,
			email: !!document.querySelector('#other-ways ~ ul a[href*="method=email"]'),
		};
	})()`)
	if form.Method != "sms" || form.Button != "Send code" || !strings.Contains(form.Text, "We will text a code to +81 •• •••• 5678") || !form.Email {
		s.fatalf("the SMS page: method %q, button %q, email offered instead %v: %q", form.Method, form.Button, form.Email, form.Text)
	}
	r = s.submit(`form[action="/.2fa/challenge/send"] button[type=submit]`)
	if r.path != "/.2fa/challenge" || r.query.Get("method") != "sms" || r.status != 200 {
		s.fatalf("after sending by SMS: %s (%d)", r.url, r.status)
	}
	pub, code := c.smsCode(2)
	if pub.PhoneNumber != "+819012345678" {
		t.Fatalf("SMS sent to %q", pub.PhoneNumber)
	}
	s.typeInto("#code", code)
	r = s.submit(`form[action="/.2fa/challenge"] button[type=submit]`)
	s.checkMembersVia(r, "alice", "sms")
	s.checkNoCSPViolations()
	sConsole.checkClean(t)

	t.Logf("three browsers took %s", time.Since(began).Round(100*time.Millisecond))
}

// bodyText is what the page shows.
func (c *chrome) bodyText() string {
	c.t.Helper()
	return evalJS[string](c, "the page's text", `document.body ? document.body.innerText : ""`)
}

// resendState is the resend button of a code page.
type resendState struct {
	Found    bool   `json:"found"`
	Disabled bool   `json:"disabled"`
	Wait     string `json:"wait"`
	Text     string `json:"text"`
	Seconds  int    `json:"-"`
}

// The words in parentheses are joined by no-break spaces.
var resendText = regexp.MustCompile(`^Resend code \(available\x{00a0}in\x{00a0}(\d+)\x{00a0}s\)$`)

// resendButton reads the resend button of the challenge, and the seconds
// its text shows while it waits.
func (c *chrome) resendButton() resendState {
	c.t.Helper()
	s := evalJS[resendState](c, "the resend button", `(() => {
		const b = document.querySelector('form[action="/.2fa/challenge/send"] button');
		return b ? {found: true, disabled: b.disabled, wait: b.getAttribute('data-wait') ?? '', text: b.textContent.trim()} : {found: false};
	})()`)
	if !s.Found {
		c.fatalf("no resend button on the page")
	}
	if !s.Disabled {
		return s
	}
	m := resendText.FindStringSubmatch(s.Text)
	if m == nil {
		c.fatalf("the waiting resend button says %q, want %q", s.Text, "Resend code (available in N s)")
	}
	s.Seconds, _ = strconv.Atoi(m[1])
	return s
}

// checkMembersVia checks that r is the member area, for member id, verified
// with method, as the member site saw it in the gateway's headers.
func (c *chrome) checkMembersVia(r *page, id, method string) {
	c.t.Helper()
	if r.path != "/members/" || r.status != 200 {
		c.fatalf("at %s (%d), want the member page /members/", r.url, r.status)
	}
	heading := evalJS[string](c, "the heading", `document.querySelector('h1')?.textContent ?? ""`)
	if !strings.HasPrefix(heading, "Members area") {
		c.fatalf("the member page's heading is %q", heading)
	}
	rows := evalJS[map[string]string](c, "the gateway headers table", `Object.fromEntries(
		[...document.querySelectorAll('tbody tr')].map(tr => [tr.querySelector('th').textContent.trim(), tr.querySelector('td').textContent.trim()]))`)
	if rows["X-2fa-User"] != id || rows["X-2fa-Method"] != method || rows["X-2fa-Enrolled"] != "true" {
		c.fatalf("the member site saw the gateway headers %v, want user %s, %s, enrolled", rows, id, method)
	}
}

// consoleWatch collects what a browser's pages write to the console:
// script errors, uncaught exceptions and the browser's own log (where CSP
// violations and failed loads show).
type consoleWatch struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func (c *chrome) watchConsole() *consoleWatch {
	c.t.Helper()
	ctx, cancel := context.WithCancel(c.ctx)
	msgs := chromedp.Console(ctx) // subscribed from here on
	w := &consoleWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
		}
	}()
	c.t.Cleanup(func() { cancel(); <-done }) // runs before the browser closes
	return w
}

// checkClean fails the test for an error, an exception or a CSP report in
// the console. A failed load of a path in expected (a page answered 401 on
// purpose), or of the favicon, which is not the gateway's business, is
// allowed.
func (w *consoleWatch) checkClean(t *testing.T, expected ...string) {
	t.Helper()
	expected = append(expected, "/favicon.ico")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if m.Type != chromedp.ConsoleError && !m.IsException() && !strings.Contains(m.Text, "Content Security Policy") {
			continue
		}
		if u, err := url.Parse(m.URL); err == nil && m.Source == "network" && slices.Contains(expected, u.Path) {
			continue
		}
		t.Errorf("the browser console: %s (%s)", m, m.URL)
	}
}
