package redis

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store/storetest"
)

// The store contract on a real redis-server.
func TestContract(t *testing.T) {
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	runContract(t, client, "t")
}

// runContract runs the store contract on client, each subtest under a key
// prefix of its own so they stay apart in one Redis. Redis keeps time
// itself, so Advance sleeps, a little past the deadline: Redis counts a
// key as live up to and including its expiry millisecond.
func runContract(t *testing.T, client redis.UniversalClient, prefix string) {
	n := 0
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		n++
		return storetest.Harness{
			Store:   New(client, fmt.Sprintf("%s%d:", prefix, n)),
			Advance: func(d time.Duration) { time.Sleep(d + 20*time.Millisecond) },
		}
	})
}

// The same contract on a three-node Redis Cluster: every script touches
// one key, and deletes go key by key, so nothing crosses hash slots.
func TestContractCluster(t *testing.T) {
	addrs := testredis.StartCluster(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("several addresses gave a %T, want a cluster client", client)
	}
	runContract(t, client, "c")
}

// A stream entry the store did not write (no value field) reads as a nil
// Value, so a reader can tell it from an empty record and go on.
func TestLogForeignEntry(t *testing.T) {
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	s := New(client, "p:")
	ctx := t.Context()
	mine, err := s.LogAppend(ctx, "audit", []byte{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := client.XAdd(ctx, &redis.XAddArgs{Stream: "p:\x00log:audit", Values: []any{"other", "x"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.LogRange(ctx, "audit", "", "", 10, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != mine[0].ID || got[0].Value == nil || got[1].ID != foreign || got[1].Value != nil {
		t.Fatalf("LogRange = %+v; want %s with an empty value, then %s with none", got, mine[0].ID, foreign)
	}
}
