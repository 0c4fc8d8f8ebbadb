package redis

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/store"
)

func TestBreaker(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	b := &breaker{now: clk.Now}
	ctx := context.Background()
	failure := errors.New("i/o timeout")
	for i := range breakerFailures {
		if !b.allow() {
			t.Fatalf("call %d refused before %d failures", i, breakerFailures)
		}
		b.done(ctx, failure)
	}
	if b.allow() {
		t.Fatal("open breaker let a call through")
	}
	clk.Advance(breakerPause)
	if !b.allow() {
		t.Fatal("no probe after the pause")
	}
	if b.allow() {
		t.Fatal("a second call went through while the probe was out")
	}
	b.done(ctx, failure)
	if b.allow() {
		t.Fatal("a failed probe did not pause again")
	}
	clk.Advance(breakerPause)
	if !b.allow() {
		t.Fatal("no second probe")
	}
	b.done(ctx, nil)
	for i := range 5 {
		if !b.allow() {
			t.Fatalf("call %d refused after a successful probe", i)
		}
		b.done(ctx, nil)
	}

	// Calls given up by their callers do not open it.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for range 2 * breakerFailures {
		b.allow()
		b.done(gone, context.Canceled)
	}
	if !b.allow() {
		t.Fatal("cancelled calls opened the breaker")
	}
}

// RD-2/RD-3: a Redis that accepts connections and never answers costs the
// first commands one timeout each; after that commands fail at once, as
// store.ErrUnavailable, until a probe succeeds.
func TestSilentRedisFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	const timeout = 200 * time.Millisecond
	client := redis.NewClient(&redis.Options{
		Addr: ln.Addr().String(), DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolTimeout: timeout, MaxRetries: -1, ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { client.Close() })
	st := New(client, "x:")
	ctx := context.Background()
	for i := range breakerFailures {
		start := time.Now()
		_, err := st.Get(ctx, "k")
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
		if took := time.Since(start); took > 4*timeout {
			t.Fatalf("call %d took %s with a %s timeout", i, took, timeout)
		}
	}
	start := time.Now()
	for range 1000 {
		if _, err := st.Get(ctx, "k"); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("with the breaker open: %v", err)
		}
	}
	if took := time.Since(start); took > timeout {
		t.Fatalf("1000 calls with the breaker open took %s", took)
	}
}

// replyErr is an error reply from Redis, as go-redis reports one.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// Replies that refuse one command (no permission, a wrong type) show that
// Redis is up: they must not stop every other command. Replies that say
// Redis cannot serve do count.
func TestBreakerCountsOnlyUnavailability(t *testing.T) {
	st := New(nil, "x:")
	ctx := context.Background()
	for range 2 * breakerFailures {
		err := st.run(ctx, func(context.Context) error {
			return replyErr("NOPERM this user has no permissions to access the 'x:changes' channel")
		})
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("a refused command: %v", err)
		}
	}
	if !st.breaker.allow() {
		t.Fatal("refused commands opened the breaker")
	}
	st.breaker.done(ctx, nil)
	for range breakerFailures {
		_ = st.run(ctx, func(context.Context) error { return replyErr("LOADING Redis is loading the dataset in memory") })
	}
	if st.breaker.allow() {
		t.Fatal("a loading Redis did not open the breaker")
	}
}

// A probe whose command panics must not leave the breaker waiting for it
// forever.
func TestBreakerProbePanics(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	st := New(nil, "x:")
	st.breaker.now = clk.Now
	ctx := context.Background()
	for range breakerFailures {
		_ = st.run(ctx, func(context.Context) error { return errors.New("i/o timeout") })
	}
	clk.Advance(breakerPause)
	func() {
		defer func() { _ = recover() }()
		_ = st.run(ctx, func(context.Context) error { panic("bug") })
	}()
	clk.Advance(breakerPause)
	probed := false
	_ = st.run(ctx, func(context.Context) error { probed = true; return nil })
	if !probed {
		t.Fatal("no probe after a probe panicked")
	}
}
