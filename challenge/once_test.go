package challenge

import (
	"bytes"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// onceInstance is one engine of a pair sharing a store, with its own
// audit log.
type onceInstance struct {
	e    *Engine
	logs *observer.ObservedLogs
}

// onceEvents are the network_skip events inst audited.
func (i onceInstance) events() []observer.LoggedEntry {
	return i.logs.FilterMessage("network_skip").All()
}

// onceInstancesOn are two engines, as two gateways would have, each with
// its own client on the Redis reached by client(), and a fake clock.
func onceInstancesOn(t *testing.T, client func() goredis.UniversalClient) [2]onceInstance {
	t.Helper()
	clk := clock.NewFake(time.Now())
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	var out [2]onceInstance
	for i := range out {
		c := client()
		t.Cleanup(func() { c.Close() })
		core, logs := observer.New(zap.InfoLevel)
		e, err := New(redis.New(c, "2fa:"), kr, Config{}, clk.Now, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = onceInstance{e, logs}
	}
	return out
}

// skipOnce audits a network skip for key, as the Caddy layer does.
func skipOnce(e *Engine, key [16]byte, ttl time.Duration) bool {
	a := Actor{User: "alice", IP: "192.0.2.7", UserAgent: "Firefox"}
	return e.AuditOnce(ctx, a, key, ttl, "network_skip", "success",
		zap.String("rule", "/staff/*"), zap.String("network", "192.0.2.0/24"), zap.Bool("enrolled", true))
}

// checkOnce runs the calls every store must answer the same: the first
// call audits with its fields and lands in the member's activity, the
// second is silent on either instance, another occasion audits.
func checkOnce(t *testing.T, pair [2]onceInstance) {
	t.Helper()
	a, b := pair[0], pair[1]
	key := [16]byte{1, 2, 3}
	if !skipOnce(a.e, key, time.Hour) {
		t.Fatal("the first skip was not audited")
	}
	got := a.events()
	if len(got) != 1 {
		t.Fatalf("%d events, want 1", len(got))
	}
	f := got[0].ContextMap()
	if f["result"] != "success" || f["user"] != "alice" || f["rule"] != "/staff/*" || f["network"] != "192.0.2.0/24" ||
		f["enrolled"] != true || f["dedupe"] != nil {
		t.Fatalf("event fields %v", f)
	}
	if list, err := a.e.RecentActivity(ctx, "alice"); err != nil || len(list) != 1 || list[0].Event != "network_skip" ||
		list[0].IP != "192.0.2.7" {
		t.Fatalf("activity %+v %v, want the skip", list, err)
	}
	if skipOnce(a.e, key, time.Hour) || skipOnce(b.e, key, time.Hour) {
		t.Fatal("the same occasion audited again")
	}
	if n, m := len(a.events()), len(b.events()); n != 1 || m != 0 {
		t.Fatalf("after repeats: %d and %d events, want 1 and 0", n, m)
	}
	if !skipOnce(b.e, [16]byte{1, 2, 4}, time.Hour) || len(b.events()) != 1 {
		t.Fatal("another occasion, on the other instance, was not audited")
	}
}

// On the embedded store: once per occasion within the ttl, again after
// it; a store that fails still audits, marked dedupe=local.
func TestAuditOnceEmbedded(t *testing.T) {
	f := newFixture(t, Config{})
	first := onceInstance{f.e, f.audit}
	second := f.engine(Config{}, testKey)
	checkOnce(t, [2]onceInstance{first, {second, f.audit}})

	key := [16]byte{9}
	if !skipOnce(f.e, key, time.Hour) {
		t.Fatal("first")
	}
	f.clk.Advance(time.Hour - time.Second)
	if skipOnce(f.e, key, time.Hour) {
		t.Fatal("audited again within the ttl")
	}
	f.clk.Advance(time.Second)
	if !skipOnce(f.e, key, time.Hour) {
		t.Fatal("not audited again once the ttl passed")
	}
	// A ttl of zero would be a mark for ever: it lasts a second.
	if !skipOnce(f.e, [16]byte{10}, 0) {
		t.Fatal("ttl 0: first")
	}
	f.clk.Advance(time.Second)
	if !skipOnce(f.e, [16]byte{10}, 0) {
		t.Fatal("ttl 0: the mark outlived a second")
	}

	before := len(first.events())
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	if !skipOnce(f.e, [16]byte{11}, time.Hour) {
		t.Fatal("a store error lost the event")
	}
	got := first.events()
	if len(got) != before+1 || got[len(got)-1].ContextMap()["dedupe"] != "local" {
		t.Fatalf("on a store error: %d new events, last %v; want one with dedupe=local", len(got)-before, got[len(got)-1].ContextMap())
	}
}

// On Redis, two instances write one event between them; the mark is in
// the member's hash slot with the ttl; with Redis gone, each audits.
func TestAuditOnceRedis(t *testing.T) {
	srv := testredis.Start(t)
	dial := func() goredis.UniversalClient {
		return goredis.NewClient(&goredis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	}
	pair := onceInstancesOn(t, dial)
	checkOnce(t, pair)

	raw := dial()
	defer raw.Close()
	k := "2fa:" + onceKey("alice", [16]byte{1, 2, 3})
	if ttl, err := raw.PTTL(ctx, k).Result(); err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("the mark %s: ttl %v %v, want about an hour", k, ttl, err)
	}
	if !strings.Contains(k, tag("alice")) {
		t.Fatalf("the mark %s is not in alice's hash slot %s", k, tag("alice"))
	}

	// Racing: ten calls on each instance at once, one event.
	key := [16]byte{5}
	won := make(chan bool, 20)
	for i := range 20 {
		go func() { won <- skipOnce(pair[i%2].e, key, time.Hour) }()
	}
	n := 0
	for range 20 {
		if <-won {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("20 racing calls on two instances audited %d times, want 1", n)
	}

	srv.Stop()
	for _, inst := range pair {
		before := len(inst.events())
		if !skipOnce(inst.e, key, time.Hour) {
			t.Fatal("with Redis down, the event was lost")
		}
		got := inst.events()
		if len(got) != before+1 || got[len(got)-1].ContextMap()["dedupe"] != "local" {
			t.Fatalf("with Redis down: %d new events, want one with dedupe=local", len(got)-before)
		}
	}
}

// On a Cluster the mark goes to the member's slot, so the only-if-absent
// write is one command on one node.
func TestAuditOnceCluster(t *testing.T) {
	addrs := testredis.StartCluster(t)
	checkOnce(t, onceInstancesOn(t, func() goredis.UniversalClient {
		return goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	}))
}

// The marks are not members' records: an export leaves them out, and an
// import into a store holding only marks takes it for empty.
func TestAuditOnceMarksStayOutOfBackups(t *testing.T) {
	x := exportFixture(t)
	for i := range 3 {
		if !skipOnce(x.src.e, [16]byte{byte(i)}, time.Hour) {
			t.Fatal("not audited")
		}
	}
	if !markIn(t, x.src) {
		t.Fatal("no once: key in the source store")
	}
	var buf bytes.Buffer
	res, err := x.src.e.Export(ctx, &buf, "admin endpoint", "with marks")
	if err != nil {
		t.Fatal(err)
	}
	if want := (BackupCounts{Users: 1, Devices: 2, Activity: 1, Seen: 2}); res.BackupCounts != want {
		t.Fatalf("export with marks: %+v, want %+v", res.BackupCounts, want)
	}
	if strings.Contains(buf.String(), oncePrefix) || strings.Contains(buf.String(), `"kind":"once`) {
		t.Fatal("the backup holds a mark")
	}

	dst := x.target(t)
	if !skipOnce(dst.e, [16]byte{42}, time.Hour) || !markIn(t, dst) {
		t.Fatal("no mark in the target")
	}
	if _, err := dst.e.Import(ctx, bytes.NewReader(buf.Bytes()), ImportOptions{Actor: "admin endpoint", Reason: "restore"}); err != nil {
		t.Fatalf("import into a store holding only a mark: %v", err)
	}
	// The mark is still there, and the occasion still audited.
	if skipOnce(dst.e, [16]byte{42}, time.Hour) {
		t.Fatal("the import dropped the target's mark")
	}
}

// markIn reports whether f's store holds a once: key.
func markIn(t *testing.T, f *fixture) bool {
	t.Helper()
	found := false
	err := f.st.ScanKeys(ctx, oncePrefix, func(keys []string) error {
		found = found || len(keys) > 0
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
