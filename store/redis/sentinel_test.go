package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store"
)

func newSentinelClient(t *testing.T, g *testredis.Sentinel) redis.UniversalClient {
	t.Helper()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: g.Addrs, MasterName: g.MasterName})
	t.Cleanup(func() { client.Close() })
	if _, ok := client.(*redis.Client); !ok {
		t.Fatalf("a master name gave a %T, want a failover client", client)
	}
	return client
}

// The store contract through Sentinel: the client asks the sentinels for
// the master and talks to it alone.
func TestContractSentinel(t *testing.T) {
	client := newSentinelClient(t, testredis.StartSentinel(t))
	runContract(t, client, "s")
}

// When the master dies, the same store follows the sentinels to the
// promoted replica, and until then fails closed: every call either errs
// with store.ErrUnavailable or gives the right answer.
func TestSentinelFailover(t *testing.T) {
	g := testredis.StartSentinel(t)
	s := New(newSentinelClient(t, g), "f:")
	ctx := t.Context()

	if err := s.Set(ctx, "k", []byte("before"), 0); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: make sure the replica has the value
	// before the master dies, or its loss would be Redis's doing, not the
	// store's. Read it on the replica itself rather than WAIT through the
	// pool, which may run WAIT on a connection that wrote nothing.
	replica := redis.NewClient(&redis.Options{Addr: g.Replica.Addr})
	t.Cleanup(func() { replica.Close() })
	for i := 0; ; i++ {
		v, err := replica.Get(ctx, "f:k").Result()
		if err == nil && v == "before" {
			break
		}
		if i == 100 {
			t.Fatalf("the replica did not get the value: %q, %v", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	g.Master.Stop()
	killed := time.Now()
	deadline := killed.Add(30 * time.Second)
	var read time.Duration
	failures := 0
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within %s of the master's death (%d failed calls)", time.Since(killed), failures)
		}
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var err error
		if read == 0 {
			var v []byte
			if v, err = s.Get(callCtx, "k"); err == nil {
				if string(v) != "before" {
					t.Fatalf("Get during failover = %q, want %q", v, "before")
				}
				read = time.Since(killed)
			}
		}
		if read != 0 {
			var swapped bool
			if swapped, err = s.CompareAndSwap(callCtx, "k", []byte("before"), []byte("after"), 0); err == nil {
				if !swapped {
					t.Fatal("CompareAndSwap during failover did not swap a value that matched")
				}
				cancel()
				break
			}
		}
		cancel()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("a call during failover returned %v, want store.ErrUnavailable", err)
		}
		failures++
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("master killed: Get answered again after %s, CompareAndSwap after %s; failed calls meanwhile: %d",
		read.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), failures)

	// The write went to the promoted replica.
	if v, err := replica.Get(ctx, "f:k").Result(); err != nil || v != "after" {
		t.Fatalf("on the promoted replica: %q, %v; want %q", v, err, "after")
	}
}
