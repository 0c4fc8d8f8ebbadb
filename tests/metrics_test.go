package tests

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
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
	return scrapeURL(t, "http://"+e.admin+"/metrics")
}

// scrapeURL reads the metrics served at url.
func scrapeURL(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
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

// How long members stay stuck, the verified path's latency, the store's
// health, pending resets and the series that exist from the start, after
// a scripted sequence on the embedded store: alice is locked out and gets
// back in with her app 90 s later; bob signs in with a recovery code and
// with his app 2 min later.
func TestMetricsStuckLatencyAndState(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	s := adminSetup(db, []string{testKey}, "max_failures 3", "lockout 1m", "reset_approval 1h")
	// The metrics handler on a site of its own serves the same registry.
	metricsPort := testnet.FreePort(t)
	s.sites = fmt.Sprintf("http://127.0.0.1:%d {\n\tmetrics\n}\n", metricsPort)
	e := start(t, s)
	_, aliceSecret := enrolled(e, "alice")
	bob, bobSecret := enrolled(e, "bob")
	e.nextStep()

	a := e.browser()
	a.login("alice")
	for range 3 {
		a.verify(wrongCode(e.code(aliceSecret, 0)), "/members/", false)
	}
	e.clock.Advance(90 * time.Second) // the lockout (1m) is over
	if r := a.verify(e.code(aliceSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice after her lockout: %d", r.status)
	}

	r := e.browser()
	r.login("bob")
	if resp := r.useRecovery(bob.recovery[0], "/members/"); resp.status != http.StatusSeeOther {
		t.Fatalf("bob's recovery code: %d", resp.status)
	}
	e.clock.Advance(2 * time.Minute)
	app := e.browser()
	app.login("bob")
	if resp := app.verify(e.code(bobSecret, 0), "/members/", false); resp.status != http.StatusSeeOther {
		t.Fatalf("bob's app code: %d", resp.status)
	}

	families := scrape(t, e)
	h := metricHistogram(t, families, "caddy_two_factor_time_to_recover_seconds")
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 90+120 {
		t.Fatalf("time_to_recover: count %d, sum %v; want 2 and 210", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(2)
		if b.GetUpperBound() < 90 {
			want = 0
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("time_to_recover bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}

	// Each verified request is timed once; a redirect to the challenge is
	// not a verified request.
	before := metricHistogram(t, families, "caddy_two_factor_verified_request_duration_seconds").GetSampleCount()
	for range 5 {
		if status, _ := a.upstream("/echo/x"); status != http.StatusOK {
			t.Fatalf("alice's verified request: %d", status)
		}
	}
	stranger := e.browser()
	stranger.login("alice")
	if resp := stranger.get("/members/"); resp.status != http.StatusFound {
		t.Fatalf("alice in a browser without a session: %d", resp.status)
	}
	if out, code := twoFactorCLI(t, "members", "reset", "bob", "--reason", "lost phone", "--address", e.admin); code != 0 {
		t.Fatalf("reset request: exit %d\n%s", code, out)
	}

	families = scrapeURL(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	latency := metricHistogram(t, families, "caddy_two_factor_verified_request_duration_seconds")
	if n := latency.GetSampleCount() - before; n != 5 || latency.GetSampleSum() <= 0 {
		t.Errorf("verified_request_duration_seconds: %d more samples (sum %v), want 5", n, latency.GetSampleSum())
	}
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"caddy_two_factor_store_up", nil, 1},
		{"caddy_two_factor_resets_pending", nil, 1},
		{"caddy_two_factor_recovery_codes_used_total", nil, 1},
		{"caddy_two_factor_lockouts_total", map[string]string{"scope": "account"}, 1},
		{"caddy_two_factor_admin_actions_total", map[string]string{"action": "reset_requested"}, 1},
		{"caddy_two_factor_codes_not_arrived_total", map[string]string{"channel": "email"}, 0},
		{"caddy_two_factor_codes_not_arrived_total", map[string]string{"channel": "sms"}, 0},
		{"caddy_two_factor_store_errors_total", map[string]string{"op": "get"}, 0},
		{"caddy_two_factor_store_errors_total", map[string]string{"op": "cas"}, 0},
		// The embedded store is not shared: no notices either way.
		{"caddy_two_factor_revocation_notices_total", map[string]string{"direction": "sent"}, 0},
		{"caddy_two_factor_revocation_notices_total", map[string]string{"direction": "received"}, 0},
	} {
		if got, ok := metricValue(families, want.name, want.labels); !ok || got != want.value {
			t.Errorf("%s%v = %v (found %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
}

// On Redis, a revocation is one change notice sent and, through the
// channel every instance follows, received; a Redis that stops answering
// shows as store_up 0 and as store errors.
func TestMetricsNoticesAndStoreOnRedis(t *testing.T) {
	srv := testredis.Start(t)
	e := start(t, setup{admin: true, global: fmt.Sprintf(
		"keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\ttimeout 500ms\n\t\t}", testKey, srv.Addr)})
	b, _ := enrolled(e, "alice")
	notices := func() (sent, received float64) {
		families := scrape(t, e)
		sent, _ = metricValue(families, "caddy_two_factor_revocation_notices_total", map[string]string{"direction": "sent"})
		received, _ = metricValue(families, "caddy_two_factor_revocation_notices_total", map[string]string{"direction": "received"})
		return sent, received
	}
	// Notices arrive asynchronously: wait until this instance has
	// received what it sent (its own subscription hears them too).
	settled := func() (sent, received float64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			sent, received = notices()
			if sent == received || time.Now().After(deadline) {
				return sent, received
			}
		}
	}
	sent0, received0 := settled()
	if sent0 < 1 || received0 != sent0 {
		t.Fatalf("after an enrolment: %v sent, %v received; want as many received as sent, at least 1", sent0, received0)
	}
	if out, code := twoFactorCLI(t, "members", "end-sessions", "alice", "--reason", "phone stolen", "--address", e.admin); code != 0 {
		t.Fatalf("end-sessions: exit %d\n%s", code, out)
	}
	if sent, received := settled(); sent != sent0+1 || received != received0+1 {
		t.Fatalf("after ending alice's sessions: %v sent, %v received; want %v and %v", sent, received, sent0+1, received0+1)
	}
	if r := b.get("/members/"); r.status != http.StatusFound {
		t.Fatalf("alice's ended session: %d", r.status)
	}

	families := scrape(t, e)
	if up, _ := metricValue(families, "caddy_two_factor_store_up", nil); up != 1 {
		t.Fatalf("store_up with Redis up: %v", up)
	}
	srv.Stop()
	families = scrape(t, e)
	if up, _ := metricValue(families, "caddy_two_factor_store_up", nil); up != 0 {
		t.Errorf("store_up with Redis stopped: %v, want 0", up)
	}
	// A registry collects in parallel, so the errors of the reads the
	// last scrape made (store_up's, resets_pending's) show in the next.
	families = scrape(t, e)
	if n, _ := metricValue(families, "caddy_two_factor_store_errors_total", map[string]string{"op": "get"}); n < 1 {
		t.Errorf("store_errors_total{op=get} with Redis stopped: %v, want at least 1", n)
	}
	if n, _ := metricValue(families, "caddy_two_factor_store_errors_total", map[string]string{"op": "index"}); n < 1 {
		t.Errorf("store_errors_total{op=index} with Redis stopped: %v, want at least 1", n)
	}
}

// metricHistogram is the histogram name (no labels).
func metricHistogram(t *testing.T, families map[string]*dto.MetricFamily, name string) *dto.Histogram {
	t.Helper()
	f, ok := families[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].Histogram == nil {
		t.Fatalf("no histogram %s", name)
	}
	return f.GetMetric()[0].Histogram
}
