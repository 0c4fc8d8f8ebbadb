package audit

import "time"

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
	// Verifications counts verifications by method (totp, email, sms,
	// recovery) and result (ok, wrong, replay, locked, expired, error):
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
