package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	redisstore "github.com/caddy-twofactor/twofactor/store/redis"
)

// An audit event written to a teed logger reaches the trail as a record:
// the member, the admin's address for an admin action, a browser summary
// instead of the header, the other fields as details and no error text.
func TestTeedEventsReachTheTrail(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "gw-1")
		w := NewWriter(zap.NewNop(), nil)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(t.Context(), tr) }()
		t.Cleanup(func() { w.Close(); <-done })

		at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		logger := Tee(zap.NewNop(), w, func() time.Time { return at })
		logger.Info("verify", zap.String("event", "verify"), zap.String("result", "failure"), zap.String("user", "alice"),
			zap.String("ip", "192.0.2.1"), zap.String("user_agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
			zap.String("method", "totp"), zap.String("reason", "incorrect"), zap.Int64("failures", 2))
		logger.With(zap.String("event", "admin_unlock")).Info("admin_unlock", zap.String("result", "success"), zap.String("user", "bob"),
			zap.String("ip", ""), zap.String("user_agent", ""), zap.String("actor", "admin"), zap.String("admin_ip", "198.51.100.7"),
			zap.String("admin_reason", "called the desk"), zap.Bool("was_locked", true), zap.Strings("methods", []string{"totp", "sms"}),
			zap.Error(errors.New("550 <bob@example.com> unknown")))
		w.Sync(t.Context())

		page, err := tr.Query(t.Context(), Filter{}, "", 10)
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
		if unlock.Event != "admin_unlock" || unlock.Actor != "admin" || unlock.IP != "198.51.100.7" || unlock.Member != "bob" ||
			unlock.Details["admin_reason"] != "called the desk" || unlock.Details["was_locked"] != "true" ||
			unlock.Details["methods"] != "totp,sms" {
			t.Errorf("unlock record = %+v", unlock)
		}
		if _, ok := unlock.Details["error"]; ok {
			t.Errorf("an error text reached the trail: %+v", unlock.Details)
		}
		if res, err := tr.Verify(t.Context(), "gw-1"); err != nil || res.Problem != "" || res.Checked != 2 {
			t.Errorf("Verify = %+v, %v", res, err)
		}
	})
}

// An error text stays out of the record whether it is a zap.Error field
// or a string named "error": either may quote an address. The fields
// that say what failed stay.
func TestFromFieldsLeavesErrorTextsOut(t *testing.T) {
	r := FromFields(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), []zap.Field{
		zap.String("event", "admin_import"), zap.String("result", "error"), zap.String("actor", "admin endpoint"),
		zap.String("reason", "invalid"), zap.String("error_class", "backup"),
		zap.String("error", "line 3: bob@example.com: bad record"),
		zap.Error(errors.New("550 <carol@example.com> unknown")),
		zap.NamedError("cause", errors.New("dave@example.com")),
	})
	if r.Event != "admin_import" || r.Result != "error" || r.Actor != "admin endpoint" ||
		r.Details["reason"] != "invalid" || r.Details["error_class"] != "backup" || len(r.Details) != 2 {
		t.Errorf("record = %+v, want the event with reason and error_class only", r)
	}
	for k, v := range r.Details {
		if strings.Contains(v, "@") {
			t.Errorf("details %s = %q: an error text reached the record", k, v)
		}
	}
}

// A full queue drops the record and reports it, without blocking; a
// record added after Close is dropped too, without a panic.
func TestWriterQueueFullDrops(t *testing.T) {
	drops := 0
	w := NewWriter(zap.NewNop(), func() { drops++ })
	for range QueueLen {
		w.Add(Record{Event: "verify"})
	}
	w.Add(Record{Event: "verify"})
	if drops != 1 {
		t.Fatalf("drops = %d, want 1", drops)
	}
	w.Close()
	w.Add(Record{Event: "verify"})
	if drops != 2 {
		t.Fatalf("drops after Close = %d, want 2", drops)
	}
}

// Records queued while the store is down are appended once it is back,
// in order.
func TestWriterWaitsOutAnOutage(t *testing.T) {
	srv := testredis.Start(t)
	proxy := testredis.StartProxy(t, srv.Addr)
	const timeout = 200 * time.Millisecond
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, DialTimeout: timeout, ReadTimeout: timeout,
		WriteTimeout: timeout, PoolTimeout: timeout, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	tr := newTrail(t, &backend{st: redisstore.New(client, "tf:")}, "gw-1")
	core, logs := observer.New(zap.InfoLevel)
	w := NewWriter(zap.New(core), nil)
	proxy.Silence()
	done := make(chan struct{})
	go func() { defer close(done); w.Run(t.Context(), tr) }()
	t.Cleanup(func() { w.Close(); <-done })
	for _, m := range []string{"a", "b", "c"} {
		w.Add(Record{Event: "verify", Member: m})
	}
	// The writer has met the outage before the store comes back.
	for logs.FilterMessageSnippet("store unavailable").Len() == 0 {
		select {
		case <-t.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	proxy.Resume()
	w.Sync(t.Context())
	page, err := tr.Query(t.Context(), Filter{}, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 3 || page.Records[0].Record.Member != "c" || page.Records[2].Record.Member != "a" {
		t.Fatalf("after the outage the trail has %+v", page.Records)
	}
	if logs.FilterMessageSnippet("store back").Len() != 1 {
		t.Error("the writer did not say the store was back")
	}
}

// A backlog goes in as batches; a record the trail refuses is left out
// and logged, and the others of its batch still land, in order.
func TestWriterBatchesSkipRefusedRecords(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "gw-1")
	core, logs := observer.New(zap.InfoLevel)
	w := NewWriter(zap.New(core), nil)
	for i := range 600 {
		r := Record{Event: "verify", Member: strconv.Itoa(i)}
		if i == 300 {
			r.Details = map[string]string{"code": "123456"}
		}
		w.Add(r)
	}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(t.Context(), tr) }()
	t.Cleanup(func() { w.Close(); <-done })
	w.Sync(t.Context())
	all := readAll(t, b.st, "audit:gw-1")
	if len(all) != 599 {
		t.Fatalf("%d entries, want 599", len(all))
	}
	if logs.FilterMessageSnippet("record refused").Len() != 1 {
		t.Errorf("refused record not logged: %v", logs.All())
	}
	if res, err := tr.Verify(t.Context(), "gw-1"); err != nil || res.Problem != "" || res.Checked != 599 {
		t.Errorf("Verify = %+v, %v", res, err)
	}
	page, err := tr.Query(t.Context(), Filter{}, "", 2)
	if err != nil || len(page.Records) != 2 || page.Records[0].Record.Member != "599" || page.Records[1].Record.Member != "598" {
		t.Fatalf("newest records = %+v, %v", page.Records, err)
	}
}

// Past the limit, a key's records in a minute are held back and summed up
// in one audit_suppressed record once the minute is over; other keys and
// the next minute are not affected.
func TestWriterThrottle(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "gw-1")
	w := NewWriter(zap.NewNop(), nil)
	now := time.Date(2026, 12, 1, 9, 0, 10, 0, time.UTC)
	w.Throttle(3, func() time.Time { return now })
	done := make(chan struct{})
	go func() { defer close(done); w.Run(t.Context(), tr) }()
	t.Cleanup(func() { w.Close(); <-done })
	refused := func(member string, at time.Time) Record {
		return Record{Time: at, Event: "csrf_refused", Result: "refused", Member: member, IP: "192.0.2.9"}
	}
	for i := range 50 {
		w.Add(refused("mallory", now.Add(time.Duration(i)*time.Second)))
	}
	w.Add(refused("alice", now))
	w.Add(Record{Time: now, Event: "verify", Result: "failure", Member: "mallory"})
	w.Sync(t.Context())
	if got := len(readAll(t, b.st, "audit:gw-1")); got != 5 {
		t.Fatalf("%d records within the minute, want 3 of mallory's, alice's and the verify", got)
	}
	now = now.Add(time.Minute)
	w.sweep()
	w.Add(refused("mallory", now))
	w.Sync(t.Context())
	page, err := tr.Query(t.Context(), Filter{Member: "mallory"}, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 6 {
		t.Fatalf("mallory's records: %+v", page.Records)
	}
	next, sum := page.Records[0].Record, page.Records[1].Record
	if next.Event != "csrf_refused" || sum.Event != "audit_suppressed" || sum.Result != "refused" || sum.IP != "192.0.2.9" ||
		sum.Details["event"] != "csrf_refused" || sum.Details["held_back"] != "47" ||
		sum.Details["from"] != "2026-12-01T09:00:13Z" || sum.Details["to"] != "2026-12-01T09:00:59Z" {
		t.Fatalf("newest: %+v, then %+v", next, sum)
	}
	if res, err := tr.Verify(t.Context(), "gw-1"); err != nil || res.Problem != "" {
		t.Errorf("Verify = %+v, %v", res, err)
	}
}

// After a reload, a record the old configuration's writer gets once it
// is closed goes to the new writer on the same chain; with none, it is a
// counted drop.
func TestClosedWriterHandsOn(t *testing.T) {
	b := openBolt(t)
	start := func(scope string, onDrop func()) (*Writer, *Trail) {
		tr := newTrail(t, b, "gw-1")
		tr.ShareChain(scope)
		w := NewWriter(zap.NewNop(), onDrop)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(t.Context(), tr) }()
		t.Cleanup(func() { w.Close(); <-done })
		return w, tr
	}
	drops := 0
	scope := t.TempDir() // chains live as long as the process: one of this run's own
	old, _ := start(scope, func() { drops++ })
	old.Add(Record{Event: "verify", Member: "a"})
	old.Sync(t.Context())
	cur, tr := start(scope, nil)
	cur.Sync(t.Context()) // its Run is under way, so it is the chain's writer
	old.Close()
	old.Add(Record{Event: "verify", Member: "late"})
	cur.Sync(t.Context())
	page, err := tr.Query(t.Context(), Filter{}, "", 10)
	if err != nil || len(page.Records) != 2 || page.Records[0].Record.Member != "late" || drops != 0 {
		t.Fatalf("records %+v, %v, drops %d; want the late one appended by the new writer", page.Records, err, drops)
	}
	if res, err := tr.Verify(t.Context(), "gw-1"); err != nil || res.Problem != "" || res.Checked != 2 {
		t.Errorf("Verify = %+v, %v", res, err)
	}
	cur.Close()
	cur.Add(Record{Event: "verify", Member: "later"})
	old.Add(Record{Event: "verify", Member: "later"})
	if drops != 1 {
		t.Errorf("drops with no writer running = %d, want 1 (the old writer's)", drops)
	}
}

// A key that repeats is throttled while more one-off keys than the
// throttle tracks pass in the same minute (many client addresses), even
// when it begins after they filled it: they are forgotten first.
func TestWriterThrottleFlood(t *testing.T) {
	w := NewWriter(zap.NewNop(), nil)
	now := time.Date(2026, 12, 1, 9, 0, 10, 0, time.UTC)
	w.Throttle(3, func() time.Time { return now })
	refused := func(ip string) Record {
		return Record{Time: now, Event: "csrf_refused", Result: "refused", IP: ip}
	}
	admitted := 0
	for i := range 3 * maxThrottleKeys {
		w.admit(refused(fmt.Sprintf("198.51.%d.%d", i/256, i%256)))
		// The repeating address begins once the throttle is full.
		if i >= maxThrottleKeys && i%10 == 0 && w.admit(refused("192.0.2.9")) {
			admitted++
		}
	}
	if admitted != 3 {
		t.Errorf("the repeating address had %d records admitted in the minute among %d one-off ones; want its limit, 3",
			admitted, 3*maxThrottleKeys)
	}
	if n := w.counts.Len(); n > maxThrottleKeys {
		t.Errorf("%d keys tracked, bound %d", n, maxThrottleKeys)
	}
}
