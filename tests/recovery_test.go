package tests

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Recovery codes: shown once at the first enrolment, each works once in
// place of a code, wrong ones count toward the lockout, and a new set
// voids the old one.

// renewRecovery makes the new set that a sign-in with a recovery code
// leads to, from its page, and returns the codes shown.
func (b *browser) renewRecovery(returnTo string) []string {
	b.t.Helper()
	rt := url.QueryEscape(returnTo)
	r := b.postPage("/.2fa/recovery", "/.2fa/recovery?return_to="+rt, url.Values{"return_to": {returnTo}})
	codes := recoveryCodes(r.body)
	if r.status != http.StatusOK || len(codes) != 10 {
		b.t.Fatalf("the new set after a recovery code: %d, %d codes: %s", r.status, len(codes), r.body)
	}
	return codes
}

// useRecovery signs in with a recovery code for returnTo.
func (b *browser) useRecovery(code, returnTo string) *response {
	b.t.Helper()
	rt := url.QueryEscape(returnTo)
	return b.postPage("/.2fa/challenge", "/.2fa/challenge?method=recovery&return_to="+rt,
		url.Values{"return_to": {returnTo}, "method": {"recovery"}, "code": {code}})
}

func TestRecoveryCodes(t *testing.T) {
	c := startCodesPolicy(t, strictPolicy, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	codes := b.recovery
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes at the first enrolment", len(codes))
	}
	seen := map[string]bool{}
	for _, code := range codes {
		if seen[code] {
			t.Fatalf("repeated code %s", code)
		}
		seen[code] = true
	}
	// A second method shows no new codes.
	c.enrolEmail(b, "/members/", 1)

	a := c.browser()
	a.login("alice")
	page := a.get("/.2fa/challenge?return_to=%2Fecho-admin%2Fx")
	if !strings.Contains(page.body, "method=recovery") {
		t.Fatalf("no way to use a recovery code: %s", page.body)
	}
	page = a.get("/.2fa/challenge?method=recovery&return_to=%2Fecho-admin%2Fx")
	if !strings.Contains(page.body, `name="method" value="recovery"`) || strings.Contains(page.body, `inputmode="numeric"`) || strings.Contains(page.body, `name="remember"`) {
		t.Fatalf("recovery form: %s", page.body)
	}
	if r := a.useRecovery("7K3M-Q9TX-4HPA-2WRE", "/echo-admin/x"); r.status != http.StatusUnauthorized {
		t.Fatalf("a wrong recovery code: %d", r.status)
	}
	// Typed loosely: lower case, spaces instead of hyphens.
	loose := strings.ToLower(strings.ReplaceAll(codes[0], "-", " "))
	r := a.useRecovery(loose, "/echo-admin/x")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/recovery?return_to=%2Fecho-admin%2Fx" {
		t.Fatalf("a right recovery code: %d %q: %s", r.status, r.location(), r.body)
	}
	// Used once only.
	again := c.browser()
	again.login("alice")
	if r := again.useRecovery(codes[0], "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("a used recovery code again: %d", r.status)
	}
	// With a new set, it passes even the app-only page, so the member can
	// get back in.
	renewed := a.renewRecovery("/echo-admin/x")
	if status, h := a.upstream("/echo-admin/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "recovery" {
		t.Fatalf("app-only page after a recovery code: %d %q", status, h.Get("X-2fa-Method"))
	}

	// New codes void the old ones, and need a recent code.
	c.clock.Advance(11 * time.Minute)
	tok := a.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	r = a.post("/.2fa/methods/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("new codes without a recent code: %d %q", r.status, r.location())
	}
	fresh := c.browser()
	fresh.login("alice")
	if r := fresh.useRecovery(renewed[1], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("second code: %d", r.status)
	}
	tok = fresh.csrf("/.2fa/methods?return_to=%2Fmembers%2F")
	r = fresh.post("/.2fa/methods/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	next := recoveryCodes(r.body)
	if r.status != http.StatusOK || len(next) != 10 {
		t.Fatalf("new codes: %d, %d codes", r.status, len(next))
	}
	other := c.browser()
	other.login("alice")
	if r := other.useRecovery(renewed[2], "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("an old code after new ones: %d", r.status)
	}
	if r := other.useRecovery(next[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("a new code: %d", r.status)
	}
	for _, a := range c.audit() {
		for _, code := range slices.Concat(codes, renewed, next) {
			for _, v := range a {
				if s, ok := v.(string); ok && strings.Contains(strings.ReplaceAll(s, "-", ""), strings.ReplaceAll(code, "-", "")) {
					t.Fatalf("a recovery code in the audit log: %v", a)
				}
			}
		}
	}
}

// Wrong recovery codes share the account's lockout with every other code.
func TestRecoveryCodeGuessesLockOut(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	codes := b.recovery
	a := c.browser()
	a.login("alice")
	tok := a.csrf("/.2fa/challenge?method=recovery&return_to=%2Fmembers%2F")
	try := func(code string) int {
		return a.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"recovery"}, "code": {code}}).status
	}
	for i := range 5 {
		if s := try("2222-3333-4444-5555"); s != http.StatusUnauthorized && !(i == 4 && s == http.StatusTooManyRequests) {
			t.Fatalf("wrong code %d: %d", i+1, s)
		}
	}
	if s := try(codes[0]); s != http.StatusTooManyRequests {
		t.Fatalf("right code while locked: %d", s)
	}
}

// With two or fewer codes left the methods page warns.
func TestRecoveryCodesRunningLow(t *testing.T) {
	c := startCodes(t, "max_failures 50")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	codes := b.recovery
	for i := range 8 {
		x := c.browser()
		x.login("alice")
		if r := x.useRecovery(codes[i], "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("code %d: %d", i, r.status)
		}
		page := x.get("/.2fa/methods?return_to=%2Fmembers%2F")
		low := strings.Contains(page.body, "You are running out of recovery codes")
		if left := 9 - i; low != (left <= 2) {
			t.Errorf("%d left: warning shown %v", left, low)
		}
	}
}

// RC-5: a sign-in with a recovery code completes the second factor, but no
// protected path lets the member through until they have made a new set,
// shown once; the old codes then stop working, and the settings page asks
// the member to replace the method they lost.
func TestRecoverySignInDemandsNewSet(t *testing.T) {
	c := startCodes(t, "")
	alice, _ := enrolled(c.env, "alice")
	codes := alice.recovery

	x := c.browser()
	x.login("alice")
	used := c.clock.Now().UTC().Format(time.DateOnly)
	r := x.useRecovery(codes[0], "/members/page?x=1")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/recovery?return_to=%2Fmembers%2Fpage%3Fx%3D1" {
		t.Fatalf("a recovery code: %d %q", r.status, r.location())
	}
	c.notice("alice@example.com", "A recovery code was used")

	// Held back from every protected path: pages go to the new set,
	// scripts get 401, and the upstream sees nothing.
	if r := x.get("/echo/x"); r.status != http.StatusFound || r.location() != "/.2fa/recovery?return_to=%2Fecho%2Fx" {
		t.Fatalf("a protected page before the new set: %d %q %s", r.status, r.location(), r.body)
	}
	x.header.Set("Sec-Fetch-Mode", "cors")
	if r := x.get("/echo/data.json"); r.status != http.StatusUnauthorized || strings.Contains(r.body, `"headers"`) {
		t.Fatalf("a script before the new set: %d %s", r.status, r.body)
	}
	x.header.Del("Sec-Fetch-Mode")

	// The step itself shows no codes, and only a post with this browser's
	// token from this origin makes them.
	page := x.get("/.2fa/recovery?return_to=%2Fmembers%2Fpage%3Fx%3D1")
	if page.status != http.StatusOK || page.header.Get("Cache-Control") != "no-store" ||
		!strings.Contains(page.body, `action="/.2fa/recovery"`) || len(recoveryCodes(page.body)) != 0 {
		t.Fatalf("the renewal step: %d %q: %s", page.status, page.header.Get("Cache-Control"), page.body)
	}
	tok := inputValue(page.body, "csrf")
	if r := x.post("/.2fa/recovery", url.Values{"return_to": {"/members/"}}); r.status != http.StatusForbidden {
		t.Fatalf("a new set without the CSRF token: %d", r.status)
	}
	x.header.Set("Origin", "https://evil.example")
	if r := x.post("/.2fa/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}}); r.status != http.StatusForbidden {
		t.Fatalf("a new set posted from another site: %d", r.status)
	}
	x.header.Del("Origin")
	if r := x.get("/echo/x"); r.status != http.StatusFound {
		t.Fatalf("refused posts made a new set: %d", r.status)
	}

	// Made and shown once, no-store, with "continue" to a same-site path
	// only.
	r = x.post("/.2fa/recovery", url.Values{"csrf": {tok}, "return_to": {"https://evil.example/"}})
	fresh := recoveryCodes(r.body)
	if r.status != http.StatusOK || len(fresh) != 10 || r.header.Get("Cache-Control") != "no-store" ||
		!strings.Contains(r.body, `<a class="button" href="/">I have saved these codes — continue</a>`) ||
		!strings.Contains(r.body, "Your earlier recovery codes no longer work.") {
		t.Fatalf("the new set: %d, %d codes, %q: %s", r.status, len(fresh), r.header.Get("Cache-Control"), r.body)
	}
	c.notice("alice@example.com", "New recovery codes were made")
	renewed := 0
	for _, a := range c.audit() {
		if a["event"] == "recovery_codes_generated" && a["after_use"] == true && a["replaced"] == true {
			renewed++
		}
	}
	if renewed != 1 {
		t.Fatalf("%d renewals after a use in the audit log, want 1", renewed)
	}
	if r := x.get("/.2fa/recovery?return_to=%2Fmembers%2Fpage%3Fx%3D1"); r.status != http.StatusSeeOther ||
		r.location() != "/members/page?x=1" || len(recoveryCodes(r.body)) != 0 {
		t.Fatalf("the step again: %d %q", r.status, r.location())
	}
	if status, h := x.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "recovery" {
		t.Fatalf("after the new set: %d %q", status, h.Get("X-2fa-Method"))
	}

	// The settings page asks for the lost method to be replaced, in
	// either language, until one is added.
	settings := "/.2fa/methods?return_to=%2Fmembers%2F"
	used = strings.ReplaceAll(used, "-", "\u2011") // the page keeps the date together
	if p := x.get(settings); !strings.Contains(p.body, "You signed in with a recovery code on "+used+". If you lost your phone or the app, disable it here and add a new method.") {
		t.Fatalf("no notice on the settings page: %s", p.body)
	}
	x.lang = "ja"
	if p := x.get(settings); !strings.Contains(p.body, used+" にリカバリーコードで認証しました。") {
		t.Fatalf("no Japanese notice on the settings page: %s", p.body)
	}
	x.lang = "en"
	c.nextStep()
	c.enrolEmail(x, "/members/", 1)
	if p := x.get(settings); p.status != http.StatusOK || strings.Contains(p.body, `id="recovered"`) {
		t.Fatalf("the notice after a method was added: %d: %s", p.status, p.body)
	}

	// The old set is gone, the new one works (and asks for a set again).
	y := c.browser()
	y.login("alice")
	for _, old := range codes[1:3] {
		if r := y.useRecovery(old, "/members/"); r.status != http.StatusUnauthorized {
			t.Fatalf("an old code after the new set: %d", r.status)
		}
	}
	if r := y.useRecovery(fresh[0], "/members/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/recovery?") {
		t.Fatalf("a code of the new set: %d %q", r.status, r.location())
	}
}

// RC-6: a recovery code as long as a form allows is refused as malformed
// and counted, a megabyte is refused before the form is read, and neither
// hashes anything or locks the member out by itself.
func TestRecoveryCodeInputBounded(t *testing.T) {
	c := startCodes(t, "")
	alice, _ := enrolled(c.env, "alice")
	codes := alice.recovery

	x := c.browser()
	x.login("alice")
	long := strings.Repeat(strings.ToLower(codes[0])+" ", 500)
	r := x.useRecovery(long, "/members/")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Enter a recovery code, like 7K3M-Q9TX-4HPA-2WRE.") {
		t.Fatalf("a 10 KB code: %d: %s", r.status, r.body)
	}
	tok := x.csrf("/.2fa/challenge?method=recovery&return_to=%2Fmembers%2F")
	huge := url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"recovery"}, "code": {strings.Repeat("7", 1<<20)}}
	if r := x.post("/.2fa/challenge", huge); r.status != http.StatusBadRequest {
		t.Fatalf("a 1 MB code: %d", r.status)
	}
	malformed := 0
	for _, a := range c.audit() {
		if a["event"] == "verify" && a["method"] == "recovery" {
			if a["reason"] != "malformed" {
				t.Fatalf("audit: %v", a)
			}
			malformed++
		}
	}
	if malformed != 1 {
		t.Fatalf("%d malformed recovery codes audited, want the 10 KB one", malformed)
	}
	// The code itself, typed right, still works.
	if r := x.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("the code after the long inputs: %d", r.status)
	}
}

// RC-7: the new set after a recovery code needs no second code however
// long the member takes over it, even with no recovery code left to give;
// every other change of methods still does, and once the set is made so
// does another.
func TestRecoveryRenewalAfterStepUp(t *testing.T) {
	e := start(t, setup{})
	for _, tc := range []struct {
		member string
		uses   int
	}{{"alice", 1}, {"bob", 10}} {
		owner, _ := enrolled(e, tc.member)
		x := e.browser()
		x.login(tc.member)
		for _, code := range owner.recovery[:tc.uses] {
			if r := x.useRecovery(code, "/members/"); r.status != http.StatusSeeOther {
				t.Fatalf("%s: a recovery code: %d", tc.member, r.status)
			}
		}
		e.clock.Advance(11 * time.Minute)
		if r := x.get("/echo/x"); r.status != http.StatusFound || r.location() != "/.2fa/recovery?return_to=%2Fecho%2Fx" {
			t.Fatalf("%s: a protected page past step_up: %d %q", tc.member, r.status, r.location())
		}
		if r := x.get("/.2fa/methods?return_to=%2Fmembers%2F"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
			t.Fatalf("%s: the settings page past step_up: %d %q", tc.member, r.status, r.location())
		}
		renewed := x.renewRecovery("/echo/x")
		if status, h := x.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "recovery" {
			t.Fatalf("%s: after the new set: %d %q", tc.member, status, h.Get("X-2fa-Method"))
		}

		// Renewed: another set, or the step itself, needs a recent code.
		tok := x.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
		if r := x.post("/.2fa/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}}); r.status != http.StatusSeeOther ||
			!strings.HasPrefix(r.location(), "/.2fa/challenge?") || len(recoveryCodes(r.body)) != 0 {
			t.Fatalf("%s: a second set past step_up: %d %q", tc.member, r.status, r.location())
		}
		if r := x.get("/.2fa/recovery?return_to=%2Fmembers%2F"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
			t.Fatalf("%s: the renewal step past step_up after the new set: %d %q", tc.member, r.status, r.location())
		}
		y := e.browser()
		y.login(tc.member)
		if r := y.useRecovery(renewed[0], "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("%s: a code of the new set: %d", tc.member, r.status)
		}
	}
}

// RC-8: renewal is the member's, not the session's. A session begun after
// the recovery code by setting up a new phone, or by a sign-in in another
// browser, session or remembered device, is held back as well until the
// set is made, from whichever session.
func TestRecoveryRenewalForEverySession(t *testing.T) {
	e := start(t, setup{})
	alice, _ := enrolled(e, "alice")
	x := e.browser()
	x.login("alice")
	if r := x.useRecovery(alice.recovery[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("a recovery code: %d", r.status)
	}
	page := x.get("/.2fa/methods?return_to=%2Fmembers%2F")
	r := x.post("/.2fa/enrol", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "replace": {"1"}})
	if r.status != http.StatusOK {
		t.Fatalf("starting the new phone: %d: %s", r.status, r.body)
	}
	secret := enrolmentSecret(t, r.body)
	e.nextStep()
	r = x.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("confirming the new phone: %d: %s", r.status, r.body)
	}
	heldBack := func(b *browser, who string) {
		t.Helper()
		if r := b.get("/echo/x"); r.status != http.StatusFound || r.location() != "/.2fa/recovery?return_to=%2Fecho%2Fx" {
			t.Fatalf("%s before the new set: %d %q", who, r.status, r.location())
		}
	}
	heldBack(x, "the new phone's session")
	x.header.Set("Sec-Fetch-Mode", "cors")
	if r := x.get("/echo/data.json"); r.status != http.StatusUnauthorized || strings.Contains(r.body, `"headers"`) {
		t.Fatalf("a script of the new phone's session: %d %s", r.status, r.body)
	}
	x.header.Del("Sec-Fetch-Mode")

	e.nextStep()
	y := e.browser()
	y.login("alice")
	if r := y.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("the new phone in another browser: %d", r.status)
	}
	heldBack(y, "a later sign-in")
	y.setCookie("2fa_session", "")
	heldBack(y, "a device remembered after the recovery code")
	// Its remembered session is no code for the renewal step.
	if r := y.get("/.2fa/recovery?return_to=%2Fecho%2Fx"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("the renewal step from a remembered device: %d %q", r.status, r.location())
	}

	x.renewRecovery("/echo/x")
	if status, h := x.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "totp" {
		t.Fatalf("the new phone's session after the new set: %d %q", status, h.Get("X-2fa-Method"))
	}
	if status, h := y.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "device" {
		t.Fatalf("the remembered browser after the new set: %d %q", status, h.Get("X-2fa-Method"))
	}
}
