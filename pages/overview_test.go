package pages

import (
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/audit"
)

// overviewFixture is three days of figures with every kind of value: a
// day without member counts, a day without sends, a hostile member ID in
// the latest events.
func overviewFixture() *AdminOverview {
	day := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	nan := math.NaN()
	h := audit.Histogram{Bounds: audit.RecoveredBounds, Counts: []int64{1, 2, 0, 1, 0, 0, 0, 0, 1}, Count: 5}
	return &AdminOverview{
		Range: 7, Ranges: []int{7, 30, 90},
		Days:     []time.Time{day, day.AddDate(0, 0, 1), day.AddDate(0, 0, 2)},
		Coverage: []float64{50, nan, 75}, Seen: 1200, Enrolled: 900,
		Verified:     map[string][]float64{"totp": {10, 1200, 3}, "email": {2, 0, 1}},
		Failed:       map[string][]float64{"totp": {1, 0, 0}, "sms": {0, 2, 0}},
		Results:      map[string]map[string]int64{"totp": {"ok": 1213, "wrong": 1}, "sms": {"replay": 2}},
		SendFailed:   map[string][]float64{"email": {1, 0, 0}, "sms": {0, 0, 0}},
		SendAttempts: map[string][]float64{"email": {4, 0, 36}, "sms": {0, 0, 0}},
		NotArrived:   map[string]int64{"email": 3},
		Lockouts:     map[string][]float64{"account": {1, 0, 2}, "address": {0, 1, 0}},
		Recovered:    h, Median: 120, P90: math.Inf(1),
		Pending: 2, Approval: true,
		Latest: []AuditRecord{{Time: "2026-12-03 01:30:00", Event: "Code check", EventName: "verify",
			Member: `<b>eve</b>`, MemberURL: "/.2fa/admin/member?id=%3Cb%3Eeve%3C%2Fb%3E", Actor: "boss (approver)", Result: "failure"}},
		LatestURL: "/.2fa/admin/audit",
	}
}

func TestOverviewPage(t *testing.T) {
	r := newRenderer(t, "")
	for _, c := range []struct {
		lang                          string
		date, short, coverage, median string
		rate, p90, up                 string
	}{
		{"en", "3 Dec 2026", "3 Dec", "75.0%", "2 minutes", "2.5% (1 of 40)", "more than 7 days", "within 5 minutes"},
		{"ja", "2026年12月3日", "12/3", "75.0%", "2分", "2.5%（失敗1件／送信40件）", "7日超", "5分以内"},
	} {
		p := fullPage(c.lang)
		p.Error = ""
		body := render(t, r, "admin_overview", p, true).Body.String()
		for _, want := range []string{
			c.date, ">" + c.short + "<", `<span class="count">` + c.coverage + `</span>`,
			`<dd class="median">` + c.median + `</dd>`, `<dd class="p90">` + c.p90 + `</dd>`, c.rate, c.up,
			`<a href="/.2fa/admin/?range=7" aria-current="page">`, `<a href="/.2fa/admin/?range=90">`,
			`<a href="/.2fa/admin/approvals"><span class="count">2</span>`,
			// The latest events, escaped by the template.
			`<a href="/.2fa/admin/member?id=%3Cb%3Eeve%3C%2Fb%3E">&lt;b&gt;eve&lt;/b&gt;</a>`,
			// Large numbers with separators; the table's totals.
			"<td>1,200</td>", "<td>1,213</td>",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: no %q in the overview", c.lang, want)
			}
		}
		// Six charts: every one an SVG with its table.
		if n := strings.Count(body, `<svg class="chart-svg"`); n != 6 {
			t.Errorf("%s: %d charts, want 6", c.lang, n)
		}
		if n := strings.Count(body, `<details class="chart-table">`); n != 6 {
			t.Errorf("%s: %d chart tables, want 6", c.lang, n)
		}
		// Coverage: two known days of three, so two points.
		coverage := between(t, body, `id="chart-coverage"`, "</figure>")
		if n := strings.Count(coverage, `<circle class="point"`); n != 2 {
			t.Errorf("%s: %d coverage points, want 2", c.lang, n)
		}
		// Non-delivery: email has attempts on two days, SMS on none.
		nondelivery := between(t, body, `id="chart-nondelivery"`, "</figure>")
		if n := strings.Count(nondelivery, `<circle class="point"`); n != 2 {
			t.Errorf("%s: %d non-delivery points, want 2", c.lang, n)
		}
		// Bars: one per non-zero value.
		if n := strings.Count(between(t, body, `id="chart-verified"`, "</figure>"), `<rect class="bar"`); n != 5 {
			t.Errorf("%s: %d verification bars, want 5", c.lang, n)
		}
		if n := strings.Count(between(t, body, `id="chart-recovered"`, "</figure>"), `<rect class="bar"`); n != 4 {
			t.Errorf("%s: %d recovery bars, want 4", c.lang, n)
		}
	}
}

func TestOverviewWithoutFigures(t *testing.T) {
	r := newRenderer(t, "")
	for _, c := range []struct {
		name string
		o    *AdminOverview
		want string
	}{
		{"no days", &AdminOverview{Range: 30, Ranges: []int{7, 30, 90}, Seen: -1, Enrolled: -1, Median: math.NaN(), P90: math.NaN()}, "No data yet for this period."},
		{"unavailable", func() *AdminOverview { o := overviewFixture(); o.Unavailable = true; return o }(), "The figures cannot be read right now."},
	} {
		p := fullPage("en")
		p.Error = ""
		p.Admin.Overview = c.o
		body := render(t, r, "admin_overview", p, true).Body.String()
		if n := strings.Count(body, `<svg class="chart-svg"`); n != 0 {
			t.Errorf("%s: %d charts drawn", c.name, n)
		}
		if n := strings.Count(body, c.want); n != 6 {
			t.Errorf("%s: %q shown %d times, want once per chart", c.name, c.want, n)
		}
	}
	// A refused range: the error and the choices, no figures.
	p := fullPage("ja")
	p.Error, p.ErrorArgs = "admin_bad_field", []any{"range"}
	p.Admin.Overview = &AdminOverview{Ranges: []int{7, 30, 90}}
	body := render(t, r, "admin_overview", p, true).Body.String()
	if !strings.Contains(body, "range の値を確認してください") || strings.Contains(body, "chart") {
		t.Errorf("a refused range:\n%s", body)
	}
}

func between(t *testing.T, s, from, to string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)` + regexp.QuoteMeta(from) + `.*?` + regexp.QuoteMeta(to)).FindString(s)
	if m == "" {
		t.Fatalf("no %q…%q", from, to)
	}
	return m
}

func TestSpans(t *testing.T) {
	for _, c := range []struct {
		lang    string
		seconds float64
		short   bool
		want    string
	}{
		{"en", 1, false, "1 second"}, {"en", 45, false, "45 seconds"}, {"en", 60, false, "1 minute"}, {"en", 89, false, "89 seconds"},
		{"en", 120, false, "2 minutes"}, {"en", 5400, false, "90 minutes"}, {"en", 3600, true, "1h"}, {"en", 86400, false, "1 day"},
		{"en", 7 * 86400, true, "7d"}, {"ja", 900, false, "15分"}, {"ja", 4 * 3600, true, "4時間"}, {"ja", 3 * 86400, false, "3日"},
	} {
		if got := (&Page{Lang: c.lang}).span(c.seconds, c.short); got != c.want {
			t.Errorf("%s span(%v, %v) = %q, want %q", c.lang, c.seconds, c.short, got, c.want)
		}
	}
}
