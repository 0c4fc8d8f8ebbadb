package tests

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

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
