package twofactor

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// scrapedState is the state the gauges read, as set by a test.
type scrapedState struct {
	up      bool
	pending int
}

func (s *scrapedState) memberCounts(context.Context) (int, int, error) { return 3, 2, nil }
func (s *scrapedState) storeUp(context.Context) bool                   { return s.up }
func (s *scrapedState) resetsPending(context.Context) (int, error) {
	if !s.up {
		return 0, errors.New("down")
	}
	return s.pending, nil
}

// registered gives metrics in a registry of their own.
func registered(t *testing.T, src scraped) (*metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, src)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// gathered is the series of name with exactly labels, from reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := len(m.GetLabel()) == len(labels)
			for _, l := range m.GetLabel() {
				match = match && labels[l.GetName()] == l.GetValue()
			}
			if match {
				return m
			}
		}
	}
	return nil
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m := gathered(t, reg, name, labels)
	if m == nil || m.Counter == nil {
		t.Fatalf("no counter %s%v", name, labels)
	}
	return m.Counter.GetValue()
}

// auditEngine is an engine on an embedded store whose audit logger is
// counted in m.
func auditEngine(t *testing.T, m *metrics) *challenge.Engine {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "twofactor.db"), embedded.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := keyring.New([]byte("metrics test key metrics test key!"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := challenge.New(st, kr, challenge.Config{}, time.Now, counted(zap.NewNop(), m.observe))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A member's report that a code never came is counted by channel; both
// channels' series exist before the first report, so a rate over them
// starts at 0, not at nothing.
func TestCodeNotArrivedCounted(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	for _, channel := range []string{"email", "sms"} {
		if v := counterValue(t, reg, "caddy_two_factor_codes_not_arrived_total", map[string]string{"channel": channel}); v != 0 {
			t.Fatalf("%s before any report: %v, want 0", channel, v)
		}
	}
	e := auditEngine(t, m)
	a := challenge.Actor{User: "alice", IP: "192.0.2.1"}
	e.Audit(a, "code_not_arrived", "success", zap.String("method", "sms"))
	e.Audit(a, "code_not_arrived", "success", zap.String("method", "sms"))
	e.Audit(a, "code_not_arrived", "success", zap.String("method", "email"))
	e.Audit(a, "code_not_arrived", "success", zap.String("method", "+81 90 0000 0000")) // never a label value
	for channel, want := range map[string]float64{"sms": 2, "email": 1, "other": 1} {
		if v := counterValue(t, reg, "caddy_two_factor_codes_not_arrived_total", map[string]string{"channel": channel}); v != want {
			t.Errorf("codes_not_arrived_total{channel=%q} = %v, want %v", channel, v, want)
		}
	}
}

// A clock_drift failure counts once as a wrong code and once toward
// clock_drift_total by the sign of drift_seconds; both directions exist
// at 0 from the start, and the offset never becomes a label.
func TestClockDriftCounted(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	for _, direction := range []string{"fast", "slow"} {
		if v := counterValue(t, reg, "caddy_two_factor_clock_drift_total", map[string]string{"direction": direction}); v != 0 {
			t.Fatalf("%s before any drift: %v, want 0", direction, v)
		}
	}
	e := auditEngine(t, m)
	a := challenge.Actor{User: "alice", IP: "192.0.2.1"}
	drift := func(seconds int64) {
		e.Audit(a, "verify", "failure", zap.String("method", "totp"), zap.String("reason", "clock_drift"), zap.Int64("drift_seconds", seconds))
	}
	drift(300)
	drift(-600)
	drift(-90)
	e.Audit(a, "verify", "failure", zap.String("method", "totp"), zap.String("reason", "incorrect"))
	for direction, want := range map[string]float64{"fast": 1, "slow": 2} {
		if v := counterValue(t, reg, "caddy_two_factor_clock_drift_total", map[string]string{"direction": direction}); v != want {
			t.Errorf("clock_drift_total{direction=%q} = %v, want %v", direction, v, want)
		}
	}
	if v := counterValue(t, reg, "caddy_two_factor_verifications_total", map[string]string{"method": "totp", "result": "wrong"}); v != 4 {
		t.Errorf("verifications_total{totp,wrong} = %v, want 4: a drifted code is a wrong code", v)
	}
}

// Passkeys count under the method webauthn: a refused answer is a wrong
// code, a counter that went backwards (a cloned authenticator) its own
// result; each key registered or removed by its member an enrolment or a
// removal, and an admin's removal an admin action, not the member's.
func TestPasskeyEventsCounted(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	e := auditEngine(t, m)
	a := challenge.Actor{User: "alice", IP: "192.0.2.1"}
	method := zap.String("method", "webauthn")
	e.Audit(a, "verify", "success", method, zap.String("credential", "0123abcd"))
	e.Audit(a, "verify", "failure", method, zap.String("reason", "refused"), zap.String("detail", "Error validating origin"))
	e.Audit(a, "verify", "failure", method, zap.String("reason", "authenticator_not_allowed"))
	e.Audit(a, "verify", "failure", method, zap.String("reason", "counter_regressed"))
	e.Audit(a, "webauthn_counter_regressed", "refused", method) // the same refusal's own event: not counted twice
	e.Audit(a, "verify", "failure", method, zap.String("reason", "expired"))
	e.Audit(a, "webauthn_registered", "success", method)
	e.Audit(a, "webauthn_registered", "success", method)
	e.Audit(a, "webauthn_registered", "failure", method, zap.String("reason", "refused"))
	e.Audit(a, "webauthn_removed", "success")
	e.Audit(a, "webauthn_removed", "refused", zap.String("reason", "last_method"))
	e.Audit(a, "admin_passkey_removed", "success", method, zap.String("actor", "root"))
	for labels, want := range map[[2]string]float64{
		{"webauthn", "ok"}: 1, {"webauthn", "wrong"}: 2, {"webauthn", "counter_regressed"}: 1, {"webauthn", "expired"}: 1,
	} {
		got := counterValue(t, reg, "caddy_two_factor_verifications_total", map[string]string{"method": labels[0], "result": labels[1]})
		if got != want {
			t.Errorf("verifications_total%v = %v, want %v", labels, got, want)
		}
	}
	if v := counterValue(t, reg, "caddy_two_factor_enrolments_total", map[string]string{"method": "webauthn"}); v != 2 {
		t.Errorf("enrolments_total{webauthn} = %v, want 2", v)
	}
	if v := counterValue(t, reg, "caddy_two_factor_removals_total", map[string]string{"method": "webauthn"}); v != 1 {
		t.Errorf("removals_total{webauthn} = %v, want 1: the member's own removal only", v)
	}
	if v := counterValue(t, reg, "caddy_two_factor_admin_actions_total", map[string]string{"action": "passkey_removed"}); v != 1 {
		t.Errorf("admin_actions_total{passkey_removed} = %v, want 1", v)
	}
}

// Network skips count by rule, the label taking only the rules the
// handlers registered (each series at 0 from the start) and "other" for
// anything else, so neither a rule added to the log nor a forged field
// grows a series. Only successes count.
func TestNetworkSkipCounted(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	m.skipRule("/staff/* /office/*")
	m.skipRule("/kiosk/*")
	m.skipRule("/kiosk/*")
	for _, rule := range []string{"/staff/* /office/*", "/kiosk/*"} {
		if v := counterValue(t, reg, "caddy_two_factor_network_skips_total", map[string]string{"rule": rule}); v != 0 {
			t.Fatalf("%s before any skip: %v, want 0", rule, v)
		}
	}
	e := auditEngine(t, m)
	a := challenge.Actor{User: "alice", IP: "192.0.2.7"}
	skip := func(result string, fields ...zap.Field) {
		e.Audit(a, "network_skip", result, append(fields, zap.String("network", "192.0.2.0/24"), zap.Bool("enrolled", true))...)
	}
	skip("success", zap.String("rule", "/staff/* /office/*"))
	skip("success", zap.String("rule", "/staff/* /office/*"), zap.String("dedupe", "local"))
	skip("success", zap.String("rule", "/kiosk/*"))
	skip("success", zap.String("rule", "/unregistered/*"))
	skip("success", zap.String("rule", "<script>"))
	skip("success")
	skip("error", zap.String("rule", "/kiosk/*"))
	for rule, want := range map[string]float64{"/staff/* /office/*": 2, "/kiosk/*": 1, "other": 3} {
		if v := counterValue(t, reg, "caddy_two_factor_network_skips_total", map[string]string{"rule": rule}); v != want {
			t.Errorf("network_skips_total{rule=%q} = %v, want %v", rule, v, want)
		}
	}
	for _, rule := range []string{"/unregistered/*", "<script>", ""} {
		if gathered(t, reg, "caddy_two_factor_network_skips_total", map[string]string{"rule": rule}) != nil {
			t.Errorf("a series for the unregistered rule %q", rule)
		}
	}
}

// A remembered device refused because it came from a new network is a
// recheck; its other refusals and its uses are not.
func TestRecheckCounted(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	if v := counterValue(t, reg, "caddy_two_factor_device_rechecks_total", nil); v != 0 {
		t.Fatalf("before any recheck: %v", v)
	}
	e := auditEngine(t, m)
	a := challenge.Actor{User: "alice", IP: "198.51.100.7"}
	device := zap.String("device", "0123abcd")
	e.Audit(a, "device_used", "refused", device, zap.String("reason", "new_network"), zap.String("network", "198.51.100.0/24"))
	e.Audit(a, "device_used", "refused", device, zap.String("reason", "new_network"), zap.String("network", "198.51.100.0/24"))
	e.Audit(a, "device_used", "refused", device, zap.String("reason", "stale"))
	e.Audit(a, "device_used", "success", device)
	e.Audit(a, "device_used", "success", device, zap.String("reason", "new_network"))
	if v := counterValue(t, reg, "caddy_two_factor_device_rechecks_total", nil); v != 2 {
		t.Errorf("device_rechecks_total = %v, want 2", v)
	}
}

// The verify event's recovered_after (int64 seconds) lands in the
// time-to-recover histogram's bucket; events without it add nothing.
func TestTimeToRecoverFromAuditField(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	e := auditEngine(t, m)
	a := challenge.Actor{User: "alice", IP: "192.0.2.1"}
	e.Audit(a, "verify", "success", zap.String("method", "totp"), zap.Int64("recovered_after", 90))
	e.Audit(a, "verify", "success", zap.String("method", "totp"))
	e.Audit(a, "verify", "success", zap.String("method", "email"), zap.Int64("recovered_after", 7200))
	h := gathered(t, reg, "caddy_two_factor_time_to_recover_seconds", nil).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 7290 {
		t.Fatalf("time_to_recover: count %d sum %v, want 2 and 7290", h.GetSampleCount(), h.GetSampleSum())
	}
	want := map[float64]uint64{60: 0, 300: 1, 3600: 1, 4 * 3600: 2}
	for _, b := range h.GetBucket() {
		if n, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != n {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), n)
		}
	}
}

// store_up and resets_pending are read when scraped.
func TestScrapeTimeGauges(t *testing.T) {
	state := &scrapedState{}
	_, reg := registered(t, state)
	gauge := func(name string) float64 {
		g := gathered(t, reg, name, nil)
		if g == nil || g.Gauge == nil {
			t.Fatalf("no gauge %s", name)
		}
		return g.Gauge.GetValue()
	}
	if up, pending := gauge("caddy_two_factor_store_up"), gauge("caddy_two_factor_resets_pending"); up != 0 || pending != -1 {
		t.Fatalf("store down: store_up %v, resets_pending %v; want 0 and -1", up, pending)
	}
	state.up, state.pending = true, 2
	if up, pending := gauge("caddy_two_factor_store_up"), gauge("caddy_two_factor_resets_pending"); up != 1 || pending != 2 {
		t.Fatalf("store up: store_up %v, resets_pending %v; want 1 and 2", up, pending)
	}
}

// Operations on a store that stops answering count by operation; a key
// that is not there is not an error of the store; a store that carries
// change notices still does once wrapped, and one that does not, does not
// pretend to.
func TestStoreErrorsCounted(t *testing.T) {
	m, reg := registered(t, &scrapedState{})
	srv := testredis.Start(t)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	st := countStoreErrors(redis.New(client, "metrics:"), m.storeErrors)
	if _, ok := st.(store.Notifier); !ok {
		t.Fatal("the wrapped Redis store carries no notices")
	}
	ctx := context.Background()
	if _, err := st.Get(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get of an absent key: %v", err)
	}
	srv.Stop()
	if _, err := st.Get(ctx, "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("get with the store down: %v, want unavailable", err)
	}
	_, _ = st.Increment(ctx, "n", time.Minute)
	_ = st.IndexPut(ctx, "i", "a")
	_, _ = st.IndexCount(ctx, "i", "", "")
	_ = st.(store.Notifier).Publish(ctx, "changes", []byte("x"))
	for op, want := range map[string]float64{"get": 1, "increment": 1, "index": 2, "publish": 1, "set": 0, "cas": 0} {
		if v := counterValue(t, reg, "caddy_two_factor_store_errors_total", map[string]string{"op": op}); v != want {
			t.Errorf("store_errors_total{op=%q} = %v, want %v", op, v, want)
		}
	}

	bolt, err := embedded.Open(filepath.Join(t.TempDir(), "twofactor.db"), embedded.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	if _, ok := countStoreErrors(bolt, m.storeErrors).(store.Notifier); ok {
		t.Fatal("the wrapped embedded store claims to carry notices")
	}
}
