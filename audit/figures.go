package audit

import (
	"math"
	"time"
)

// Day is one UTC day's figures, site-wide: what the dashboard draws and
// the weekly report sums. The figures are counted from the same audit
// events as the trail, each instance keeping its own counts for the day
// and the reader adding them up, so counting never takes a lock shared
// between instances.
type Day struct {
	// Date is the day's midnight, UTC.
	Date time.Time `json:"date"`
	// Seen and Enrolled are the member counts at the day's last snapshot;
	// -1 when none was taken that day.
	Seen     int64 `json:"seen"`
	Enrolled int64 `json:"enrolled"`
	// Verifications counts verifications by method (webauthn, totp,
	// email, sms, recovery) and result (ok, wrong, replay, locked,
	// expired, counter_regressed, error):
	// the label values of caddy_two_factor_verifications_total.
	Verifications map[string]map[string]int64 `json:"verifications,omitempty"`
	// Sent counts codes sent by channel (email, sms) and result (sent,
	// limited, or a failure class), as caddy_two_factor_codes_sent_total.
	Sent map[string]map[string]int64 `json:"sent,omitempty"`
	// NotArrived counts members reporting, by channel, that a code never
	// arrived.
	NotArrived map[string]int64 `json:"not_arrived,omitempty"`
	// Lockouts counts lockouts begun by scope (account, address).
	Lockouts map[string]int64 `json:"lockouts,omitempty"`
	// Enrolments and Removals count methods added and removed by method.
	Enrolments map[string]int64 `json:"enrolments,omitempty"`
	Removals   map[string]int64 `json:"removals,omitempty"`
	// AdminActions counts admins' actions that succeeded, by action
	// (reset, unlock, ...), as caddy_two_factor_admin_actions_total.
	AdminActions map[string]int64 `json:"admin_actions,omitempty"`
	// Recovered is the time, in seconds, from a lockout or a
	// recovery-code sign-in to the member's next successful verification.
	Recovered Histogram `json:"recovered"`
}

// Histogram counts observations into buckets: Counts[i] counts those at
// most Bounds[i], and the last count those above every bound.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []int64   `json:"counts"`
	Sum    float64   `json:"sum"`
	Count  int64     `json:"count"`
}

// RecoveredBounds are the buckets of Day.Recovered and of the
// caddy_two_factor_time_to_recover_seconds histogram, in seconds: a
// minute, five, a quarter of an hour, an hour, four hours, a day, three
// days, a week. People stay stuck for minutes to days, not milliseconds.
var RecoveredBounds = []float64{60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400}

// Kind is what an audit event counts toward in a Day: one of its maps,
// each taking the label values the metrics give the same event.
type Kind string

// The kinds of a Day's counts, and the labels each takes.
const (
	CountVerification Kind = "verification" // method, result
	CountSent         Kind = "sent"         // channel, result
	CountNotArrived   Kind = "not_arrived"  // channel
	CountLockout      Kind = "lockout"      // scope
	CountEnrolment    Kind = "enrolment"    // method
	CountRemoval      Kind = "removal"      // method
	CountAdminAction  Kind = "admin_action" // action
	// Metrics only: a Day does not count them (count ignores them).
	CountNetworkSkip Kind = "network_skip" // rule
	CountRecheck     Kind = "recheck"      // none
)

// newDay is an empty day: no counts, no member snapshot.
func newDay(date time.Time) *Day {
	return &Day{Date: date, Seen: -1, Enrolled: -1, Recovered: NewHistogram(RecoveredBounds)}
}

// count adds n to the count of kind with labels; labels of the wrong
// number are ignored.
func (d *Day) count(kind Kind, n int64, labels ...string) {
	switch kind {
	case CountVerification, CountSent:
		if len(labels) != 2 {
			return
		}
		m := &d.Verifications
		if kind == CountSent {
			m = &d.Sent
		}
		if *m == nil {
			*m = map[string]map[string]int64{}
		}
		if (*m)[labels[0]] == nil {
			(*m)[labels[0]] = map[string]int64{}
		}
		(*m)[labels[0]][labels[1]] += n
	case CountNotArrived, CountLockout, CountEnrolment, CountRemoval, CountAdminAction:
		if len(labels) != 1 {
			return
		}
		m := map[Kind]*map[string]int64{CountNotArrived: &d.NotArrived, CountLockout: &d.Lockouts,
			CountEnrolment: &d.Enrolments, CountRemoval: &d.Removals, CountAdminAction: &d.AdminActions}[kind]
		if *m == nil {
			*m = map[string]int64{}
		}
		(*m)[labels[0]] += n
	}
}

// Add adds o's counts to d's. The member counts are the larger of the
// two, as each instance's are snapshots of the same site-wide counts.
func (d *Day) Add(o Day) {
	for method, byResult := range o.Verifications {
		for result, n := range byResult {
			d.count(CountVerification, n, method, result)
		}
	}
	for channel, byResult := range o.Sent {
		for result, n := range byResult {
			d.count(CountSent, n, channel, result)
		}
	}
	for kind, m := range map[Kind]map[string]int64{CountNotArrived: o.NotArrived, CountLockout: o.Lockouts,
		CountEnrolment: o.Enrolments, CountRemoval: o.Removals, CountAdminAction: o.AdminActions} {
		for label, n := range m {
			d.count(kind, n, label)
		}
	}
	d.Recovered.Add(o.Recovered)
	d.Seen, d.Enrolled = max(d.Seen, o.Seen), max(d.Enrolled, o.Enrolled)
}

// NewHistogram is an empty histogram with bounds, which must increase.
func NewHistogram(bounds []float64) Histogram {
	return Histogram{Bounds: append([]float64(nil), bounds...), Counts: make([]int64, len(bounds)+1)}
}

// Observe counts v.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.Bounds) && v > h.Bounds[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += v
	h.Count++
}

// Add adds o's observations to h's. Histograms with other bounds (or
// none, as an empty Day read from an older document has) are added by
// their sum and count only when o is empty; otherwise o's buckets are
// re-counted at their upper bounds, so nothing is lost.
func (h *Histogram) Add(o Histogram) {
	if o.Count == 0 {
		return
	}
	if len(h.Counts) != len(h.Bounds)+1 {
		*h = NewHistogram(RecoveredBounds)
	}
	same := len(o.Bounds) == len(h.Bounds) && len(o.Counts) == len(o.Bounds)+1
	for i := 0; same && i < len(o.Bounds); i++ {
		same = o.Bounds[i] == h.Bounds[i]
	}
	if !same {
		for i, n := range o.Counts {
			at := math.Inf(1)
			if i < len(o.Bounds) {
				at = o.Bounds[i]
			}
			j := 0
			for j < len(h.Bounds) && at > h.Bounds[j] {
				j++
			}
			h.Counts[j] += n
		}
	} else {
		for i, n := range o.Counts {
			h.Counts[i] += n
		}
	}
	h.Sum += o.Sum
	h.Count += o.Count
}

// Quantile estimates the q-quantile (0 to 1) of the observations as
// Prometheus's histogram_quantile does: linearly within the bucket that
// holds it, from 0 for the first bucket. In the bucket above every bound
// it is +Inf: "more than the highest bound" is all the buckets know, and
// a reader shown the bound itself would take it for the answer. It is
// NaN with no observations.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Counts) != len(h.Bounds)+1 || math.IsNaN(q) {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	rank := q * float64(h.Count)
	var below int64
	for i, n := range h.Counts {
		if n > 0 && float64(below+n) >= rank {
			if i == len(h.Bounds) {
				return math.Inf(1)
			}
			lower := 0.0
			if i > 0 {
				lower = h.Bounds[i-1]
			}
			return lower + (h.Bounds[i]-lower)*(rank-float64(below))/float64(n)
		}
		below += n
	}
	return math.Inf(1)
}

// Totals are a day's (or a week's) counts added up across methods,
// channels and results.
type Totals struct {
	Verified, Failed       int64 // verifications ok, and every other result
	Sent, NotDelivered     int64 // codes sent, and failures to (limited refusals not counted)
	Lockouts, AdminActions int64
	Resets                 int64 // admins' resets that took effect (an approved one is audited as a reset too)
}

// Totals adds up d's counts: what the CLI's table, the weekly report and
// the dashboard show as one number.
func (d Day) Totals() Totals {
	var t Totals
	for _, byResult := range d.Verifications {
		for result, n := range byResult {
			if result == "ok" {
				t.Verified += n
			} else {
				t.Failed += n
			}
		}
	}
	for _, byResult := range d.Sent {
		for result, n := range byResult {
			switch result {
			case "sent":
				t.Sent += n
			case "limited":
			default:
				t.NotDelivered += n
			}
		}
	}
	for _, n := range d.Lockouts {
		t.Lockouts += n
	}
	for action, n := range d.AdminActions {
		t.AdminActions += n
		if action == "reset" {
			t.Resets += n
		}
	}
	return t
}
