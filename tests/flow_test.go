package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// The whole first visit: sign in at the member site, get sent to
// enrolment, scan, confirm, reach the page; then a later sign-in is
// challenged and passes with the app's code.
func TestEnrolAndVerifyEndToEnd(t *testing.T) {
	e := start(t, setup{})
	b := e.browser()
	b.login("alice")

	r := b.get("/members/")
	if r.status != http.StatusFound || r.location() != "/.2fa/enrol?return_to=%2Fmembers%2F" {
		t.Fatalf("unenrolled member: status %d location %q", r.status, r.location())
	}
	tok := b.csrf(r.location())
	r = b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	if r.status != http.StatusOK {
		t.Fatalf("enrol: %d %s", r.status, r.body)
	}
	for _, want := range []string{"data:image/png;base64,", "otpauth://totp/", `autocomplete="one-time-code"`, `inputmode="numeric"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("enrolment page lacks %q", want)
		}
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("enrolment page Cache-Control %q", r.header.Get("Cache-Control"))
	}
	secret := enrolmentSecret(t, r.body)
	grouped := secret[:4] + " " + secret[4:8]
	if !strings.Contains(r.body, grouped) {
		t.Errorf("key for manual entry not shown grouped (%q)", grouped)
	}

	// A wrong code keeps the enrolment pending.
	bad := b.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {wrongCode(e.code(secret, 0))}})
	if bad.status != http.StatusUnauthorized || !strings.Contains(bad.body, "The verification code is incorrect.") {
		t.Fatalf("wrong confirmation: %d %s", bad.status, bad.body)
	}
	if enrolmentSecret(t, bad.body) != secret {
		t.Fatal("a wrong code replaced the pending secret")
	}
	if s, _ := b.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("reached the upstream before confirming: %d", s)
	}

	ok := b.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(bad.body, "csrf")}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}})
	enrolDone(t, ok, "/members/")
	page := b.get("/members/")
	if page.status != http.StatusOK || !strings.Contains(page.body, "alice") {
		t.Fatalf("members page after enrolment: %d %s", page.status, page.body)
	}
	_, h := b.upstream("/echo/x")
	if h.Get("X-2fa-User") != "alice" || h.Get("X-2fa-Method") != "totp" || h.Get("X-2fa-Enrolled") != "true" {
		t.Fatalf("upstream headers: %v", h)
	}

	// Another browser, a new sign-in: challenged, then through.
	e.nextStep()
	b2 := e.browser()
	b2.login("alice")
	r = b2.get("/members/page?x=1")
	if r.status != http.StatusFound || r.location() != "/.2fa/challenge?return_to=%2Fmembers%2Fpage%3Fx%3D1" {
		t.Fatalf("enrolled member on a new browser: %d %q", r.status, r.location())
	}
	r = b2.verify(e.code(secret, 0), "/members/page?x=1", false)
	if r.status != http.StatusSeeOther || r.location() != "/members/page?x=1" {
		t.Fatalf("verify: %d %q %s", r.status, r.location(), r.body)
	}
	if r := b2.get("/members/page?x=1"); r.status != http.StatusOK {
		t.Fatalf("after verification: %d", r.status)
	}

	// Nothing secret reached the logs, and every step is in the audit trail.
	logs, err := os.ReadFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, secretish := range []string{secret, "otpauth", e.code(secret, 0), b2.cookie("2fa_session").Value} {
		if strings.Contains(string(logs), secretish) {
			t.Errorf("the log contains %q", secretish)
		}
	}
	events := map[string]int{}
	for _, entry := range e.audit() {
		events[fmt.Sprint(entry["event"], "/", entry["result"])]++
		if entry["user"] != "alice" || entry["ip"] != "127.0.0.1" || entry["user_agent"] == "" {
			t.Errorf("audit entry without who and where: %v", entry)
		}
	}
	for _, want := range []string{"enrol_start/success", "enrol_confirm/failure", "enrol_confirm/success", "verify/success"} {
		if events[want] == 0 {
			t.Errorf("no %s audit entry; have %v", want, events)
		}
	}
}

func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// enrolled returns a browser signed in as user, enrolled and verified,
// and the user's secret.
func enrolled(e *env, user string) (*browser, string) {
	b := e.browser()
	b.login(user)
	return b, b.enrol("/members/")
}

func TestWrongCodeMessageInBothLanguages(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")
	for lang, msg := range map[string]string{
		"ja-JP,ja;q=0.9,en;q=0.5": "認証コードが正しくありません。",
		"en-US,en;q=0.8":          "The verification code is incorrect.",
	} {
		b := e.browser()
		b.lang = lang
		b.login("alice")
		r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d", lang, r.status)
		}
		i, j := strings.Index(r.body, msg), strings.Index(r.body, `name="code"`)
		if i < 0 || j < 0 || i > j {
			t.Fatalf("%s: message %q not above the code input:\n%s", lang, msg, r.body)
		}
		if b.cookie("2fa_session") != nil {
			t.Fatal("a wrong code produced a session")
		}
	}
}

func TestReplayedCodeRefused(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")
	code := e.code(secret, 0)
	a := e.browser()
	a.login("alice")
	if r := a.verify(code, "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	b := e.browser()
	b.login("alice")
	if r := b.verify(code, "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("replay from another session: %d", r.status)
	}
	if r := b.get("/members/"); r.status != http.StatusFound {
		t.Fatalf("replaying browser reached the page: %d", r.status)
	}
}
