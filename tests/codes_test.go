package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/internal/testcode"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// Codes by email and SMS, end to end: a real SMTP server and an
// SNS-compatible endpoint on loopback receive what the gateway sends, and
// the tests read the codes from there like a member reads their phone.

// codeEnv is a gateway with both senders.
type codeEnv struct {
	*env
	mail *testsmtp.Server
	sns  *testsns.Server
}

// codePolicy protects /members/ with every method and /admin/ with the
// authenticator app only.
const codePolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		remember_device 30d
	}
	protect /admin/* /echo-admin/* {
		remember_device off
		methods totp
	}
	site_name "Test Members"
`

// senders returns the global lines for an SMTP server (STARTTLS, AUTH)
// and the SNS endpoint.
func senders(mail *testsmtp.Server, sns *testsns.Server, extra string) string {
	return fmt.Sprintf(`
		email smtp {
			host %s
			port %d
			username mailer
			password mailer-password
			from "Test Members <no-reply@example.com>"
			ca_file %q
			timeout 2s
		}
		sms sns {
			region ap-northeast-1
			access_key_id AKIDTESTTESTTEST
			secret_access_key test-secret-key
			sender_id TestSite
			endpoint %s
			timeout 2s
		}
		phone_countries JP US GB
		%s`, mail.Host(), mail.Port(), mail.CertFile(), sns.URL(), extra)
}

func startCodes(t *testing.T, extra string) *codeEnv {
	t.Helper()
	return startCodesPolicy(t, codePolicy, extra)
}

// startCodesPolicy runs a gateway with policy, both senders and extra
// global lines.
func startCodesPolicy(t *testing.T, policy, extra string) *codeEnv {
	t.Helper()
	return startCodesSetup(t, setup{policy: policy}, extra)
}

// startCodesSetup runs a gateway as s says, with both senders, the
// embedded store and extra global lines.
func startCodesSetup(t *testing.T, s setup, extra string) *codeEnv {
	t.Helper()
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	dir := t.TempDir()
	s.global = fmt.Sprintf("keys %q\n\t\tstore embedded %q\n", testKey, dir+"/twofactor.db") + senders(mail, sns, extra)
	s.dbPath = dir + "/twofactor.db"
	return &codeEnv{env: start(t, s), mail: mail, sns: sns}
}

// codeMails returns the messages that carry a code, leaving out the
// security notices that arrive in between.
func (c *codeEnv) codeMails() []testsmtp.Message {
	var out []testsmtp.Message
	for _, m := range c.mail.Messages() {
		if sixDigits.MatchString(m.Text) {
			out = append(out, m)
		}
	}
	return out
}

var sixDigits = regexp.MustCompile(`(?:^|[^0-9])[0-9]{6}(?:[^0-9]|$)`)

// mailCode waits for the n-th message with a code and returns it with the
// code.
func (c *codeEnv) mailCode(n int) (testsmtp.Message, string) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if msgs := c.codeMails(); len(msgs) >= n {
			return msgs[n-1], testcode.Find(c.t, msgs[n-1].Text)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no code message %d; mail so far: %d messages", n, len(c.mail.Messages()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *codeEnv) smsCode(n int) (testsns.Publish, string) {
	c.t.Helper()
	pubs := c.sns.Wait(c.t, n, 5*time.Second)
	p := pubs[n-1]
	return p, testcode.Find(c.t, p.Message)
}

// postPage posts a form to a gateway page with the page's CSRF token.
func (b *browser) postPage(page, csrfFrom string, form url.Values) *response {
	b.t.Helper()
	form.Set("csrf", b.csrf(csrfFrom))
	return b.post(page, form)
}

// enrolEmail adds email for the signed-in member, who has an address at
// the member site, and returns the confirming message.
func (c *codeEnv) enrolEmail(b *browser, returnTo string, nth int) testsmtp.Message {
	c.t.Helper()
	rt := url.QueryEscape(returnTo)
	r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to="+rt, url.Values{"return_to": {returnTo}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol/code") {
		c.t.Fatalf("sending the email confirmation: %d %q: %s", r.status, r.location(), r.body)
	}
	msg, code := c.mailCode(nth)
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to="+rt, url.Values{"return_to": {returnTo}, "code": {code}})
	if codes := enrolDone(c.t, r, returnTo); codes != nil {
		b.recovery = codes
	}
	return msg
}

// enrolSMS adds a phone number for the signed-in member.
func (c *codeEnv) enrolSMS(b *browser, phone, returnTo string, nth int) testsns.Publish {
	c.t.Helper()
	rt := url.QueryEscape(returnTo)
	r := b.postPage("/.2fa/enrol/sms", "/.2fa/enrol/sms?return_to="+rt, url.Values{"return_to": {returnTo}, "phone": {phone}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol/code") {
		c.t.Fatalf("sending the SMS confirmation: %d %q: %s", r.status, r.location(), r.body)
	}
	pub, code := c.smsCode(nth)
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to="+rt, url.Values{"return_to": {returnTo}, "code": {code}})
	if codes := enrolDone(c.t, r, returnTo); codes != nil {
		b.recovery = codes
	}
	return pub
}

// send asks for a sign-in code by method.
func (b *browser) send(method, returnTo string) *response {
	b.t.Helper()
	rt := url.QueryEscape(returnTo)
	return b.postPage("/.2fa/challenge/send", "/.2fa/challenge?method="+method+"&return_to="+rt,
		url.Values{"return_to": {returnTo}, "method": {method}})
}

// verifyCode submits an emailed or texted code.
func (b *browser) verifyCode(method, code, returnTo string) *response {
	b.t.Helper()
	rt := url.QueryEscape(returnTo)
	return b.postPage("/.2fa/challenge", "/.2fa/challenge?method="+method+"&return_to="+rt,
		url.Values{"return_to": {returnTo}, "method": {method}, "code": {code}})
}

func TestEmailCodeEndToEnd(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	if r := b.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("not sent to enrolment: %d %q", r.status, r.location())
	}
	picker := b.get("/.2fa/enrol?return_to=%2Fmembers%2F")
	for _, want := range []string{"/.2fa/enrol/email", "/.2fa/enrol/sms", `action="/.2fa/enrol"`} {
		if !strings.Contains(picker.body, want) {
			t.Errorf("picker lacks %s", want)
		}
	}
	if strings.Index(picker.body, `action="/.2fa/enrol"`) > strings.Index(picker.body, "/.2fa/enrol/sms") {
		t.Error("the authenticator app is not offered before SMS")
	}
	page := b.get("/.2fa/enrol/email?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, "a•••@example.com") {
		t.Errorf("email page does not name the member's address, masked: %s", page.body)
	}
	msg := c.enrolEmail(b, "/members/", 1)
	if len(msg.To) != 1 || msg.To[0] != "alice@example.com" || !msg.TLS {
		t.Errorf("confirmation to %v, over TLS %v", msg.To, msg.TLS)
	}
	if !strings.Contains(msg.Subject, "Test Members") {
		t.Errorf("subject %q does not name the site", msg.Subject)
	}
	if status, h := b.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "email" {
		t.Fatalf("after enrolment: %d, method %q", status, h.Get("X-2fa-Method"))
	}

	// A new sign-in: the challenge offers email, sends on request only.
	b2 := c.browser()
	b2.login("alice")
	page = b2.get("/.2fa/challenge?return_to=%2Fecho%2Fx")
	if !strings.Contains(page.body, "a•••@example.com") || strings.Contains(page.body, `name="code"`) {
		t.Fatalf("challenge before sending: %s", page.body)
	}
	if got := len(c.codeMails()); got != 1 {
		t.Fatalf("viewing the challenge sent %d messages", got-1)
	}
	r := b2.send("email", "/echo/x")
	if r.status != http.StatusSeeOther || !strings.Contains(r.location(), "method=email") {
		t.Fatalf("send: %d %q: %s", r.status, r.location(), r.body)
	}
	page = b2.get(r.location())
	if !strings.Contains(page.body, `name="code"`) || !strings.Contains(page.body, "a•••@example.com") {
		t.Fatalf("challenge after sending: %s", page.body)
	}
	_, code := c.mailCode(2)
	r = b2.verifyCode("email", code, "/echo/x")
	if r.status != http.StatusSeeOther || r.location() != "/echo/x" {
		t.Fatalf("verify: %d %q: %s", r.status, r.location(), r.body)
	}
	if status, h := b2.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "email" {
		t.Fatalf("after verifying: %d, method %q", status, h.Get("X-2fa-Method"))
	}
	// Used once only.
	if r := b2.verifyCode("email", code, "/echo/x"); r.status != http.StatusUnauthorized {
		t.Errorf("the same code again: %d", r.status)
	}
	for _, a := range c.audit() {
		for k, v := range a {
			if s, ok := v.(string); ok && strings.Contains(s, code) && k != "ts" {
				t.Errorf("the code is in the audit log: %v", a)
			}
		}
	}
}

func TestSMSCodeEndToEnd(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("bob")
	pub := c.enrolSMS(b, "090-1234-5678", "/members/", 1)
	if pub.PhoneNumber != "+819012345678" {
		t.Errorf("PhoneNumber %q, want E.164", pub.PhoneNumber)
	}
	if pub.Attributes["AWS.SNS.SMS.SMSType"] != "Transactional" || pub.Attributes["AWS.SNS.SMS.SenderID"] != "TestSite" || !pub.Signed {
		t.Errorf("attributes %v, signed %v", pub.Attributes, pub.Signed)
	}
	if code := testcode.Find(t, pub.Message); !strings.HasPrefix(pub.Message, code) {
		t.Errorf("the code is not first in %q", pub.Message)
	}

	b2 := c.browser()
	b2.login("bob")
	page := b2.get("/.2fa/challenge?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, "81 •• •••• 5678") {
		t.Errorf("challenge does not show the masked number: %s", page.body)
	}
	if r := b2.send("sms", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d: %s", r.status, r.body)
	}
	_, code := c.smsCode(2)
	if r := b2.verifyCode("sms", code, "/members/"); r.status != http.StatusSeeOther || r.location() != "/members/" {
		t.Fatalf("verify: %d %q: %s", r.status, r.location(), r.body)
	}
	if r := b2.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("members: %d", r.status)
	}
}

// A failing SMS provider: the member is told, is offered email, nothing
// of the SMS enrolment is lost, and SMS works again once the provider
// recovers.
func TestSendFailureTryAnotherWay(t *testing.T) {
	c := startCodes(t, "hourly_sends_per_user 20")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	c.enrolSMS(b, "+1 202-555-0123", "/members/", 1)

	for _, fail := range []struct {
		code   string
		status int
	}{{"Throttling", 400}, {"InvalidParameter", 400}, {"InternalError", 500}} {
		c.sns.Fail(fail.code, fail.status)
		c.clock.Advance(10 * time.Second) // the short wait after a failed send
		b2 := c.browser()
		b2.login("alice")
		r := b2.send("sms", "/members/")
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "could not send") {
			t.Fatalf("%s: %d: %s", fail.code, r.status, r.body)
		}
		if !strings.Contains(r.body, "method=email") {
			t.Errorf("%s: email not offered: %s", fail.code, r.body)
		}
		if strings.Contains(r.body, fail.code) {
			t.Errorf("%s: the provider's error reaches the page", fail.code)
		}
		// Another way works at once.
		if r := b2.send("email", "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("email after SMS failure: %d: %s", r.status, r.body)
		}
		_, code := c.mailCode(len(c.codeMails()))
		if r := b2.verifyCode("email", code, "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("email code: %d: %s", r.status, r.body)
		}
	}
	// Provider back: SMS works, with no cooldown left from the failures.
	c.sns.Fail("", 0)
	c.clock.Advance(10 * time.Second)
	b3 := c.browser()
	b3.login("alice")
	if r := b3.send("sms", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("SMS after recovery: %d: %s", r.status, r.body)
	}
	_, code := c.smsCode(len(c.sns.Publishes()))
	if r := b3.verifyCode("sms", code, "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("SMS code after recovery: %d: %s", r.status, r.body)
	}
	classes := map[string]bool{}
	for _, a := range c.audit() {
		if a["event"] == "code_send" && a["result"] == "failure" {
			classes[fmt.Sprint(a["error_class"])] = true
		}
	}
	for _, want := range []string{"throttled", "invalid_parameter"} {
		if !classes[want] {
			t.Errorf("no audit entry with error class %s: %v", want, classes)
		}
	}
}

// SMTP refusing, failing and hanging: the member sees "could not send",
// nothing is enrolled, and mail works once the server recovers.
func TestSMTPFailures(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	for _, mode := range []string{"reject", "temporary", "data", "slow"} {
		c.mail.Fail(mode)
		c.clock.Advance(10 * time.Second) // the short wait after a failed send
		if mode == "slow" {
			c.mail.SetDelay(4 * time.Second) // the sender's timeout is 2s
		}
		began := time.Now()
		r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}})
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "could not send") {
			t.Fatalf("%s: %d: %s", mode, r.status, r.body)
		}
		if took := time.Since(began); took > 3500*time.Millisecond {
			t.Errorf("%s: the member waited %s", mode, took)
		}
	}
	c.mail.Fail("")
	c.mail.SetDelay(0)
	c.clock.Advance(10 * time.Second)
	if r := b.get("/members/"); r.status != http.StatusFound || !strings.Contains(r.location(), "/.2fa/enrol") {
		t.Fatalf("a failed send enrolled the member: %d %q", r.status, r.location())
	}
	c.enrolEmail(b, "/members/", len(c.codeMails())+1)
}

func TestSMTPConnectionRefused(t *testing.T) {
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	closed := testnet.FreePort(t)
	global := fmt.Sprintf(`keys %q
		email smtp {
			host 127.0.0.1
			port %d
			from no-reply@example.com
			ca_file %q
			timeout 2s
		}`, testKey, closed, mail.CertFile())
	e := start(t, setup{global: global + fmt.Sprintf("\n\t\tstore embedded %q", t.TempDir()+"/db"), policy: codePolicy})
	b := e.browser()
	b.login("alice")
	r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "could not send") {
		t.Fatalf("refused: %d: %s", r.status, r.body)
	}
	// The authenticator app is still there to enrol with.
	b.enrol("/members/")
}

// RS-3, CC-5: twenty parallel "send" posts make one SMS; the rest wait.
func TestParallelSendsOneMessage(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("bob")
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)
	c.clock.Advance(2 * time.Minute)

	b2 := c.browser()
	b2.login("bob")
	tok := b2.csrf("/.2fa/challenge?method=sms&return_to=%2Fmembers%2F")
	form := url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"sms"}}
	var wg sync.WaitGroup
	gate := make(chan struct{})
	statuses := make([]int, 20)
	retry := make([]string, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			r := b2.post("/.2fa/challenge/send", form)
			statuses[i], retry[i] = r.status, r.header.Get("Retry-After")
		}()
	}
	close(gate)
	wg.Wait()
	sent, waited := 0, 0
	for i, s := range statuses {
		switch s {
		case http.StatusSeeOther:
			sent++
		case http.StatusTooManyRequests:
			waited++
			if n, err := strconv.Atoi(retry[i]); err != nil || n < 1 || n > 60 {
				t.Errorf("Retry-After %q", retry[i])
			}
		default:
			t.Errorf("status %d", s)
		}
	}
	if sent != 1 || waited != 19 || len(c.sns.Publishes()) != 2 {
		t.Fatalf("sent %d, waited %d, SNS publishes %d (want 1, 19, 2)", sent, waited, len(c.sns.Publishes()))
	}
}

// RS-3/RS-4 through the pages: the cooldown and the hourly cap answer
// 429 with when to try again; the cap holds across resends.
func TestResendCooldownAndHourlyCap(t *testing.T) {
	c := startCodes(t, "hourly_sends_per_user 3")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1) // the first send this hour
	// Start at the top of an hour so the cap's window does not roll over.
	now := c.clock.Now()
	c.clock.Advance(now.Truncate(time.Hour).Add(time.Hour + time.Second).Sub(now))

	b2 := c.browser()
	b2.login("alice")
	if r := b2.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("first send: %d", r.status)
	}
	page := b2.get("/.2fa/challenge?method=email&return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, "disabled") || !strings.Contains(page.body, `data-wait="60"`) {
		t.Errorf("resend button not disabled with a countdown: %s", page.body)
	}
	r := b2.send("email", "/members/")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "60" || !strings.Contains(r.body, "Wait 1 minute before") {
		t.Fatalf("resend at once: %d Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	c.clock.Advance(61 * time.Second)
	page = b2.get("/.2fa/challenge?method=email&return_to=%2Fmembers%2F")
	if strings.Contains(page.body, "data-wait") {
		t.Errorf("resend still waiting after the cooldown")
	}
	for i := 2; i <= 3; i++ {
		if r := b2.send("email", "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("send %d: %d: %s", i, r.status, r.body)
		}
		c.clock.Advance(61 * time.Second)
	}
	r = b2.send("email", "/members/")
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many codes") {
		t.Fatalf("over the hourly cap: %d: %s", r.status, r.body)
	}
	// The newest code still works.
	_, code := c.mailCode(4)
	if r := b2.verifyCode("email", code, "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("newest code: %d: %s", r.status, r.body)
	}
}

// RP-6: a code asked for in one browser does not work in another, even for
// the same member.
func TestCodeBoundToBrowser(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)

	first, second := c.browser(), c.browser()
	first.login("alice")
	second.login("alice")
	if r := first.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d", r.status)
	}
	_, code := c.mailCode(2)
	if r := second.verifyCode("email", code, "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("code from another browser: %d", r.status)
	}
	if r := first.verifyCode("email", code, "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("code in its own browser: %d: %s", r.status, r.body)
	}
}

// A page that accepts only the authenticator app: a member who verified by
// email is asked again, and after verifying is asked to add the app.
func TestRouteMethods(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	r := b.get("/echo-admin/x")
	if r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("admin with an email session: %d %q", r.status, r.location())
	}
	page := b.get(r.location())
	if !strings.Contains(page.body, "not set up") && !strings.Contains(page.body, "kind of verification") {
		t.Errorf("no explanation that the page needs another method: %s", page.body)
	}
	if r := b.send("email", "/echo-admin/x"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d: %s", r.status, r.body)
	}
	_, code := c.mailCode(2)
	r = b.verifyCode("email", code, "/echo-admin/x")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("after verifying by email for /admin/: %d %q", r.status, r.location())
	}
	picker := b.get(r.location())
	if strings.Contains(picker.body, "/.2fa/enrol/sms") || !strings.Contains(picker.body, `action="/.2fa/enrol"`) {
		t.Errorf("picker for /admin/ should offer the app only: %s", picker.body)
	}
	secret := b.enrol("/echo-admin/x")
	_ = secret
	if r := b.get("/echo-admin/x"); r.status != http.StatusOK {
		t.Fatalf("admin after adding the app: %d", r.status)
	}
}

func TestPhoneNumbers(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("bob")
	for _, tc := range []struct {
		input  string
		status int
		want   string
	}{
		{"123", http.StatusBadRequest, "valid phone number"},
		{"not a number", http.StatusBadRequest, "valid phone number"},
		{"+33 6 12 34 56 78", http.StatusBadRequest, "cannot be used here"}, // France: not allowed
		{"+81 120-123-456", http.StatusBadRequest, "cannot receive SMS"},
	} {
		r := b.postPage("/.2fa/enrol/sms", "/.2fa/enrol/sms?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "phone": {tc.input}})
		if r.status != tc.status || !strings.Contains(r.body, tc.want) {
			t.Errorf("%q: %d, want %d with %q: %s", tc.input, r.status, tc.status, tc.want, r.body)
		}
	}
	if n := len(c.sns.Publishes()); n != 0 {
		t.Fatalf("%d SMS sent to refused numbers", n)
	}
	for i, ok := range []struct{ input, e164 string }{
		{"090-1234-5678", "+819012345678"},
		{"+1 (202) 555-0123", "+12025550123"},
		{"+44 7400 123456", "+447400123456"},
	} {
		b := c.browser()
		b.login("bob")
		r := b.postPage("/.2fa/enrol/sms", "/.2fa/enrol/sms?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "phone": {ok.input}})
		if r.status != http.StatusSeeOther {
			t.Fatalf("%q: %d: %s", ok.input, r.status, r.body)
		}
		pubs := c.sns.Wait(t, i+1, 5*time.Second)
		if got := pubs[i].PhoneNumber; got != ok.e164 {
			t.Errorf("%q sent to %q, want %q", ok.input, got, ok.e164)
		}
		c.clock.Advance(61 * time.Second)
	}
}

// The member's language follows Accept-Language into the email.
func TestJapaneseEmail(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.lang = "ja"
	b.login("alice")
	msg := c.enrolEmail(b, "/members/", 1)
	if !strings.Contains(msg.Subject, "Test Members") || !strings.Contains(msg.Subject, "確認") {
		t.Errorf("Japanese subject %q", msg.Subject)
	}
}

// The methods page: the member's methods and the default, and adding one
// only from a session verified with a code.
func TestMethodsPageAndDefault(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if page.status != http.StatusOK || !strings.Contains(page.body, "a•••@example.com") || !strings.Contains(page.body, "/.2fa/enrol?") {
		t.Fatalf("methods page: %d: %s", page.status, page.body)
	}
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)

	// Without a code-verified session, neither the list nor adding works.
	other := c.browser()
	other.login("alice")
	for _, path := range []string{"/.2fa/methods", "/.2fa/enrol/sms", "/.2fa/enrol"} {
		if r := other.get(path + "?return_to=%2Fmembers%2F"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
			t.Errorf("GET %s without a verified session: %d %q", path, r.status, r.location())
		}
	}
	tok := other.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	r := other.post("/.2fa/enrol/sms", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "phone": {"090-8765-4321"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") || len(c.sns.Publishes()) != 1 {
		t.Fatalf("POST enrol/sms without a verified session: %d %q, %d SMS", r.status, r.location(), len(c.sns.Publishes()))
	}

	// Make SMS the default: the next challenge starts with it.
	tok = b.csrf("/.2fa/methods?return_to=%2Fmembers%2F")
	r = b.post("/.2fa/methods/default", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"sms"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("make default: %d: %s", r.status, r.body)
	}
	page = other.get("/.2fa/challenge?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, `name="method" value="sms"`) || !strings.Contains(page.body, "method=email") {
		t.Errorf("challenge after making SMS the default: %s", page.body)
	}
	// A method the member does not have cannot be the default.
	tok = b.csrf("/.2fa/methods?return_to=%2Fmembers%2F")
	if r := b.post("/.2fa/methods/default", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"totp"}}); r.status != http.StatusBadRequest {
		t.Errorf("default to a method not enrolled: %d", r.status)
	}
}

// Per-code limits through the pages: five wrong tries void the code, so
// the right one fails on the sixth; an expired code is refused; a code
// sent to one member does not work for another.
func TestCodeTriesExpiryAndOwner(t *testing.T) {
	c := startCodes(t, "code_attempts 5\n\t\tmax_failures 20")
	alice, bob := c.browser(), c.browser()
	alice.login("alice")
	bob.login("bob")
	c.enrolEmail(alice, "/members/", 1)
	c.enrolSMS(bob, "090-1234-5678", "/members/", 1)

	a := c.browser()
	a.login("alice")
	if r := a.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d", r.status)
	}
	_, code := c.mailCode(2)
	wrongCode := fmt.Sprintf("%06d", (atoi(t, code)+1)%1_000_000)
	for i := 1; i <= 5; i++ {
		r := a.verifyCode("email", wrongCode, "/members/")
		if r.status != http.StatusUnauthorized {
			t.Fatalf("wrong try %d: %d", i, r.status)
		}
		if !strings.Contains(r.body, "no longer valid") {
			t.Errorf("wrong try %d: not the one message for refused codes: %s", i, r.body)
		}
	}
	if r := a.verifyCode("email", code, "/members/"); r.status == http.StatusSeeOther {
		t.Fatal("the right code worked after five wrong tries")
	}

	// Expiry: 10 minutes for email.
	c.clock.Advance(2 * time.Minute)
	a2 := c.browser()
	a2.login("alice")
	if r := a2.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d: %s", r.status, r.body)
	}
	_, code = c.mailCode(3)
	c.clock.Advance(10*time.Minute + time.Second)
	if r := a2.verifyCode("email", code, "/members/"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "no longer valid") {
		t.Fatalf("expired code: %d: %s", r.status, r.body)
	}

	// Bob's code in Bob's browser works only for Bob: Alice signs in in
	// that browser and submits it.
	b := c.browser()
	b.login("bob")
	if r := b.send("sms", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send to bob: %d", r.status)
	}
	_, bobCode := c.smsCode(2)
	b.login("alice")
	if r := b.verifyCode("sms", bobCode, "/members/"); r.status == http.StatusSeeOther {
		t.Fatal("bob's code accepted for alice")
	}
	if r := b.verifyCode("email", bobCode, "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("bob's code as alice's email code: %d", r.status)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
