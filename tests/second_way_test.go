package tests

import (
	"strings"
	"testing"
)

// A member with one method is offered a second way in, on the settings
// page and with the first recovery codes: the methods the site offers
// that they lack, linked to their enrolment; with two, no longer.
func TestSecondWayIn(t *testing.T) {
	c := startCodesSetup(t, setup{}, "")
	alice := c.browser()
	alice.login("alice")
	alice.enrol("/members/")
	for lang, want := range map[string][]string{
		// From the settings page, so back there once added.
		"en-US,en;q=0.8": {"Add a second way in", `href="/.2fa/enrol/email?return_to=%2Fmembers%2F&amp;from=settings"`,
			`href="/.2fa/enrol/sms?return_to=%2Fmembers%2F&amp;from=settings"`},
		"ja-JP,ja;q=0.9": {"もう一つの確認方法を追加しましょう", "メール：", "SMS："},
	} {
		alice.lang = lang
		page := alice.get("/.2fa/methods?return_to=%2Fmembers%2F").body
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("%s: the settings page lacks %q", lang, w)
			}
		}
		if strings.Contains(page, `href="/.2fa/enrol?return_to=%2Fmembers%2F">`+"An authenticator app") {
			t.Errorf("%s: the app, which alice has, is suggested", lang)
		}
	}
	alice.lang = ""
	c.enrolEmail(alice, "/members/", 1)
	if page := alice.get("/.2fa/methods?return_to=%2Fmembers%2F").body; strings.Contains(page, "second-way") {
		t.Error("a member with two methods is still offered a second")
	}
}

// The suggestion follows the rule of the path the member came from: a
// second way in that the path refuses would not get them in there. Text
// messages are offered with their weakness said.
func TestSecondWayInFollowsThePathsMethods(t *testing.T) {
	policy := strings.Replace(defaultPolicy, "remember_device 30d", "remember_device 30d\n\t\tmethods totp email", 1)
	c := startCodesSetup(t, setup{policy: policy}, "")
	alice := c.browser()
	alice.login("alice")
	alice.enrol("/members/")
	page := alice.get("/.2fa/methods?return_to=%2Fmembers%2F").body
	if !strings.Contains(page, `href="/.2fa/enrol/email?return_to=%2Fmembers%2F`) || strings.Contains(page, `/.2fa/enrol/sms?`) {
		t.Errorf("from /members/ (totp and email only): want email and not SMS offered:\n%s", page)
	}
	page = alice.get("/.2fa/methods?return_to=%2Foptional%2F").body
	if !strings.Contains(page, `href="/.2fa/enrol/sms?return_to=%2Foptional%2F`) || !strings.Contains(page, "The weakest way in") {
		t.Errorf("from /optional/ (every method): want SMS offered with its weakness:\n%s", page)
	}
}
