package twofactor

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

// Audit events written through the audit logger count the same in the
// metrics and in the day's figures, whatever the event, and a
// verification's recovered_after goes into the day's time to recover.
func TestFiguresCountAsMetrics(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "figures.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewFake(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	tally, err := audit.NewTally(st, "test", defaultAuditRetention, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, &scrapedState{})
	if err != nil {
		t.Fatal(err)
	}
	a := &App{running: &running{}}
	a.figures.Store(&figures{tally: tally, st: st})
	logger := counted(zap.New(zapcore.NewNopCore()), m.observe, a.countFigures)

	event := func(event, result string, fields ...zap.Field) {
		logger.Info(event, append([]zap.Field{zap.String("event", event), zap.String("result", result),
			zap.String("user", "alice")}, fields...)...)
	}
	method := func(m string) zap.Field { return zap.String("method", m) }
	reason := func(r string) zap.Field { return zap.String("reason", r) }
	event("verify", "success", method("totp"))
	event("verify", "success", method("totp"), zap.Int64("recovered_after", 420))
	event("verify", "success", method("recovery"))
	event("verify", "failure", method("totp"), reason("incorrect"))
	event("verify", "failure", method("totp"), reason("clock_drift"), zap.Int64("drift_seconds", -300))
	event("verify", "failure", method("email"), reason("malformed"))
	event("verify", "failure", method("totp"), reason("replay"))
	event("verify", "failure", method("sms"), reason("locked"))
	event("verify", "failure", method("sms"), reason("void"))
	event("verify", "error", method("push"), reason("secret_unreadable"))
	event("verify", "success", method("webauthn"))
	event("code_send", "success", method("email"))
	event("code_send", "refused", method("sms"))
	event("code_send", "failure", method("sms"), zap.String("error_class", "throttled"))
	event("code_send", "failure", method("email"), zap.String("error_class", "something new"))
	event("lockout", "account_locked")
	event("lockout", "address_locked")
	event("enrol_confirm", "success", method("totp"))
	event("enrol_confirm", "failure", method("sms"))
	event("method_removed", "success", method("sms"))
	event("code_not_arrived", "success", method("email"))
	event("admin_unlock", "success", zap.String("actor", "admin endpoint"))
	event("admin_reset", "failure", zap.String("actor", "admin endpoint"))
	event("admin_member_viewed", "success")
	event("session_started", "success")
	// Metrics only: the day's figures leave them out, and count the rest
	// as before.
	event("network_skip", "success", zap.String("rule", "/staff/*"), zap.String("network", "192.0.2.0/24"))
	event("device_used", "refused", reason("new_network"))
	event("device_used", "success")

	if err := tally.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	days, _, err := audit.Days(t.Context(), st, clk.Now(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	d := days[0]
	fromFigures := map[string]float64{}
	for method, byResult := range d.Verifications {
		for result, n := range byResult {
			fromFigures[fmt.Sprintf("verifications_total{method=%s,result=%s}", method, result)] = float64(n)
		}
		if method == "recovery" {
			fromFigures["recovery_codes_used_total{}"] = float64(byResult["ok"])
		}
	}
	for channel, byResult := range d.Sent {
		for result, n := range byResult {
			fromFigures[fmt.Sprintf("codes_sent_total{channel=%s,result=%s}", channel, result)] = float64(n)
		}
	}
	for name, counts := range map[string]map[string]int64{"lockouts_total{scope=%s}": d.Lockouts,
		"enrolments_total{method=%s}": d.Enrolments, "removals_total{method=%s}": d.Removals,
		"admin_actions_total{action=%s}": d.AdminActions, "codes_not_arrived_total{channel=%s}": d.NotArrived} {
		for label, n := range counts {
			fromFigures[fmt.Sprintf(name, label)] = float64(n)
		}
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fromMetrics := map[string]float64{}
	metricOnly := map[string]float64{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			if s.Counter == nil || s.Counter.GetValue() == 0 {
				continue // series that start at 0 have no figure until counted
			}
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			name := f.GetName()[len("caddy_two_factor_"):]
			switch name {
			case "clock_drift_total":
				continue // a metric only: the daily figures count it as a wrong code, below
			case "network_skips_total", "device_rechecks_total":
				metricOnly[name] += s.Counter.GetValue()
				continue
			}
			fromMetrics[fmt.Sprintf("%s{%s}", name, strings.Join(labels, ","))] = s.Counter.GetValue()
		}
	}
	if metricOnly["network_skips_total"] != 1 || metricOnly["device_rechecks_total"] != 1 {
		t.Errorf("metrics only: %v, want a network skip and a recheck", metricOnly)
	}
	if fmt.Sprint(fromFigures) != fmt.Sprint(fromMetrics) {
		t.Errorf("figures and metrics differ:\nfigures %v\nmetrics %v", fromFigures, fromMetrics)
	}
	for series, want := range map[string]float64{
		"verifications_total{method=totp,result=ok}":     2,
		"verifications_total{method=other,result=error}": 1,
		"verifications_total{method=webauthn,result=ok}": 1,
		"verifications_total{method=sms,result=expired}": 1,
		"codes_sent_total{channel=sms,result=limited}":   1,
		"codes_sent_total{channel=email,result=other}":   1,
		"admin_actions_total{action=unlock}":             1,
		"lockouts_total{scope=address}":                  1,
		"verifications_total{method=email,result=wrong}": 1,
		"verifications_total{method=totp,result=wrong}":  2,
		"verifications_total{method=recovery,result=ok}": 1,
		"enrolments_total{method=totp}":                  1,
	} {
		if fromFigures[series] != want {
			t.Errorf("%s = %v, want %v", series, fromFigures[series], want)
		}
	}
	if _, ok := fromFigures["admin_actions_total{action=member_viewed}"]; ok {
		t.Error("a read counted as an admin action")
	}
	if h := d.Recovered; h.Count != 1 || h.Sum != 420 || h.Counts[2] != 1 {
		t.Errorf("recovered: %+v, want one observation of 420s in the bucket up to 900s", h)
	}
}
