package challenge

import (
	"encoding/json"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// confirmedNow waits until e's lease is confirmed by a beat sent at the
// fake clock's current reading or later: every notice the store ran
// before that has then reached e. It is the test's synchronisation
// point; beats go every beatEvery.
func confirmedNow(t *testing.T, e *Engine, clk *clock.Fake) {
	t.Helper()
	l := e.users.lease
	if l == nil {
		t.Fatal("no lease on a store whose notices arrive in order")
	}
	want := l.at(clk.Now())
	deadline := time.Now().Add(5 * time.Second)
	for l.confirmed.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("no beat came back within 5s (confirmed %d, want %d)", l.confirmed.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// plant writes a record for alice straight into Redis, with no notice: a
// copy that is still used afterwards was not read again.
func plant(t *testing.T, e *Engine, u *User) {
	t.Helper()
	raw, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Set(ctx, userKey(u.ID), raw, 0); err != nil {
		t.Fatal(err)
	}
}

func mustState(t *testing.T, e *Engine, id string) *User {
	t.Helper()
	u, err := e.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// While B's beats come back, its copy of a record is used past the TTL
// without a read (the store's record, changed behind its back without a
// notice, is not seen), until leaseMaxAge. A change made on A with its
// notice reaches B before B's next beat confirms the lease.
func TestLeaseKeepsCopiesWhileBeatsReturn(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	_, u := enrolOn(t, a, clk, alice)
	if got := mustState(t, b, "alice"); got.Rev != u.Rev {
		t.Fatalf("B read rev %d, want %d", got.Rev, u.Rev)
	}
	planted := *u
	planted.Rev += 10
	planted.SessionsAfter = 1
	plant(t, a, &planted)

	for range 3 {
		clk.Advance(b.cfg.CacheTTL + time.Second)
		confirmedNow(t, b, clk)
		if got := mustState(t, b, "alice"); got.Rev != u.Rev {
			t.Fatalf("B read the store (rev %d) although its lease was confirmed", got.Rev)
		}
	}

	// A change with its notice: by the time B's next beat comes back, B
	// has it.
	if _, err := a.RemoveMethod(ctx, alice, MethodTOTP, true); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Millisecond)
	confirmedNow(t, b, clk)
	got := mustState(t, b, "alice")
	if got.Enrolled() || got.Rev != planted.Rev+1 {
		t.Fatalf("B after A's change and a confirmed beat: rev %d enrolled %v", got.Rev, got.Enrolled())
	}

	// Nothing is kept past leaseMaxAge, leased or not.
	planted2 := *got
	planted2.Rev += 10
	plant(t, a, &planted2)
	clk.Advance(leaseMaxAge)
	confirmedNow(t, b, clk)
	if got := mustState(t, b, "alice"); got.Rev != planted2.Rev {
		t.Fatalf("B kept a copy past %s: rev %d", leaseMaxAge, got.Rev)
	}
}

// With Redis gone, no beat comes back: a copy is used no longer than the
// TTL, and then the request fails rather than trust it. When Redis is
// back, the copies from before are forgotten (notices were lost).
func TestLeaseLapsesWithoutBeats(t *testing.T) {
	port := testnet.FreePort(t)
	srv := testredis.StartAt(t, port)
	a, b, clk := twoInstancesOn(t, srv.Addr, Config{})
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	enrolOn(t, a, clk, alice)
	mustState(t, b, "alice")
	clk.Advance(b.cfg.CacheTTL)
	confirmedNow(t, b, clk)
	mustState(t, b, "alice")

	srv.Stop()
	clk.Advance(b.cfg.CacheTTL)
	if got, err := b.State(ctx, "alice"); err == nil {
		t.Fatalf("B used its copy (rev %d) with no beat back for %s", got.Rev, b.cfg.CacheTTL)
	}

	srv = testredis.StartAt(t, port) // empty: alice's record is gone
	_ = srv
	clk.Advance(time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := b.State(ctx, "alice")
		if err == nil && got.Rev == 0 {
			break // read afresh from the new server
		}
		if err == nil && time.Now().After(deadline) {
			t.Fatalf("B still uses its copy from before Redis restarted: rev %d", got.Rev)
		}
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("B after Redis came back: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// On a Cluster, notices may be lost between nodes: there is no lease,
// and copies are read again after the TTL even while notices flow.
func TestNoLeaseOnCluster(t *testing.T) {
	addrs := testredis.StartCluster(t)
	clk := clock.NewFake(time.Now())
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	st := redis.New(client, "2fa:")
	st.Ordered = true // lease_records, ignored on a Cluster
	e, err := New(st, kr, Config{}, clk.Now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if e.users.lease != nil {
		t.Fatal("a lease on a Cluster")
	}
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	_, u := enrolOn(t, e, clk, alice)
	mustState(t, e, "alice")
	planted := *u
	planted.Rev += 10
	plant(t, e, &planted)
	clk.Advance(e.cfg.CacheTTL)
	if got := mustState(t, e, "alice"); got.Rev != planted.Rev {
		t.Fatalf("copy used past the TTL on a Cluster: rev %d", got.Rev)
	}
}

// A copy whose read took longer than the TTL is kept for the TTL alone:
// a notice it had to yield to may have come and gone while it was on its
// way.
func TestSlowReadIsNotLeased(t *testing.T) {
	clk := clock.NewFake(time.Now())
	ttl := 2 * time.Second
	c := newUserCache(MinCacheSize, ttl, true, clk.Now)
	c.restarted(clk.Now())
	c.lease.confirmed.Store(c.lease.at(clk.Now()) + int64(time.Hour)) // confirmed throughout
	readAt := clk.Now()
	clk.Advance(ttl)
	c.put(&User{ID: "slow", Rev: 1}, readAt, ttl, false)
	if _, ok := c.get("slow", clk.Now(), ttl); ok {
		t.Fatal("a read that took the whole TTL was used")
	}
	readAt = clk.Now()
	clk.Advance(ttl - time.Millisecond)
	c.put(&User{ID: "quick", Rev: 1}, readAt, ttl, false)
	clk.Advance(time.Minute)
	if _, ok := c.get("quick", clk.Now(), ttl); !ok {
		t.Fatal("a read within the TTL was not leased")
	}
	// Read before the subscription started: notices may have been lost.
	c.restarted(clk.Now().Add(time.Millisecond))
	c.lease.confirmed.Store(c.lease.at(clk.Now()) + int64(time.Hour))
	c.put(&User{ID: "before", Rev: 1}, clk.Now(), ttl, false)
	clk.Advance(ttl)
	if _, ok := c.get("before", clk.Now(), ttl); ok {
		t.Fatal("a read from before the subscription was leased")
	}
}

// beatReturned waits until one of e's beats sent at the fake clock's
// current reading or later has come back, confirmed or not.
func beatReturned(t *testing.T, e *Engine, clk *clock.Fake) {
	t.Helper()
	l := e.users.lease
	want := l.at(clk.Now())
	deadline := time.Now().Add(5 * time.Second)
	for !beatBack(l, want) {
		if time.Now().After(deadline) {
			t.Fatal("no beat came back within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// beatBack reports whether a beat sent at or after at has come back.
func beatBack(l *lease, at int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.beats {
		if b.seq != 0 && b.at >= at && b.received {
			return true
		}
	}
	return false
}

// Without lease_records, one Redis server gets no lease either: the
// operator vouches for the ordering.
func TestNoLeaseUnlessAsked(t *testing.T) {
	srv := testredis.Start(t)
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	e, err := New(redis.New(client, "2fa:"), kr, Config{}, time.Now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if e.users.lease != nil {
		t.Fatal("a lease without lease_records")
	}
}

// Instance A's Redis user may not publish on the channel, B's may: A's
// writes succeed without their notices and mark the store, and while the
// mark stands B's beats confirm nothing, so B reads the record again
// after the TTL.
func TestLeaseStopsAfterAnUnannouncedWrite(t *testing.T) {
	srv := testredis.Start(t)
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	for _, c := range [][]any{
		{"acl", "setuser", "a", "on", ">pa", "~*", "resetchannels", "+@all"},
		{"acl", "setuser", "b", "on", ">pb", "~*", "allchannels", "+@all"},
	} {
		if err := admin.Do(ctx, c...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	clk := clock.NewFake(time.Now().Truncate(30 * time.Second).Add(time.Second))
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	open := func(user, pw string) *Engine {
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: user, Password: pw})
		t.Cleanup(func() { client.Close() })
		st := redis.New(client, "2fa:")
		st.Ordered = true
		e, err := New(st, kr, Config{}, clk.Now, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := open("a", "pa"), open("b", "pb")
	followAll(t, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	enrolOn(t, a, clk, alice)
	if !mustState(t, b, "alice").Enrolled() {
		t.Fatal("B: not enrolled")
	}
	if _, err := a.RemoveMethod(ctx, alice, MethodTOTP, true); err != nil {
		t.Fatal(err)
	}
	ttl, err := admin.PTTL(ctx, "2fa:"+store.Unannounced).Result()
	if err != nil || ttl <= leaseMaxAge {
		t.Fatalf("the store's mark of an unannounced write: ttl %s, %v; want more than %s", ttl, err, leaseMaxAge)
	}
	clk.Advance(b.cfg.CacheTTL)
	beatReturned(t, b, clk)
	if got := mustState(t, b, "alice"); got.Enrolled() {
		t.Fatalf("B trusts its copy (rev %d) past the TTL after an unannounced write", got.Rev)
	}
}

// The mark of an unannounced write outlives every copy read before it.
func TestUnannouncedOutlivesCopies(t *testing.T) {
	if store.UnannouncedFor <= leaseMaxAge+time.Minute {
		t.Fatalf("store.UnannouncedFor %s, leaseMaxAge %s", store.UnannouncedFor, leaseMaxAge)
	}
}

// A store emptied and restored behind the engine's back while its
// subscription stands: the beat that finds the store's identity gone
// forgets the copies, so none read before comes back under a lease.
func TestLeaseForgetsAStoreReplaced(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	if _, err := b.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	_, u := enrolOn(t, a, clk, alice)
	mustState(t, b, "alice")
	clk.Advance(b.cfg.CacheTTL)
	confirmedNow(t, b, clk)

	client := b.store.(*redis.Store).Client()
	check, err := client.Get(ctx, "2fa:"+keyCheckKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := b.users.c.Get("alice"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B kept its copies of a store that lost its identity")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Nor does a beat confirm anything while the identity is missing.
	before := b.users.lease.confirmed.Load()
	clk.Advance(time.Millisecond)
	beatReturned(t, b, clk)
	if after := b.users.lease.confirmed.Load(); after > before {
		t.Fatalf("a beat was confirmed by a store without its identity: %d → %d", before, after)
	}
	// Restored with the same identity, alice as a backup has her.
	if err := client.Set(ctx, "2fa:"+keyCheckKey, check, 0).Err(); err != nil {
		t.Fatal(err)
	}
	plant(t, a, &User{ID: "alice", Rev: u.Rev, Created: u.Created})
	clk.Advance(b.cfg.CacheTTL)
	confirmedNow(t, b, clk)
	if got := mustState(t, b, "alice"); got.Enrolled() {
		t.Fatalf("B uses a copy from before the store was emptied (rev %d)", got.Rev)
	}
}

// keep puts a record read earlier with the time its read began: a copy
// read before the subscription restarted is not leased.
func TestKeepLeasesFromTheRead(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	enrolOn(t, a, clk, alice)
	readAt := clk.Now()
	read, _, err := b.loadUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Millisecond)
	if _, err := a.RemoveMethod(ctx, alice, MethodTOTP, true); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Millisecond)
	b.users.restarted(clk.Now()) // the notice lost with the old connection
	clk.Advance(time.Millisecond)
	b.keep(read, readAt)
	clk.Advance(b.cfg.CacheTTL)
	confirmedNow(t, b, clk)
	if got := mustState(t, b, "alice"); got.Enrolled() {
		t.Fatalf("B leased a copy read before its subscription restarted (rev %d)", got.Rev)
	}
}
