// Package cache is the gateway's bounded in-memory cache: the member
// records, identities and notes that the verified path reads on every
// request. It keeps the entries used most when there are more than it may
// hold, instead of forgetting everything at a cap, so a site with more
// active members than the bound loses only its coldest entries.
//
// It wraps github.com/maypok86/otter/v2 (W-TinyLFU: a small LRU window in
// front of a segmented LRU, admission by a frequency sketch) so that the
// rest of the code depends on this small type, not on the library.
package cache

import (
	"iter"
	"runtime"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
)

// Options configure a Cache.
type Options struct {
	// Size bounds the entries kept, not counting pinned ones (Update).
	// At least 1.
	Size int
	// TTL is how long an entry is kept after it was last written; zero
	// keeps entries until they are evicted for room.
	TTL time.Duration
	// PinnedTTL, when not zero, is TTL for pinned entries (Update):
	// shorter, so that pins, which Size does not bound, do not pile up.
	PinnedTTL time.Duration
	// Now is the clock that TTL is measured with (nil: time.Now), so a
	// fake clock in tests expires entries without sleeping.
	Now func() time.Time
	// Stats counts hits and misses (Stats); off, reads skip the counting.
	Stats bool
}

// Cache is a bounded map from K to V, safe for concurrent use. Reads take
// no lock. It keeps no goroutine: the upkeep (the policy's bookkeeping of
// reads and writes, evictions, removal of expired entries) runs a little
// at a time on the goroutines that use it, and the library's expiry
// goroutine returns at once for a clock without ticks, so nothing is left
// running when a configuration is unloaded, and the cache is collected
// with the last reference to it.
type Cache[K comparable, V any] struct {
	c     *otter.Cache[K, entry[V]]
	stats *stats.Counter
}

// entry is a value with whether it is pinned.
type entry[V any] struct {
	v      V
	pinned bool
}

// New returns an empty cache.
func New[K comparable, V any](o Options) *Cache[K, V] {
	return NewEvicting[K, V](o, nil)
}

// NewEvicting is New with evicted, when not nil, told of each entry
// evicted to make room (not of those deleted, replaced or expired). It runs
// during the call that made room, on its goroutine, and must not call the
// cache.
func NewEvicting[K comparable, V any](o Options, evicted func(K, V)) *Cache[K, V] {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	c := &Cache[K, V]{}
	opts := &otter.Options[K, entry[V]]{
		MaximumWeight: uint64(max(o.Size, 1)),
		// A pinned entry weighs nothing, and an entry of no weight is
		// never chosen to make room.
		Weigher: func(_ K, e entry[V]) uint32 {
			if e.pinned {
				return 0
			}
			return 1
		},
		// Upkeep on the caller's goroutine rather than on goroutines of
		// the library's: a pass is short (it drains the buffered reads
		// and writes), and no goroutine outlives a reload.
		Executor: func(fn func()) { fn() },
		Clock:    clockOf{now: now, start: now()},
	}
	if o.TTL > 0 {
		pinned := o.PinnedTTL
		if pinned <= 0 {
			pinned = o.TTL
		}
		opts.ExpiryCalculator = otter.ExpiryWritingFunc(func(e otter.Entry[K, entry[V]]) time.Duration {
			if e.Value.pinned {
				return pinned
			}
			return o.TTL
		})
	}
	if evicted != nil {
		opts.OnDeletion = func(e otter.DeletionEvent[K, entry[V]]) {
			if e.Cause == otter.CauseOverflow {
				evicted(e.Key, e.Value.v)
			}
		}
	}
	if o.Stats {
		c.stats = stats.NewCounter()
		opts.StatsRecorder = c.stats
	}
	c.c = otter.Must(opts)
	return c
}

// Get returns the value cached for key, if any and not expired.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	e, ok := c.c.GetIfPresent(key)
	return e.v, ok
}

// Set caches v for key, unpinned.
func (c *Cache[K, V]) Set(key K, v V) {
	c.c.Set(key, entry[V]{v: v})
}

// Update decides atomically, for one key, whether to replace what is
// cached: change gets the value cached now (found false if none, or
// expired) and returns the new value and true, or false to leave the
// entry as it is. No other write of the key runs in between, so a
// decision such as "only if newer" holds. change must not call the cache.
//
// A pinned entry is never evicted to make room (it still expires after
// PinnedTTL) and does not count toward Size: for the few entries whose loss
// would let an older value back in. The pin lasts until the next write.
func (c *Cache[K, V]) Update(key K, pin bool, change func(old V, found bool) (V, bool)) {
	c.c.Compute(key, func(old entry[V], found bool) (entry[V], otter.ComputeOp) {
		v, ok := change(old.v, found)
		if !ok {
			return old, otter.CancelOp
		}
		return entry[V]{v: v, pinned: pin}, otter.WriteOp
	})
}

// Delete forgets key.
func (c *Cache[K, V]) Delete(key K) { c.c.Invalidate(key) }

// Clear forgets every entry.
func (c *Cache[K, V]) Clear() { c.c.InvalidateAll() }

// All iterates over the entries cached and not expired. Writes during it
// may or may not be seen.
func (c *Cache[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, e := range c.c.All() {
			if !yield(k, e.v) {
				return
			}
		}
	}
}

// Len is about how many entries are cached, counting some expired ones
// not yet removed.
func (c *Cache[K, V]) Len() int { return c.c.EstimatedSize() }

// Stats returns the hits and misses counted since New (zeros unless
// Options.Stats).
func (c *Cache[K, V]) Stats() (hits, misses uint64) {
	if c.stats == nil {
		return 0, 0
	}
	s := c.stats.Snapshot()
	return s.Hits, s.Misses
}

// clockOf gives the library our clock. It has no ticks: expired entries
// are removed by the upkeep that reads and writes run, and a read never
// returns one whatever the upkeep has done.
//
// Its nanoseconds count from the cache's start, so with the real clock
// they follow the monotonic reading: a step of the wall clock (NTP, a
// resumed VM) neither keeps entries past their TTL nor ends them early.
type clockOf struct {
	now   func() time.Time
	start time.Time
}

func (c clockOf) NowNano() int64                    { return int64(c.now().Sub(c.start)) }
func (clockOf) Tick(time.Duration) <-chan time.Time { return nil }

// Goroutines counts the goroutines running the cache library's code:
// there should be none, and tests check that none is left behind by a
// reload.
func Goroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "maypok86/otter") {
			count++
		}
	}
	return count
}
