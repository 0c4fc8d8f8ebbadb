package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The member's own settings: disabling a method, and changing phones with
// a recovery code.

// optionalPolicy protects /members/ without requiring a second factor, so
// the last method may go.
const optionalPolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		enrolment optional
	}
	site_name "Test Members"
`

// removeMethod posts the disable form of the methods page.
func (b *browser) removeMethod(method string, confirm bool) *response {
	b.t.Helper()
	form := url.Values{"return_to": {"/members/"}, "method": {method}}
	if confirm {
		form.Set("confirm", "yes")
	}
	return b.postPage("/.2fa/methods/remove", "/.2fa/methods?return_to=%2Fmembers%2F", form)
}

// Lost phone: sign in with a recovery code, save the new set it asks for,
// disable the old authenticator, and set up the new phone from its QR
// code.
func TestDeviceChange(t *testing.T) {
	c := startCodes(t, "")
	old := c.browser()
	old.login("alice")
	oldSecret := old.enrol("/members/")
	codes := old.recovery
	c.enrolEmail(old, "/members/", 1)

	// The phone is gone. A new browser, a recovery code, a new set.
	b := c.browser()
	b.login("alice")
	r := b.useRecovery(codes[0], "/members/")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/recovery?return_to=%2Fmembers%2F" {
		t.Fatalf("recovery code: %d %q", r.status, r.location())
	}
	b.renewRecovery("/members/")
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, "You signed in with a recovery code on") || !strings.Contains(page.body, `action="/.2fa/methods/remove"`) {
		t.Fatalf("methods page after the recovery code: %s", page.body)
	}

	// Disable the old authenticator.
	r = b.removeMethod("totp", true)
	if r.status != http.StatusSeeOther {
		t.Fatalf("disabling the old authenticator: %d: %s", r.status, r.body)
	}
	if page := b.get(r.location()); strings.Contains(page.body, `id="method-totp"`) || !strings.Contains(page.body, "disabled") {
		t.Fatalf("after disabling: %s", page.body)
	}
	// The old phone's codes no longer work, and the old browser's session
	// ended.
	if s, _ := old.upstream("/echo/x"); s == http.StatusOK {
		t.Fatal("the old browser's session survived disabling the authenticator")
	}
	c.nextStep()
	if r := old.verify(c.code(oldSecret, 0), "/members/", false); r.status == http.StatusSeeOther {
		t.Fatal("the old authenticator still works")
	}

	// Set up the new phone: the codes are new already, so a confirmation
	// and on to the site.
	tok := b.csrf("/.2fa/enrol?return_to=%2Fmembers%2F")
	r = b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	if r.status != http.StatusOK {
		t.Fatalf("starting the new phone: %d: %s", r.status, r.body)
	}
	newSecret := enrolmentSecret(t, r.body)
	r = b.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {c.code(newSecret, 0)}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "The authenticator app is set up") || !strings.Contains(r.body, `<a class="button" href="/members/">Continue</a>`) {
		t.Fatalf("confirming the new phone: %d %q", r.status, r.location())
	}
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); strings.Contains(page.body, "You signed in with a recovery code on") {
		t.Fatalf("still asked to replace the lost phone: %s", page.body)
	}
	// The new phone works in a new sign-in; the old codes do not.
	c.nextStep()
	fresh := c.browser()
	fresh.login("alice")
	if r := fresh.verify(c.code(newSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("the new phone: %d", r.status)
	}
	other := c.browser()
	other.login("alice")
	if r := other.useRecovery(codes[1], "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("an old recovery code: %d", r.status)
	}
}

// Disabling needs the box ticked; the last method stays where a second
// factor is required and may go where it is optional.
func TestDisableMethodRules(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)

	if r := b.removeMethod("sms", false); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Nothing was changed") {
		t.Fatalf("without the box: %d: %s", r.status, r.body)
	}
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); !strings.Contains(page.body, `id="method-sms"`) {
		t.Fatal("SMS went without the box ticked")
	}
	if r := b.removeMethod("sms", true); r.status != http.StatusSeeOther {
		t.Fatalf("with the box: %d: %s", r.status, r.body)
	}
	// This browser keeps a session; email is now the only method.
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("this browser after disabling: %d", s)
	}
	r := b.removeMethod("email", true)
	if r.status != http.StatusConflict || !strings.Contains(r.body, "only way to verify") {
		t.Fatalf("the last method where one is required: %d: %s", r.status, r.body)
	}
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("after the refusal: %d", s)
	}
	// Without a recent code, nothing can be disabled.
	other := c.browser()
	other.login("alice")
	tok := other.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	r = other.post("/.2fa/methods/remove", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"email"}, "confirm": {"yes"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("disabling without a recent code: %d %q", r.status, r.location())
	}
}

func TestDisableLastMethodWhereOptional(t *testing.T) {
	c := startCodesPolicy(t, optionalPolicy, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	r := b.removeMethod("email", true)
	if r.status != http.StatusSeeOther || r.location() != "/members/" {
		t.Fatalf("the last method where it is optional: %d %q: %s", r.status, r.location(), r.body)
	}
	// Not enrolled any more: the optional path reminds, then lets through.
	if r := b.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/remind") {
		t.Fatalf("after disabling the last method: %d %q", r.status, r.location())
	}
}

// Every settings form refuses a post without the page's CSRF token.
func TestSettingsFormsNeedCSRF(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	for _, path := range []string{"/.2fa/methods/remove", "/.2fa/methods/default", "/.2fa/methods/recovery", "/.2fa/methods/devices",
		"/.2fa/enrol/sms", "/.2fa/enrol/email", "/.2fa/enrol", "/.2fa/enrol/code", "/.2fa/enrol/resend", "/.2fa/enrol/confirm"} {
		for _, tok := range []string{"", "forged-token"} {
			r := b.post(path, url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"email"}, "confirm": {"yes"}, "phone": {"090-1234-5678"}})
			if r.status != http.StatusForbidden {
				t.Errorf("POST %s with csrf %q: %d", path, tok, r.status)
			}
		}
	}
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); !strings.Contains(page.body, `id="method-email"`) || len(c.sns.Publishes()) != 0 {
		t.Fatal("a forged post changed something")
	}
}

// Remembered devices are listed in the settings, and forgetting one ends
// it at once.
func TestForgetRememberedDevices(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")

	// Two browsers remember themselves.
	var remembered []*browser
	for range 2 {
		e.nextStep()
		d := e.browser()
		d.header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36")
		d.login("alice")
		if r := d.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
			t.Fatalf("verify: %d", r.status)
		}
		d.setCookie("2fa_session", "")
		if s, h := d.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "device" {
			t.Fatalf("remembered device: %d %q", s, h.Get("X-2fa-Method"))
		}
		remembered = append(remembered, d)
	}

	// A third browser, with a fresh code, sees both and forgets one.
	e.nextStep()
	m := e.browser()
	m.login("alice")
	if r := m.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	page := m.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if n := strings.Count(page.body, `name="device"`); n != 2 || !strings.Contains(page.body, "Chrome · Windows") || !strings.Contains(page.body, "127.0.0.1") {
		t.Fatalf("%d devices listed: %s", n, page.body)
	}
	id := inputValue(page.body, "device")
	r := m.post("/.2fa/methods/devices", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "device": {id}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("forget: %d: %s", r.status, r.body)
	}
	passing := 0
	for _, d := range remembered {
		d.setCookie("2fa_session", "")
		if s, _ := d.upstream("/echo/x"); s == http.StatusOK {
			passing++
		}
	}
	if passing != 1 {
		t.Fatalf("%d remembered browsers still pass after forgetting one", passing)
	}
	page = m.get("/.2fa/methods?return_to=%2Fmembers%2F")
	r = m.post("/.2fa/methods/devices", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "all": {"1"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("forget all: %d", r.status)
	}
	for _, d := range remembered {
		d.setCookie("2fa_session", "")
		if s, _ := d.upstream("/echo/x"); s == http.StatusOK {
			t.Fatal("a remembered browser passes after forgetting all")
		}
	}
	if page := m.get("/.2fa/methods?return_to=%2Fmembers%2F"); strings.Contains(page.body, `name="device"`) {
		t.Fatal("devices still listed")
	}
}

// The settings page shows the member's recent security events, a wrong
// code from elsewhere among them.
func TestAccountActivity(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	secret := b.enrol("/members/")
	stranger := c.browser()
	stranger.header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0")
	stranger.login("alice")
	if r := stranger.verify("000000", "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", r.status)
	}
	c.nextStep()
	if r := b.verify(c.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	table := page.body[strings.Index(page.body, `<table class="activity`):]
	for _, want := range []string{"Verified with: Authenticator app", "Wrong code (Authenticator app)", "Added: Authenticator app", "Firefox · Linux", "127.0.0.1"} {
		if !strings.Contains(table, want) {
			t.Errorf("activity lacks %q:\n%s", want, table)
		}
	}
	if strings.Index(table, "Verified with") > strings.Index(table, "Wrong code") {
		t.Error("activity not newest first")
	}
}

// A member whose only method is the app, where a second factor is
// required, changes phones without ever being left without one: recovery
// code, then the new phone from the settings page; the old phone's secret
// stops when the new one is confirmed.
func TestNewPhoneForTheOnlyMethod(t *testing.T) {
	c := startCodes(t, "")
	old := c.browser()
	old.login("alice")
	oldSecret := old.enrol("/members/")
	codes := old.recovery

	b := c.browser()
	b.login("alice")
	if r := b.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("recovery code: %d", r.status)
	}
	if r := b.removeMethod("totp", true); r.status != http.StatusConflict {
		t.Fatalf("disabling the only method where one is required: %d", r.status)
	}
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, `name="replace" value="1"`) {
		t.Fatalf("no way to set up a new phone: %s", page.body)
	}
	r := b.post("/.2fa/enrol", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "replace": {"1"}})
	if r.status != http.StatusOK {
		t.Fatalf("starting the new phone: %d: %s", r.status, r.body)
	}
	newSecret := enrolmentSecret(t, r.body)
	// Until confirmed, the old phone still works.
	c.nextStep()
	probe := c.browser()
	probe.login("alice")
	if r := probe.verify(c.code(oldSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("the old phone before the new one is confirmed: %d", r.status)
	}
	c.nextStep()
	r = b.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {c.code(newSecret, 0)}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/methods?") {
		t.Fatalf("confirming the new phone: %d %q: %s", r.status, r.location(), r.body)
	}
	if page := b.get(r.location()); !strings.Contains(page.body, "generate a new set") {
		t.Fatal("new recovery codes not offered")
	}
	// The old phone and its sessions are done; the new phone works.
	// Ended, not only held back for the new recovery codes.
	if r := probe.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("a session from the old phone survived: %d %q", r.status, r.location())
	}
	c.nextStep()
	fresh := c.browser()
	fresh.login("alice")
	if r := fresh.verify(c.code(oldSecret, 0), "/members/", false); r.status == http.StatusSeeOther {
		t.Fatal("the old phone still works")
	}
	if r := fresh.verify(c.code(newSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("the new phone: %d", r.status)
	}
	// Without a recent code, no new phone can be started.
	other := c.browser()
	other.login("alice")
	tok := other.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	if r := other.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "replace": {"1"}}); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("a new phone without a recent code: %d %q", r.status, r.location())
	}
}

// Forgetting a device ends the session it started, not only the device;
// a recovery code ends every other session and remembered device.
func TestForgettingEndsDeviceSessions(t *testing.T) {
	e := start(t, setup{})
	b, secret := enrolled(e, "alice")
	codes := b.recovery

	e.nextStep()
	d := e.browser()
	d.login("alice")
	if r := d.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	d.setCookie("2fa_session", "")
	if s, h := d.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "device" {
		t.Fatalf("device session: %d", s)
	}
	// d now holds a session started from its device. Forget the device
	// from another browser; d keeps its session cookie.
	e.nextStep()
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if r := b.post("/.2fa/methods/devices", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "all": {"1"}}); r.status != http.StatusSeeOther {
		t.Fatalf("forget all: %d", r.status)
	}
	if s, _ := d.upstream("/echo/x"); s == http.StatusOK {
		t.Fatal("the session started from a forgotten device still passes")
	}

	// Another remembered browser, then a recovery code elsewhere.
	e.nextStep()
	d2 := e.browser()
	d2.login("alice")
	if r := d2.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	x := e.browser()
	x.login("alice")
	if r := x.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("recovery: %d", r.status)
	}
	// Ended, not only held back for the new set.
	if r := d2.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("a session survived a recovery code: %d %q", r.status, r.location())
	}
	d2.setCookie("2fa_session", "")
	if r := d2.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("a remembered device survived a recovery code: %d %q", r.status, r.location())
	}
	x.renewRecovery("/members/")
	if s, _ := x.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("the browser that used the recovery code: %d", s)
	}
}

// Disabling a method is not a new code: the step-up window runs on.
func TestDisablingDoesNotExtendStepUp(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)
	c.clock.Advance(9 * time.Minute)
	if r := b.removeMethod("sms", true); r.status != http.StatusSeeOther {
		t.Fatalf("disable: %d", r.status)
	}
	c.clock.Advance(2 * time.Minute)
	if r := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("eleven minutes after the code: %d %q", r.status, r.location())
	}
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("the session itself: %d", s)
	}
}
