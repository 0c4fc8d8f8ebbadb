package tests

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// "Still nothing" through Caddy, with the SMTP server and the SNS endpoint
// on loopback: the panel and its advice on the email challenge (en) and
// the SMS challenge (ja); each press after a code records one
// code_not_arrived per code, in the audit log and in the metric, sends
// nothing, and leaves the code usable; the page then offers the other
// ways first. Without the CSRF token, or with no code sent, nothing is
// recorded.
func TestCodeNotArrivedReport(t *testing.T) {
	c := startCodesSetup(t, setup{policy: codePolicy, admin: true}, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)

	reports := func() []map[string]any {
		var out []map[string]any
		for _, a := range c.audit() {
			if a["event"] == "code_not_arrived" {
				out = append(out, a)
			}
		}
		return out
	}
	notArrived := func(channel string) float64 {
		v, ok := metricValue(scrape(t, c.env), "caddy_two_factor_codes_not_arrived_total", map[string]string{"channel": channel})
		if !ok {
			t.Fatalf("no codes_not_arrived_total{channel=%q} series", channel)
		}
		return v
	}
	report := func(b *browser, method, csrfFrom string) *response {
		return b.postPage("/.2fa/challenge/not-arrived", csrfFrom, url.Values{"return_to": {"/members/"}, "method": {method}})
	}
	sentMail, sentSMS := len(c.codeMails()), len(c.sns.Publishes())

	// A new sign-in. Before any code: nothing to report.
	b2 := c.browser()
	b2.login("alice")
	emailPage := "/.2fa/challenge?method=email&return_to=%2Fmembers%2F"
	if r := report(b2, "email", emailPage); r.status != http.StatusConflict || !strings.Contains(r.body, "nothing to report") {
		t.Fatalf("report before a code was sent: %d: %s", r.status, r.body)
	}
	if r := b2.get(emailPage); strings.Contains(r.body, "not-arrived") {
		t.Fatalf("the panel shows before a code was sent: %s", r.body)
	}

	// Email: the panel with its advice.
	if r := b2.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send: %d: %s", r.status, r.body)
	}
	sentMail++
	page := html.UnescapeString(b2.get(emailPage).body)
	for _, want := range []string{"<details class=\"not-arrived\">", "Didn't get it?", "spam or junk folder",
		"Add no-reply@example.com to your contacts", "Check that a•••@example.com is the address", `action="/.2fa/challenge/not-arrived"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the email challenge lacks %q", want)
		}
	}
	if strings.Contains(page, "short codes") {
		t.Error("the email panel gives SMS advice")
	}

	// Without the CSRF token: refused, nothing recorded.
	if r := b2.post("/.2fa/challenge/not-arrived", url.Values{"return_to": {"/members/"}, "method": {"email"}}); r.status != http.StatusForbidden {
		t.Fatalf("report without CSRF: %d", r.status)
	}
	if n := len(reports()); n != 0 {
		t.Fatalf("a refused report was recorded: %d", n)
	}

	// Pressed five times: thanked each time, recorded once, nothing sent.
	for i := range 5 {
		r := report(b2, "email", emailPage)
		body := html.UnescapeString(r.body)
		ti, wi, ci := strings.Index(body, "Thanks, we've noted it."), strings.Index(body, `id="other-ways"`), strings.Index(body, `name="code"`)
		if r.status != http.StatusOK || ti < 0 || wi < ti || ci < wi || !strings.Contains(body, "Text a code to +81 •• •••• 5678") {
			t.Fatalf("report %d: %d; thanks at %d, other ways at %d, code form at %d: %s", i, r.status, ti, wi, ci, body)
		}
		if strings.Contains(body, "not-arrived") || !strings.Contains(body, `action="/.2fa/challenge/send"`) {
			t.Fatalf("report %d: the panel again, or no resend form: %s", i, body)
		}
	}
	got := reports()
	if len(got) != 1 || got[0]["method"] != "email" || got[0]["to"] != "a•••@example.com" || got[0]["user"] != "alice" || got[0]["result"] != "success" {
		t.Fatalf("code_not_arrived events: %v", got)
	}
	if v := notArrived("email"); v != 1 {
		t.Errorf("codes_not_arrived_total{channel=email} = %v, want 1", v)
	}
	if len(c.codeMails()) != sentMail || len(c.sns.Publishes()) != sentSMS {
		t.Fatalf("reports sent messages: %d mails, %d SMS, want %d and %d", len(c.codeMails()), len(c.sns.Publishes()), sentMail, sentSMS)
	}

	// SMS, in Japanese, in a third browser.
	j := c.browser()
	j.lang = "ja"
	j.login("alice")
	if r := j.send("sms", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("send SMS: %d: %s", r.status, r.body)
	}
	sentSMS++
	smsPage := "/.2fa/challenge?method=sms&return_to=%2Fmembers%2F"
	page = html.UnescapeString(j.get(smsPage).body)
	for _, want := range []string{"コードが届きませんか？", "短縮番号", "+81 •• •••• 5678（国際形式）", "機内モード", "まだ届かない"} {
		if !strings.Contains(page, want) {
			t.Errorf("the SMS challenge (ja) lacks %q", want)
		}
	}
	if strings.Contains(page, "迷惑メールフォルダ") {
		t.Error("the SMS panel gives email advice")
	}
	for range 3 {
		if r := report(j, "sms", smsPage); r.status != http.StatusOK || !strings.Contains(r.body, "ご報告ありがとうございます") {
			t.Fatalf("SMS report: %d: %s", r.status, r.body)
		}
	}
	if got := reports(); len(got) != 2 || got[1]["method"] != "sms" || got[1]["to"] != "+81 •• •••• 5678" {
		t.Fatalf("code_not_arrived events after SMS: %v", got)
	}
	if e, s := notArrived("email"), notArrived("sms"); e != 1 || s != 1 {
		t.Errorf("codes_not_arrived_total: email %v, sms %v, want 1 and 1", e, s)
	}
	if len(c.codeMails()) != sentMail || len(c.sns.Publishes()) != sentSMS {
		t.Fatalf("SMS reports sent messages: %d mails, %d SMS", len(c.codeMails()), len(c.sns.Publishes()))
	}
	// The report changed nothing about the code: it still signs in.
	_, code := c.smsCode(sentSMS)
	if r := j.verifyCode("sms", code, "/members/"); r.status != http.StatusSeeOther || r.location() != "/members/" {
		t.Fatalf("the reported code: %d %q", r.status, r.location())
	}
}
