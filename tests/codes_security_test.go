package tests

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// Attacks on the email and SMS flows by someone who holds a member's
// password (and, where said, their mailbox), and abuse of the senders.

// strictPolicy accepts only the authenticator app on /echo-admin/ but
// allows remembered devices there, so a device must not carry a weaker
// method across.
const strictPolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		remember_device 30d
	}
	protect /admin/* /echo-admin/* {
		remember_device 30d
		methods totp
	}
	site_name "Test Members"
`

func startStrict(t *testing.T) *codeEnv { return startStrictWith(t, "hourly_sends_per_user 20") }

func startStrictWith(t *testing.T, extra string) *codeEnv {
	t.Helper()
	return startCodesPolicy(t, strictPolicy, extra)
}

// A device remembered after an email code does not pass a page that
// accepts only the app, and the page does not take email codes at all.
func TestDeviceDoesNotCarryWeakerMethod(t *testing.T) {
	c := startStrict(t)
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	c.enrolEmail(b, "/members/", 1)

	a := c.browser()
	a.login("alice")
	if r := a.send("email", "/echo-admin/x"); r.status != http.StatusBadRequest {
		t.Errorf("email code sent for an app-only page: %d", r.status)
	}
	// A device remembered on a page that takes email...
	if r := a.send("email", "/echo/x"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d: %s", r.status, r.body)
	}
	_, code := c.mailCode(2)
	tok := a.csrf("/.2fa/challenge?method=email&return_to=%2Fecho%2Fx")
	r := a.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/echo/x"}, "method": {"email"}, "code": {code}, "remember": {"1"}})
	if r.status != http.StatusSeeOther || a.cookie("2fa_device") == nil {
		t.Fatalf("verify with remember: %d, device cookie %v", r.status, a.cookie("2fa_device"))
	}
	// ...passes there on a new session, as a device,
	a.setCookie("2fa_session", "")
	if status, h := a.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "device" {
		t.Fatalf("remembered device on /echo/: %d %q", status, h.Get("X-2fa-Method"))
	}
	// ...but not on the app-only page.
	if r := a.get("/echo-admin/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("app-only page with an email device: %d %q", r.status, r.location())
	}
	// Verifying by email for the app-only page neither passes it nor
	// remembers the device for it.
	if r := a.send("email", "/echo/x"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d", r.status)
	}
	_, code = c.mailCode(3)
	tok = a.csrf("/.2fa/challenge?return_to=%2Fecho-admin%2Fx")
	r = a.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/echo-admin/x"}, "method": {"email"}, "code": {code}, "remember": {"1"}})
	if r.status != http.StatusBadRequest {
		t.Errorf("email code posted for an app-only page: %d", r.status)
	}
	if status, _ := a.upstream("/echo-admin/x"); status == http.StatusOK {
		t.Fatal("app-only page reached without the app")
	}
}

// An enrolment started before the member enrolled (by someone holding only
// the password) cannot be confirmed or resent afterwards.
func TestStaleEnrolmentCannotAddFactor(t *testing.T) {
	c := startStrict(t)
	rt := url.QueryEscape("/members/")

	// SMS, confirmed after the member enrolled the app.
	att := c.browser()
	att.login("bob")
	r := att.postPage("/.2fa/enrol/sms", "/.2fa/enrol/sms?return_to="+rt, url.Values{"return_to": {"/members/"}, "phone": {"+1 202-555-0199"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("send: %d: %s", r.status, r.body)
	}
	_, code := c.smsCode(1)
	victim := c.browser()
	victim.login("bob")
	victim.enrol("/members/")
	c.clock.Advance(2 * time.Minute)
	r = att.postPage("/.2fa/enrol/resend", "/.2fa/challenge?return_to="+rt, url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") || len(c.sns.Publishes()) != 1 {
		t.Errorf("resend of a stale enrolment: %d %q, %d SMS", r.status, r.location(), len(c.sns.Publishes()))
	}
	r = att.postPage("/.2fa/enrol/code", "/.2fa/challenge?return_to="+rt, url.Values{"return_to": {"/members/"}, "code": {code}})
	if r.status == http.StatusSeeOther && r.location() == "/members/" {
		t.Error("a stale SMS enrolment was confirmed")
	}
	if status, _ := att.upstream("/echo/x"); status == http.StatusOK {
		t.Fatal("the attacker passes")
	}

	// The app, confirmed after the member enrolled email.
	att2 := c.browser()
	att2.login("alice")
	tok := att2.csrf("/.2fa/enrol?return_to=" + rt)
	r = att2.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	if r.status != http.StatusOK {
		t.Fatalf("start: %d", r.status)
	}
	secret := enrolmentSecret(t, r.body)
	member := c.browser()
	member.login("alice")
	c.enrolEmail(member, "/members/", 1)
	c.nextStep()
	r = att2.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {c.code(secret, 0)}})
	if status, _ := att2.upstream("/echo/x"); status == http.StatusOK || (r.status == http.StatusSeeOther && r.location() == "/members/") {
		t.Fatalf("a stale app enrolment was confirmed: %d %q", r.status, r.location())
	}
}

// Adding a method needs a code entered within the last ten minutes.
func TestAddingMethodNeedsRecentCode(t *testing.T) {
	c := startStrict(t)
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	if r := b.get("/.2fa/enrol/sms?return_to=%2Fmembers%2F"); r.status != http.StatusOK {
		t.Fatalf("right after a code: %d", r.status)
	}
	c.clock.Advance(9 * time.Minute)
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("session: %d", r.status)
	}
	c.clock.Advance(2 * time.Minute)
	if r := b.get("/.2fa/enrol/sms?return_to=%2Fmembers%2F"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("eleven minutes after the code: %d %q", r.status, r.location())
	}
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("the session itself still works: %d", r.status)
	}
}

// A provider failing on every send: the member gets a short wait between
// tries and a ceiling on them, so the provider is not called without end.
func TestFailingProviderIsNotHammered(t *testing.T) {
	c := startStrictWith(t, "hourly_sends_per_user 3")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	c.enrolSMS(b, "+1 202-555-0123", "/members/", 1) // two sends, two attempts
	c.sns.Fail("Throttling", 400)
	// A fresh clock hour, so the hourly counts start from zero.
	now := c.clock.Now()
	c.clock.Advance(now.Truncate(time.Hour).Add(time.Hour + time.Second).Sub(now))
	a := c.browser()
	a.login("alice")
	before := c.sns.Requests()
	statuses := map[int]int{}
	for range 40 {
		statuses[a.send("sms", "/members/").status]++
	}
	if statuses[http.StatusServiceUnavailable] != 1 || statuses[http.StatusTooManyRequests] != 39 {
		t.Errorf("40 sends at once while failing: %v, want one try and 39 waits", statuses)
	}
	last := 0
	for range 15 {
		c.clock.Advance(10 * time.Second)
		last = a.send("sms", "/members/").status
	}
	// 3 × hourly_sends_per_user = 9 attempts an hour; the SDK tries each
	// at most twice (fewer once its retry quota runs low).
	if n := c.sns.Requests() - before; n < 9 || n > 2*9 || last != http.StatusTooManyRequests {
		t.Errorf("%d SNS requests for a member's failing sends (want 9 to 18), last answer %d", n, last)
	}
}

// Another account's unconfirmed enrolments to a member's number do not use
// up the member's own sign-in codes.
func TestEnrolmentsToYourNumberDoNotBlockYou(t *testing.T) {
	c := startStrict(t)
	alice := c.browser()
	alice.login("alice")
	c.enrolSMS(alice, "090-1234-5678", "/members/", 1)
	now := c.clock.Now()
	c.clock.Advance(now.Truncate(time.Hour).Add(time.Hour + time.Second).Sub(now))

	bob := c.browser()
	bob.login("bob")
	rt := url.QueryEscape("/members/")
	refused := 0
	for range 6 {
		r := bob.postPage("/.2fa/enrol/sms", "/.2fa/enrol/sms?return_to="+rt, url.Values{"return_to": {"/members/"}, "phone": {"09012345678"}})
		if r.status == http.StatusTooManyRequests {
			refused++
		}
		c.clock.Advance(61 * time.Second)
	}
	if refused != 1 {
		t.Errorf("%d of 6 enrolment codes to one number refused, want the sixth", refused)
	}
	a2 := c.browser()
	a2.login("alice")
	if r := a2.send("sms", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("alice's own sign-in code: %d", r.status)
	}
}

// Providers' error texts name the recipient; the log gets the class only.
func TestSendFailureLogsNoAddress(t *testing.T) {
	c := startStrict(t)
	b := c.browser()
	b.login("alice")
	c.mail.Fail("reject")
	if r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("send: %d", r.status)
	}
	log, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "alice@example.com") {
		t.Error("the full address is in Caddy's log")
	}
	if !strings.Contains(string(log), `"class":"rejected"`) {
		t.Error("the failure's class is not logged")
	}
}
