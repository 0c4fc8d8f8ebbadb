package redis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
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
