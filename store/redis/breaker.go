package redis

import (
	"context"
	"errors"
	"sync"
	"time"
)

// breaker stops sending commands to a Redis that keeps failing: after
// breakerFailures failures in a row every call fails at once for
// breakerPause, so a server that is down or silent costs requests a quick
// 503 instead of a timeout each. Then one call probes; its success closes
// the breaker, its failure pauses again.
type breaker struct {
	now func() time.Time

	mu       sync.Mutex
	failures int
	until    time.Time // while open, calls fail until then
	probing  bool
}

const (
	breakerFailures = 3
	breakerPause    = time.Second
)

var errBreakerOpen = errors.New("not tried: the last commands failed; trying again shortly")

// allow reports whether a call may go to Redis now.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until.IsZero() {
		return true
	}
	if b.probing || b.now().Before(b.until) {
		return false
	}
	b.probing = true
	return true
}

// done records the outcome of an allowed call. A call given up by its
// caller says nothing about Redis.
func (b *breaker) done(ctx context.Context, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.failures, b.until, b.probing = 0, time.Time{}, false
	case ctx.Err() != nil && !b.probing:
	default:
		b.failures++
		if b.probing || b.failures >= breakerFailures {
			b.until, b.probing = b.now().Add(breakerPause), false
		}
	}
}
