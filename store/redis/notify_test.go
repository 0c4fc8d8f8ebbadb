package redis

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store"
)

// Notices reach a subscriber, and after Redis restarts the subscription
// comes back by itself, reporting the interruption (notices sent while it
// was down are lost, so the subscriber must drop what it kept).
func TestSubscribeSurvivesRestart(t *testing.T) {
	port := testnet.FreePort(t)
	srv := testredis.StartAt(t, port)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	st := New(client, "n:")

	var mu sync.Mutex
	var got []string
	restarts := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Subscribe(ctx, "changes", func(m []byte) {
			mu.Lock()
			got = append(got, string(m))
			mu.Unlock()
		}, func() {
			mu.Lock()
			restarts++
			mu.Unlock()
		})
	}()
	// publishUntil publishes msg until the subscriber has it: a notice
	// sent before the subscription is made is lost by design.
	publishUntil := func(msg string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_ = st.Publish(context.Background(), "changes", []byte(msg))
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			n := len(got)
			last := ""
			if n > 0 {
				last = got[n-1]
			}
			mu.Unlock()
			if last == msg {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q never arrived; got %q", msg, got)
			}
		}
	}
	publishUntil("1 alice")
	mu.Lock()
	before := restarts
	mu.Unlock()
	if before < 1 {
		t.Fatal("the first subscription was not reported")
	}

	srv.Stop()
	if err := st.Publish(context.Background(), "changes", []byte("lost")); err == nil {
		t.Fatal("publishing with Redis down succeeded")
	}
	testredis.StartAt(t, port)
	publishUntil("2 alice")
	mu.Lock()
	after := restarts
	mu.Unlock()
	if after <= before {
		t.Fatalf("the interruption was not reported: %d restarts before, %d after", before, after)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return when its context ended")
	}
}

// A compare-and-swap that announces publishes its notice when it swaps,
// and only then, in its own step: a subscriber gets the notice before
// anything the server ran after the swap (InOrder), here another
// client's publish.
func TestAnnouncedSwap(t *testing.T) {
	srv := testredis.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close(); other.Close() })
	st := New(client, "n:")
	if st.InOrder() {
		t.Fatal("notices taken to be in order without Ordered")
	}
	st.Ordered = true
	if !st.InOrder() {
		t.Fatal("one server, Ordered: notices not in order")
	}
	ps := other.Subscribe(t.Context(), "n:changes")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(t.Context()); err != nil { // the subscription
		t.Fatal(err)
	}
	swap := func(old, value []byte, msg string) bool {
		t.Helper()
		op := store.CompareAndSwapOp("k", old, value, 0).Announce("changes", []byte(msg))
		if err := st.Batch(t.Context(), op); err != nil {
			t.Fatal(err)
		}
		return op.Swapped
	}
	if !swap(nil, []byte("1"), "swapped 1") {
		t.Fatal("the first swap did not swap")
	}
	if swap(nil, []byte("2"), "lost") {
		t.Fatal("a swap against a stale value swapped")
	}
	if !swap([]byte("1"), nil, "deleted") {
		t.Fatal("the delete did not swap")
	}
	if err := other.Publish(t.Context(), "n:changes", "after").Err(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		m, err := ps.ReceiveMessage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Payload)
	}
	if want := []string{"swapped 1", "deleted", "after"}; !slices.Equal(got, want) {
		t.Fatalf("notices %q, want %q", got, want)
	}
}

// A Cluster's notices are not in order; an announced swap still reaches
// a subscriber on another node.
func TestAnnouncedSwapOnCluster(t *testing.T) {
	addrs := testredis.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	st := New(client, "n:")
	st.Ordered = true // as lease_records asks: ignored on a Cluster
	if st.InOrder() {
		t.Fatal("a Cluster's notices taken to be in order")
	}
	got := make(chan string, 10)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	subscribed := make(chan struct{}, 10)
	go st.Subscribe(ctx, "changes", func(m []byte) { got <- string(m) }, func() { subscribed <- struct{}{} })
	<-subscribed
	for i := range 20 { // keys on every node
		key := "k" + strconv.Itoa(i)
		op := store.CompareAndSwapOp(key, nil, []byte("v"), 0).Announce("changes", []byte(key))
		if err := st.Batch(t.Context(), op); err != nil || !op.Swapped {
			t.Fatalf("%s: %v swapped %v", key, err, op.Swapped)
		}
		select {
		case m := <-got:
			if m != key {
				t.Fatalf("notice %q, want %q", m, key)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no notice for %s", key)
		}
	}
}

// A user refused the channel still swaps; on an in-order store the swap
// marks the store (store.Unannounced), elsewhere it does not.
func TestAnnouncedSwapRefusedChannel(t *testing.T) {
	srv := testredis.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	if err := admin.Do(t.Context(), "acl", "setuser", "gw", "on", ">pw", "~*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "gw", Password: "pw"})
	t.Cleanup(func() { client.Close() })
	for _, ordered := range []bool{false, true} {
		st := New(client, "n:")
		st.Ordered = ordered
		key := "k" + strconv.FormatBool(ordered)
		op := store.CompareAndSwapOp(key, nil, []byte("v"), 0).Announce("changes", []byte("m"))
		if err := st.Batch(t.Context(), op); err != nil || !op.Swapped {
			t.Fatalf("ordered %t: %v, swapped %t", ordered, err, op.Swapped)
		}
		ttl, err := admin.PTTL(t.Context(), "n:"+store.Unannounced).Result()
		if err != nil {
			t.Fatal(err)
		}
		if marked := ttl > 0; marked != ordered {
			t.Fatalf("ordered %t: marked %t (ttl %s)", ordered, marked, ttl)
		}
		if ordered && ttl < store.UnannouncedFor-time.Minute {
			t.Fatalf("mark ttl %s, want %s", ttl, store.UnannouncedFor)
		}
	}
}
