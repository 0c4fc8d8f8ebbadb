package twofactor

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/store"
)

// WeeklyReport is the weekly summary emailed to admins: the daily
// figures of the week before, added up, beside the week before that.
// It is sent once per week for the whole site, whichever instance gets
// there first.
type WeeklyReport struct {
	// Addresses the report goes to. It needs the email sender (email in
	// the two_factor app). Default: none (no report).
	To []string `json:"to,omitempty"`

	// Day of the week it is sent on: monday to sunday. Default: monday.
	Day string `json:"day,omitempty"`

	// Hour, UTC, it is sent at: 0 to 23. Default: 8.
	Hour *int `json:"hour,omitempty"`

	// Rate of codes not delivered (of those tried) on a channel above
	// which the report flags it, in its subject too: 0 to 1.
	// Default: 0.05.
	NonDeliveryThreshold *float64 `json:"non_delivery_threshold,omitempty"`

	// Language of the report: en or ja. Default: en.
	Lang string `json:"lang,omitempty"`

	weekday time.Weekday
}

const (
	defaultReportHour      = 8
	defaultReportThreshold = 0.05
	// reportGrace is how late a report may still go out: an instance
	// (re)started the day after the hour sends the week's report then,
	// one started later waits for the next week.
	reportGrace = 24 * time.Hour
	// reportRetry is how long after a failed send the next try waits.
	reportRetry = 5 * time.Minute
	// reportMarkerTTL keeps a week's marker past the week.
	reportMarkerTTL = 14 * 24 * time.Hour
)

var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday,
	"wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}

// provision applies the defaults.
func (r *WeeklyReport) provision() {
	if r.Day == "" {
		r.Day = "monday"
	}
	r.Day = strings.ToLower(r.Day)
	r.weekday = weekdays[r.Day]
	if r.Hour == nil {
		h := defaultReportHour
		r.Hour = &h
	}
	if r.NonDeliveryThreshold == nil {
		t := defaultReportThreshold
		r.NonDeliveryThreshold = &t
	}
	if r.Lang == "" {
		r.Lang = "en"
	}
}

// validate checks the options; emailConfigured is whether the app has an
// email sender.
func (r *WeeklyReport) validate(emailConfigured bool) error {
	if _, ok := weekdays[r.Day]; !ok {
		return fmt.Errorf("weekly_report.day %q: must be a day of the week, monday to sunday", r.Day)
	}
	if h := *r.Hour; h < 0 || h > 23 {
		return fmt.Errorf("weekly_report.hour %d: must be 0 to 23 (UTC)", h)
	}
	if t := *r.NonDeliveryThreshold; !(t >= 0 && t <= 1) {
		return fmt.Errorf("weekly_report.non_delivery_threshold %v: must be 0 to 1", t)
	}
	if !slices.Contains(notify.ReportLanguages, r.Lang) {
		return fmt.Errorf("weekly_report.lang %q: must be en or ja", r.Lang)
	}
	for i, to := range r.To {
		if _, err := notify.ParseEmail(to); err != nil {
			return fmt.Errorf("weekly_report.to[%d] %q: not an email address", i, to)
		}
	}
	if len(r.To) > 0 && !emailConfigured {
		return errors.New("weekly_report.to: the report is sent by email: configure the email sender (email in the two_factor app)")
	}
	return nil
}

// on reports whether a report is to be sent.
func (r *WeeklyReport) on() bool { return r != nil && len(r.To) > 0 }

// slot returns the latest time at or before now the report falls due.
func (r *WeeklyReport) slot(now time.Time) time.Time {
	now = now.UTC()
	day := now.Truncate(24 * time.Hour)
	back := (int(day.Weekday()) - int(r.weekday) + 7) % 7
	s := day.AddDate(0, 0, -back).Add(time.Duration(*r.Hour) * time.Hour)
	if s.After(now) {
		s = s.AddDate(0, 0, -7)
	}
	return s
}

// reporter sends the weekly report from one instance.
type reporter struct {
	opts     *WeeklyReport
	st       store.Store
	pending  func(context.Context) (int, error) // resets pending approval
	sender   notify.Sender
	figures  func(ctx context.Context, from, to time.Time) ([]audit.Day, error)
	site     func() string
	instance string
	logger   *zap.Logger

	state *reportState
}

// reportState is what an instance knows of its weekly reports. It lives
// in memory only, shared by this process's reporters of one instance and
// store (reportStates): a config reload makes a new reporter while the
// old one may still be at work.
type reportState struct {
	mu        sync.Mutex
	done      time.Time // the slot this instance sent, gave up or saw taken
	nextRetry time.Time
	week      reportWeek // the attempts at the current slot
}

// reportWeek is one instance's attempts at one week's report. The
// instance holding the week's marker keeps it through its attempts, so no
// other instance sends that week's report and nothing outside this
// process needs to know whom it reached. Should the process stop between
// attempts, the week's report is not retried elsewhere.
type reportWeek struct {
	slot     time.Time
	nonce    []byte // the marker's value while this instance holds it
	held     bool
	attempts int
	sent     map[string]bool // recipients the report reached
}

// reportStates are this process's reportStates, by store scope and
// instance.
var reportStates sync.Map

// sharedReportState is the reportState of instance on the store scope
// names (App.chainScope); "" gives a state of its own.
func sharedReportState(scope, instance string) *reportState {
	if scope == "" {
		return new(reportState)
	}
	s, _ := reportStates.LoadOrStore(scope+"\x00"+instance, new(reportState))
	return s.(*reportState)
}

// maxReportAttempts is how many times one week's report is tried before
// it is given up: a send that timed out may have been delivered, so each
// attempt may be a copy in someone's mailbox.
const maxReportAttempts = 3

// reporter is the app's weekly reporter on st.
func (a *App) reporter(st store.Store, engine *challenge.Engine, instance string) *reporter {
	pending := func(ctx context.Context) (int, error) {
		reqs, err := engine.ResetRequests(ctx)
		return len(reqs), err
	}
	return &reporter{opts: a.WeeklyReport, st: st, pending: pending, sender: a.email, figures: a.readFigures,
		instance: instance, logger: a.logger.Named("weekly_report"), state: sharedReportState(a.chainScope(), instance),
		site: func() string {
			if s := a.site.Load(); s != nil {
				return s.name
			}
			return ""
		}}
}

// reportMarker is the key an instance takes to send the report of the
// week whose slot is at.
func reportMarker(at time.Time) string { return "weekly_report:" + at.Format(time.DateOnly) }

// due sends the week's report if it is due, no instance has taken it, and
// this one takes it. It is called every tick of the figures loop. The
// instance that takes the week tries at most maxReportAttempts times,
// reportRetry apart, each time to the recipients not yet reached.
func (r *reporter) due(ctx context.Context, now time.Time) {
	slot := r.opts.slot(now)
	s := r.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if slot.Equal(s.done) || now.Sub(slot) > reportGrace || now.Before(s.nextRetry) {
		return
	}
	if !s.week.slot.Equal(slot) {
		s.week = reportWeek{slot: slot, nonce: []byte(r.instance + " " + rand.Text()), sent: map[string]bool{}}
	}
	w := &s.week
	week := zap.String("week", slot.AddDate(0, 0, -7).Format(time.DateOnly))
	if !w.held {
		held, err := r.take(ctx, slot, w.nonce)
		if err != nil {
			r.logger.Warn("weekly report: taking the week's marker", week, zap.Error(err))
			s.nextRetry = now.Add(reportRetry)
			return
		}
		if !held {
			s.done = slot // another instance sends it
			return
		}
		w.held = true
	}
	w.attempts++
	attempt := zap.Int("attempt", w.attempts)
	if err := r.send(ctx, slot, w.sent); err != nil {
		sentTo := zap.Strings("sent_to", r.reached(w.sent))
		if w.attempts >= maxReportAttempts {
			// The marker stays: no other instance tries this week.
			r.logger.Error("weekly report: not sent to every recipient; given up for the week", week, attempt, sentTo, zap.Error(err))
			s.done = slot
			return
		}
		r.logger.Error("weekly report: not sent to every recipient; trying again later", week, attempt, sentTo, zap.Error(err))
		s.nextRetry = now.Add(reportRetry)
		return
	}
	s.done = slot
	r.logger.Info("weekly report sent", week, attempt, zap.Int("recipients", len(r.opts.To)))
}

// take takes the week's marker with nonce and reports whether this
// instance holds it. When the swap fails or errs (a timeout may still
// have applied it, now or on an earlier try), it reads the marker back:
// nonce is this instance's alone.
func (r *reporter) take(ctx context.Context, slot time.Time, nonce []byte) (bool, error) {
	key := reportMarker(slot)
	taken, err := r.st.CompareAndSwap(ctx, key, nil, nonce, reportMarkerTTL)
	if err == nil && taken {
		return true, nil
	}
	holder, gerr := r.st.Get(ctx, key)
	switch {
	case gerr == nil:
		return bytes.Equal(holder, nonce), nil
	case !errors.Is(gerr, store.ErrNotFound):
		return false, errors.Join(err, gerr)
	case err != nil:
		return false, err // not taken: try again
	default:
		return false, errors.New("the week's marker, found taken, was gone when read back; trying again")
	}
}

// reached lists, in their order, the recipients in sent.
func (r *reporter) reached(sent map[string]bool) []string {
	var out []string
	for _, to := range r.opts.To {
		if sent[to] {
			out = append(out, to)
		}
	}
	return out
}

// send composes the report of the seven days before slot and sends it to
// every recipient not in sent, adding those it reaches. It fails if any
// recipient was not reached.
func (r *reporter) send(ctx context.Context, slot time.Time, sent map[string]bool) error {
	day := slot.Truncate(24 * time.Hour)
	days, err := r.figures(ctx, day.AddDate(0, 0, -14), day.AddDate(0, 0, -1))
	if err != nil {
		return err
	}
	pending, err := r.pending(ctx)
	if err != nil {
		return err
	}
	data := reportData(days[:7], days[7:], *r.opts.NonDeliveryThreshold)
	data.Site, data.PendingResets = r.site(), pending
	msg, err := notify.Report(r.opts.Lang, data)
	if err != nil {
		return err
	}
	var errs []error
	for _, to := range r.opts.To {
		if sent[to] {
			continue
		}
		m := msg
		m.To = to
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := r.sender.Send(sctx, m); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %s", to, notify.Class(err)))
		} else {
			sent[to] = true
		}
		cancel()
	}
	return errors.Join(errs...)
}

// reportMethods and reportChannels are listed in this order, those with
// no count left out.
var (
	reportMethods  = []string{"webauthn", "totp", "email", "sms", "recovery", "other"}
	reportChannels = []string{"email", "sms", "other"}
)

// reportData adds up the days of the week and of the week before.
func reportData(prev, week []audit.Day, threshold float64) notify.ReportData {
	w, p := sumWeek(week), sumWeek(prev)
	wt, pt := w.Totals(), p.Totals()
	d := notify.ReportData{
		From: week[0].Date.Format(time.DateOnly), To: week[len(week)-1].Date.Format(time.DateOnly),
		Seen: w.Seen, Enrolled: w.Enrolled, PrevSeen: p.Seen, PrevEnrolled: p.Enrolled,
		Lockouts: wt.Lockouts, PrevLockouts: pt.Lockouts, Resets: wt.Resets, PrevResets: pt.Resets,
		AdminActions: wt.AdminActions, PrevAdminActions: pt.AdminActions,
		RecoveredCount: w.Recovered.Count, RecoveredMedian: w.Recovered.Quantile(0.5),
		RecoveredP90: w.Recovered.Quantile(0.9), PrevRecoveredMedian: p.Recovered.Quantile(0.5),
		RecoveredBound: audit.RecoveredBounds[len(audit.RecoveredBounds)-1],
		Threshold:      threshold,
	}
	for _, m := range reportMethods {
		now, before := audit.Day{Verifications: pick(w.Verifications, m)}.Totals(), audit.Day{Verifications: pick(p.Verifications, m)}.Totals()
		if now.Verified+now.Failed+before.Verified+before.Failed > 0 {
			d.Methods = append(d.Methods, notify.ReportMethod{Method: m, Verified: now.Verified, Failed: now.Failed,
				PrevVerified: before.Verified, PrevFailed: before.Failed})
		}
	}
	for _, c := range reportChannels {
		now, before := audit.Day{Sent: pick(w.Sent, c)}.Totals(), audit.Day{Sent: pick(p.Sent, c)}.Totals()
		if now.Sent+now.NotDelivered+before.Sent+before.NotDelivered > 0 {
			d.Channels = append(d.Channels, notify.ReportChannel{Channel: c, Sent: now.Sent, NotDelivered: now.NotDelivered,
				PrevSent: before.Sent, PrevNotDelivered: before.NotDelivered})
		}
	}
	return d
}

// pick is the part of m under key.
func pick(m map[string]map[string]int64, key string) map[string]map[string]int64 {
	return map[string]map[string]int64{key: m[key]}
}

// sumWeek adds up days, with the member counts of the last day that has
// them.
func sumWeek(days []audit.Day) audit.Day {
	sum := audit.Day{Seen: -1, Enrolled: -1, Recovered: audit.NewHistogram(audit.RecoveredBounds)}
	for _, d := range days {
		seen, enrolled := sum.Seen, sum.Enrolled
		sum.Add(d)
		sum.Seen, sum.Enrolled = seen, enrolled
		if d.Seen >= 0 {
			sum.Seen, sum.Enrolled = d.Seen, d.Enrolled
		}
	}
	return sum
}

// parseWeeklyReport reads the weekly_report block:
//
//	weekly_report {
//		to <address>...
//		day <monday|...|sunday>
//		hour <0-23>
//		non_delivery_threshold <0-1>
//		lang en|ja
//	}
func parseWeeklyReport(d *caddyfile.Dispenser, app *App) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	r := new(WeeklyReport)
	err := eachOption(d, d.Nesting(), "weekly_report", map[string]bool{"to": true}, func(name string) error {
		switch name {
		case "to":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("weekly_report: to: at least one address is required")
			}
			r.To = append(r.To, args...)
		case "day":
			return parseString(d, &r.Day)
		case "hour":
			var h int
			if err := parseInt(d, &h); err != nil {
				return err
			}
			r.Hour = &h
		case "non_delivery_threshold":
			var s string
			if err := parseString(d, &s); err != nil {
				return err
			}
			t, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return d.Errf("weekly_report: non_delivery_threshold: bad number %q", s)
			}
			r.NonDeliveryThreshold = &t
		case "lang":
			return parseString(d, &r.Lang)
		default:
			return d.Errf("weekly_report: unknown option %q", name)
		}
		return nil
	})
	app.WeeklyReport = r
	return err
}
