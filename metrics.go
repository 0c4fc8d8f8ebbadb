package twofactor

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/flow"
)

// Metrics in Caddy's registry (each config load has its own), named
// caddy_two_factor_*. The counters are read off the audit log: every
// security event the engine audits passes through countingCore on its way
// to the two_factor.audit logger, so the metrics and the audit log count
// the same events the same way, and the engine needs no second set of
// calls. Label values come from fixed sets; anything else counts as
// "other", so no member-supplied value can grow a series.

// metrics holds the collectors of one config load.
type metrics struct {
	verifications *prometheus.CounterVec
	codesSent     *prometheus.CounterVec
	notArrived    *prometheus.CounterVec
	lockouts      *prometheus.CounterVec
	enrolments    *prometheus.CounterVec
	removals      *prometheus.CounterVec
	recoveryUsed  prometheus.Counter
	clockDrift    *prometheus.CounterVec
	adminActions  *prometheus.CounterVec
	recovered     prometheus.Histogram
	verifiedPath  prometheus.Histogram
	storeErrors   *prometheus.CounterVec
	noticesSent   prometheus.Counter
	noticesRecv   prometheus.Counter
	auditDropped  prometheus.Counter
	networkSkips  *prometheus.CounterVec
	rechecks      prometheus.Counter
	// skipRules are the rule labels networkSkips counts by (skipRule);
	// a skip of any other rule counts as "other".
	skipRules sync.Map
}

const metricsNamespace, metricsSubsystem = "caddy", "two_factor"

// storeOps are the store_errors_total op label's values.
var storeOps = []string{"get", "set", "delete", "cas", "increment", "index", "log", "publish", "batch", "other"}

// verifiedPathBuckets span the verified request's own cost: 25µs to
// about 51ms, doubling.
var verifiedPathBuckets = prometheus.ExponentialBuckets(25e-6, 2, 12)

// scraped is what the gauges read at scrape time: the App.
type scraped interface {
	memberCounts(context.Context) (seen, enrolled int, err error)
	storeUp(context.Context) bool
	resetsPending(context.Context) (int, error)
}

func newMetrics(reg prometheus.Registerer, src scraped) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: name, Help: help, Buckets: buckets})
	}
	gauge := func(name, help string, read func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help)), read)
	}
	m := &metrics{
		verifications: counter("verifications_total",
			"Second-factor verifications by method (webauthn, totp, email, sms, recovery) and result (ok, wrong, replay, locked, expired, "+
				"counter_regressed: a passkey's or security key's signature counter went backwards, possibly a cloned authenticator; error).",
			"method", "result"),
		codesSent: counter("codes_sent_total",
			"One-time codes sent by channel (email, sms) and result: sent, limited (a sending limit refused it), or the failure class "+
				"(refused, timeout, auth, rejected, temporary, throttled, invalid_parameter, other).",
			"channel", "result"),
		notArrived: counter("codes_not_arrived_total",
			"Members' reports that a code sent to them never arrived, by channel (email, sms).", "channel"),
		lockouts: counter("lockouts_total", "Lockouts begun, by scope (account, address).", "scope"),
		enrolments: counter("enrolments_total",
			"Methods enrolled, by method (webauthn: each passkey or security key registered, totp, email, sms).", "method"),
		removals: counter("removals_total",
			"Methods removed by their member, by method (webauthn: each passkey or security key removed, totp, email, sms).", "method"),
		recoveryUsed: prometheus.NewCounter(prometheus.CounterOpts(opts("recovery_codes_used_total",
			"Sign-ins with a recovery code."))),
		clockDrift: counter("clock_drift_total",
			"Wrong authenticator codes that were right for a time within totp_drift_window: the member's phone clock is off, "+
				"by direction (fast, slow).",
			"direction"),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts(opts("audit_dropped_total",
			"Audit records not appended to the durable trail because its queue was full (the store was slow or down); "+
				"the audit logger still has them."))),
		adminActions: counter("admin_actions_total",
			"Admins' actions that succeeded, by action (reset, reset_requested, reset_approved, reset_withdrawn, unlock, unlock_address, "+
				"devices, sessions, app_confirmed, passkey_removed, rekey, export, import, audit_export).",
			"action"),
		recovered: histogram("time_to_recover_seconds",
			"Time from an account lockout or a recovery-code sign-in to the member's next verification with an enrolled method (app, email or SMS).",
			audit.RecoveredBounds),
		verifiedPath: histogram("verified_request_duration_seconds",
			"The gateway's own time on a request with a valid second-factor session, before it is handed on (the upstream not included).",
			verifiedPathBuckets),
		storeErrors: counter("store_errors_total",
			"Store operations that failed because the store was unavailable, by operation (get, set, delete, cas, increment, "+
				"index, log, publish, batch, other).",
			"op"),
	}
	m.networkSkips = counter("network_skips_total",
		"Member-site sessions that passed a rule without a code because they came from a network whose policy skips the second factor "+
			"(networks ... { second_factor skip }), by rule (its paths, as configured; other for a rule not registered).",
		"rule")
	m.rechecks = prometheus.NewCounter(prometheus.CounterOpts(opts("device_rechecks_total",
		"Remembered devices asked for a code because they came from an address range (/24, /48) the member had not passed "+
			"the second factor from (recheck_new_network).")))
	notices := counter("revocation_notices_total",
		"Change notices (which carry revocations) between instances over a shared store, by direction (sent, received).", "direction")
	m.noticesSent, m.noticesRecv = notices.WithLabelValues("sent"), notices.WithLabelValues("received")
	// Series that a dashboard divides by or alerts on exist at 0 from the
	// start, not from their first event.
	for _, channel := range []string{"email", "sms"} {
		m.notArrived.WithLabelValues(channel)
	}
	for _, op := range storeOps {
		m.storeErrors.WithLabelValues(op)
	}
	for _, direction := range []string{"fast", "slow"} {
		m.clockDrift.WithLabelValues(direction)
	}
	storeUp := gauge("store_up", "1 when the store answers, holds data this gateway's keys read, and has not lost it; else 0.",
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
			defer cancel()
			if src.storeUp(ctx) {
				return 1
			}
			return 0
		})
	resets := gauge("resets_pending", "Admins' reset requests waiting for a second admin's approval (-1 while the store is unavailable).",
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
			defer cancel()
			n, err := src.resetsPending(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
	collectors := []prometheus.Collector{m.verifications, m.codesSent, m.notArrived, m.lockouts, m.enrolments, m.removals,
		m.recoveryUsed, m.clockDrift, m.auditDropped, m.adminActions, m.recovered, m.verifiedPath, m.storeErrors, notices, storeUp, resets,
		newMemberGauges(src.memberCounts), m.networkSkips, m.rechecks}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// scrapeTimeout bounds a gauge's store reads at scrape time.
const scrapeTimeout = 2 * time.Second

// observe counts one audit event.
func (m *metrics) observe(ev auditEvent) {
	kind, labels := classify(ev.event, ev.result, ev.fields)
	switch kind {
	case audit.CountVerification:
		m.verifications.WithLabelValues(labels...).Inc()
		if labels[0] == "recovery" && labels[1] == "ok" {
			m.recoveryUsed.Inc()
		}
		if labels[1] == "ok" && ev.recoveredAfter >= 0 {
			m.recovered.Observe(float64(ev.recoveredAfter))
		}
		if ev.fields["reason"] == "clock_drift" && ev.driftSeconds != 0 {
			// Two values only, from the sign: the offset itself stays in
			// the audit log.
			direction := "fast"
			if ev.driftSeconds < 0 {
				direction = "slow"
			}
			m.clockDrift.WithLabelValues(direction).Inc()
		}
	case audit.CountSent:
		m.codesSent.WithLabelValues(labels...).Inc()
	case audit.CountNotArrived:
		m.notArrived.WithLabelValues(labels...).Inc()
	case audit.CountLockout:
		m.lockouts.WithLabelValues(labels...).Inc()
	case audit.CountEnrolment:
		m.enrolments.WithLabelValues(labels...).Inc()
	case audit.CountRemoval:
		m.removals.WithLabelValues(labels...).Inc()
	case audit.CountAdminAction:
		m.adminActions.WithLabelValues(labels...).Inc()
	case audit.CountNetworkSkip:
		rule := labels[0]
		if _, ok := m.skipRules.Load(rule); !ok {
			rule = "other"
		}
		m.networkSkips.WithLabelValues(rule).Inc()
	case audit.CountRecheck:
		m.rechecks.Inc()
	}
}

// skipRule makes label a value of network_skips_total's rule label, its
// series at 0 from the start.
func (m *metrics) skipRule(label string) {
	m.skipRules.Store(label, struct{}{})
	m.networkSkips.WithLabelValues(label)
}

// classify says what one audit event counts toward, with its label
// values: the one mapping of events to counts, shared by the metrics and
// the daily figures (audit.Tally) so the dashboard and Prometheus agree.
// An event that counts toward nothing gives "".
func classify(event, result string, fields map[string]string) (audit.Kind, []string) {
	switch event {
	case "verify":
		method := oneOf(fields["method"], "webauthn", "totp", "email", "sms", "recovery")
		outcome := "error"
		switch reason := fields["reason"]; {
		case result == "success":
			outcome = "ok"
		case reason == "incorrect" || reason == "malformed" || reason == "clock_drift",
			// A passkey's answer that does not verify (another origin, a
			// bad signature, a key not the member's or not allowed): the
			// wrong code of a passkey.
			reason == "refused" || reason == "unknown_credential" || reason == "authenticator_not_allowed":
			outcome = "wrong"
		case reason == "counter_regressed":
			// Its own value: a cloned authenticator is worth an alert.
			outcome = "counter_regressed"
		case fields["reason"] == "replay":
			outcome = "replay"
		case fields["reason"] == "locked":
			outcome = "locked"
		case fields["reason"] == "expired" || fields["reason"] == "void":
			outcome = "expired"
		}
		return audit.CountVerification, []string{method, outcome}
	case "code_send":
		channel := oneOf(fields["method"], "email", "sms")
		switch result {
		case "success":
			return audit.CountSent, []string{channel, "sent"}
		case "refused":
			return audit.CountSent, []string{channel, "limited"}
		default:
			return audit.CountSent, []string{channel, oneOf(fields["error_class"],
				"refused", "timeout", "auth", "rejected", "temporary", "throttled", "invalid_parameter")}
		}
	case "code_not_arrived":
		return audit.CountNotArrived, []string{oneOf(fields["method"], "email", "sms")}
	case "lockout":
		return audit.CountLockout, []string{oneOf(strings.TrimSuffix(result, "_locked"), "account", "address")}
	case "enrol_confirm":
		if result == "success" {
			return audit.CountEnrolment, []string{oneOf(fields["method"], "totp", "email", "sms")}
		}
	case "webauthn_registered":
		if result == "success" {
			return audit.CountEnrolment, []string{"webauthn"}
		}
	case "method_removed":
		if result == "success" {
			return audit.CountRemoval, []string{oneOf(fields["method"], "totp", "email", "sms")}
		}
	case "network_skip":
		// The rule's label is bounded where it is counted: the metrics
		// know the rules registered.
		if result == "success" {
			return audit.CountNetworkSkip, []string{fields["rule"]}
		}
	case "device_used":
		if result == "refused" && fields["reason"] == "new_network" {
			return audit.CountRecheck, nil
		}
	case "webauthn_removed":
		// The member's own removal; an admin's is admin_passkey_removed.
		if result == "success" {
			return audit.CountRemoval, []string{"webauthn"}
		}
	default:
		// Actions only: reads (admin_member_viewed, ...) and refusals are
		// in the audit log, not here.
		if action, ok := strings.CutPrefix(event, "admin_"); ok && result == "success" && adminActions[action] {
			return audit.CountAdminAction, []string{action}
		}
	}
	return "", nil
}

// adminActions are the admin actions counted, by their audit event
// without "admin_".
var adminActions = map[string]bool{
	"reset": true, "reset_requested": true, "reset_approved": true, "reset_withdrawn": true, "unlock": true,
	"unlock_address": true, "devices": true, "sessions": true, "app_confirmed": true, "passkey_removed": true, "rekey": true, "export": true, "import": true, "audit_export": true,
}

// oneOf is v when it is one of allowed, else "other".
func oneOf(v string, allowed ...string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return "other"
}

// auditEvent is what counting reads of one audit event: its string
// fields, and recovered_after when the event has it.
type auditEvent struct {
	event, result  string
	fields         map[string]string
	recoveredAfter int64 // seconds; -1 when absent
	driftSeconds   int64 // drift_seconds of a clock_drift failure; 0 when absent
}

// readAuditEvent collects an audit entry's fields, the logger's and the
// entry's.
func readAuditEvent(lists ...[]zapcore.Field) auditEvent {
	ev := auditEvent{fields: map[string]string{}, recoveredAfter: -1}
	for _, list := range lists {
		for _, f := range list {
			switch {
			case f.Type == zapcore.StringType:
				ev.fields[f.Key] = f.String
			case f.Key == "recovered_after" && f.Type == zapcore.Int64Type:
				ev.recoveredAfter = f.Integer
			case f.Key == "drift_seconds" && f.Type == zapcore.Int64Type:
				ev.driftSeconds = f.Integer
			}
		}
	}
	ev.event, ev.result = ev.fields["event"], ev.fields["result"]
	return ev
}

// countingCore is a zap core that counts the audit events it is given and
// writes nothing: teed with the audit logger's own core.
type countingCore struct {
	count  func(auditEvent)
	fields []zapcore.Field
}

func (c *countingCore) Enabled(zapcore.Level) bool { return true }

func (c *countingCore) With(fields []zapcore.Field) zapcore.Core {
	return &countingCore{count: c.count, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *countingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c *countingCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	c.count(readAuditEvent(c.fields, fields))
	return nil
}

func (c *countingCore) Sync() error { return nil }

// counted returns the audit logger that also gives each event, read once,
// to every count function: the metrics' and the daily figures'.
func counted(logger *zap.Logger, counts ...func(auditEvent)) *zap.Logger {
	count := func(ev auditEvent) {
		for _, c := range counts {
			c(ev)
		}
	}
	return logger.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewTee(core, &countingCore{count: count})
	}))
}

// memberGauges is the members seen and enrolled, read at scrape time from
// the store's index counts (no scan, nothing kept between scrapes to go
// stale), once for both gauges.
type memberGauges struct {
	seen, enrolled *prometheus.Desc
	counts         func(context.Context) (seen, enrolled int, err error)
}

func newMemberGauges(counts func(context.Context) (int, int, error)) *memberGauges {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, name), help, nil, nil)
	}
	return &memberGauges{
		seen:     desc("members_seen", "Members seen on a protected path (-1 while the store is unavailable)."),
		enrolled: desc("members_enrolled", "Members with a second factor (-1 while the store is unavailable)."),
		counts:   counts,
	}
}

func (g *memberGauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.seen; ch <- g.enrolled }

func (g *memberGauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	seen, enrolled, err := g.counts(ctx)
	if err != nil {
		seen, enrolled = -1, -1 // the store is unavailable: never a plausible count
	}
	ch <- prometheus.MustNewConstMetric(g.seen, prometheus.GaugeValue, float64(seen))
	ch <- prometheus.MustNewConstMetric(g.enrolled, prometheus.GaugeValue, float64(enrolled))
}

// memberCounts reads the member gauges' values: index counts.
func (a *App) memberCounts(ctx context.Context) (seen, enrolled int, err error) {
	b := a.trusted()
	if b == nil {
		return 0, 0, flow.ErrNotReady
	}
	c, err := b.Engine.CountMembers(ctx)
	return c.Seen, c.Enrolled, err
}

// storeUp reports whether the gateway can use its store (store_up): it
// is open, passed its checks, and answers now with this gateway's data. A
// shared store that stops answering leaves the gateway trusting it (it
// fails closed request by request, and recovers by itself), so trusted()
// alone would say 1 through an outage: one read says whether it answers.
func (a *App) storeUp(ctx context.Context) bool {
	b := a.trusted()
	return b != nil && b.Engine.Intact(ctx) == nil
}

// resetsPending counts the reset requests waiting for approval. They are
// few (one per member at most, each lapsing within reset_approval), so
// listing them is cheap, and it drops those that lapsed.
func (a *App) resetsPending(ctx context.Context) (int, error) {
	b := a.trusted()
	if b == nil {
		return 0, flow.ErrNotReady
	}
	list, err := b.Engine.ResetRequests(ctx)
	return len(list), err
}

// noticed counts a change notice sent or received: the engine's
// Config.Noticed.
func (m *metrics) noticed(received bool) {
	if received {
		m.noticesRecv.Inc()
	} else {
		m.noticesSent.Inc()
	}
}

// verifiedRequest times a request with a valid session, from its arrival
// to its hand-off to the next handler.
func (m *metrics) verifiedRequest(began time.Time) {
	if m != nil {
		m.verifiedPath.Observe(time.Since(began).Seconds())
	}
}
