package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
)

// Security notices: the member hears by email of every change to their
// second factors, in their language, and a failing mail server never
// blocks the change.

// notice waits for a notice to to whose subject contains what.
func (c *codeEnv) notice(to, what string) testsmtp.Message {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, m := range c.mail.Messages() {
			if len(m.To) == 1 && m.To[0] == to && strings.Contains(m.Subject, what) {
				return m
			}
		}
		if time.Now().After(deadline) {
			var subjects []string
			for _, m := range c.mail.Messages() {
				subjects = append(subjects, m.Subject)
			}
			c.t.Fatalf("no notice %q to %s; subjects: %q", what, to, subjects)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count returns how many messages to to have a subject containing what.
func (c *codeEnv) count(to, what string) int {
	n := 0
	for _, m := range c.mail.Messages() {
		if len(m.To) == 1 && m.To[0] == to && strings.Contains(m.Subject, what) {
			n++
		}
	}
	return n
}

func TestSecurityNotices(t *testing.T) {
	c := startCodesPolicy(t, strings.Replace(codePolicy, `site_name "Test Members"`, "site_name \"Test Members\"\n\tsite_url https://members.example/", 1), "")
	b := c.browser()
	b.login("alice")
	secret := b.enrol("/members/")
	m := c.notice("alice@example.com", "A new way to verify was added")
	for _, want := range []string{"[Test Members]", "Authenticator app", "127.0.0.1", "https://members.example/.2fa/methods"} {
		if !strings.Contains(m.Subject+m.Text, want) {
			t.Errorf("method added notice lacks %q:\n%s\n%s", want, m.Subject, m.Text)
		}
	}
	codes := b.recovery

	// Recovery code used, in Japanese for a Japanese browser.
	ja := c.browser()
	ja.lang = "ja"
	ja.login("alice")
	if r := ja.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("recovery: %d", r.status)
	}
	m = c.notice("alice@example.com", "リカバリーコードが使用されました")
	if !strings.Contains(m.Subject, "【Test Members】") || !strings.Contains(m.Text, "残りのリカバリーコード: 9") {
		t.Errorf("Japanese recovery notice:\n%s\n%s", m.Subject, m.Text)
	}

	// New codes, a remembered device, a disabled method.
	tok := ja.csrf("/.2fa/methods?return_to=%2Fmembers%2F")
	if r := ja.post("/.2fa/methods/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}}); r.status != http.StatusOK {
		t.Fatalf("new codes: %d", r.status)
	}
	c.notice("alice@example.com", "リカバリーコードが再作成されました")

	c.enrolEmail(ja, "/members/", 1)
	c.nextStep()
	d := c.browser()
	d.login("alice")
	if r := d.verify(c.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify with remember: %d", r.status)
	}
	c.notice("alice@example.com", "A device will skip the code")

	if r := ja.removeMethod("email", true); r.status != http.StatusSeeOther {
		t.Fatalf("disable email: %d", r.status)
	}
	c.notice("alice@example.com", "確認方法が無効化されました")
}

// A lockout is told once, not on every refused attempt after it.
func TestLockoutNoticeOnce(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	a := c.browser()
	a.login("alice")
	tok := a.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	for range 8 {
		a.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"totp"}, "code": {"000000"}})
	}
	c.notice("alice@example.com", "Too many wrong codes")
	c.stop() // every notice still being sent has landed
	if n := c.count("alice@example.com", "Too many wrong codes"); n != 1 {
		t.Fatalf("%d lockout notices", n)
	}
}

// The mail server refusing everything does not stop a change, or slow it.
func TestNoticeFailureDoesNotBlock(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)
	c.mail.Fail("slow")
	c.mail.SetDelay(3 * time.Second) // past the sender's 2s timeout
	began := time.Now()
	if r := b.removeMethod("sms", true); r.status != http.StatusSeeOther {
		t.Fatalf("disable with the mail server failing: %d", r.status)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("the change waited %s for the notice", took)
	}
	if page := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); strings.Contains(page.body, `id="method-sms"`) {
		t.Fatal("SMS still enrolled")
	}
}

// Passing the second factor in a browser not seen before for the member
// brings a notice, once per browser; operators can turn it off or trust
// their own networks.
func TestNewBrowserNotice(t *testing.T) {
	for _, tc := range []struct {
		name, policyLine string
		want             int
	}{
		{"on", "", 1},
		{"off", "new_device_notice off", 0},
		{"trusted network", "trusted_networks 10.0.0.0/8 127.0.0.0/8", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := strings.Replace(codePolicy, `site_name "Test Members"`, "site_name \"Test Members\"\n\t"+tc.policyLine, 1)
			c := startCodesPolicy(t, policy, "")
			b := c.browser()
			b.login("alice")
			secret := b.enrol("/members/")
			// The browser that enrolled is known: no notice on its next
			// sign-in.
			c.nextStep()
			b.login("alice")
			if r := b.verify(c.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
				t.Fatalf("verify: %d", r.status)
			}
			// A new browser, twice.
			n := c.browser()
			for range 2 {
				c.nextStep()
				n.login("alice")
				if r := n.verify(c.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
					t.Fatalf("verify: %d", r.status)
				}
			}
			if tc.want > 0 {
				m := c.notice("alice@example.com", "Sign-in from a new browser")
				if !strings.Contains(m.Text, "127.0.0.1") {
					t.Errorf("notice text:\n%s", m.Text)
				}
			}
			c.stop() // every notice still being sent has landed
			if got := c.count("alice@example.com", "Sign-in from a new browser"); got != tc.want {
				t.Fatalf("%d new-browser notices, want %d", got, tc.want)
			}
		})
	}
}
