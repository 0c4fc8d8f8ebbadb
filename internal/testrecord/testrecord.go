// Package testrecord keeps what a test server received, in order, and lets
// a test wait for the next arrival without polling.
package testrecord

import (
	"sync"
	"testing"
	"time"
)

// Recorder holds the items received so far. The zero value is ready to
// use; it is safe for concurrent use.
type Recorder[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced when an item arrives
}

// Add records v and wakes the waiters.
func (r *Recorder[T]) Add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, v)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// All returns a copy of the items so far.
func (r *Recorder[T]) All() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.items...)
}

// Wait returns the items once there are at least n, failing the test if
// that takes longer than timeout. what names the items in the failure.
func (r *Recorder[T]) Wait(t testing.TB, n int, timeout time.Duration, what string) []T {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		if len(r.items) >= n {
			items := append([]T(nil), r.items...)
			r.mu.Unlock()
			return items
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch, have := r.changed, len(r.items)
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("%d %s after %s, want %d", have, what, timeout, n)
		}
	}
}
