package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
)

// RD-2/RD-3: a Redis that stops answering without closing connections (a
// partition, a frozen server). A verified member's request is answered
// 503 within the budget, never passed upstream; after the first few
// timeouts the answers come at once; 1,000 such requests leave no
// goroutines or connections behind; and the gateway recovers by itself
// when Redis answers again.
func TestRedisSilentFailsClosedFast(t *testing.T) {
	srv := testredis.Start(t)
	proxy := testredis.StartProxy(t, srv.Addr)
	const timeout = 300 * time.Millisecond
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\ttimeout %s\n\t\t}", testKey, proxy.Addr, timeout)
	e := start(t, setup{global: global})
	b, _ := enrolled(e, "alice")
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("before: %d", s)
	}
	goroutines, fds := runtime.NumGoroutine(), openFiles(t)

	proxy.Silence()
	e.clock.Advance(3 * time.Second) // past the copy of alice's record
	worst := time.Duration(0)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var clients []*browser
	for range 10 {
		c := e.browser()
		clients = append(clients, c)
		c.jar = b.jar
		c.c.Jar = b.jar
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				t0 := time.Now()
				r := c.get("/echo/x")
				took := time.Since(t0)
				mu.Lock()
				statuses[r.status]++
				worst = max(worst, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	all := time.Since(start)
	if statuses[http.StatusServiceUnavailable] != 1000 {
		t.Fatalf("with Redis silent: %v, want 1000 × 503", statuses)
	}
	if worst > 3*timeout {
		t.Fatalf("slowest 503 took %s with a %s timeout", worst, timeout)
	}
	t.Logf("Redis silent: 1000 requests answered 503 in %s (slowest %s, timeout %s)", all, worst, timeout)

	proxy.Resume()
	resumed := time.Now()
	for {
		if s, _ := b.upstream("/echo/x"); s == http.StatusOK {
			break
		}
		if time.Since(resumed) > 10*time.Second {
			t.Fatal("no recovery 10s after Redis answered again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("recovered %s after Redis answered again", time.Since(resumed).Round(time.Millisecond))

	// The test's own keep-alive connections are not the gateway's.
	for _, c := range clients {
		c.c.CloseIdleConnections()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFiles(t)
		if g <= goroutines+5 && f <= fds+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: %d goroutines (was %d), %d open files (was %d)", g, goroutines, f, fds)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// SC-9 and RD-7: Caddy warns about a Redis without a password, and about
// a memory policy that may evict the gateway's keys.
func TestRedisWarnings(t *testing.T) {
	srv := testredis.Start(t, "--maxmemory-policy", "allkeys-lru")
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}", testKey, srv.Addr)
	e := start(t, setup{global: global})
	deadline := time.Now().Add(10 * time.Second)
	for {
		log, err := os.ReadFile(e.logPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "redis: no password") && strings.Contains(string(log), `"maxmemory_policy":"allkeys-lru"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warnings missing from the log:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RD-6: the store loses its data under a running gateway (FLUSHALL, a
// restart without persistence). Nobody is taken for never enrolled: the
// gateway closes at once, with 503, and logs the loss. Restoring the data
// opens it again by itself; reloading Caddy accepts the empty store.
func TestRedisDataLossClosesGateway(t *testing.T) {
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}", testKey, srv.Addr)
	e := start(t, setup{global: global})
	alice, _ := enrolled(e, "alice")
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()

	// A backup, as an operator would keep (here: every key dumped).
	backup := map[string]string{}
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		backup[k] = client.Dump(ctx, k).Val()
	}
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	// Bob has only his password: the enrolment page must not open to him.
	bob := e.browser()
	bob.login("bob")
	for _, path := range []string{"/members/", "/.2fa/enrol?return_to=%2Fmembers%2F"} {
		if r := bob.get(path); r.status != http.StatusServiceUnavailable {
			t.Fatalf("bob, %s, after the flush: %d %q", path, r.status, r.location())
		}
	}
	e.clock.Advance(3 * time.Second) // alice's record is no longer in memory
	if s, _ := alice.upstream("/echo/x"); s != http.StatusServiceUnavailable {
		t.Fatalf("alice after the flush: %d", s)
	}
	waitForLog(t, e, "STORE DATA LOST")

	// The backup comes back: the gateway opens by itself, alice's session
	// and enrolment with it.
	for k, v := range backup {
		if err := client.Restore(ctx, k, 0, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "gateway open after the restore", func() bool {
		s, _ := alice.upstream("/echo/x")
		return s == http.StatusOK
	})
	waitForLog(t, e, "store data back")

	// Lost for good. A restart on this machine, which used the store,
	// does not take the empty store for a new one ...
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	e2 := start(t, setup{global: global, clock: e.clock})
	again := e2.browser()
	again.login("alice")
	if r := again.get("/members/"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("restart on the emptied store: %d %q", r.status, r.location())
	}
	waitForLog(t, e2, "stores.json on every machine")
	// ... until the operator accepts the loss: members enrol again.
	if err := os.Remove(filepath.Join(os.Getenv("XDG_DATA_HOME"), "caddy", "two_factor", "stores.json")); err != nil {
		t.Fatal(err)
	}
	e3 := start(t, setup{global: global, clock: e.clock})
	again = e3.browser()
	again.login("alice")
	if r := again.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("after accepting the empty store: %d %q", r.status, r.location())
	}
}

func waitForLog(t *testing.T, e *env, text string) {
	t.Helper()
	waitFor(t, 5*time.Second, "log line "+strconv.Quote(text), func() bool {
		log, err := os.ReadFile(e.logPath)
		return err == nil && strings.Contains(string(log), text)
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A Redis user that may not publish on the notices channel: Caddy says so
// at start (revocations would reach other instances only when their copies
// expire), and everything else still works: refusals of one command are
// not taken for Redis being down.
func TestRedisNoticesRefusedWarning(t *testing.T) {
	srv := testredis.Start(t)
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "gateway", "on", ">gateway-password", "~2fa:*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tusername gateway\n\t\t\tpassword gateway-password\n\t\t}", testKey, srv.Addr)
	e := start(t, setup{global: global})
	waitForLog(t, e, "change notices cannot be sent")
	b, _ := enrolled(e, "alice") // every write announces, and is refused
	for range 5 {
		if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
			t.Fatalf("with notices refused: %d", s)
		}
	}
}
