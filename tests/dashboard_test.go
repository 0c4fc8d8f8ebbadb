package tests

// The admin overview (/.2fa/admin/): real figures, the gateway's own and
// another instance's on the same Redis store, drawn as SVG in headless
// Chromium in English and Japanese on a phone and a desktop, under the
// CSP; the latest security events; the range parameter, the figures
// missing or unreadable, the old member-list address and who may open
// it.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// The overview's figures are real: the gateway counts its own events and
// reads the site's figures from a Redis store it shares with a second
// instance of the site, played by the test, whose tally holds the
// fixture's days. The fixture fills the days before today, so the
// expected counts are the fixture's, worked out by hand, plus what the
// test itself did through the gateway today.

// dashboardPrefix is the key prefix of the dashboard tests' store.
const dashboardPrefix = "dash:"

// dashboardSetup is adminPagesSetup with lines on a Redis store of its
// own, returned with a client on the same server for what another
// instance, or damage, writes there.
func dashboardSetup(t *testing.T, lines ...string) (setup, *redis.Store, *goredis.Client) {
	t.Helper()
	srv := testredis.Start(t)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	global := append([]string{
		fmt.Sprintf("keys %q", testKey),
		fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tkey_prefix %s\n\t\t}", srv.Addr, dashboardPrefix),
		pageAdmins,
	}, lines...)
	return setup{admin: true, global: strings.Join(global, "\n\t\t")}, redis.New(client, dashboardPrefix), client
}

// fixtureInstance is the other instance's name in the figures.
const fixtureInstance = "fixture-instance"

// writeFixture counts the fixture's days from from, n of them, in the
// tally of fixtureInstance on st, each at its noon by the tally's clock,
// and flushes them, as that instance's background loop would have.
func writeFixture(t *testing.T, st store.Store, from time.Time, n int) {
	t.Helper()
	var now time.Time
	tally, err := audit.NewTally(st, fixtureInstance, 90*24*time.Hour, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		now = from.AddDate(0, 0, i).Add(12 * time.Hour)
		fixtureDay(tally, i)
	}
	if err := tally.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// recoveredIn is a time to recover in each bucket of
// audit.RecoveredBounds, the last above them all.
var recoveredIn = [...]float64{30, 2 * 60, 10 * 60, 30 * 60, 2 * 3600, 12 * 3600, 2 * 86400, 5 * 86400, 10 * 86400}

// fixtureDay counts the fixture's ith day, shaped by i so that every
// chart has gaps, zeros and several series.
func fixtureDay(tally *audit.Tally, i int) {
	count := func(n int, kind audit.Kind, labels ...string) {
		for range n {
			tally.Observe(kind, labels...)
		}
	}
	count(10+i, audit.CountVerification, "totp", "ok")
	count(i%3, audit.CountVerification, "totp", "wrong")
	count(5, audit.CountVerification, "email", "ok")
	count(i%2, audit.CountVerification, "email", "expired")
	count(i%4, audit.CountVerification, "sms", "ok")
	if i%10 == 0 {
		count(1, audit.CountVerification, "recovery", "ok")
	}
	count(20, audit.CountSent, "email", "sent")
	count(3, audit.CountSent, "email", "limited")
	if i%5 == 0 {
		count(2, audit.CountSent, "email", "timeout")
	}
	if i%2 == 0 {
		count(4, audit.CountSent, "sms", "sent")
	}
	if i%6 == 0 {
		count(1, audit.CountSent, "sms", "rejected")
	}
	if i == 2 {
		count(1, audit.CountNotArrived, "email")
	}
	if i%4 == 0 {
		count(1, audit.CountLockout, "account")
	}
	if i%9 == 0 {
		count(1, audit.CountLockout, "address")
	}
	tally.ObserveRecovered(recoveredIn[i%9])
	if i%7 != 3 {
		tally.Members(int64(100+i), int64(40+2*i))
	}
}

// dayText writes a date as the overview does, in lang.
func dayText(lang string, d time.Time) string {
	if lang == "ja" {
		return fmt.Sprintf("%d年%d月%d日", d.Year(), d.Month(), d.Day())
	}
	return fmt.Sprintf("%d %s %d", d.Day(), d.Month().String()[:3], d.Year())
}

// The figures expected over 30 days: the fixture's days i = 0..28, then
// today's from TestBrowserDashboard's gateway (dashboardToday).
var dashboard30 = struct {
	points, bars map[string]int
	totals       map[string]string
}{
	points: map[string]int{
		// No member counts on days 3, 10, 17, 24; today's from the
		// gateway.
		"coverage": 29 - 4 + 1,
		// Email: a send every day; SMS: on the even days; none today.
		"nondelivery": 29 + 15,
	},
	bars: map[string]int{
		// App, email, SMS but on days 0, 4, ..., 28, recovery on 0, 10,
		// 20; today the app.
		"verified": 29 + 29 + 21 + 3 + 1,
		// Wrong codes but on days 0, 3, ..., 27, expired on the odd days;
		// today alice's wrong code.
		"failed": 19 + 14 + 1,
		// Account on 0, 4, ..., 28; address on 0, 9, 18, 27.
		"lockouts": 8 + 4,
		// Every bucket has someone.
		"recovered": 9,
	},
	totals: map[string]string{
		// App: the sum of 10+i = 696, and alice's today; email 5 a day;
		// SMS the sum of i%4 = 42.
		"verified": "Total|697|145|42|3",
		// Email: 2 timeouts on 6 days among 580 sent; SMS: 5 rejected
		// among 60 sent.
		"nondelivery": "Total|2.0% (12 of 592)|7.7% (5 of 65)",
		"lockouts":    "Total|8|4",
		"recovered":   "Total|29",
	},
}

// latestRow is a row of the overview's latest security events.
type latestRow struct {
	Event  string `json:"event"`
	Result string `json:"result"`
	Member string `json:"member"`
	Href   string `json:"href"`
}

// dashboardToday is what TestBrowserDashboard's gateway counts today:
// three members seen and enrolled (a confirmed enrolment is no
// verification), alice's wrong code and her sign-in after the unlock,
// and the admins' reset request and unlock.
func dashboardToday(day time.Time) audit.Day {
	return audit.Day{
		Date: day, Seen: 3, Enrolled: 3,
		Verifications: map[string]map[string]int64{"totp": {"ok": 1, "wrong": 1}},
		Enrolments:    map[string]int64{"totp": 3},
		AdminActions:  map[string]int64{"reset_requested": 1, "unlock": 1},
		Recovered:     audit.NewHistogram(audit.RecoveredBounds),
	}
}

func TestBrowserDashboard(t *testing.T) {
	s, st, _ := dashboardSetup(t, "reset_approval 1h")
	e := start(t, s)
	requireChromium(t)
	to := e.clock.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, -29)
	writeFixture(t, st, from, 29)

	// Today, through the gateway: bob enrols and waits for a reset;
	// alice enrols, enters a wrong code, is unlocked by an admin and
	// signs in.
	bob, _ := enrolled(e, "bob")
	bob.get("/members/")
	if status, msg := adminPost(t, e, "/two-factor/members/reset", `{"member": "bob", "reason": "lost phone, ID checked by a video call"}`); status != 202 {
		t.Fatalf("requesting a reset of bob: %d %q", status, msg)
	}
	_, secret := enrolled(e, "alice")
	e.nextStep()
	alice := e.browser()
	alice.login("alice")
	if r := alice.verify(wrongCode(e.code(secret, 0)), "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("alice's wrong code: %d", r.status)
	}
	if status, msg := adminPost(t, e, "/two-factor/members/unlock", `{"member": "alice", "reason": "called back, she mistyped"}`); status != 200 {
		t.Fatalf("unlocking alice: %d %q", status, msg)
	}
	if r := alice.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice's sign-in: %d", r.status)
	}
	alice.get("/members/")
	e.nextStep()

	c := e.chromium(t)
	c.enrolAdmin("admin")
	today := to.Format(time.DateOnly)
	if got := getFigures(t, e, "?from="+today+"&to="+today); len(got) != 1 || !reflect.DeepEqual(got[0], dashboardToday(to)) {
		t.Fatalf("today's figures:\n got %+v\nwant %+v", got, dashboardToday(to))
	}
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
			// The median of the 29 times to recover: in (1 h, 4 h], half way
			// through the 3 there.
			heading, days, median := "Overview", "30 days", "90 minutes"
			if lang == "ja" {
				heading, days, median = "概要", "30日間", "90分"
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
					want = strings.NewReplacer("Total", "合計", " (12 of 592)", "（失敗12件／送信592件）", " (5 of 65)", "（失敗5件／送信65件）").Replace(want)
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
			// The latest security events: alice's wrong code and her
			// unlock, newest first, labelled as the audit page labels
			// them and linked to her page; not her sign-in.
			rows := evalJS[[]latestRow](c, "the latest events", `[...document.querySelectorAll('section.latest tbody tr')].map(r => {
				const td = r.querySelectorAll('td'), a = td[3].querySelector('a');
				return {event: td[1].textContent.trim(), result: td[2].textContent.trim(), member: td[3].textContent.trim(), href: a ? a.getAttribute('href') : ''};
			})`)
			labels := map[string][4]string{
				"en": {"Code check", "Failure", "Admin unlocked a member", "Success"},
				"ja": {"コードの確認", "失敗", "管理者が会員のロックを解除", "成功"},
			}[lang]
			aliceURL := "/.2fa/admin/member?id=alice"
			wrong := slices.Index(rows, latestRow{labels[0], labels[1], "alice", aliceURL})
			unlock := slices.Index(rows, latestRow{labels[2], labels[3], "alice", aliceURL})
			if wrong < 0 || unlock < 0 || unlock > wrong {
				c.fatalf("%s: the latest events lack alice's wrong code and unlock, newest first: %+v", where, rows)
			}
			for _, r := range rows {
				if r.Event == labels[0] && r.Result == labels[3] {
					c.fatalf("%s: a routine sign-in among the latest events: %+v", where, rows)
				}
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
	// Opening the overview is audited as a read, as it shows the latest
	// security events: each of the four pages shown, none of the refused.
	viewed := 0
	for _, a := range e.audit() {
		if a["event"] == "admin_overview_viewed" {
			viewed++
			if a["actor"] != "admin (approver)" || a["admin_ip"] == nil || a["range"] == nil {
				t.Errorf("audited as %v", a)
			}
		}
	}
	if viewed != 4 {
		t.Errorf("%d admin_overview_viewed entries, want 4", viewed)
	}
}

// The overview of a gateway whose figures are only today's; with another
// instance's unreadable document among them; and when the figures cannot
// be read: the rest of the page still shows, saying so.
func TestDashboardWithoutFigures(t *testing.T) {
	s, st, client := dashboardSetup(t)
	e := start(t, s)
	// Today: admin enrols, then signs in on another browser.
	_, secret := enrolled(e, "admin")
	e.nextStep()
	admin := e.browser()
	admin.login("admin")
	if r := admin.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("admin's sign-in: %d", r.status)
	}
	if r := admin.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("admin's member page: %d", r.status)
	}
	to := e.clock.Now().UTC().Truncate(24 * time.Hour)
	ctx := context.Background()

	// Fresh: the past days have no figures. Each counts nothing and has
	// no coverage; no code was sent nor anyone recovered in the range, so
	// those two charts have no data; today has admin's sign-in and
	// coverage.
	r := admin.get("/.2fa/admin/")
	if r.status != http.StatusOK || strings.Count(r.body, "No data yet for this period.") != 2 ||
		!strings.Contains(between(t, r.body, `id="chart-nondelivery"`, "</figure>"), "No data yet") ||
		!strings.Contains(between(t, r.body, `id="chart-recovered"`, "</figure>"), "No data yet") {
		t.Fatalf("without figures: %d\n%s", r.status, r.body)
	}
	if got := coverageCells(t, r.body); len(got) != 30 || strings.Count(strings.Join(got[:29], ""), "–") != 29 || got[29] != "100.0%" {
		t.Errorf("coverage without past figures: %q, want 29 × – then 100.0%% today", got)
	}
	if n := strings.Count(between(t, r.body, `id="chart-verified"`, "</figure>"), `<rect class="bar"`); n != 1 {
		t.Errorf("%d verified bars, want today's only", n)
	}
	if !strings.Contains(between(t, r.body, `<section class="latest"`, "</section>"), "<table") {
		t.Error("admin's enrolment is not among the latest events")
	}

	// Yesterday, another instance's document that does not parse beside
	// the fixture instance's: the readable one counts, the other is
	// skipped, and the page reads as usual.
	yesterday := to.AddDate(0, 0, -1)
	writeFixture(t, st, yesterday, 1)
	date := yesterday.Format(time.DateOnly)
	if err := client.Set(ctx, dashboardPrefix+"figures:"+date+":broken-instance", "{not json", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.ZAdd(ctx, dashboardPrefix+"\x00index:figures:"+date, goredis.Z{Member: "broken-instance"}).Err(); err != nil {
		t.Fatal(err)
	}
	r = admin.get("/.2fa/admin/")
	if got := coverageCells(t, r.body); r.status != http.StatusOK || len(got) != 30 || got[28] != "40.0%" || got[29] != "100.0%" {
		t.Fatalf("with an unreadable document: %d, coverage %q", r.status, got)
	}
	if strings.Contains(r.body, "The figures cannot be read right now.") {
		t.Error("one unreadable document hides every figure")
	}
	if b, err := os.ReadFile(e.logPath); err != nil || !strings.Contains(string(b), "documents that cannot be parsed are left out of the figures") ||
		!strings.Contains(string(b), "figures:"+date+":broken-instance") {
		t.Error("the unreadable document is not logged with its key")
	}

	// Two days ago, the day's index is not an index: Redis refuses to
	// read it, so the figures cannot be read; the rest of the page can.
	index := dashboardPrefix + "\x00index:figures:" + to.AddDate(0, 0, -2).Format(time.DateOnly)
	if err := client.Set(ctx, index, "not an index", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	r = admin.get("/.2fa/admin/")
	if r.status != http.StatusOK || strings.Count(r.body, "The figures cannot be read right now.") != 6 ||
		strings.Contains(r.body, "WRONGTYPE") || strings.Contains(r.body, "chart-svg") {
		t.Fatalf("figures failing: %d\n%s", r.status, r.body)
	}
	if !strings.Contains(between(t, r.body, `<section class="latest"`, "</section>"), "<table") {
		t.Error("the latest events are gone with the figures")
	}
	if b, err := os.ReadFile(e.logPath); err != nil || !strings.Contains(string(b), "reading the overview's figures") || !strings.Contains(string(b), "WRONGTYPE") {
		t.Error("the failure is not logged with its cause")
	}

	// Repaired, the figures are back.
	if err := client.Del(ctx, index).Err(); err != nil {
		t.Fatal(err)
	}
	if r = admin.get("/.2fa/admin/"); r.status != http.StatusOK || strings.Contains(r.body, "The figures cannot be read right now.") {
		t.Fatalf("after the repair: %d", r.status)
	}
}

// coverageCells are the cells of the coverage table, a day a cell.
func coverageCells(t *testing.T, body string) []string {
	t.Helper()
	table := between(t, between(t, body, `id="chart-coverage"`, "</figure>"), "<tbody>", "</tbody>")
	var cells []string
	for _, m := range regexp.MustCompile(`<td[^>]*>([^<]*)</td>`).FindAllStringSubmatch(table, -1) {
		cells = append(cells, m[1])
	}
	return cells
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
	s, st, _ := dashboardSetup(t)
	e := start(t, s)
	to := e.clock.Now().UTC().Truncate(24 * time.Hour)
	writeFixture(t, st, to.AddDate(0, 0, -29), 29)
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
