package flow

import (
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/pages"
)

// The admin pages' overview (admin/): the site's figures over the last 7,
// 30 or 90 UTC days, drawn by the page, what waits for an admin, and the
// latest security events. Those name members and addresses, so opening
// the overview is audited as a read (admin_overview_viewed); it has the
// admin guards of every admin page.

// overviewRanges are the ranges offered, in days; the default is 30.
var overviewRanges = []int{7, 30, 90}

const defaultOverviewRange = 30

// listParams are the member list's query parameters: the overview's
// address once was the list's, so a bookmark with one goes to the list.
var listParams = []string{"q", "filter", "order", "after", "unlocked"}

func (f *Flow) adminOverviewPage(p *request) error {
	q := p.r.URL.Query()
	if slices.ContainsFunc(listParams, q.Has) {
		p.w.Header().Set("Location", f.membersURL()+"?"+p.r.URL.RawQuery)
		p.w.WriteHeader(http.StatusMovedPermanently)
		return nil
	}
	a := f.adminPage(p)
	o := &pages.AdminOverview{Ranges: overviewRanges, Approval: f.cfg.ResetApproval > 0,
		Seen: -1, Enrolled: -1, Median: math.NaN(), P90: math.NaN()}
	a.Overview = o
	days, ok := overviewRange(q)
	if !ok {
		// Refused rather than clamped: a range nobody offered is a typo
		// or a hand-made link, and figures for another range than the
		// one asked for would mislead.
		p.page.Error, p.page.ErrorArgs = "admin_bad_field", []any{"range"}
		return f.render(p, http.StatusBadRequest, "admin_overview")
	}
	o.Range = days
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	pending, err := p.e.ResetRequests(ctx)
	if err != nil {
		return f.unavailable(p, "reset requests", err)
	}
	o.Pending = len(pending)

	to := clock.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, 1-days)
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		o.Days = append(o.Days, d)
	}
	if p.backend != nil && p.backend.Figures != nil {
		list, err := p.backend.Figures(ctx, from, to)
		if err != nil {
			// The rest of the page still helps: say the figures are
			// missing rather than fail the page.
			f.logger.Error("reading the overview's figures", zap.Error(err))
			o.Unavailable = true
		} else {
			fillOverview(o, list)
		}
	}
	o.Methods = overviewMethods(o, f.methodConfigured(challenge.MethodWebAuthn))
	latest, err := f.latestRecords(p, audit.Filter{}, overviewLatest, securityEvent)
	if err != nil {
		// As with the figures: the rest of the page still helps.
		f.logger.Error("reading the overview's latest events", zap.Error(err))
	}
	o.Latest = f.auditRecords(p.page, latest)
	// The latest events show members' IDs and addresses: who saw them.
	p.e.AuditRead(ctx, p.adminActor(), "admin_overview_viewed", "",
		zap.Int("range", days), zap.Int("found", len(latest)))
	o.LatestURL = f.auditURL(url.Values{})
	return f.render(p, http.StatusOK, "admin_overview")
}

// overviewLatest is how many security events the overview lists.
const overviewLatest = 10

// routineEvents are the events that, unless they fail, are the gateway
// working as meant (a sign-in, a code sent): left out of the overview's
// security events, as are admins' reading.
var routineEvents = []string{"verify", "code_send", "device_used", "device_remembered", "enrol_start", "enrol_reminder",
	"enrolment_grace_started", "new_browser", "network_skip"}

// securityEvent reports whether r belongs among the overview's latest
// security events: a failure, refusal or lockout, a change to a member's
// factors, an admin's action, or a sign-in with a recovery code.
func securityEvent(r audit.Record) bool {
	switch {
	case slices.Contains(auditReads, r.Event):
		return false
	case slices.Contains(failedResults, r.Result):
		return true
	case r.Event == "verify" && r.Method == "recovery":
		return true
	}
	return !slices.Contains(routineEvents, r.Event)
}

// overviewRange reads the range parameter: one of overviewRanges, or the
// default when absent.
func overviewRange(q url.Values) (int, bool) {
	if !q.Has("range") {
		return defaultOverviewRange, true
	}
	n, err := strconv.Atoi(q.Get("range"))
	if err != nil || !slices.Contains(overviewRanges, n) || len(q["range"]) > 1 {
		return 0, false
	}
	return n, true
}

// fillOverview lays the days read out on the overview's days: a day the
// reader did not return counts nothing and has no member counts.
func fillOverview(o *pages.AdminOverview, list []audit.Day) {
	byDay := make(map[time.Time]*audit.Day, len(list))
	for i := range list {
		byDay[list[i].Date.UTC().Truncate(24*time.Hour)] = &list[i]
	}
	o.Verified, o.Failed = map[string][]float64{}, map[string][]float64{}
	o.Results = map[string]map[string]int64{}
	o.SendFailed, o.SendAttempts = map[string][]float64{}, map[string][]float64{}
	o.NotArrived = map[string]int64{}
	o.Lockouts = map[string][]float64{}
	o.Recovered = audit.Histogram{Bounds: audit.RecoveredBounds, Counts: make([]int64, len(audit.RecoveredBounds)+1)}
	for _, date := range o.Days {
		d := byDay[date]
		if d == nil {
			d = &audit.Day{Date: date, Seen: -1, Enrolled: -1}
		}
		o.Coverage = append(o.Coverage, coverage(d))
		if d.Seen >= 0 && d.Enrolled >= 0 {
			o.Seen, o.Enrolled = d.Seen, d.Enrolled
		}
		for _, m := range pages.OverviewMethods {
			var ok, failed int64
			for result, n := range d.Verifications[m] {
				if o.Results[m] == nil {
					o.Results[m] = map[string]int64{}
				}
				o.Results[m][result] += n
				if result == "ok" {
					ok += n
				} else {
					failed += n
				}
			}
			o.Verified[m] = append(o.Verified[m], float64(ok))
			o.Failed[m] = append(o.Failed[m], float64(failed))
		}
		for _, ch := range pages.OverviewChannels {
			var failed, attempts int64
			for result, n := range d.Sent[ch] {
				switch result {
				case "limited":
					// Held back by a sending limit: never handed to the
					// sender, so neither delivered nor lost.
				case "sent":
					attempts += n
				default:
					attempts += n
					failed += n
				}
			}
			o.SendFailed[ch] = append(o.SendFailed[ch], float64(failed))
			o.SendAttempts[ch] = append(o.SendAttempts[ch], float64(attempts))
			o.NotArrived[ch] += d.NotArrived[ch]
		}
		for _, s := range pages.OverviewScopes {
			o.Lockouts[s] = append(o.Lockouts[s], float64(d.Lockouts[s]))
		}
		o.Recovered.Add(d.Recovered)
	}
	o.Median, o.P90 = o.Recovered.Quantile(0.5), o.Recovered.Quantile(0.9)
}

// overviewMethods are the methods the overview shows: all of them, but
// passkeys only where they are configured or counted in the range, so a
// site without them is not shown a column of zeros.
func overviewMethods(o *pages.AdminOverview, passkeys bool) []string {
	if passkeys || counted(o.Verified[challenge.MethodWebAuthn]) || counted(o.Failed[challenge.MethodWebAuthn]) {
		return pages.OverviewMethods
	}
	return slices.DeleteFunc(slices.Clone(pages.OverviewMethods), func(m string) bool { return m == challenge.MethodWebAuthn })
}

// counted reports whether any day of a series counts something.
func counted(series []float64) bool {
	return slices.ContainsFunc(series, func(v float64) bool { return v > 0 })
}

// coverage is a day's enrolled members among those seen, in percent; NaN
// without counts.
func coverage(d *audit.Day) float64 {
	if d.Seen <= 0 || d.Enrolled < 0 {
		return math.NaN()
	}
	return math.Min(100, float64(d.Enrolled)/float64(d.Seen)*100)
}
