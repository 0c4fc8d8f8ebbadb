package challenge

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// Two engines, as two Caddy instances would have, on one real Redis: each
// with its own client and its own user cache.
func twoInstances(t *testing.T, cfg Config) (*Engine, *Engine, *clock.Fake) {
	t.Helper()
	return twoInstancesOn(t, testredis.Start(t).Addr, cfg)
}

// twoInstancesOn is twoInstances on the Redis server at addr.
func twoInstancesOn(t *testing.T, addr string, cfg Config) (*Engine, *Engine, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Now().Truncate(30 * time.Second).Add(time.Second))
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	var engines [2]*Engine
	for i := range engines {
		client := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { client.Close() })
		st := redis.New(client, "2fa:")
		st.Ordered = true // one server, reached directly (lease_records)
		if engines[i], err = New(st, kr, cfg, clk.Now, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	}
	return engines[0], engines[1], clk
}

// enrolOn enrols the app for the actor through e and returns its secret
// and the new record.
func enrolOn(t *testing.T, e *Engine, clk *clock.Fake, a Actor) (string, *User) {
	t.Helper()
	f := &fixture{t: t, clk: clk}
	en, err := e.StartTOTP(ctx, a, "Example", a.User, "flow")
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.ConfirmTOTP(ctx, a, "flow", f.code(en.Secret, 0))
	if err != nil {
		t.Fatal(err)
	}
	return en.Secret, u
}

func TestTwoInstancesShareEverything(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	f := &fixture{t: t, clk: clk}

	// Enrol on A, verify on B.
	secret, _ := enrolOn(t, a, clk, alice)
	clk.Advance(30 * time.Second)
	if _, err := b.VerifyTOTP(ctx, alice, f.code(secret, 0)); err != nil {
		t.Fatalf("verify on B: %v", err)
	}
	// The same code on A is a replay.
	if _, err := a.VerifyTOTP(ctx, alice, f.code(secret, 0)); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("replay on A: %v", err)
	}

	// Wrong codes on A and B count together: with the replay above, five
	// in all lock the account.
	for i := range 3 {
		e := a
		if i%2 == 1 {
			e = b
		}
		if _, err := e.VerifyTOTP(ctx, alice, "000000"); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	if _, err := b.VerifyTOTP(ctx, alice, "000000"); !isLocked(err) {
		t.Fatalf("fifth wrong code across A and B: %v", err)
	}
	clk.Advance(30 * time.Second)
	if _, err := a.VerifyTOTP(ctx, alice, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("right code on A while locked by B: %v", err)
	}
}

// CC-2 across instances: the same emailed code submitted at once to A
// and B succeeds exactly once.
func TestTwoInstancesOneCodeOnce(t *testing.T) {
	a, b, _ := twoInstances(t, Config{MaxFailures: 50, MaxAddressFailures: -1, SendsPerUser: 100, SendsPerDestination: 100, SendsPerAddress: -1})
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	var last string
	var mu sync.Mutex
	capture := func(_ context.Context, d Delivery) error { mu.Lock(); last = d.Code; mu.Unlock(); return nil }
	if _, err := a.SendCode(ctx, alice, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "f", To: "alice@example.com"}, capture); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ConfirmCode(ctx, alice, "f", last); err != nil {
		t.Fatal(err)
	}
	for round := range 30 {
		// The cooldown is given back when a code is used, so no wait.
		if _, err := a.SendCode(ctx, alice, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "f"}, capture); err != nil {
			t.Fatalf("round %d: send: %v", round, err)
		}
		var wg sync.WaitGroup
		gate := make(chan struct{})
		results := make([]error, 10)
		for i := range results {
			e := a
			if i%2 == 1 {
				e = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				_, _, results[i] = e.VerifyCode(ctx, alice, "f", last)
			}()
		}
		close(gate)
		wg.Wait()
		ok := 0
		for _, err := range results {
			if err == nil {
				ok++
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d successes across two instances: %v", round, ok, results)
		}
	}
}

// followAll starts FollowChanges on the engines and waits until Redis
// counts their subscriptions, so no notice is sent before they listen.
func followAll(t *testing.T, engines ...*Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, e := range engines {
		wg.Add(1)
		go func() { defer wg.Done(); e.FollowChanges(ctx) }()
	}
	client := engines[0].store.(*redis.Store).Client()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := client.PubSubNumSub(ctx, "2fa:"+changesChannel).Result()
		if err == nil && n["2fa:"+changesChannel] == int64(len(engines)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions: %v %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RD/revocation everywhere: a method disabled, a device forgotten or a
// session ended on A reaches B's per-request check as soon as the notice
// arrives. The clock stands still, so B's copy never expires by age: only
// the notice can tell B.
func TestTwoInstancesRevocation(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	_, u := enrolOn(t, a, clk, alice)
	if _, err := a.GenerateRecoveryCodes(ctx, alice); err != nil {
		t.Fatal(err)
	}
	device := [16]byte{1}
	if _, err := a.RememberDevice(ctx, alice, device, time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	// waitOnB polls B's per-request view until ok, and returns how long
	// the change took to arrive.
	waitOnB := func(what string, ok func(*User) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			seen, err := b.State(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if ok(seen) {
				return time.Since(start)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: B still has the old record after 5s", what)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// B has the record in memory before each change.
	if seen, _ := b.State(ctx, "alice"); seen.Devices[hex.EncodeToString(device[:])] == 0 {
		t.Fatalf("B's view before: %+v", seen)
	}
	if err := a.ForgetDevice(ctx, alice, device); err != nil {
		t.Fatal(err)
	}
	forgot := waitOnB("device forgotten", func(u *User) bool { return len(u.Devices) == 0 })

	sid := [16]byte{2}
	if err := a.RevokeSession(ctx, alice, sid, clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ended := waitOnB("session ended", func(u *User) bool { return u.RevokedSessions[hex.EncodeToString(sid[:])] != 0 })

	if _, err := a.RemoveMethod(ctx, alice, MethodTOTP, true); err != nil {
		t.Fatal(err)
	}
	removed := waitOnB("method disabled", func(u *User) bool { return !u.Enrolled() })
	t.Logf("propagation A→B: device forgotten %s, session ended %s, method disabled %s", forgot, ended, removed)
	if seen, _ := b.State(ctx, "alice"); seen.Epoch == u.Epoch {
		t.Fatalf("epoch on B unchanged: %d", seen.Epoch)
	}
}

// Without notices (a subscription down), a change still reaches B once
// its copy of the record expires: the time to live is the backstop.
func TestTwoInstancesRevocationWithoutNotices(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	_, u := enrolOn(t, a, clk, alice)
	if _, err := a.GenerateRecoveryCodes(ctx, alice); err != nil {
		t.Fatal(err)
	}
	seen, err := b.State(ctx, "alice")
	if err != nil || seen.Epoch != u.Epoch {
		t.Fatalf("B's view: %v %+v", err, seen)
	}
	if _, err := a.RemoveMethod(ctx, alice, MethodTOTP, true); err != nil {
		t.Fatal(err)
	}
	if seen, _ := b.State(ctx, "alice"); seen.Epoch != u.Epoch {
		t.Fatal("B read the store although its copy was fresh")
	}
	clk.Advance(b.cfg.CacheTTL)
	seen, err = b.State(ctx, "alice")
	if err != nil || seen.Enrolled() || seen.Epoch == u.Epoch {
		t.Fatalf("B after %s: %v %+v", b.cfg.CacheTTL, err, seen)
	}
}
