package twofactor

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
	lockouts      *prometheus.CounterVec
	enrolments    *prometheus.CounterVec
	removals      *prometheus.CounterVec
	recoveryUsed  prometheus.Counter
	adminActions  *prometheus.CounterVec
}

const metricsNamespace, metricsSubsystem = "caddy", "two_factor"

func newMetrics(reg prometheus.Registerer, members func(context.Context) (seen, enrolled int, err error)) (*metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: name, Help: help}, labels)
	}
	m := &metrics{
		verifications: counter("verifications_total",
			"Second-factor verifications by method (totp, email, sms, recovery) and result (ok, wrong, replay, locked, expired, error).",
			"method", "result"),
		codesSent: counter("codes_sent_total",
			"One-time codes sent by channel (email, sms) and result: sent, limited (a sending limit refused it), or the failure class "+
				"(refused, timeout, auth, rejected, temporary, throttled, invalid_parameter, other).",
			"channel", "result"),
		lockouts:   counter("lockouts_total", "Lockouts begun, by scope (account, address).", "scope"),
		enrolments: counter("enrolments_total", "Methods enrolled, by method (totp, email, sms).", "method"),
		removals:   counter("removals_total", "Methods removed by their member, by method (totp, email, sms).", "method"),
		recoveryUsed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "recovery_codes_used_total", Help: "Sign-ins with a recovery code."}),
		adminActions: counter("admin_actions_total",
			"Admins' actions that succeeded, by action (reset, reset_requested, reset_approved, reset_withdrawn, unlock, unlock_address, "+
				"devices, sessions, app_confirmed, rekey, export, import, audit_export).",
			"action"),
	}
	collectors := []prometheus.Collector{m.verifications, m.codesSent, m.lockouts, m.enrolments, m.removals, m.recoveryUsed, m.adminActions}
	collectors = append(collectors, newMemberGauges(members))
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts one audit event.
func (m *metrics) observe(event, result string, fields map[string]string) {
	switch event {
	case "verify":
		method := oneOf(fields["method"], "totp", "email", "sms", "recovery")
		outcome := "error"
		switch {
		case result == "success":
			outcome = "ok"
			if method == "recovery" {
				m.recoveryUsed.Inc()
			}
		case fields["reason"] == "incorrect" || fields["reason"] == "malformed":
			outcome = "wrong"
		case fields["reason"] == "replay":
			outcome = "replay"
		case fields["reason"] == "locked":
			outcome = "locked"
		case fields["reason"] == "expired" || fields["reason"] == "void":
			outcome = "expired"
		}
		m.verifications.WithLabelValues(method, outcome).Inc()
	case "code_send":
		channel := oneOf(fields["method"], "email", "sms")
		switch result {
		case "success":
			m.codesSent.WithLabelValues(channel, "sent").Inc()
		case "refused":
			m.codesSent.WithLabelValues(channel, "limited").Inc()
		default:
			m.codesSent.WithLabelValues(channel, oneOf(fields["error_class"],
				"refused", "timeout", "auth", "rejected", "temporary", "throttled", "invalid_parameter")).Inc()
		}
	case "lockout":
		m.lockouts.WithLabelValues(oneOf(strings.TrimSuffix(result, "_locked"), "account", "address")).Inc()
	case "enrol_confirm":
		if result == "success" {
			m.enrolments.WithLabelValues(oneOf(fields["method"], "totp", "email", "sms")).Inc()
		}
	case "method_removed":
		if result == "success" {
			m.removals.WithLabelValues(oneOf(fields["method"], "totp", "email", "sms")).Inc()
		}
	default:
		// Actions only: reads (admin_member_viewed, ...) and refusals are
		// in the audit log, not here.
		if action, ok := strings.CutPrefix(event, "admin_"); ok && result == "success" && adminActions[action] {
			m.adminActions.WithLabelValues(action).Inc()
		}
	}
}

// adminActions are the admin actions counted, by their audit event
// without "admin_".
var adminActions = map[string]bool{
	"reset": true, "reset_requested": true, "reset_approved": true, "reset_withdrawn": true, "unlock": true,
	"unlock_address": true, "devices": true, "sessions": true, "app_confirmed": true, "rekey": true, "export": true, "import": true, "audit_export": true,
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

// countingCore is a zap core that counts the audit events it is given and
// writes nothing: teed with the audit logger's own core.
type countingCore struct {
	m      *metrics
	fields []zapcore.Field
}

func (c *countingCore) Enabled(zapcore.Level) bool { return true }

func (c *countingCore) With(fields []zapcore.Field) zapcore.Core {
	return &countingCore{m: c.m, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *countingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c *countingCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	values := map[string]string{}
	for _, list := range [][]zapcore.Field{c.fields, fields} {
		for _, f := range list {
			if f.Type == zapcore.StringType {
				values[f.Key] = f.String
			}
		}
	}
	c.m.observe(values["event"], values["result"], values)
	return nil
}

func (c *countingCore) Sync() error { return nil }

// counted returns the audit logger that also counts its events in m.
func counted(audit *zap.Logger, m *metrics) *zap.Logger {
	if m == nil {
		return audit
	}
	return audit.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewTee(core, &countingCore{m: m})
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
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
