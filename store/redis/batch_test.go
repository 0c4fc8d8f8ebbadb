package redis

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store"
)

// A Redis that lost its scripts (a restart, SCRIPT FLUSH) refuses them by
// SHA; a batch sends those ops again with their source, and each still
// runs exactly once.
func TestBatchAfterScriptFlush(t *testing.T) {
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	s := New(client, "p:")
	ctx := t.Context()
	for round := int64(1); round <= 2; round++ {
		if err := client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		inc, cas, get := store.IncrementOp("n", time.Minute), store.CompareAndSwapOp("k", nil, []byte("v"), 0), store.GetOp("k")
		if err := s.Batch(ctx, inc, cas, get, store.SetOp("s", []byte("x"), 0)); err != nil {
			t.Fatal(err)
		}
		if inc.Count != round || cas.Swapped != (round == 1) {
			t.Fatalf("round %d: count %d, swapped %t", round, inc.Count, cas.Swapped)
		}
	}
	if v, err := client.Get(ctx, "p:n").Result(); err != nil || v != "2" {
		t.Fatalf("counter %q, %v; want 2", v, err)
	}
}

// One batch is one round trip: one pipeline on a standalone Redis, and on
// a Cluster one pipeline per node, sent in parallel.
func TestBatchOneRoundTrip(t *testing.T) {
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	var trips testredis.RoundTrips
	trips.Watch(client)
	s := New(client, "p:")
	ops := []*store.Op{store.GetOp("a"), store.IncrementOp("b", 0), store.CompareAndSwapOp("c", nil, []byte("v"), 0),
		store.SetOp("d", []byte("v"), 0), store.DeleteOp("e"), store.PublishOp("changes", []byte("m"))}
	// A fresh Redis has no scripts: the first batch loads them.
	for range 2 {
		trips.Take()
		if err := s.Batch(t.Context(), ops...); err != nil {
			t.Fatal(err)
		}
	}
	if _, got := trips.Take(); len(got) != 1 || len(got[0].Commands) != len(ops) {
		t.Fatalf("one batch went as %q, want one pipeline of %d commands", got, len(ops))
	}
}

func TestBatchClusterSpreadsByNode(t *testing.T) {
	addrs := testredis.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	var trips testredis.RoundTrips
	trips.Watch(client)
	s := New(client, "p:")
	// Keys in every slot range, so the pipeline goes to every node.
	var ops []*store.Op
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		ops = append(ops, store.IncrementOp(k, 0), store.GetOp(k+"x"))
	}
	for round := int64(1); round <= 3; round++ {
		trips.Take()
		if err := s.Batch(t.Context(), ops...); err != nil {
			t.Fatal(err)
		}
		steps, got := trips.Take()
		if round == 1 {
			continue // a fresh Redis has no scripts: the first batch loads them
		}
		if len(steps) != 1 || len(got) < 2 || testredis.MostPerServer(got) != 1 {
			t.Fatalf("one batch went as %q, to the nodes as %q: want one pipeline, to each of several nodes once", steps, got)
		}
		for i := 0; i < len(ops); i += 2 {
			if ops[i].Count != round {
				t.Fatalf("op %d counted %d, want %d", i, ops[i].Count, round)
			}
		}
	}
}
