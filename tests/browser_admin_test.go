package tests

// The admin pages in headless Chromium: the member list, a member's page
// and reconcile, in Japanese and English, at a phone's size and a
// desktop's, under the pages' Content-Security-Policy; and an action
// taken by clicking, as an admin would.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// viewport is a screen size the admin pages are checked at.
type viewport struct {
	name          string
	width, height int64
	stacked       bool // tables show as one card per row
}

var adminViewports = []viewport{
	{"phone", 390, 844, true},
	{"desktop", 1280, 800, false},
}

func (c *chrome) setViewport(v viewport) {
	c.t.Helper()
	opts := []chromedp.EmulateViewportOption{}
	if v.stacked {
		opts = append(opts, chromedp.EmulateScale(3), chromedp.EmulateMobile)
	}
	if err := chromedp.Do(c.ctx, chromedp.EmulateViewport(v.width, v.height, opts...)); err != nil {
		c.fatalf("setting the viewport to %dx%d: %v", v.width, v.height, err)
	}
}

// checkAdminLayout checks what a page at this size looks like: nothing
// wider than the screen, and tables as rows (desktop) or cards (phone).
func (c *chrome) checkAdminLayout(v viewport, lang, heading string) {
	c.t.Helper()
	got := evalJS[struct {
		Lang     string   `json:"lang"`
		Heading  string   `json:"heading"`
		Overflow int      `json:"overflow"`
		Display  []string `json:"display"`
		Labels   []string `json:"labels"`
	}](c, "the admin page's layout", `(() => {
		const rows = [...document.querySelectorAll('table.stack tbody tr')];
		return {
			lang: document.documentElement.lang,
			heading: document.querySelector('h1')?.innerText.trim() ?? '',
			overflow: document.documentElement.scrollWidth - window.innerWidth,
			display: rows.map(r => getComputedStyle(r).display),
			labels: rows.slice(0, 1).flatMap(r => [...r.children].map(cell => getComputedStyle(cell, '::before').content)),
		};
	})()`)
	if got.Lang != lang || got.Heading != heading {
		c.fatalf("%s: lang %q, heading %q; want %q, %q", v.name, got.Lang, got.Heading, lang, heading)
	}
	if got.Overflow > 0 {
		c.fatalf("%s: the page is %dpx wider than the screen", v.name, got.Overflow)
	}
	want := "table-row"
	if v.stacked {
		want = "block"
	}
	for _, d := range got.Display {
		if d != want {
			c.fatalf("%s: a table row shows as %q, want %q", v.name, d, want)
		}
	}
	for _, l := range got.Labels {
		if labelled := l != "none" && l != "normal" && l != `""`; labelled != v.stacked {
			c.fatalf("%s: cell label %q (stacked %v)", v.name, l, v.stacked)
		}
	}
}

// enrolAdmin signs in as id and sets up the app in the browser, which
// leaves a fresh session verified with it, as the admin pages ask.
func (c *chrome) enrolAdmin(id string) {
	c.t.Helper()
	if r := c.signIn(id, "/members/"); r.path != "/.2fa/enrol" {
		c.fatalf("%s after signing in: %s", id, r.url)
	}
	c.submit(`form[action="/.2fa/enrol"] button[type=submit]`)
	secret := c.enrolmentSecret()
	c.typeInto("#code", c.e.code(secret, 0))
	c.saveRecoveryCodes(c.submit(`form[action="/.2fa/enrol/confirm"] button[type=submit]`), "/.2fa/enrol")
	c.e.nextStep()
}

// screenshots is where the admin pages' screenshots go:
// TWOFACTOR_SCREENSHOTS=<dir> keeps them for a person to look at.
func screenshots(t *testing.T) string {
	if dir := os.Getenv("TWOFACTOR_SCREENSHOTS"); dir != "" {
		return dir
	}
	return t.TempDir()
}

func TestBrowserAdminPages(t *testing.T) {
	e := start(t, adminPagesSetup(t, "max_failures 3", "lockout 1h"))
	requireChromium(t)
	_, secret := enrolled(e, "alice")
	bob := e.browser()
	bob.login("bob")
	bob.get("/members/")
	// alice locks herself out, for the list's badge and the unlock below.
	locked := e.browser()
	locked.login("alice")
	for range 3 {
		locked.verify(wrongCode(e.code(secret, 0)), "/members/", false)
	}

	c := e.chromium(t)
	c.enrolAdmin("admin")
	shots := screenshots(t)
	headings := map[string][3]string{
		"en": {"Members", "Member alice", "Reconcile a member list"},
		"ja": {"会員一覧", "会員 alice", "会員リストの照合"},
	}
	for _, lang := range []string{"en", "ja"} {
		c.setAcceptLanguage(lang)
		for _, v := range adminViewports {
			c.setViewport(v)
			where := fmt.Sprintf("%s-%s", lang, v.name)

			r := c.open("/.2fa/admin/members")
			if r.status != 200 {
				c.fatalf("%s: the list: %s (%d)", where, r.url, r.status)
			}
			c.checkStyled()
			c.checkAdminLayout(v, lang, headings[lang][0])
			if n := evalJS[int](c, "the member rows", `document.querySelectorAll('table.members tbody tr').length`); n != 3 {
				c.fatalf("%s: %d member rows, want 3", where, n)
			}
			if n := evalJS[int](c, "the locked badges", `document.querySelectorAll('table.members .badge.locked').length`); n != 1 {
				c.fatalf("%s: %d locked badges, want 1", where, n)
			}
			c.screenshot(filepath.Join(shots, where+"-list.png"))

			// Search: a GET form, so the result has its own address.
			c.typeInto("#q", "ali")
			if r := c.submit(`form.search button[type=submit]`); r.status != 200 || r.path != "/.2fa/admin/members" || r.query.Get("q") != "ali" {
				c.fatalf("%s: search: %s (%d)", where, r.url, r.status)
			}

			r = c.open("/.2fa/admin/member?id=alice")
			if r.status != 200 {
				c.fatalf("%s: the member page: %s (%d)", where, r.url, r.status)
			}
			c.checkStyled()
			c.checkAdminLayout(v, lang, headings[lang][1])
			if n := evalJS[int](c, "the action forms", `document.querySelectorAll('form.action textarea[name=reason][required]').length`); n != 4 {
				c.fatalf("%s: %d action forms with a required reason, want 4", where, n)
			}
			c.screenshot(filepath.Join(shots, where+"-member.png"))

			r = c.open("/.2fa/admin/reconcile")
			if r.status != 200 {
				c.fatalf("%s: reconcile: %s (%d)", where, r.url, r.status)
			}
			c.checkAdminLayout(v, lang, headings[lang][2])
			// A textarea starts empty, which chromedp cannot clear.
			if err := chromedp.Do(c.ctx, chromedp.SendKeys(chromedp.CSS("#ids"), "alice\nbob\nnobody\n")); err != nil {
				c.fatalf("%s: typing the IDs: %v", where, err)
			}
			r = c.submit(`form[enctype="multipart/form-data"] button[type=submit]`)
			if r.status != 200 {
				c.fatalf("%s: reconciling: %s (%d)", where, r.url, r.status)
			}
			counts := evalJS[[]string](c, "the counts", `[...document.querySelectorAll('.counts .count')].map(e => e.innerText)`)
			if strings.Join(counts, ",") != "1,1,1" {
				c.fatalf("%s: reconcile counts %v, want 1,1,1", where, counts)
			}
			c.checkAdminLayout(v, lang, headings[lang][2])
			c.screenshot(filepath.Join(shots, where+"-reconcile.png"))
		}
	}

	// Unlock by clicking: the reason is required by the browser too, then
	// the page says it is done and the member can try again.
	c.setAcceptLanguage("en")
	c.open("/.2fa/admin/member?id=alice")
	c.click(`form[action="/.2fa/admin/member/unlock"] button[type=submit]`)
	if valid := evalJS[bool](c, "the reason's validity", `document.querySelector('#reason-unlock').validity.valid`); valid {
		c.fatalf("an empty reason passes the browser's check")
	}
	if err := chromedp.Do(c.ctx, chromedp.SendKeys(chromedp.CSS("#reason-unlock"), "called the member back")); err != nil {
		c.fatalf("typing the reason: %v", err)
	}
	r := c.submit(`form[action="/.2fa/admin/member/unlock"] button[type=submit]`)
	if r.status != 200 || r.query.Get("done") != "unlock" {
		c.fatalf("after unlocking: %s (%d)", r.url, r.status)
	}
	if text := c.bodyText(); !strings.Contains(text, "The member is unlocked and can try again now.") {
		c.fatalf("no notice after unlocking")
	}
	if r := locked.verify(e.code(secret, 0), "/members/", false); r.status != 303 {
		t.Fatalf("the member after the unlock: %d", r.status)
	}
	assertActorAudit(t, e, "admin_unlock", "called the member back")
	c.checkNoCSPViolations()
}

// The four-eyes reset in the browser: the approvals page and a member's
// page with a pending request, in Japanese and English at a phone's size
// and a desktop's, under the CSP; then an approval by clicking.
func TestBrowserAdminApprovals(t *testing.T) {
	e := start(t, adminPagesSetup(t, "reset_approval 1h"))
	requireChromium(t)
	alice, _ := enrolled(e, "alice")
	enrolled(e, "bob")
	for _, m := range []string{"alice", "bob"} {
		if status, msg := adminPost(t, e, "/two-factor/members/reset", `{"member": "`+m+`", "reason": "lost phone, ID checked by a video call"}`); status != 202 {
			t.Fatalf("requesting a reset of %s: %d %q", m, status, msg)
		}
	}
	c := e.chromium(t)
	c.enrolAdmin("admin")
	shots := screenshots(t)
	headings := map[string][2]string{
		"en": {"Reset approvals", "Member alice"},
		"ja": {"リセットの承認", "会員 alice"},
	}
	type layout struct {
		Requests int `json:"requests"`
		Approve  int `json:"approve"`
		Withdraw int `json:"withdraw"`
		Reset    int `json:"reset"`
		Columns  int `json:"columns"`
	}
	const measure = `(() => ({
		requests: document.querySelectorAll('li.request').length,
		approve: document.querySelectorAll('form[action="/.2fa/admin/approvals/approve"]').length,
		withdraw: document.querySelectorAll('form[action="/.2fa/admin/approvals/withdraw"] textarea[name=reason][required]').length,
		reset: document.querySelectorAll('form[action="/.2fa/admin/member/reset"]').length,
		columns: getComputedStyle(document.querySelector('.request-actions')).gridTemplateColumns.split(' ').length,
	}))()`
	for _, lang := range []string{"en", "ja"} {
		c.setAcceptLanguage(lang)
		for _, v := range adminViewports {
			c.setViewport(v)
			where := fmt.Sprintf("%s-%s", lang, v.name)
			columns := 2
			if v.stacked {
				columns = 1
			}

			if r := c.open("/.2fa/admin/approvals"); r.status != 200 {
				c.fatalf("%s: the approvals page: %s (%d)", where, r.url, r.status)
			}
			c.checkStyled()
			c.checkAdminLayout(v, lang, headings[lang][0])
			if got := evalJS[layout](c, "the approvals page", measure); got != (layout{Requests: 2, Approve: 2, Withdraw: 2, Columns: columns}) {
				c.fatalf("%s: the approvals page: %+v", where, got)
			}
			c.screenshot(filepath.Join(shots, where+"-approvals.png"))

			if r := c.open("/.2fa/admin/member?id=alice"); r.status != 200 {
				c.fatalf("%s: alice's page: %s (%d)", where, r.url, r.status)
			}
			c.checkAdminLayout(v, lang, headings[lang][1])
			if got := evalJS[layout](c, "the member page", measure); got != (layout{Approve: 1, Withdraw: 1, Columns: columns}) {
				c.fatalf("%s: alice's page: %+v", where, got)
			}
			c.screenshot(filepath.Join(shots, where+"-pending.png"))
		}
	}

	// Approved by clicking, from alice's page: the reason is optional.
	c.setAcceptLanguage("en")
	c.open("/.2fa/admin/member?id=alice")
	r := c.submit(`section.pending-reset form[action="/.2fa/admin/approvals/approve"] button[type=submit]`)
	if r.status != 200 || r.query.Get("done") != "approved" {
		c.fatalf("after approving: %s (%d)", r.url, r.status)
	}
	if text := c.bodyText(); !strings.Contains(text, "The reset is approved and done") {
		c.fatalf("no notice after approving")
	}
	sentTo(t, alice, "/.2fa/enrol", "after the approval in the browser")
	c.checkNoCSPViolations()
}
