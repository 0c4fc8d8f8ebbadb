package pages

import (
	"html/template"
	"math"
	"strconv"
	"time"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/pages/chart"
)

// AdminOverview is the admin pages' overview (admin_overview): the site's
// figures, one value a UTC day over the range chosen, and what waits for
// an admin. The handler fills in numbers only; the page writes them in
// its language and draws the charts (OverviewChart).
type AdminOverview struct {
	Range  int   // days shown: one of Ranges; 0 when the range asked for was refused
	Ranges []int // the ranges offered, such as 7, 30, 90
	// Days are the days shown, oldest first, each its midnight UTC. Every
	// per-day slice below has one value a day.
	Days []time.Time
	// Unavailable: the figures could not be read; the charts say "no data".
	Unavailable bool

	// Coverage is the share of members seen who are enrolled, in percent;
	// NaN for a day without a count.
	Coverage []float64
	// Seen and Enrolled are the latest day's counts; -1 when none.
	Seen, Enrolled int64

	// Methods are the methods shown, in order: OverviewMethods, less
	// passkeys on a site that has none; nil for all.
	Methods []string
	// Verified and Failed are the verifications that passed and those
	// that failed, by method (OverviewMethods).
	Verified, Failed map[string][]float64
	// Results counts the range's verifications by method and result.
	Results map[string]map[string]int64

	// SendFailed and SendAttempts are, by channel (OverviewChannels), the
	// codes the sender failed to deliver and every code handed to it
	// (delivered or failed; not those a sending limit held back).
	SendFailed, SendAttempts map[string][]float64
	// NotArrived counts, by channel, members reporting a code that never
	// arrived, over the range.
	NotArrived map[string]int64

	// Lockouts are the lockouts begun, by scope (OverviewScopes).
	Lockouts map[string][]float64

	// Recovered is the range's time to recover, summed; Median and P90
	// estimated from it, in seconds: NaN without observations, +Inf
	// beyond its last bound.
	Recovered   audit.Histogram
	Median, P90 float64

	// Pending counts resets waiting for approval; Approval is whether
	// resets need one (reset_approval).
	Pending  int
	Approval bool

	// Latest are the latest security events from the audit trail, newest
	// first; LatestURL the audit page with every record.
	Latest    []AuditRecord
	LatestURL string
}

// The series the overview draws, in order.
var (
	OverviewMethods  = []string{"webauthn", "totp", "email", "sms", "recovery"}
	OverviewChannels = []string{"email", "sms"}
	OverviewScopes   = []string{"account", "address"}
)

// overviewResults are the verification results, in the order the table
// shows them (the labels of caddy_two_factor_verifications_total).
var overviewResults = []string{"ok", "wrong", "replay", "locked", "expired", "counter_regressed", "error"}

// OverviewChart draws one of the overview's charts in the page's
// language: "coverage", "verified", "failed", "nondelivery", "lockouts"
// or "recovered".
func (p *Page) OverviewChart(name string) template.HTML {
	o := p.overview()
	c := chart.Chart{
		ID: "chart-" + name, Title: p.T("overview_" + name + "_title"), LabelHead: p.T("overview_day"),
		Summary: p.T("overview_table"), Empty: p.T("overview_no_data"), Tick: p.compact, Value: p.whole,
	}
	if len(o.Days) > 0 {
		c.Desc = p.T("overview_"+name+"_desc", p.Date(o.Days[0]), p.Date(o.Days[len(o.Days)-1]))
	}
	for _, d := range o.Days {
		c.Labels = append(c.Labels, p.ShortDate(d))
		c.TableLabels = append(c.TableLabels, p.Date(d))
	}
	if o.Unavailable {
		c.Labels, c.Empty = nil, p.T("overview_unavailable")
	}
	switch name {
	case "coverage":
		c.Max, c.Area, c.Tick, c.Value = 100, true, p.percentTick, p.Percent
		c.Series = []chart.Series{{Name: p.T("overview_coverage_series"), Values: o.Coverage}}
		return chart.Line(c)
	case "verified", "failed":
		by := o.Verified
		if name == "failed" {
			by = o.Failed
		}
		c.Series, c.Totals = p.seriesBy(by, p.OverviewMethods(), "method_name_")
		c.TotalLabel = p.T("overview_total")
		return chart.StackedBars(c)
	case "nondelivery":
		// Up to the highest rate, not 100%: a few percent must show.
		c.Tick, c.Value = p.percentTick, p.Percent
		c.TotalLabel = p.T("overview_total")
		for _, ch := range OverviewChannels {
			failed, attempts := o.SendFailed[ch], o.SendAttempts[ch]
			s := chart.Series{Name: p.T("overview_channel_" + ch)}
			for i := range o.Days {
				s.Values = append(s.Values, rate(at(failed, i), at(attempts, i)))
				s.Cells = append(s.Cells, p.rateCell(at(failed, i), at(attempts, i)))
			}
			c.Series = append(c.Series, s)
			c.Totals = append(c.Totals, rate(sum(failed), sum(attempts)))
			c.TotalCells = append(c.TotalCells, p.rateCell(sum(failed), sum(attempts)))
		}
		return chart.Line(c)
	case "lockouts":
		c.Series, c.Totals = p.seriesBy(o.Lockouts, OverviewScopes, "overview_scope_")
		c.TotalLabel = p.T("overview_total")
		return chart.StackedBars(c)
	case "recovered":
		c.LabelHead = p.T("overview_recovered_within")
		c.Labels, c.TableLabels = nil, nil
		h := o.Recovered
		if h.Count > 0 && !o.Unavailable {
			values := make([]float64, len(h.Counts))
			for i, n := range h.Counts {
				values[i] = float64(n)
				c.Labels = append(c.Labels, p.bucketLabel(h.Bounds, i, true))
				c.TableLabels = append(c.TableLabels, p.bucketLabel(h.Bounds, i, false))
			}
			c.Series = []chart.Series{{Name: p.T("overview_recovered_series"), Values: values}}
			c.Totals, c.TotalLabel = []float64{float64(h.Count)}, p.T("overview_total")
		}
		return chart.StackedBars(c)
	}
	return ""
}

func (p *Page) overview() *AdminOverview {
	if p.Admin == nil || p.Admin.Overview == nil {
		return &AdminOverview{}
	}
	return p.Admin.Overview
}

// seriesBy makes a series of each key, named by its catalog key prefix+key,
// with the range's total of each.
func (p *Page) seriesBy(by map[string][]float64, keys []string, prefix string) ([]chart.Series, []float64) {
	var series []chart.Series
	var totals []float64
	for _, k := range keys {
		series = append(series, chart.Series{Name: p.T(prefix + k), Values: by[k]})
		totals = append(totals, sum(by[k]))
	}
	return series, totals
}

// OverviewSum is the range's total over every key of a series, as a
// number for the template to compare.
func (p *Page) OverviewSum(name string) int64 {
	o := p.overview()
	by := map[string]map[string][]float64{"verified": o.Verified, "failed": o.Failed, "lockouts": o.Lockouts}[name]
	var n float64
	for _, v := range by {
		n += sum(v)
	}
	return int64(n)
}

// FailureRate is the range's failed verifications among all, as text.
func (p *Page) FailureRate() string {
	ok, failed := float64(p.OverviewSum("verified")), float64(p.OverviewSum("failed"))
	return p.Percent(rate(failed, ok+failed))
}

// CoverageNow is the latest coverage, as text: "87.5%", or "–".
func (p *Page) CoverageNow() string {
	o := p.overview()
	if o.Seen <= 0 || o.Enrolled < 0 {
		return "–"
	}
	return p.Percent(float64(o.Enrolled) / float64(o.Seen) * 100)
}

// NonDeliveryRate is the range's non-delivery rate of a channel: "2.1%",
// or "–" without attempts.
func (p *Page) NonDeliveryRate(channel string) string {
	o := p.overview()
	return p.Percent(rate(sum(o.SendFailed[channel]), sum(o.SendAttempts[channel])))
}

// OverviewMethods and OverviewChannels list the methods and channels, in
// the order the overview shows them.
func (p *Page) OverviewMethods() []string {
	if m := p.overview().Methods; m != nil {
		return m
	}
	return OverviewMethods
}
func (p *Page) OverviewChannels() []string { return OverviewChannels }

// OverviewPeriod says which days are shown: "6 Nov 2026 to 5 Dec 2026".
func (p *Page) OverviewPeriod() string {
	o := p.overview()
	if len(o.Days) == 0 {
		return ""
	}
	return p.T("overview_period", p.Date(o.Days[0]), p.Date(o.Days[len(o.Days)-1]))
}

// ResultCount is the range's count of method's verifications with result.
func (p *Page) ResultCount(method, result string) string {
	return p.whole(float64(p.overview().Results[method][result]))
}

// OverviewResults are the verification results, in table order.
func (p *Page) OverviewResults() []string { return overviewResults }

// RecoveryTime writes a time to recover ("12 minutes", "more than 7
// days"), or "–" when there is none.
func (p *Page) RecoveryTime(seconds float64) string {
	switch {
	case math.IsNaN(seconds):
		return "–"
	case math.IsInf(seconds, 1):
		bounds := p.overview().Recovered.Bounds
		if len(bounds) == 0 {
			return "–"
		}
		return p.T("overview_more_than", p.span(bounds[len(bounds)-1], false))
	}
	return p.span(seconds, false)
}

// Whole writes a count with thousands separated.
func (p *Page) Whole(n int64) string { return p.whole(float64(n)) }

func (p *Page) whole(v float64) string { return chart.Whole(v) }

// Percent writes a percentage with one decimal: "87.5%".
func (p *Page) Percent(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64) + "%"
}

func (p *Page) percentTick(v float64) string { return chart.Whole(v) + "%" }

// compact writes an axis value short, as the page's language does.
func (p *Page) compact(v float64) string {
	if p.Lang == "ja" {
		return chart.CompactJA(v)
	}
	return chart.Compact(v)
}

// rateCell is a rate with its counts: "5.0% (2 of 40)"; "–" without
// attempts.
func (p *Page) rateCell(failed, attempts float64) string {
	if attempts <= 0 {
		return "–"
	}
	return p.T("overview_rate_cell", p.Percent(rate(failed, attempts)), p.whole(failed), p.whole(attempts))
}

func rate(part, all float64) float64 {
	if math.IsNaN(part) || math.IsNaN(all) || all <= 0 {
		return math.NaN()
	}
	return part / all * 100
}

func at(v []float64, i int) float64 {
	if i < len(v) {
		return v[i]
	}
	return math.NaN()
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
		}
	}
	return s
}

var monthsEN = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// Date writes a day in the page's language: "5 Dec 2026", 「2026年12月5日」.
func (p *Page) Date(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	t = t.UTC()
	if p.Lang == "ja" {
		return strconv.Itoa(t.Year()) + "年" + strconv.Itoa(int(t.Month())) + "月" + strconv.Itoa(t.Day()) + "日"
	}
	return strconv.Itoa(t.Day()) + " " + monthsEN[t.Month()-1] + " " + strconv.Itoa(t.Year())
}

// DateTime writes a time in UTC in the page's language: "5 Dec 2026
// 14:03 UTC".
func (p *Page) DateTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return p.Date(t) + " " + t.UTC().Format("15:04") + " UTC"
}

// ShortDate writes a day for a chart's axis: "5 Dec", "12/5".
func (p *Page) ShortDate(t time.Time) string {
	t = t.UTC()
	if p.Lang == "ja" {
		return strconv.Itoa(int(t.Month())) + "/" + strconv.Itoa(t.Day())
	}
	return strconv.Itoa(t.Day()) + " " + monthsEN[t.Month()-1]
}

// spanUnits are the units of a time to recover, longest first: seconds
// each, then the short and long forms (one, many) in each language.
var spanUnits = []struct {
	seconds float64
	short   map[string]string
	long    map[string][2]string
}{
	{86400, map[string]string{"en": "d", "ja": "日"}, map[string][2]string{"en": {" day", " days"}, "ja": {"日", "日"}}},
	{3600, map[string]string{"en": "h", "ja": "時間"}, map[string][2]string{"en": {" hour", " hours"}, "ja": {"時間", "時間"}}},
	{60, map[string]string{"en": "m", "ja": "分"}, map[string][2]string{"en": {" minute", " minutes"}, "ja": {"分", "分"}}},
	{1, map[string]string{"en": "s", "ja": "秒"}, map[string][2]string{"en": {" second", " seconds"}, "ja": {"秒", "秒"}}},
}

// span writes a duration in the largest unit it has at least two of (or
// whole one if exact), rounded: "90 minutes" stays minutes, "2 days".
// short writes the axis form: "15m", 「15分」.
func (p *Page) span(seconds float64, short bool) string {
	u := spanUnits[len(spanUnits)-1]
	for _, cand := range spanUnits {
		if n := seconds / cand.seconds; n >= 2 || n == 1 {
			u = cand
			break
		}
	}
	n := math.Round(seconds / u.seconds)
	lang := p.Lang
	if lang != "ja" {
		lang = "en"
	}
	if short {
		return strconv.FormatFloat(n, 'f', -1, 64) + u.short[lang]
	}
	word := u.long[lang][1]
	if n == 1 {
		word = u.long[lang][0]
	}
	return strconv.FormatFloat(n, 'f', -1, 64) + word
}

// bucketLabel names bucket i of a histogram with bounds: "≤15m" on the
// axis, "up to 15 minutes" in the table; the last "more than 7 days".
func (p *Page) bucketLabel(bounds []float64, i int, short bool) string {
	if i >= len(bounds) {
		if len(bounds) == 0 {
			return "–"
		}
		if short {
			return ">" + p.span(bounds[len(bounds)-1], true)
		}
		return p.T("overview_more_than", p.span(bounds[len(bounds)-1], false))
	}
	if short {
		return p.span(bounds[i], true)
	}
	return p.T("overview_up_to", p.span(bounds[i], false))
}
