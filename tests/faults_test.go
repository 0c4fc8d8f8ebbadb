package tests

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// The page faults found when the product was tried as a new user would
// (issue 14, item 5), each through Caddy, in English and Japanese where the
// wording changed.

// rememberedBrowser enrols alice in one browser and returns another that
// verified with a fresh code and remembered itself: a settings page with
// a device and some activity.
func rememberedBrowser(e *env) *browser {
	e.t.Helper()
	_, secret := enrolled(e, "alice")
	e.nextStep()
	d := e.browser()
	d.login("alice")
	if r := d.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		e.t.Fatalf("verify and remember: %d", r.status)
	}
	return d
}

// firstApp sets up the app as the browser's member's first method, with
// the code code gives for its secret, and returns the answer: the page
// with the recovery codes.
func firstApp(b *browser, code func(secret string) string) *response {
	b.t.Helper()
	tok := b.csrf("/.2fa/enrol?return_to=%2Fmembers%2F")
	r := b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	secret := enrolmentSecret(b.t, r.body)
	return b.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {code(secret)}})
}

// pageDate is t's UTC date as the pages write it, with non-breaking
// hyphens.
func pageDate(t time.Time) string {
	return strings.ReplaceAll(t.UTC().Format(time.DateOnly), "-", "\u2011")
}

// settingsPage is the settings page for /members/ in lang.
func (b *browser) settingsPage(lang string) *response {
	b.t.Helper()
	b.lang = lang
	defer func() { b.lang = "en" }()
	r := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if r.status != http.StatusOK {
		b.t.Fatalf("settings page: %d %q", r.status, r.location())
	}
	return r
}

// Signed in with a recovery code where the app is the only method and a
// second factor is required: the banner points to "Set up on a new phone",
// the settings page offers no "Disable" (it says why), and the server still
// refuses a disable posted anyway.
func TestRecoveryBannerPointsToNewPhone(t *testing.T) {
	c := startCodes(t, "")
	old := c.browser()
	old.login("alice")
	old.enrol("/members/")
	codes := old.recovery

	b := c.browser()
	b.login("alice")
	if r := b.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("recovery code: %d", r.status)
	}
	for lang, want := range map[string][]string{
		"en": {"If you lost your phone or the app, set the app up on your new phone", `<a href="#replace-phone">Set up on a new phone</a>`,
			"so it cannot be disabled. Changing phones? Use &#34;Set up on a new phone&#34;."},
		"ja": {"新しいスマートフォンに認証アプリを設定してください", `<a href="#replace-phone">新しいスマートフォンに設定する</a>`,
			"無効化できません。機種変更の場合は「新しいスマートフォンに設定する」"},
	} {
		page := b.settingsPage(lang)
		banner := regexp.MustCompile(`(?s)<p class="notice warning" id="recovered">.*?</p>`).FindString(page.body)
		if !strings.Contains(banner, want[0]) || !strings.Contains(banner, want[1]) || strings.Contains(banner, "disable") || strings.Contains(banner, "無効化") {
			t.Errorf("%s: banner %q, want it to point to the new phone", lang, banner)
		}
		if !strings.Contains(page.body, `id="replace-phone"`) {
			t.Errorf("%s: the banner's link has no target", lang)
		}
		// (c) No form that would be refused: why instead.
		if strings.Contains(page.body, `action="/.2fa/methods/remove"`) || !strings.Contains(page.body, want[2]) {
			t.Errorf("%s: the only method offers Disable, or does not say why not:\n%s", lang, page.body)
		}
	}
	// The refusal stays on the server.
	r := b.postPage("/.2fa/methods/remove", "/.2fa/methods?return_to=%2Fmembers%2F",
		url.Values{"return_to": {"/members/"}, "method": {"totp"}, "confirm": {"yes"}})
	if r.status != http.StatusConflict || !strings.Contains(r.body, "only way to verify") {
		t.Fatalf("disabling the only method, posted anyway: %d", r.status)
	}
}

// With two methods each may be disabled, the form is there; after one is
// gone the other is kept and says why. Where a second factor is optional
// the last one keeps its form.
func TestMethodDisableOfferedOnlyWhenPossible(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	c.enrolEmail(b, "/members/", 1)
	c.enrolSMS(b, "090-1234-5678", "/members/", 1)
	if page := b.settingsPage("en"); strings.Count(page.body, `action="/.2fa/methods/remove"`) != 2 || strings.Contains(page.body, `class="hint kept"`) {
		t.Fatalf("two methods: want two Disable forms:\n%s", page.body)
	}
	if r := b.removeMethod("sms", true); r.status != http.StatusSeeOther {
		t.Fatalf("disable SMS: %d", r.status)
	}
	page := b.settingsPage("en")
	if strings.Contains(page.body, `action="/.2fa/methods/remove"`) ||
		!strings.Contains(page.body, `<p class="hint kept">This is your only way to verify, and this site requires one, so it cannot be disabled. Add another method first.</p>`) {
		t.Fatalf("the only method: want the reason, not the form:\n%s", page.body)
	}
	if page := b.settingsPage("ja"); !strings.Contains(page.body, "先に別の方法を追加してください。") {
		t.Errorf("ja: no reason:\n%s", page.body)
	}

	o := startCodesPolicy(t, optionalPolicy, "")
	m := o.browser()
	m.login("alice")
	o.enrolEmail(m, "/members/", 1)
	if page := m.settingsPage("en"); !strings.Contains(page.body, `action="/.2fa/methods/remove"`) {
		t.Fatalf("optional site: the last method has no Disable form:\n%s", page.body)
	}
}

// Recent activity names a refused disable and a wrong code during set-up,
// neither shown as a failure; a wrong code at sign-in is.
func TestActivityNamesRefusalsAndSetupCodes(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	secret := b.enrol("/members/")
	// A wrong code while setting up email, then the right one.
	rt := url.QueryEscape("/members/")
	r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to="+rt, url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("sending the email confirmation: %d", r.status)
	}
	_, code := c.mailCode(1)
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to="+rt, url.Values{"return_to": {"/members/"}, "code": {wrongCode(code)}})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("wrong set-up code: %d", r.status)
	}
	// A refused disable: remove email, then try the app.
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to="+rt, url.Values{"return_to": {"/members/"}, "code": {code}})
	enrolDone(t, r, "/members/")
	if r := b.removeMethod("email", true); r.status != http.StatusSeeOther {
		t.Fatalf("disable email: %d", r.status)
	}
	if r := b.postPage("/.2fa/methods/remove", "/.2fa/methods?return_to=%2Fmembers%2F",
		url.Values{"return_to": {"/members/"}, "method": {"totp"}, "confirm": {"yes"}}); r.status != http.StatusConflict {
		t.Fatalf("disable the app: %d", r.status)
	}
	// And a wrong code at sign-in, from another browser.
	other := c.browser()
	other.login("alice")
	if r := other.verify(wrongCode(c.code(secret, 0)), "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", r.status)
	}

	rows := func(lang string) map[string]bool {
		page := b.settingsPage(lang)
		out := map[string]bool{}
		for _, m := range regexp.MustCompile(`<tr( class="failure")?><td[^>]*>.*?</td><td[^>]*>(.*?)</td>`).FindAllStringSubmatch(page.body, -1) {
			out[m[2]] = m[1] != ""
		}
		if strings.Contains(page.body, "Other event") || strings.Contains(page.body, "その他の操作") {
			t.Errorf("%s: an unnamed event:\n%s", lang, page.body)
		}
		return out
	}
	for lang, want := range map[string]map[string]bool{
		"en": {
			"Wrong code while setting up: Email":                        false,
			"Not disabled (your only way to verify): Authenticator app": false,
			"Wrong code (Authenticator app)":                            true,
			"Disabled: Email":                                           false,
			"Recovery codes made":                                       false,
		},
		"ja": {
			"設定中に誤ったコード: メール":             false,
			"無効化できませんでした（唯一の認証方法）: 認証アプリ": false,
			"誤ったコード（認証アプリ）":               true,
			"リカバリーコードを作成":                 false,
		},
	} {
		got := rows(lang)
		for text, failure := range want {
			if f, ok := got[text]; !ok || f != failure {
				t.Errorf("%s: %q listed %v as a failure %v; want a row, failure %v (rows %v)", lang, text, ok, f, failure, got)
			}
		}
	}
}

// After adding a method: a confirmation, and back to where the member came
// from: the settings page when they came from it, in every language; the
// page they were going to otherwise.
func TestMethodAddedConfirmation(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	for i, lang := range []string{"en", "ja"} {
		b.lang = lang
		// From the settings page: its "Add a way to verify" carries from=settings.
		page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
		add := regexp.MustCompile(`<a class="button" href="([^"]*)">`).FindStringSubmatch(page.body)
		if add == nil || !strings.Contains(add[1], "from=settings") {
			t.Fatalf("%s: the add link does not say it comes from the settings: %v", lang, add)
		}
		method, input := "email", url.Values{}
		if i == 1 {
			method, input = "sms", url.Values{"phone": {"090-1234-5678"}}
		}
		picker := b.get(strings.ReplaceAll(add[1], "&amp;", "&"))
		link := regexp.MustCompile(`href="(/.2fa/enrol/` + method + `[^"]*)"`).FindStringSubmatch(picker.body)
		if link == nil || !strings.Contains(link[1], "from=settings") {
			t.Fatalf("%s: the picker's %s link lost from=settings:\n%s", lang, method, picker.body)
		}
		form := b.get(strings.ReplaceAll(link[1], "&amp;", "&"))
		if inputValue(form.body, "from") != "settings" {
			t.Fatalf("%s: the %s form lost from=settings", lang, method)
		}
		input.Set("csrf", inputValue(form.body, "csrf"))
		input.Set("return_to", "/members/")
		input.Set("from", "settings")
		r := b.post("/.2fa/enrol/"+method, input)
		if r.status != http.StatusSeeOther || !strings.Contains(r.location(), "from=settings") {
			t.Fatalf("%s: sending: %d %q", lang, r.status, r.location())
		}
		var code string
		if method == "email" {
			_, code = c.mailCode(1)
		} else {
			_, code = c.smsCode(1)
		}
		codePage := b.get(r.location())
		r = b.post("/.2fa/enrol/code", url.Values{"csrf": {inputValue(codePage.body, "csrf")}, "return_to": {"/members/"},
			"from": {inputValue(codePage.body, "from")}, "code": {code}})
		want := "/.2fa/methods?return_to=%2Fmembers%2F&added=" + method
		if r.status != http.StatusSeeOther || r.location() != want {
			t.Fatalf("%s: after adding %s from the settings: %d %q, want %q", lang, method, r.status, r.location(), want)
		}
		done := b.get(r.location())
		confirm := map[string]string{"en": `<p class="notice done" role="status">Email codes are on: we can now send codes to your email address.</p>`,
			"ja": `<p class="notice done" role="status">SMSでのコード受け取りを有効にしました。`}[lang]
		if !strings.Contains(done.body, confirm) {
			t.Errorf("%s: no confirmation on the settings page:\n%s", lang, done.body)
		}
	}

	// Not from the settings (the first method's recovery page suggests
	// a second): a confirmation page, then on to where they were going.
	n := c.browser()
	n.login("bob")
	n.enrol("/members/")
	rt := url.QueryEscape("/members/")
	r := n.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to="+rt, url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusSeeOther || strings.Contains(r.location(), "from=") {
		t.Fatalf("sending: %d %q", r.status, r.location())
	}
	_, code := c.mailCode(2)
	n.lang = "ja"
	r = n.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to="+rt, url.Values{"return_to": {"/members/"}, "code": {code}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "<h1>認証方法を追加しました</h1>") ||
		!strings.Contains(r.body, "メールでのコード受け取りを有効にしました。") || !strings.Contains(r.body, `<a class="button" href="/members/">続ける</a>`) {
		t.Fatalf("adding a method not from the settings: %d:\n%s", r.status, r.body)
	}
}

// The first method brings the recovery codes with a confirmation that it
// is set up; the first set is made, not remade.
func TestEnrolFirstMethodConfirmed(t *testing.T) {
	e := start(t, setup{})
	for lang, want := range map[string]string{"en": "The authenticator app is set up", "ja": "認証アプリを設定しました"} {
		b := e.browser()
		b.lang = lang
		b.login(map[string]string{"en": "alice", "ja": "bob"}[lang])
		r := firstApp(b, func(secret string) string { return e.code(secret, 0) })
		if len(recoveryCodes(r.body)) != 10 || !strings.Contains(r.body, `<p class="notice done" role="status">`+want) {
			t.Errorf("%s: first method: %d:\n%s", lang, r.status, r.body)
		}
		e.nextStep()
	}
}

// The settings page's fresh-code check says what it is for; signing in
// does not.
func TestSettingsStepUpSaysWhy(t *testing.T) {
	e := start(t, setup{})
	b, _ := enrolled(e, "alice")
	e.clock.Advance(11 * time.Minute)
	r := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("settings after 11 minutes: %d %q", r.status, r.location())
	}
	for lang, want := range map[string][]string{
		"en": {"<h1>Confirm it&#39;s you</h1>", "Before you change your settings, enter a new code to confirm it is you."},
		"ja": {"<h1>ご本人の確認</h1>", "設定を変更する前に、ご本人であることを確認するため"},
	} {
		b.lang = lang
		page := b.get(r.location())
		if !strings.Contains(page.body, want[0]) || !strings.Contains(page.body, want[1]) {
			t.Errorf("%s: step-up page:\n%s", lang, page.body)
		}
	}
	b.lang = "en"
	// Signing in afresh is signing in.
	other := e.browser()
	other.login("alice")
	if page := other.get("/.2fa/challenge?return_to=%2Fmembers%2F"); !strings.Contains(page.body, "<h1>2-step verification</h1>") || strings.Contains(page.body, "Confirm it") {
		t.Errorf("sign-in challenge:\n%s", page.body)
	}
	// Nor without a live session, even on the way to the settings.
	if page := other.get("/.2fa/challenge?return_to=" + url.QueryEscape("/.2fa/methods?return_to=/members/")); strings.Contains(page.body, "Confirm it") {
		t.Errorf("sign-in on the way to the settings:\n%s", page.body)
	}
}

// The code and set-up pages say who is signing in and offer a way out:
// through the gateway's sign-out to the site's own when logout_url is set.
func TestEnrolAndChallengeSayWhoAndWayOut(t *testing.T) {
	policy := strings.Replace(defaultPolicy, `site_name "Test Members"`, "site_name \"Test Members\"\n\tlogout_url /logout", 1)
	e := start(t, setup{policy: policy})
	b := e.browser()
	b.login("alice")
	wayOut := `<a href="/.2fa/logout?return_to=%2Flogout">`
	for lang, want := range map[string]string{"en": "Signed in as alice · " + wayOut + "Cancel and sign out</a>",
		"ja": "alice としてログイン中 · " + wayOut + "中止してログアウト</a>"} {
		b.lang = lang
		// The ID only: the address stays masked on pages seen with the
		// password alone.
		if page := b.get("/.2fa/enrol?return_to=%2Fmembers%2F"); !strings.Contains(page.body, want) || strings.Contains(page.body, "alice@example.com") {
			t.Errorf("%s: enrolment page lacks %q:\n%s", lang, want, page.body)
		}
	}
	b.lang = "en"
	b.enrol("/members/")
	other := e.browser()
	other.login("alice")
	page := other.get("/.2fa/challenge?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, "Signed in as alice · "+wayOut) {
		t.Fatalf("challenge page:\n%s", page.body)
	}
	// The way out: the gateway's page, whose button goes on to the site's
	// sign-out, which signs the member out.
	out := other.get("/.2fa/logout?return_to=%2Flogout")
	r := other.post("/.2fa/logout", url.Values{"csrf": {inputValue(out.body, "csrf")}, "return_to": {inputValue(out.body, "return_to")}})
	if r.status != http.StatusSeeOther || r.location() != "/logout" {
		t.Fatalf("cancel and sign out: %d %q", r.status, r.location())
	}

	// Without logout_url the gateway cannot sign the member out of the
	// site: the way out is "Cancel", to the site's top page.
	f := start(t, setup{})
	m := f.browser()
	m.login("bob")
	if page := m.get("/.2fa/enrol?return_to=%2Fmembers%2F"); !strings.Contains(page.body, `Signed in as bob · <a href="/">Cancel</a>`) {
		t.Errorf("without logout_url:\n%s", page.body)
	}
}

// The sign-out page is signing out of the site, not of "2-step
// verification"; with logout_url and no return_to it goes on to the
// site's sign-out.
func TestLogoutIsSigningOutOfTheSite(t *testing.T) {
	e := start(t, setup{})
	b, _ := enrolled(e, "alice")
	for lang, want := range map[string][]string{
		// Nothing follows (no return_to, no logout_url): the page says
		// what it ends and that the site's own sign-out may be needed.
		"en": {"<h1>Sign out of Test Members</h1>", "This ends your verified session on this browser", "If Test Members still shows you as signed in afterwards"},
		"ja": {"<h1>Test Members からのログアウト</h1>", "このブラウザでの認証済みのセッションが終わり", "Test Members にログインしたままと表示される場合"},
	} {
		b.lang = lang
		page := b.get("/.2fa/logout")
		if !strings.Contains(page.body, want[0]) || !strings.Contains(page.body, want[1]) || !strings.Contains(page.body, want[2]) || strings.Contains(page.body, "2-step verification") ||
			strings.Contains(page.body, "2段階認証から") {
			t.Errorf("%s: sign-out page:\n%s", lang, page.body)
		}
	}
	b.lang = "en"
	page := b.get("/.2fa/logout")
	r := b.post("/.2fa/logout", url.Values{"csrf": {inputValue(page.body, "csrf")}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "<h1>Signed out on this browser</h1>") || strings.Contains(r.body, "2-step verification") ||
		!strings.Contains(r.body, `use the site&#39;s own &#34;Sign out&#34;`) {
		t.Errorf("signed out, the site's sign-out unknown: %d:\n%s", r.status, r.body)
	}

	policy := strings.Replace(defaultPolicy, `site_name "Test Members"`, "site_name \"Test Members\"\n\tlogout_url /logout", 1)
	f := start(t, setup{policy: policy})
	m, _ := enrolled(f, "alice")
	page = m.get("/.2fa/logout")
	if inputValue(page.body, "return_to") != "/logout" {
		t.Fatalf("the sign-out page does not go on to logout_url:\n%s", page.body)
	}
	r = m.post("/.2fa/logout", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/logout"}})
	if r.status != http.StatusSeeOther || r.location() != "/logout" {
		t.Fatalf("sign out with logout_url: %d %q", r.status, r.location())
	}
	if s, _ := m.upstream("/echo/x"); s == http.StatusOK {
		t.Fatal("the session survived signing out")
	}
}

// Wording of the settings page: replacing recovery codes warns on its
// button; the first set is made, not remade; forgetting one device is
// singular.
func TestSettingsRecoveryAndDeviceWording(t *testing.T) {
	d := rememberedBrowser(start(t, setup{}))
	for lang, want := range map[string][]string{
		"en": {`<p class="notice warning" id="generate-note">Replacing them stops your current recovery codes from working`, `aria-describedby="generate-note">Replace my recovery codes</button>`},
		"ja": {`<p class="notice warning" id="generate-note">作り直すと、印刷や保存したものも含め、今のリカバリーコードはすべて使えなくなります。`, `aria-describedby="generate-note">リカバリーコードを作り直す</button>`},
	} {
		page := d.settingsPage(lang)
		for _, w := range want {
			if !strings.Contains(page.body, w) {
				t.Errorf("%s: settings page lacks %q", lang, w)
			}
		}
		if strings.Contains(page.body, "再作成") {
			t.Errorf("%s: the first set called remade:\n%s", lang, page.body)
		}
	}
	page := d.settingsPage("en")
	r := d.post("/.2fa/methods/devices", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "device": {inputValue(page.body, "device")}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("forget: %d", r.status)
	}
	for lang, want := range map[string]string{"en": "Forgotten: that device must enter a code again.", "ja": "そのデバイスでは再びコードの入力が必要です。"} {
		d.lang = lang
		if page := d.get(r.location()); !strings.Contains(page.body, want) || strings.Contains(page.body, "これらのデバイス") {
			t.Errorf("%s: after forgetting one device:\n%s", lang, page.body)
		}
	}
	d.lang = "en"
	r = d.post("/.2fa/methods/devices", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "all": {"1"}})
	d.lang = "ja"
	if page := d.get(r.location()); !strings.Contains(page.body, "それらのデバイスでは") {
		t.Errorf("ja: after forgetting all:\n%s", page.body)
	}
}

// Enrolment pages: an enrolled member adding a method, and a member on an
// optional path, are not told the site requires 2-step verification;
// the app's description follows totp_period.
func TestEnrolWordingForEnrolledAndOptional(t *testing.T) {
	e := startCodesSetup(t, setup{}, "totp_period 60s")
	b := e.browser()
	b.login("alice")
	const required = "This site requires 2-step verification before you can continue."
	if page := b.get("/.2fa/enrol?return_to=%2Fmembers%2F"); !strings.Contains(page.body, required) ||
		!strings.Contains(page.body, "shows a new code every 60 seconds") {
		t.Errorf("required path:\n%s", page.body)
	}
	b.lang = "ja"
	if page := b.get("/.2fa/enrol?return_to=%2Fmembers%2F"); !strings.Contains(page.body, "60秒ごとに") {
		t.Errorf("ja: period:\n%s", page.body)
	}
	b.lang = "en"
	for _, rt := range []string{"/optional/x", ""} {
		if page := b.get("/.2fa/enrol?return_to=" + url.QueryEscape(rt)); strings.Contains(page.body, required) {
			t.Errorf("return_to %q: told enrolment is required:\n%s", rt, page.body)
		}
	}
	// Enrolled, adding another: no "required".
	r := firstApp(b, func(secret string) string {
		code, err := totp.GenerateCodeCustom(secret, e.clock.Now(), totp.ValidateOpts{Period: 60, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return code
	})
	if len(recoveryCodes(r.body)) != 10 {
		t.Fatalf("enrolling with a 60s period: %d:\n%s", r.status, r.body)
	}
	for _, lang := range []string{"en", "ja"} {
		b.lang = lang
		page := b.get("/.2fa/enrol?return_to=%2Fmembers%2F")
		if strings.Contains(page.body, required) || strings.Contains(page.body, "設定が必要です") {
			t.Errorf("%s: an enrolled member adding a method is told it is required:\n%s", lang, page.body)
		}
	}
}

// The lockout page says how long and when it ends, as a time the browser
// shows in the member's zone and UTC with its offset without script.
func TestLockoutShowsWhenItEnds(t *testing.T) {
	e := start(t, setup{global: "max_failures 1\n\t\tlockout 15m"})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
	end := e.clock.Now().Add(15 * time.Minute)
	if end.Truncate(time.Minute) != end {
		end = end.Truncate(time.Minute).Add(time.Minute)
	}
	tag := `<time class="when" datetime="` + end.UTC().Format(time.RFC3339) + `" data-show="time">` + end.UTC().Format("15:04") + "\u00a0UTC+00:00</time>"
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Try again in 15 minutes, at "+tag+".") ||
		!strings.Contains(r.body, `static/localtime.js`) {
		t.Fatalf("lockout page: %d\n%s", r.status, r.body)
	}
	b.lang = "ja"
	tok := b.csrf("/.2fa/logout")
	r = b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}})
	if !strings.Contains(r.body, "15分後（"+tag+"）に") {
		t.Fatalf("ja lockout page:\n%s", r.body)
	}
}

// Times on the settings page are <time> elements in UTC with the offset,
// for the script to show in the member's zone; never a bare UTC stamp.
func TestSettingsTimesCarryTheirZone(t *testing.T) {
	e := start(t, setup{})
	d := rememberedBrowser(e)
	page := d.settingsPage("en")
	stamp := regexp.MustCompile(`<time class="when" datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)" data-show="datetime">\d{4}\x{2011}\d\d\x{2011}\d\d \d\d:\d\d\x{a0}UTC\+00:00</time>`)
	activity := page.body[strings.Index(page.body, `<table class="activity`):]
	if !stamp.MatchString(activity) || strings.Contains(activity, " UTC<") {
		t.Errorf("activity times:\n%s", activity)
	}
	devices := regexp.MustCompile(`(?s)<ul class="devices">.*?</ul>`).FindString(page.body)
	if len(stamp.FindAllString(devices, -1)) != 2 {
		t.Errorf("device times:\n%s", devices)
	}
	if !strings.Contains(page.body, `data-show="date">`+pageDate(e.clock.Now())+`</time>`) ||
		!strings.Contains(page.body, `<script src="/.2fa/static/localtime.js"`) {
		t.Errorf("method dates or the script:\n%s", page.body)
	}
}

// The recovery-code download is named after the site.
func TestRecoveryDownloadNamedAfterSite(t *testing.T) {
	e := start(t, setup{})
	b := e.browser()
	b.login("alice")
	r := firstApp(b, func(secret string) string { return e.code(secret, 0) })
	if !strings.Contains(r.body, `download="Test-Members-recovery-codes.txt"`) {
		t.Fatalf("download name:\n%s", r.body)
	}
}
