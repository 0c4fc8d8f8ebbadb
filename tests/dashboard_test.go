package tests

// The admin overview (/.2fa/admin/): its figures come from fixtures given
// to the running app (App.UseFigures), drawn as SVG in headless Chromium
// in English and Japanese on a phone and a desktop, under the CSP; the
// range parameter, the old member-list address and who may open it.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/chromedp/chromedp"

	twofactor "github.com/caddy-twofactor/twofactor"
	"github.com/caddy-twofactor/twofactor/audit"
)

// figuresFixture is a site's days, the ith day after from shaped by i so
// that every chart has gaps, zeros and several series. The expected
// counts in the tests below are worked out from it by hand.
func figuresFixture(_ context.Context, from, to time.Time) ([]audit.Day, error) {
	var days []audit.Day
	for i, d := 0, from; !d.After(to); i, d = i+1, d.AddDate(0, 0, 1) {
		day := audit.Day{
			Date: d, Seen: int64(100 + i), Enrolled: int64(40 + 2*i),
			Verifications: map[string]map[string]int64{
				"totp":  {"ok": int64(10 + i), "wrong": int64(i % 3)},
				"email": {"ok": 5, "expired": int64(i % 2)},
				"sms":   {"ok": int64(i % 4)},
			},
			Sent: map[string]map[string]int64{
				"email": {"sent": 20, "limited": 3},
				"sms":   {},
			},
			Lockouts:  map[string]int64{},
			Recovered: audit.Histogram{Bounds: audit.RecoveredBounds, Counts: make([]int64, len(audit.RecoveredBounds)+1), Count: 1},
		}
		if i%7 == 3 {
			day.Seen, day.Enrolled = -1, -1
		}
		if i%10 == 0 {
			day.Verifications["recovery"] = map[string]int64{"ok": 1}
		}
		if i%5 == 0 {
			day.Sent["email"]["timeout"] = 2
		}
		if i%2 == 0 {
			day.Sent["sms"]["sent"] = 4
		}
		if i%6 == 0 {
			day.Sent["sms"]["rejected"] = 1
		}
		if i == 2 {
			day.NotArrived = map[string]int64{"email": 1}
		}
		if i%4 == 0 {
			day.Lockouts["account"] = 1
		}
		if i%9 == 0 {
			day.Lockouts["address"] = 1
		}
		day.Recovered.Counts[i%9] = 1
		days = append(days, day)
	}
	return days, nil
}

// useFigures gives the running app's overview these figures.
func useFigures(t *testing.T, fn func(context.Context, time.Time, time.Time) ([]audit.Day, error)) {
	t.Helper()
	app, err := caddy.ActiveContext().App("two_factor")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.(*twofactor.App).UseFigures(fn); err != nil {
		t.Fatal(err)
	}
}

// dayText writes a date as the overview does, in lang.
func dayText(lang string, d time.Time) string {
	if lang == "ja" {
		return fmt.Sprintf("%d年%d月%d日", d.Year(), d.Month(), d.Day())
	}
	return fmt.Sprintf("%d %s %d", d.Day(), d.Month().String()[:3], d.Year())
}

// The figures expected of figuresFixture over 30 days, i = 0..29.
var dashboard30 = struct {
	points, bars map[string]int
	totals       map[string]string
}{
	points: map[string]int{
		"coverage": 30 - 4, // no member counts on days 3, 10, 17, 24
		// email: a send every day; SMS: on the even days
		"nondelivery": 30 + 15,
	},
	bars: map[string]int{
		"verified":  30 + 30 + 22 + 3, // app, email, SMS but on days 0, 4, ..., 28, recovery on 0, 10, 20
		"failed":    20 + 15,          // wrong codes but on days 0, 3, ..., 27; expired on the odd days
		"lockouts":  8 + 4,            // account on 0, 4, ..., 28; address on 0, 9, 18, 27
		"recovered": 9,                // every bucket has someone
	},
	totals: map[string]string{
		// App: sum of 10+i = 735; email 5 a day; SMS sum of i%4 = 43.
		"verified": "Total|735|150|43|3",
		// Email: 2 timeouts on 6 days among 600 sent; SMS: 5 rejected
		// among 60 sent.
		"nondelivery": "Total|2.0% (12 of 612)|7.7% (5 of 65)",
		"lockouts":    "Total|8|4",
		"recovered":   "Total|30",
	},
}

func TestBrowserDashboard(t *testing.T) {
	e := start(t, adminPagesSetup(t, "reset_approval 1h"))
	requireChromium(t)
	enrolled(e, "bob")
	if status, msg := adminPost(t, e, "/two-factor/members/reset", `{"member": "bob", "reason": "lost phone, ID checked by a video call"}`); status != 202 {
		t.Fatalf("requesting a reset of bob: %d %q", status, msg)
	}
	useFigures(t, figuresFixture)
	to := e.clock.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, -29)

	c := e.chromium(t)
	c.enrolAdmin("admin")
	shots := screenshots(t)
	for _, lang := range []string{"en", "ja"} {
		c.setAcceptLanguage(lang)
		for _, v := range []struct {
			name          string
			width, height int64
			phone         bool
		}{{"phone", 375, 812, true}, {"desktop", 1280, 800, false}} {
			opts := []chromedp.EmulateViewportOption{}
			if v.phone {
				opts = append(opts, chromedp.EmulateScale(2), chromedp.EmulateMobile)
			}
			if err := chromedp.Do(c.ctx, chromedp.EmulateViewport(v.width, v.height, opts...)); err != nil {
				c.fatalf("setting the viewport: %v", err)
			}
			where := lang + "-" + v.name
			r := c.open("/.2fa/admin/")
			if r.status != 200 {
				c.fatalf("%s: the overview: %s (%d)", where, r.url, r.status)
			}
			c.checkStyled()
			got := evalJS[struct {
				Lang     string         `json:"lang"`
				Heading  string         `json:"heading"`
				Overflow int            `json:"overflow"`
				Charts   int            `json:"charts"`
				Points   map[string]int `json:"points"`
				Bars     map[string]int `json:"bars"`
				Width    float64        `json:"width"`
				Font     float64        `json:"font"`
				Pending  string         `json:"pending"`
				Current  string         `json:"current"`
				Median   string         `json:"median"`
				First    string         `json:"first"`
			}](c, "the overview", `(() => {
				const count = sel => Object.fromEntries([...document.querySelectorAll('figure.chart')].map(f => [f.id.replace('chart-', ''), f.querySelectorAll(sel).length]));
				const svg = document.querySelector('#chart-verified svg').getBoundingClientRect();
				const tick = document.querySelector('#chart-verified svg .ticks text').getBoundingClientRect();
				return {
					lang: document.documentElement.lang,
					heading: document.querySelector('h1').innerText.trim(),
					overflow: document.documentElement.scrollWidth - window.innerWidth,
					charts: document.querySelectorAll('svg.chart-svg[role=img] > title + desc').length,
					points: count('circle.point'),
					bars: count('rect.bar'),
					width: svg.width,
					font: tick.height,
					pending: document.querySelector('a[href="/.2fa/admin/approvals"] .count')?.innerText ?? '',
					current: document.querySelector('.ranges a[aria-current=page]')?.innerText ?? '',
					median: document.querySelector('dd.median').innerText,
					first: document.querySelector('#chart-coverage tbody th').textContent,
				};
			})()`)
			heading, days, median := "Overview", "30 days", "1 hour"
			if lang == "ja" {
				heading, days, median = "概要", "30日間", "1時間"
			}
			if got.Lang != lang || got.Heading != heading || got.Current != days || got.Median != median || got.Pending != "1" {
				c.fatalf("%s: %+v", where, got)
			}
			if got.Overflow > 0 {
				c.fatalf("%s: the page is %dpx wider than the screen", where, got.Overflow)
			}
			if got.Charts != 6 {
				c.fatalf("%s: %d charts with a title and a desc, want 6", where, got.Charts)
			}
			for name, n := range dashboard30.points {
				if got.Points[name] != n {
					c.fatalf("%s: %s has %d points, want %d", where, name, got.Points[name], n)
				}
			}
			for name, n := range dashboard30.bars {
				if got.Bars[name] != n {
					c.fatalf("%s: %s has %d bars, want %d", where, name, got.Bars[name], n)
				}
			}
			// Readable: the chart fills the phone's width, its text no
			// smaller than about 9 px.
			if got.Width < 250 || got.Width > float64(v.width) || got.Font < 9 {
				c.fatalf("%s: a chart %.0fpx wide with %.1fpx text", where, got.Width, got.Font)
			}
			if got.First != dayText(lang, from) {
				c.fatalf("%s: the first day reads %q, want %q", where, got.First, dayText(lang, from))
			}

			c.fullScreenshot(filepath.Join(shots, "dashboard-"+where+".png"))

			// The tables behind the charts, opened as a person would: the
			// exact numbers.
			for name, want := range dashboard30.totals {
				c.click("#chart-" + name + " summary")
				row := evalJS[[]string](c, "the totals", `[...document.querySelectorAll('#chart-`+name+` tfoot th, #chart-`+name+` tfoot td')].map(e => e.innerText.trim())`)
				if lang == "ja" {
					want = strings.NewReplacer("Total", "合計", " (12 of 612)", "（失敗12件／送信612件）", " (5 of 65)", "（失敗5件／送信65件）").Replace(want)
				}
				if strings.Join(row, "|") != want {
					c.fatalf("%s: the %s table's totals %q, want %q", where, name, row, want)
				}
			}
			c.click("#chart-coverage summary")
			cells := evalJS[[]string](c, "the coverage table", `[...document.querySelectorAll('#chart-coverage tbody tr')].slice(0, 4).map(r => r.innerText.replace(/\s+/g, ' ').trim())`)
			wantCells := []string{dayText(lang, from) + " 40.0%", dayText(lang, from.AddDate(0, 0, 1)) + " 41.6%",
				dayText(lang, from.AddDate(0, 0, 2)) + " 43.1%", dayText(lang, from.AddDate(0, 0, 3)) + " –"}
			if strings.Join(cells, "|") != strings.Join(wantCells, "|") {
				c.fatalf("%s: coverage rows %q, want %q", where, cells, wantCells)
			}
			// Open, the wide tables scroll in their box; the page does not.
			if n := evalJS[int](c, "the overflow", `document.documentElement.scrollWidth - window.innerWidth`); n > 0 {
				c.fatalf("%s: with the tables open, the page is %dpx wider than the screen", where, n)
			}
		}
	}

	// Another range, by its link.
	c.setAcceptLanguage("en")
	r := c.submit(`.ranges a[href$="range=7"]`)
	if r.status != 200 || r.query.Get("range") != "7" {
		c.fatalf("the 7-day link: %s (%d)", r.url, r.status)
	}
	if n := evalJS[int](c, "the days", `document.querySelectorAll('#chart-lockouts tbody tr').length`); n != 7 {
		c.fatalf("%d days over the 7-day range", n)
	}
	c.checkNoCSPViolations()
	c.checkNoConsoleErrors()
}

// fullScreenshot saves the whole page, not only the screen, as a PNG.
func (c *chrome) fullScreenshot(path string) {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.fatalf("screenshot: %v", err)
	}
	if !strings.HasPrefix(string(png), "\x89PNG\r\n\x1a\n") {
		c.fatalf("screenshot: not a PNG (%d bytes)", len(png))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// between is the first part of s from from to to, inclusive.
func between(t *testing.T, s, from, to string) string {
	t.Helper()
	i := strings.Index(s, from)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", from, s)
	}
	j := strings.Index(s[i:], to)
	if j < 0 {
		t.Fatalf("no %q after %q", to, from)
	}
	return s[i : i+j+len(to)]
}

func TestDashboardRange(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin, _ := enrolled(e, "admin")
	useFigures(t, figuresFixture)
	for _, q := range []string{"range=abc", "range=0", "range=31", "range=365", "range=-7", "range=7&range=30", "range="} {
		r := admin.get("/.2fa/admin/?" + q)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Check the range field") ||
			strings.Contains(r.body, "chart-svg") || !strings.Contains(r.body, `href="/.2fa/admin/?range=30"`) {
			t.Errorf("?%s: %d, want 400 naming the range field, with the choices and no figures", q, r.status)
		}
	}
	for q, days := range map[string]int{"": 30, "?range=7": 7, "?range=30": 30, "?range=90": 90} {
		r := admin.get("/.2fa/admin/" + q)
		if r.status != http.StatusOK {
			t.Fatalf("%q: %d", q, r.status)
		}
		lockouts := between(t, r.body, `id="chart-lockouts"`, "</figure>")
		if n := strings.Count(lockouts, `<tr><th scope="row">`) - 1; n != days {
			t.Errorf("%q: %d days in the lockouts table, want %d", q, n, days)
		}
	}
	// Opening the overview is not audited: it shows no member's data.
	for _, a := range e.audit() {
		if ev, _ := a["event"].(string); strings.Contains(ev, "overview") {
			t.Errorf("audited: %v", a)
		}
	}
}

// The overview without figures, and when reading them fails: the rest of
// the page still shows, saying so.
func TestDashboardWithoutFigures(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin, _ := enrolled(e, "admin")
	r := admin.get("/.2fa/admin/")
	if r.status != http.StatusOK || strings.Count(r.body, "No data yet for this period.") != 6 {
		t.Fatalf("without figures: %d\n%s", r.status, r.body)
	}
	useFigures(t, func(context.Context, time.Time, time.Time) ([]audit.Day, error) {
		return nil, errors.New("store down")
	})
	r = admin.get("/.2fa/admin/")
	if r.status != http.StatusOK || strings.Count(r.body, "The figures cannot be read right now.") != 6 || strings.Contains(r.body, "store down") {
		t.Fatalf("figures failing: %d\n%s", r.status, r.body)
	}
	if b, err := os.ReadFile(e.logPath); err != nil || !strings.Contains(string(b), "reading the overview's figures") {
		t.Error("the failure is not logged")
	}
}

// Bookmarks of the member list, from when it was at the overview's
// address, lead to the list with their parameters.
func TestDashboardOldListAddress(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin, _ := enrolled(e, "admin")
	for _, q := range []string{"q=ali", "filter=enrolled&order=last_seen", "after=bob&filter=locked", "unlocked=address", "q="} {
		r := admin.get("/.2fa/admin/?" + q)
		if r.status != http.StatusMovedPermanently || r.location() != "/.2fa/admin/members?"+q {
			t.Errorf("?%s: %d %q", q, r.status, r.location())
			continue
		}
		if r := admin.get(r.location()); r.status != http.StatusOK || !strings.Contains(r.body, "<h1>Members</h1>") {
			t.Errorf("?%s: the list: %d", q, r.status)
		}
	}
	// The list's links and forms point to its own address.
	r := admin.get("/.2fa/admin/members")
	for _, want := range []string{`<form method="get" action="/.2fa/admin/members"`, `<a href="/.2fa/admin/members">`, `<a href="/.2fa/admin/">Overview</a>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the list lacks %s", want)
		}
	}
	tok := admin.csrf("/.2fa/admin/members")
	r = admin.post("/.2fa/admin/unlock-address", map[string][]string{"csrf": {tok}, "address": {"192.0.2.9"}, "reason": {"office NAT"}})
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/members?unlocked=address" {
		t.Errorf("after unlocking an address: %d %q", r.status, r.location())
	}
}

// A member who is no admin gets the plain 403, which says nothing of the
// admin pages; a viewer may read the overview.
func TestDashboardOnlyForAdmins(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	useFigures(t, figuresFixture)
	bob, _ := enrolled(e, "bob")
	for _, path := range []string{"/.2fa/admin/", "/.2fa/admin/?range=7", "/.2fa/admin/members"} {
		r := bob.get(path)
		if r.status != http.StatusForbidden || strings.Contains(r.body, "chart") || strings.Contains(strings.ToLower(r.body), "admin") {
			t.Errorf("%s for a member who is no admin: %d", path, r.status)
		}
	}
	alice, _ := enrolled(e, "alice") // a viewer
	if r := alice.get("/.2fa/admin/"); r.status != http.StatusOK || strings.Count(r.body, `<svg class="chart-svg"`) != 6 {
		t.Errorf("the overview for a viewer: %d", r.status)
	}
	if auditOf(e, "admin_refused", "bob", nil) == 0 {
		t.Errorf("the refusals are not audited: %v", e.audit())
	}
}
