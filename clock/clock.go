// Package clock is the gateway's single source of the current time, so that
// integration tests running Caddy in-process can move time forward exactly
// instead of sleeping.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

var current atomic.Pointer[func() time.Time]

// Now returns the current time from the installed clock (the system clock
// unless a test replaced it).
func Now() time.Time {
	if f := current.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// Set installs now as the clock and returns a function that restores the
// previous one. Only tests call it.
func Set(now func() time.Time) (restore func()) {
	prev := current.Swap(&now)
	return func() { current.Store(prev) }
}

// Fake is a manually advanced clock, safe for concurrent use.
type Fake struct {
	mu sync.Mutex
	t  time.Time
}

// NewFake returns a Fake clock reading t.
func NewFake(t time.Time) *Fake { return &Fake{t: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

// Advance moves the fake time forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// Set moves the fake time to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}
