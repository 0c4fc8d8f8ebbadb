package tests

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// The demo member site does what the README asks of a site: its account
// page links to the gateway's settings, and its "Sign out" goes through the
// gateway's sign-out, which ends the second-factor session and the
// remembered device, then sends the member on to the site's own sign-out.

// link returns the href of the first link whose text is text.
func link(t *testing.T, page, text string) string {
	t.Helper()
	m := regexp.MustCompile(`<a [^>]*href="([^"]*)"[^>]*>` + regexp.QuoteMeta(text) + `</a>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no link %q in:\n%s", text, page)
	}
	return html.UnescapeString(m[1])
}

func TestSiteLinksToSettingsAndSignsOutThroughTheGateway(t *testing.T) {
	e := start(t, setup{})
	b, secret := enrolled(e, "alice")

	// Account page → settings: a recent code, so the settings open.
	account := b.get("/members/account")
	if account.status != http.StatusOK {
		t.Fatalf("account page: %d", account.status)
	}
	settings := link(t, account.body, "Manage your ways to verify, remembered devices and recovery codes")
	if r := b.get(settings); r.status != http.StatusOK || !strings.Contains(r.body, `id="method-totp"`) {
		t.Fatalf("settings from the account page (%s): %d", settings, r.status)
	}

	// Remember this browser, so that signing out has a device to forget.
	e.nextStep()
	b.login("alice")
	if r := b.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther || b.cookie("2fa_device") == nil {
		t.Fatalf("verify with remember: %d", r.status)
	}
	oldDevice := b.cookie("2fa_device").Value

	// "Sign out" → the gateway's page → its button → the site's sign-out.
	signOut := link(t, b.get("/members/").body, "Sign out")
	page := b.get(signOut)
	if page.status != http.StatusOK {
		t.Fatalf("the gateway's sign-out page (%s): %d", signOut, page.status)
	}
	// The page's way back leads to the site's top page, not on to the
	// site's sign-out, which would skip the gateway's.
	if back := link(t, page.body, "Back to the site"); back != "/" {
		t.Fatalf("the sign-out page links back to %q", back)
	}
	returnTo := inputValue(page.body, "return_to")
	if !strings.HasPrefix(returnTo, "/logout?t=") {
		t.Fatalf("the sign-out page carries return_to %q", returnTo)
	}
	r := b.post("/.2fa/logout", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {returnTo}})
	if r.status != http.StatusSeeOther || r.location() != returnTo {
		t.Fatalf("gateway sign-out: %d %q", r.status, r.location())
	}
	if b.cookie("2fa_session") != nil || b.cookie("2fa_device") != nil {
		t.Fatal("the gateway's cookies survived its sign-out")
	}
	b.header.Set("Sec-Fetch-Site", "same-origin") // a browser following the redirect says so
	if r := b.get(returnTo); r.status != http.StatusSeeOther || r.location() != "/" {
		t.Fatalf("the site's sign-out: %d %q", r.status, r.location())
	}
	b.header.Del("Sec-Fetch-Site")
	if r := b.get("/api/me"); r.status != http.StatusUnauthorized {
		t.Fatalf("still signed in at the site: %d", r.status)
	}

	// The device is forgotten on the server: its old cookie, put back,
	// no longer skips the code.
	b.login("alice")
	b.setCookie("2fa_device", oldDevice)
	if r := b.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("after signing out and in again: %d %q", r.status, r.location())
	}
}
