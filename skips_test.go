package twofactor

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// skipInstance is an app as Provision and Start leave it for noteSkip
// (the skips' notes, the metrics, a running background), with its
// backend on a store, its audit log and its metrics' registry.
type skipInstance struct {
	app  *App
	b    *flow.Backend
	logs *observer.ObservedLogs
	reg  *prometheus.Registry
}

func newSkipInstance(t *testing.T, st store.Store, now func() time.Time, rules ...string) *skipInstance {
	t.Helper()
	m, reg := registered(t, &scrapedState{})
	kr, err := keyring.New([]byte("skips test key skips test key skips!"))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	e, err := challenge.New(st, kr, challenge.Config{}, now, counted(zap.New(core), m.observe))
	if err != nil {
		t.Fatal(err)
	}
	a := &App{running: &running{}, metrics: m, skips: newSkipNotes()}
	a.bg.start(context.Background())
	t.Cleanup(a.bg.stop)
	for _, r := range rules {
		a.skipRule(r)
	}
	return &skipInstance{app: a, b: &flow.Backend{Engine: e}, logs: logs, reg: reg}
}

// skipEmbedded is one instance on an embedded store whose clock is clk's.
func skipEmbedded(t *testing.T, clk *clock.Fake, rules ...string) (*skipInstance, *embedded.Store) {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "twofactor.db"), embedded.Options{Now: clk.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newSkipInstance(t, st, clk.Now, rules...), st
}

// skip notes a skip of alice's from ip through the rule and network,
// then waits for the background's writes: the handler's call.
func (i *skipInstance) skip(ip string, binding [16]byte, rule, network string, now time.Time) {
	i.app.noteSkip(i.b, challenge.Actor{User: "alice", IP: ip, UserAgent: "Firefox"}, binding, rule, network, true, now)
	i.app.bg.wg.Wait()
}

func (i *skipInstance) events() []observer.LoggedEntry {
	return i.logs.FilterMessage("network_skip").All()
}

func (i *skipInstance) skipsCounted(t *testing.T, rule string) float64 {
	t.Helper()
	return counterValue(t, i.reg, "caddy_two_factor_network_skips_total", map[string]string{"rule": rule})
}

// The key of a skip: the same for the same rule, network, member and
// session; without a session, the same for the client's /24 or /48 and
// UTC day; different when any part differs, also when parts would run
// into each other.
func TestSkipKey(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	life := 12 * time.Hour
	s1, s2 := [16]byte{1}, [16]byte{2}
	key := func(rule, network, user, ip string, binding [16]byte, at time.Time) [16]byte {
		k, _ := skipKey(rule, network, user, ip, binding, at, life)
		return k
	}
	base := key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", s1, now)
	same := map[string][16]byte{
		"another address":    key("/staff/*", "192.0.2.0/24", "alice", "198.51.100.1", s1, now),
		"later in a session": key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", s1, now.Add(5*time.Hour)),
	}
	for name, k := range same {
		if k != base {
			t.Errorf("%s: another key; a session's skip is one", name)
		}
	}
	day := key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", [16]byte{}, now)
	sameDay := map[string][16]byte{
		"the same /24":           key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.200", [16]byte{}, now),
		"the same day, later":    key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", [16]byte{}, now.Add(13*time.Hour+59*time.Minute)),
		"IPv4-mapped":            key("/staff/*", "192.0.2.0/24", "alice", "::ffff:192.0.2.9", [16]byte{}, now),
		"in another time zone":   key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", [16]byte{}, now.In(time.FixedZone("JST", 9*3600))),
		"the same IPv6 /48":      key("/staff/*", "2001:db8::/32", "alice", "2001:db8:1:2::1", [16]byte{}, now),
		"the same IPv6 /48 too ": key("/staff/*", "2001:db8::/32", "alice", "2001:db8:1:ffff::9", [16]byte{}, now),
	}
	if sameDay["the same IPv6 /48"] != sameDay["the same IPv6 /48 too "] {
		t.Error("two addresses of one IPv6 /48: different keys")
	}
	delete(sameDay, "the same IPv6 /48")
	delete(sameDay, "the same IPv6 /48 too ")
	for name, k := range sameDay {
		if k != day {
			t.Errorf("without a session, %s: another key", name)
		}
	}
	differ := map[string][16]byte{
		"another session":      key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", s2, now),
		"without a session":    day,
		"another rule":         key("/office/*", "192.0.2.0/24", "alice", "192.0.2.7", s1, now),
		"another network":      key("/staff/*", "198.51.100.0/24", "alice", "192.0.2.7", s1, now),
		"another member":       key("/staff/*", "192.0.2.0/24", "bob", "192.0.2.7", s1, now),
		"parts run together":   key("/staff/*192.0.2.0/24", "", "alice", "192.0.2.7", s1, now),
		"parts run together2":  key("/staff/*", "192.0.2.0/24a", "lice", "192.0.2.7", s1, now),
		"no session, next /24": key("/staff/*", "192.0.2.0/24", "alice", "192.0.3.7", [16]byte{}, now),
		"no session, next day": key("/staff/*", "192.0.2.0/24", "alice", "192.0.2.7", [16]byte{}, now.Add(14*time.Hour)),
		"no session, bob":      key("/staff/*", "192.0.2.0/24", "bob", "192.0.2.7", [16]byte{}, now),
	}
	seen := map[[16]byte]string{base: "base"}
	for name, k := range differ {
		if other, dup := seen[k]; dup {
			t.Errorf("%s: the same key as %s", name, other)
		}
		seen[k] = name
	}
	if day == base {
		t.Error("with and without a session: the same key")
	}

	// A session's mark lasts the session's life; a day's, to the day's end.
	if _, until := skipKey("r", "n", "alice", "192.0.2.7", s1, now, life); until != now.Add(life).Unix() {
		t.Errorf("a session's mark lapses at %d, want %d", until, now.Add(life).Unix())
	}
	if _, until := skipKey("r", "n", "alice", "192.0.2.7", [16]byte{}, now, life); until != time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("a day's mark lapses at %s, want the next midnight UTC", time.Unix(until, 0).UTC())
	}
}

// Noted again and again, a session's skip is one audit event and one in
// the metric, for the registered rule; its check allocates nothing.
// Another session, another network, a rule not registered and the next
// day are other skips.
func TestNoteSkipOncePerSession(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	inst, _ := skipEmbedded(t, clk, "/staff/* /office/*")
	const rule = "/staff/* /office/*"
	if v := inst.skipsCounted(t, rule); v != 0 {
		t.Fatalf("the registered rule's series before any skip: %v, want 0", v)
	}
	s1 := [16]byte{1}
	for range 5 {
		inst.skip("192.0.2.7", s1, rule, "192.0.2.0/24", clk.Now())
		clk.Advance(time.Minute)
	}
	got := inst.events()
	if len(got) != 1 {
		t.Fatalf("5 requests of one session: %d events, want 1", len(got))
	}
	if f := got[0].ContextMap(); f["result"] != "success" || f["user"] != "alice" || f["ip"] != "192.0.2.7" ||
		f["rule"] != rule || f["network"] != "192.0.2.0/24" || f["enrolled"] != true || f["dedupe"] != nil {
		t.Fatalf("the event's fields: %v", f)
	}
	if v := inst.skipsCounted(t, rule); v != 1 {
		t.Fatalf("network_skips_total{rule=%q} = %v, want 1", rule, v)
	}
	if list, err := inst.b.Engine.RecentActivity(t.Context(), "alice"); err != nil || len(list) != 1 || list[0].Event != "network_skip" {
		t.Fatalf("alice's activity: %+v %v", list, err)
	}
	now := clk.Now()
	act := challenge.Actor{User: "alice", IP: "192.0.2.7", UserAgent: "Firefox"}
	if n := testing.AllocsPerRun(100, func() { inst.app.noteSkip(inst.b, act, s1, rule, "192.0.2.0/24", true, now) }); n != 0 {
		t.Errorf("a session's skip noted already: %v allocations", n)
	}

	inst.skip("192.0.2.7", [16]byte{2}, rule, "192.0.2.0/24", clk.Now())
	inst.skip("192.0.2.7", s1, rule, "2001:db8::/32", clk.Now())
	inst.skip("192.0.2.7", s1, "/elsewhere/*", "192.0.2.0/24", clk.Now())
	if n := len(inst.events()); n != 4 {
		t.Fatalf("another session, network and rule: %d events, want 4", n)
	}
	if v, other := inst.skipsCounted(t, rule), inst.skipsCounted(t, "other"); v != 3 || other != 1 {
		t.Fatalf("network_skips_total: %v for the rule, %v other; want 3 and 1", v, other)
	}

	// Past the session's life, the skip is audited again.
	clk.Advance(defaultSessionLife)
	inst.skip("192.0.2.7", s1, rule, "192.0.2.0/24", clk.Now())
	if n := len(inst.events()); n != 5 {
		t.Fatalf("past the session's life: %d events, want 5", n)
	}
}

// Without a member-site session: once per member, rule, network, client
// range and UTC day.
func TestNoteSkipWithoutSession(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	inst, _ := skipEmbedded(t, clk, "/staff/*")
	none := [16]byte{}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "::ffff:127.0.0.4"} {
		inst.skip(ip, none, "/staff/*", "127.0.0.0/8", clk.Now())
	}
	if n := len(inst.events()); n != 1 {
		t.Fatalf("three addresses of one /24: %d events, want 1", n)
	}
	act := challenge.Actor{User: "alice", IP: "127.0.0.2"}
	now := clk.Now()
	if n := testing.AllocsPerRun(100, func() { inst.app.noteSkip(inst.b, act, none, "/staff/*", "127.0.0.0/8", true, now) }); n != 0 {
		t.Errorf("a skip without a session noted already: %v allocations", n)
	}
	inst.skip("127.0.1.2", none, "/staff/*", "127.0.0.0/8", clk.Now())
	if n := len(inst.events()); n != 2 {
		t.Fatalf("another /24: %d events, want 2", n)
	}
	clk.Set(time.Date(2026, 12, 6, 23, 59, 59, 0, time.UTC))
	inst.skip("127.0.0.2", none, "/staff/*", "127.0.0.0/8", clk.Now())
	if n := len(inst.events()); n != 2 {
		t.Fatalf("later the same day: %d events, want 2", n)
	}
	clk.Advance(time.Second)
	inst.skip("127.0.0.2", none, "/staff/*", "127.0.0.0/8", clk.Now())
	if n := len(inst.events()); n != 3 {
		t.Fatalf("the next day: %d events, want 3", n)
	}
}

// A session's mark lasts the longest session_lifetime the handlers
// told, not the default, when one was told.
func TestSkipMarkLastsTheSessionLifetime(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	inst, st := skipEmbedded(t, clk)
	inst.app.skipLifetime(time.Hour)
	inst.app.skipLifetime(2 * time.Hour)
	inst.app.skipLifetime(30 * time.Minute)
	if d := inst.app.skips.markLife(); d != 2*time.Hour {
		t.Fatalf("mark life %s, want the longest told, 2h", d)
	}
	inst.skip("192.0.2.7", [16]byte{1}, "r", "192.0.2.0/24", clk.Now())
	clk.Advance(2*time.Hour - time.Second)
	// Another instance on the same store sees the mark until it lapses.
	other := newSkipInstance(t, st, clk.Now)
	other.app.skipLifetime(2 * time.Hour)
	other.skip("192.0.2.7", [16]byte{1}, "r", "192.0.2.0/24", clk.Now())
	if n, m := len(inst.events()), len(other.events()); n != 1 || m != 0 {
		t.Fatalf("within the mark's life: %d and %d events, want 1 and 0", n, m)
	}
	// When it lapses, the first instance's note lapses too, and the
	// store takes a new mark: audited again. The other instance noted
	// the session in memory when it found the mark.
	clk.Advance(time.Second)
	inst.skip("192.0.2.7", [16]byte{1}, "r", "192.0.2.0/24", clk.Now())
	other.skip("192.0.2.7", [16]byte{1}, "r", "192.0.2.0/24", clk.Now())
	if n, m := len(inst.events()), len(other.events()); n != 2 || m != 0 {
		t.Fatalf("the mark lapsed: %d and %d events, want 2 and 0", n, m)
	}
}

// Two instances on one Redis: requests of one session on both write one
// event between them.
func TestNoteSkipTwoInstancesOnRedis(t *testing.T) {
	srv := testredis.Start(t)
	var insts [2]*skipInstance
	for i := range insts {
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		t.Cleanup(func() { client.Close() })
		insts[i] = newSkipInstance(t, redis.New(client, "2fa:"), time.Now, "/staff/*")
	}
	now := time.Now()
	for i := range 6 {
		insts[i%2].skip("192.0.2.7", [16]byte{7}, "/staff/*", "192.0.2.0/24", now)
	}
	a, b := len(insts[0].events()), len(insts[1].events())
	if a+b != 1 {
		t.Fatalf("one session over two instances: %d + %d events, want 1", a, b)
	}
	if v := insts[0].skipsCounted(t, "/staff/*") + insts[1].skipsCounted(t, "/staff/*"); v != 1 {
		t.Fatalf("network_skips_total over both: %v, want 1", v)
	}
}

// A store that fails does not lose the event: it is audited with
// dedupe=local, once on this instance.
func TestNoteSkipStoreDown(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	inst, st := skipEmbedded(t, clk, "/staff/*")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		inst.skip("192.0.2.7", [16]byte{1}, "/staff/*", "192.0.2.0/24", clk.Now())
	}
	got := inst.events()
	if len(got) != 1 || got[0].ContextMap()["dedupe"] != "local" {
		t.Fatalf("with the store down: %d events (%v), want one with dedupe=local", len(got), got)
	}
	if v := inst.skipsCounted(t, "/staff/*"); v != 1 {
		t.Fatalf("network_skips_total = %v, want 1", v)
	}
}

// The notes are bounded: more sessions than the bound are forgotten, the
// least used first, instead of growing the map.
func TestSkipNotesBounded(t *testing.T) {
	s := newSkipNotes()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	until := now.Add(time.Hour).Unix()
	for i := range 3 * skipsMax {
		var k [16]byte
		copy(k[:], strconv.Itoa(i))
		if !s.claim(k, until, now) {
			t.Fatalf("key %d claimed already", i)
		}
	}
	if n := s.noted.Len(); n > skipsMax {
		t.Fatalf("%d skips remembered, bound %d", n, skipsMax)
	}
	var k [16]byte
	copy(k[:], "0")
	s.claim(k, until, now)
	if s.claim(k, until, now) {
		t.Fatal("a key just claimed was claimed again")
	}
	if !s.claim(k, until, now.Add(time.Hour)) {
		t.Fatal("a key whose mark lapsed was not claimed again")
	}
}
