package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Times on the settings page, in a real browser set to Tokyo time:
// static/localtime.js shows each <time class="when"> in the browser's
// zone, with its offset, its parts joined by no-break spaces, under the
// page's Content-Security-Policy; at a phone's width none wraps.
func TestBrowserSettingsTimesInTheMembersZone(t *testing.T) {
	e := start(t, setup{})
	requireChromium(t)
	_, secret := enrolled(e, "alice")
	e.nextStep()

	c := e.chromium(t)
	if _, err := chromedp.Call(c.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"}); err != nil {
		t.Fatalf("setting the browser's zone: %v", err)
	}
	c.signIn("alice", "/members/")
	if r := c.open("/members/"); r.path != "/.2fa/challenge" {
		c.fatalf("want the challenge; at %s", r.url)
	}
	c.typeInto("#code", e.code(secret, 0))
	if r := c.submit(`form[action="/.2fa/challenge"] button[type=submit]`); r.path != "/members/" {
		c.fatalf("after the code: %s (%d)", r.url, r.status)
	}
	if r := c.open("/.2fa/methods?return_to=%2Fmembers%2F"); r.path != "/.2fa/methods" || r.status != 200 {
		c.fatalf("settings: %s (%d)", r.url, r.status)
	}
	type shown struct {
		Datetime, Show, Text string
	}
	times := evalJS[[]shown](c, "the page's times", `Array.from(document.querySelectorAll("time.when")).map(t => ({
		Datetime: t.getAttribute("datetime"), Show: t.getAttribute("data-show"), Text: t.textContent}))`)
	tokyo := time.FixedZone("JST", 9*3600)
	var datetimes, dates int
	for _, tm := range times {
		at, err := time.Parse(time.RFC3339, tm.Datetime)
		if err != nil {
			c.fatalf("datetime %q: %v", tm.Datetime, err)
		}
		local := at.In(tokyo)
		want := strings.ReplaceAll(local.Format(time.DateOnly), "-", "\u2011")
		switch tm.Show {
		case "datetime":
			// The date and the time may take a line each; neither breaks.
			want += " " + local.Format("15:04") + "\u00a0UTC+09:00"
			datetimes++
		case "date":
			dates++
		}
		if tm.Text != want {
			c.fatalf("%s (%s) shown as %q, want %q", tm.Datetime, tm.Show, tm.Text, want)
		}
	}
	// The activity (sign-ins, the app added) and the app's dates.
	if datetimes < 2 || dates < 2 {
		c.fatalf("times on the page: %+v", times)
	}
	if text := c.bodyText(); strings.Contains(text, "UTC+00:00") {
		c.fatalf("a time left in UTC: %s", text)
	}
	// On a phone's width, no time wraps inside itself: each is one line.
	if err := chromedp.Do(c.ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3))); err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"en", "ja"} {
		c.setAcceptLanguage(lang)
		c.open("/.2fa/methods?return_to=%2Fmembers%2F")
		if wrapped := evalJS[[]string](c, "wrapped times", `Array.from(document.querySelectorAll("time.when")).
			filter(t => t.getClientRects().length !== 1).map(t => t.textContent)`); len(wrapped) != 0 {
			c.fatalf("%s: times wrapped at 390 px: %q", lang, wrapped)
		}
	}
	c.checkNoCSPViolations()
}
