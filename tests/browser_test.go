package tests

// A real browser through the whole first visit and a later sign-in:
// headless Chromium, driven over the DevTools protocol by chromedp, so that
// what the Go client in harness_test.go cannot see is checked too: the
// Content-Security-Policy lets the stylesheet and the QR code's data: image
// load, the forms post back with the headers a browser really sends
// (Origin, Sec-Fetch-Site), and the error message is shown where a member
// looks for it.

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
)

const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds everything one browser does, so a test never hangs.
const browserTimeout = 60 * time.Second

func TestBrowserEnrolAndVerify(t *testing.T) {
	e := start(t, setup{})
	requireChromium(t)

	// 1. First visit: sign in at the member site, sent on to enrolment.
	a := e.chromium(t)
	r := a.signIn("alice", "/members/")
	if r.path != "/.2fa/enrol" || r.query.Get("return_to") != "/members/" || r.status != 200 {
		a.fatalf("after signing in, an unenrolled member is at %s (%d), want the enrolment page", r.url, r.status)
	}

	// 2. "Set up", then the QR page: the image and the stylesheet are
	// allowed by the page's CSP, and the otpauth link has the secret.
	r = a.submit(`form[action="/.2fa/enrol"] button[type=submit]`)
	if r.path != "/.2fa/enrol" || r.status != 200 {
		a.fatalf("after Set up: %s (%d), want the QR page", r.url, r.status)
	}
	qr := evalJS[struct {
		Complete     bool `json:"complete"`
		NaturalWidth int  `json:"naturalWidth"`
	}](a, "the QR image", `(() => {
		const img = document.querySelector('.qr img');
		return img ? {complete: img.complete, naturalWidth: img.naturalWidth} : {};
	})()`)
	if !qr.Complete || qr.NaturalWidth == 0 {
		a.fatalf("the QR code did not render (complete %v, naturalWidth %d)", qr.Complete, qr.NaturalWidth)
	}
	a.checkStyled()
	secret := a.enrolmentSecret()
	a.typeInto("#code", e.code(secret, 0))
	r = a.submit(`form[action="/.2fa/enrol/confirm"] button[type=submit]`)
	r = a.saveRecoveryCodes(r, "/.2fa/enrol")

	// 3. Through to the member page, with the gateway's headers.
	a.checkMemberPage(r, "alice")
	a.checkNoCSPViolations()
	e.nextStep()

	// 4. A second browser, a new sign-in: challenged; a wrong code is
	// refused with the message above the input.
	b := e.chromium(t)
	if r := b.signIn("alice", "/"); r.path != "/" || r.status != 200 {
		b.fatalf("after signing in with next=/: %s (%d)", r.url, r.status)
	}
	r = b.open("/members/")
	if r.path != "/.2fa/challenge" || r.query.Get("return_to") != "/members/" || r.status != 200 {
		b.fatalf("an enrolled member on a new browser is at %s (%d), want the challenge page", r.url, r.status)
	}
	b.checkStyled()
	good := e.code(secret, 0)
	b.typeInto("#code", wrongCode(good))
	r = b.submit(`form[action="/.2fa/challenge"] button[type=submit]`)
	b.checkWrongCode(r, "en", "The verification code is incorrect.")

	// 6. A screenshot of the challenge page, to prove it renders.
	b.screenshot(filepath.Join(t.TempDir(), "challenge.png"))

	// 5. The same in Japanese, by the browser's Accept-Language.
	b.setAcceptLanguage("ja-JP,ja;q=0.9,en;q=0.5")
	b.typeInto("#code", wrongCode(good))
	r = b.submit(`form[action="/.2fa/challenge"] button[type=submit]`)
	b.checkWrongCode(r, "ja", "認証コードが正しくありません。")
	b.setAcceptLanguage("")

	// 4, continued. The right code, remembering the device.
	b.typeInto("#code", good)
	b.click(`input[name="remember"]`)
	if !evalJS[bool](b, "the remember checkbox", `document.querySelector('input[name="remember"]').checked`) {
		b.fatalf("the remember checkbox is not ticked after clicking it")
	}
	r = b.submit(`form[action="/.2fa/challenge"] button[type=submit]`)
	b.checkMemberPage(r, "alice")
	if c := b.cookie("2fa_device"); c == nil {
		b.fatalf("no remembered-device cookie after verifying with the box ticked")
	} else if exp := time.Unix(int64(c.Expires), 0); time.Until(exp) < 29*24*time.Hour || !c.HTTPOnly {
		b.fatalf("remembered-device cookie: expires %v, HttpOnly %v; want about 30 days, HttpOnly", exp, c.HTTPOnly)
	}
	b.checkNoCSPViolations()
}

// requireChromium skips the test when there is no Chromium, unless CI
// says a browser must be there.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("TWOFACTOR_REQUIRE_BROWSER") == "1" {
			t.Fatalf("TWOFACTOR_REQUIRE_BROWSER=1 but no browser: %v", err)
		}
		t.Skipf("no browser (%v); install chromium or set TWOFACTOR_REQUIRE_BROWSER=1 to fail instead", err)
	}
}

// chrome is one headless Chromium with a fresh profile: its own cookies,
// like one person's browser.
type chrome struct {
	t   *testing.T
	e   *env
	ctx context.Context

	mu         sync.Mutex
	violations []string // CSP violations the browser reported
	errors     []string // errors in the console, and uncaught exceptions
}

// chromium starts a browser for the test and closes it when the test ends.
func (e *env) chromium(t *testing.T) *chrome {
	t.Helper()
	return e.chromiumFor(t, browserTimeout)
}

// chromiumFor is chromium for a test whose browser may take limit in all.
func (e *env) chromiumFor(t *testing.T, limit time.Duration) *chrome {
	t.Helper()
	profile := t.TempDir() // before the cleanup below, so removed after the browser exits
	timeout, cancelTimeout := context.WithTimeout(context.Background(), limit)
	alloc, cancelAlloc := chromedp.NewExecAllocator(timeout,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is tiny in containers
		chromedp.Flag("lang", "en-US"),               // English unless a step says otherwise
		chromedp.WindowSize(800, 900),
		chromedp.UserDataDir(profile),
	)
	c := &chrome{t: t, e: e}
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithListener(c.listen))
	c.ctx = ctx
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser gracefully
		cancelCtx()
		cancelAlloc() // waits for the process to exit
		cancelTimeout()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return c
}

// listen records the Content-Security-Policy violations that the browser
// logs (the pages' own scripts, static/countdown.js and recovery.js, do
// not report them, so the browser log is where they show): a page the CSP
// breaks still loads, only half-styled or without its scripts.
func (c *chrome) listen(ev any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev := ev.(type) {
	case *log.EventEntryAdded:
		if strings.Contains(ev.Entry.Text, "Content Security Policy") {
			c.violations = append(c.violations, ev.Entry.Text)
		}
		// The browser asks for /favicon.ico, which the test site lacks.
		if ev.Entry.Level == log.EntryLevelError && !strings.HasSuffix(ev.Entry.URL, "/favicon.ico") {
			c.errors = append(c.errors, ev.Entry.Text+" "+ev.Entry.URL)
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			c.errors = append(c.errors, "console.error")
		}
	case *runtime.EventExceptionThrown:
		c.errors = append(c.errors, ev.ExceptionDetails.Text)
	}
}

// checkNoConsoleErrors fails the test for every error the pages logged
// or threw.
func (c *chrome) checkNoConsoleErrors() {
	c.t.Helper()
	c.checkNone("an error", &c.errors)
}

func (c *chrome) checkNoCSPViolations() {
	c.t.Helper()
	c.checkNone("a CSP violation", &c.violations)
}

// checkNone fails the test for every entry of what the browser reported.
func (c *chrome) checkNone(what string, reported *[]string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range *reported {
		c.t.Errorf("the browser reported %s: %s", what, v)
	}
}

// page is the document the browser ended up on after a navigation, after
// any redirects.
type page struct {
	url    string
	path   string
	query  url.Values
	status int
}

func (c *chrome) page(resp *network.Response, err error, what string) *page {
	c.t.Helper()
	if err != nil {
		c.fatalf("%s: %v", what, err)
	}
	if resp == nil {
		c.fatalf("%s: no document loaded", what)
	}
	u, err := url.Parse(resp.URL)
	if err != nil {
		c.fatalf("%s: bad URL %q: %v", what, resp.URL, err)
	}
	return &page{url: resp.URL, path: u.Path, query: u.Query(), status: int(resp.Status)}
}

// open navigates to a path of the gateway.
func (c *chrome) open(path string) *page {
	c.t.Helper()
	resp, err := chromedp.RunResponse(c.ctx, chromedp.Navigate(c.e.base+path))
	return c.page(resp, err, "opening "+path)
}

// submit clicks a form's button and waits for the next page.
func (c *chrome) submit(button string) *page {
	c.t.Helper()
	resp, err := chromedp.RunResponse(c.ctx, chromedp.Click(chromedp.CSS(button)))
	return c.page(resp, err, "submitting with "+button)
}

// saveRecoveryCodes checks the recovery codes shown after the first
// enrolment (or the post of a page under from), with the copy and print
// buttons that recovery.js reveals (so it ran under the page's CSP), then
// continues to where the member was going.
func (c *chrome) saveRecoveryCodes(r *page, from string) *page {
	c.t.Helper()
	if r.status != 200 || !strings.HasPrefix(r.path, from) {
		c.fatalf("after confirming: %s (%d), want the recovery codes", r.url, r.status)
	}
	shown := evalJS[int](c, "the recovery codes", `document.querySelectorAll('ol.recovery-codes li').length`)
	buttons := evalJS[int](c, "the copy and print buttons", `document.querySelectorAll('button[data-action]:not([hidden])').length`)
	if shown != 10 || buttons != 2 {
		c.fatalf("%d recovery codes and %d visible copy/print buttons, want 10 and 2", shown, buttons)
	}
	return c.submit(`p.continue a`)
}

func (c *chrome) click(sel string) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		c.fatalf("clicking %s: %v", sel, err)
	}
}

// typeInto types text into an input, as a person would, after clearing it.
func (c *chrome) typeInto(sel, text string) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, chromedp.Clear(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), text)); err != nil {
		c.fatalf("typing into %s: %v", sel, err)
	}
}

// signIn signs in at the member site's own form and returns where the
// browser lands.
func (c *chrome) signIn(id, next string) *page {
	c.t.Helper()
	password := ""
	for _, m := range membersite.DemoMembers() {
		if m.ID == id {
			password = m.Password
		}
	}
	if r := c.open("/login?next=" + url.QueryEscape(next)); r.status != 200 {
		c.fatalf("the sign-in page: %s (%d)", r.url, r.status)
	}
	c.typeInto(`input[name="id"]`, id)
	c.typeInto(`input[name="password"]`, password)
	return c.submit(`form[action="/login"] button[type=submit]`)
}

// setAcceptLanguage makes the browser send this Accept-Language; "" goes
// back to the browser's own.
func (c *chrome) setAcceptLanguage(lang string) {
	c.t.Helper()
	h := network.Headers{}
	if lang != "" {
		h["Accept-Language"] = lang
	}
	if _, err := chromedp.Call(c.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h}); err != nil {
		c.fatalf("setting Accept-Language: %v", err)
	}
}

// cookie returns the browser's cookie for the gateway, or nil.
func (c *chrome) cookie(name string) *network.Cookie {
	c.t.Helper()
	res, err := chromedp.Call(c.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{c.e.base + "/"}})
	if err != nil {
		c.fatalf("reading cookies: %v", err)
	}
	for _, ck := range res.Cookies {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

// evalJS evaluates a JavaScript expression in the page and decodes its value.
func evalJS[T any](c *chrome, what, js string) T {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		c.fatalf("reading %s: %v", what, err)
	}
	return v
}

// checkStyled checks that the gateway's stylesheet applied: the card has
// the look style.css gives it, which a browser's defaults do not.
func (c *chrome) checkStyled() {
	c.t.Helper()
	s := evalJS[struct {
		Rules      int    `json:"rules"`
		Background string `json:"background"`
		Radius     string `json:"radius"`
	}](c, "the card's style", `(() => {
		let rules = 0;
		for (const sheet of document.styleSheets) try { rules += sheet.cssRules.length; } catch {} // a blocked sheet throws
		const card = getComputedStyle(document.querySelector('main.card'));
		return {rules, background: card.backgroundColor, radius: card.borderTopLeftRadius};
	})()`)
	if s.Rules == 0 || s.Background != "rgb(255, 255, 255)" || s.Radius != "12px" {
		c.fatalf("the stylesheet did not apply: %d rules, card background %q, radius %q", s.Rules, s.Background, s.Radius)
	}
}

// enrolmentSecret reads the secret from the page's otpauth:// link, the way
// a phone reads it from the QR code.
func (c *chrome) enrolmentSecret() string {
	c.t.Helper()
	href := evalJS[string](c, "the otpauth link", `document.querySelector('a[href^="otpauth:"]')?.href ?? ""`)
	u, err := url.Parse(href)
	if err != nil || u.Query().Get("secret") == "" {
		c.fatalf("no otpauth link with a secret on the QR page (href %q)", href)
	}
	return u.Query().Get("secret")
}

// checkMemberPage checks that r is the member area, for member id verified
// with the authenticator app.
func (c *chrome) checkMemberPage(r *page, id string) {
	c.t.Helper()
	c.checkMembersVia(r, id, "totp")
}

// checkWrongCode checks that r is the challenge page again, in lang, with
// msg shown above the code input, which is marked invalid.
func (c *chrome) checkWrongCode(r *page, lang, msg string) {
	c.t.Helper()
	if r.path != "/.2fa/challenge" || r.status != 401 {
		c.fatalf("after a wrong code: %s (%d), want the challenge page with 401", r.url, r.status)
	}
	got := evalJS[struct {
		Lang    string `json:"lang"`
		Text    string `json:"text"`
		Visible bool   `json:"visible"`
		Above   bool   `json:"above"`
		Invalid string `json:"invalid"`
	}](c, "the error message", `(() => {
		const err = document.getElementById('error'), input = document.getElementById('code');
		if (!err || !input) return {lang: document.documentElement.lang};
		const e = err.getBoundingClientRect(), i = input.getBoundingClientRect(), s = getComputedStyle(err);
		return {
			lang: document.documentElement.lang,
			text: err.innerText.trim(),
			visible: e.width > 0 && e.height > 0 && s.visibility === 'visible' && s.display !== 'none' && s.opacity !== '0',
			above: e.bottom <= i.top,
			invalid: input.getAttribute('aria-invalid') ?? '',
		};
	})()`)
	if got.Lang != lang || got.Text != msg || !got.Visible || !got.Above || got.Invalid != "true" {
		c.fatalf("after a wrong code: lang %q, message %q (visible %v, above the input %v), aria-invalid %q; want lang %q, message %q visible above the input",
			got.Lang, got.Text, got.Visible, got.Above, got.Invalid, lang, msg)
	}
}

// screenshot saves the viewport as a PNG and checks it is one.
func (c *chrome) screenshot(path string) {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		c.fatalf("screenshot: %v", err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		c.fatalf("screenshot: not a PNG of a page (%d bytes)", len(png))
	}
	if err := os.WriteFile(path, png, 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// fatalf stops the test, with where the browser is and what it shows.
func (c *chrome) fatalf(format string, args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		c.t.Logf("the browser is at %s", loc)
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)); err == nil {
		c.t.Logf("the page says:\n%s", text)
	}
	c.t.Fatalf(format, args...)
}

// In a real browser: from the site's account page to the gateway's
// settings, then "Sign out" through the gateway and on to the site's own
// sign-out, which the browser's Sec-Fetch-Site lets through.
func TestBrowserAccountSettingsAndSignOut(t *testing.T) {
	e := start(t, setup{})
	requireChromium(t)
	_, secret := enrolled(e, "alice")
	e.nextStep()

	c := e.chromium(t)
	c.signIn("alice", "/members/account")
	r := c.open("/members/account")
	if r.path != "/.2fa/challenge" {
		c.fatalf("the account page is protected, want the challenge; at %s", r.url)
	}
	c.typeInto("#code", e.code(secret, 0))
	if r = c.submit(`form[action="/.2fa/challenge"] button[type=submit]`); r.path != "/members/account" {
		c.fatalf("after the code: %s (%d)", r.url, r.status)
	}
	if r = c.submit("#two-factor-settings"); r.path != "/.2fa/methods" || r.status != 200 {
		c.fatalf("the settings link: %s (%d)", r.url, r.status)
	}

	r = c.open("/members/")
	if r = c.submit(`header a[href^="/.2fa/logout"]`); r.path != "/.2fa/logout" || r.status != 200 {
		c.fatalf("Sign out: %s (%d), want the gateway's sign-out page", r.url, r.status)
	}
	if r = c.submit(`form[action="/.2fa/logout"] button[type=submit]`); r.path != "/" || r.status != 200 {
		c.fatalf("after signing out: %s (%d), want the top page", r.url, r.status)
	}
	if text := c.bodyText(); !strings.Contains(text, "You are not signed in.") {
		c.fatalf("the top page after signing out says: %s", text)
	}
	for _, name := range []string{"2fa_session", membersite.SessionCookie} {
		if c.cookie(name) != nil {
			c.fatalf("cookie %s survived signing out", name)
		}
	}
	c.checkNoCSPViolations()
}
