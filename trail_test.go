package twofactor

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

// An audit event written to the audit logger reaches the durable trail as
// a record: the member, the admin's address for an admin action, a
// browser summary instead of the header, the other fields as details and
// no error text.
func TestAuditEventsReachTheTrail(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w, err := newTrailWriter(prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := audit.New(st, [][]byte{bytes.Repeat([]byte{1}, 32)}, "gw-1", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); w.run(t.Context(), tr) }()
	t.Cleanup(func() { w.close(); <-done })

	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	logger := withTrail(zap.NewNop(), w, func() time.Time { return at })
	logger.Info("verify", zap.String("event", "verify"), zap.String("result", "failure"), zap.String("user", "alice"),
		zap.String("ip", "192.0.2.1"), zap.String("user_agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
		zap.String("method", "totp"), zap.String("reason", "incorrect"), zap.Int64("failures", 2))
	logger.Info("admin_unlock", zap.String("event", "admin_unlock"), zap.String("result", "success"), zap.String("user", "bob"),
		zap.String("ip", ""), zap.String("user_agent", ""), zap.String("actor", "admin"), zap.String("admin_ip", "198.51.100.7"),
		zap.String("admin_reason", "called the desk"), zap.Bool("was_locked", true), zap.Error(errors.New("550 <bob@example.com> unknown")))
	w.sync(t.Context())

	page, err := tr.Query(t.Context(), audit.Filter{}, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 2 {
		t.Fatalf("trail has %d records, want 2", len(page.Records))
	}
	unlock, verify := page.Records[0].Record, page.Records[1].Record
	if verify.Event != "verify" || verify.Result != "failure" || verify.Member != "alice" || verify.IP != "192.0.2.1" ||
		verify.Browser != "Firefox · Linux" || !verify.Time.Equal(at) || verify.Method != "totp" || verify.Instance != "gw-1" ||
		verify.Details["reason"] != "incorrect" || verify.Details["failures"] != "2" || len(verify.Details) != 2 {
		t.Errorf("verify record = %+v", verify)
	}
	if unlock.Actor != "admin" || unlock.IP != "198.51.100.7" || unlock.Member != "bob" ||
		unlock.Details["admin_reason"] != "called the desk" || unlock.Details["was_locked"] != "true" {
		t.Errorf("unlock record = %+v", unlock)
	}
	if _, ok := unlock.Details["error"]; ok {
		t.Errorf("an error text reached the trail: %+v", unlock.Details)
	}
	if res, err := tr.Verify(t.Context(), "gw-1"); err != nil || res.Problem != "" || res.Checked != 2 {
		t.Errorf("Verify = %+v, %v", res, err)
	}
}

// A full queue drops the record and counts it, without blocking.
func TestTrailQueueFullDrops(t *testing.T) {
	w, err := newTrailWriter(prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for range trailQueue {
		w.add(audit.Record{Event: "verify"})
	}
	w.add(audit.Record{Event: "verify"})
	if got := testutil.ToFloat64(w.dropped); got != 1 {
		t.Fatalf("dropped = %v, want 1", got)
	}
}
