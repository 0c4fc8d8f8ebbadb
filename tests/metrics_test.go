package tests

import (
	"net/http"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The gateway's metrics, scraped from Caddy's admin /metrics and read
// with the Prometheus text parser after a scripted sequence: enrolments,
// right and wrong codes, a replay, a lockout, an admin's action.
func TestMetricsAfterSignIns(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	e := start(t, adminSetup(db, []string{testKey}, "max_failures 3", "lockout 1h"))
	_, aliceSecret := enrolled(e, "alice")
	_, bobSecret := enrolled(e, "bob")
	e.nextStep()
	b := e.browser()
	b.login("bob")
	right := e.code(bobSecret, 0)
	if r := b.verify(right, "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("bob's code: %d", r.status)
	}
	replay := e.browser()
	replay.login("bob")
	replay.verify(right, "/members/", false) // the same code again
	a := e.browser()
	a.login("alice")
	for range 3 {
		a.verify(wrongCode(e.code(aliceSecret, 0)), "/members/", false)
	}
	if out, code := twoFactorCLI(t, "members", "unlock", "--address", e.admin, "alice", "--reason", "called support"); code != 0 {
		t.Fatalf("unlock: exit %d\n%s", code, out)
	}
	// A visit noted as seen, written before the scrape.
	if out, code := twoFactorCLI(t, "members", "list", "--address", e.admin); code != 0 {
		t.Fatalf("members list: exit %d\n%s", code, out)
	}

	families := scrape(t, e)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"caddy_two_factor_enrolments_total", map[string]string{"method": "totp"}, 2},
		{"caddy_two_factor_verifications_total", map[string]string{"method": "totp", "result": "ok"}, 1},
		{"caddy_two_factor_verifications_total", map[string]string{"method": "totp", "result": "replay"}, 1},
		{"caddy_two_factor_verifications_total", map[string]string{"method": "totp", "result": "wrong"}, 3},
		{"caddy_two_factor_lockouts_total", map[string]string{"scope": "account"}, 1},
		{"caddy_two_factor_admin_actions_total", map[string]string{"action": "unlock"}, 1},
		{"caddy_two_factor_members_enrolled", nil, 2},
	} {
		if got, ok := metricValue(families, want.name, want.labels); !ok || got != want.value {
			t.Errorf("%s%v = %v (found %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
	// Reads are not actions.
	if got, ok := metricValue(families, "caddy_two_factor_admin_actions_total", map[string]string{"action": "member_viewed"}); ok {
		t.Errorf("a read counted as an admin action: %v", got)
	}
}

// scrape reads Caddy's admin /metrics.
func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// metricValue is the value of the series of name with labels (all of
// them, and no others beyond those given).
func metricValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := len(m.GetLabel()) == len(labels)
		for _, l := range m.GetLabel() {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}
