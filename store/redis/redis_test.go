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
