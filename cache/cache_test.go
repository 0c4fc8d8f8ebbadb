package cache

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/clock"
)

// A member used all the time stays cached while a stream of members seen
// once, many times the bound, passes through: no cliff.
func TestHotEntryOutlivesColdStream(t *testing.T) {
	c := New[string, int](Options{Size: 1000, Stats: true})
	hot := []string{"hot-1", "hot-2", "hot-3"}
	for _, h := range hot {
		c.Set(h, 1)
	}
	for i := range 100_000 {
		c.Set("cold-"+strconv.Itoa(i), i)
		if i%10 == 0 {
			for _, h := range hot {
				if _, ok := c.Get(h); !ok {
					t.Fatalf("after %d cold entries: %s was evicted", i, h)
				}
			}
		}
	}
	if n := c.Len(); n > 1000 {
		t.Errorf("Len = %d after 100000 entries, bound 1000", n)
	}
	hits, misses := c.Stats()
	if hits == 0 || misses != 0 {
		t.Errorf("Stats = %d hits, %d misses; want hits and no misses (only hot entries were read)", hits, misses)
	}
}

// Under a skewed popularity the cache keeps most of the reads' hits with a
// bound far below the number of distinct keys.
func TestSkewedPopularityHits(t *testing.T) {
	c := New[int, int](Options{Size: 1000, Stats: true})
	// A fixed, deterministic skew: key k is drawn about 1/(k+1) as often.
	weights := make([]int, 100_000)
	for k := range weights {
		weights[k] = 100_000 / (k + 1)
	}
	for range 3 {
		for k, w := range weights {
			for range min(w, 50) {
				if _, ok := c.Get(k); !ok {
					c.Set(k, k)
				}
			}
		}
	}
	hits, misses := c.Stats()
	if ratio := float64(hits) / float64(hits+misses); ratio < 0.5 {
		t.Errorf("hit ratio %.2f under a skewed load with 1%% of the keys cached; want at least 0.5", ratio)
	}
}

// Pinned entries are never evicted to make room and do not count toward
// the bound; they still expire.
func TestPinnedNotEvicted(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := New[string, int](Options{Size: 100, TTL: 2 * time.Second, Now: fake.Now})
	for i := range 50 {
		c.Update("pin-"+strconv.Itoa(i), true, func(int, bool) (int, bool) { return i, true })
	}
	for i := range 10_000 {
		c.Set("cold-"+strconv.Itoa(i), i)
	}
	for i := range 50 {
		if v, ok := c.Get("pin-" + strconv.Itoa(i)); !ok || v != i {
			t.Fatalf("pin-%d = %d, %t after a stream of cold entries; want %d, true", i, v, ok, i)
		}
	}
	fake.Advance(2 * time.Second)
	if _, ok := c.Get("pin-0"); ok {
		t.Error("a pinned entry outlived its TTL")
	}
}

// Expiry follows the clock given, not the wall clock: no sleeping.
func TestExpiryFollowsClock(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := New[string, string](Options{Size: 10, TTL: 10 * time.Second, Now: fake.Now})
	c.Set("a", "1")
	fake.Advance(9 * time.Second)
	if v, ok := c.Get("a"); !ok || v != "1" {
		t.Fatalf("Get at 9s of 10s = %q, %t; want 1, true", v, ok)
	}
	// A write starts the TTL again; a read does not.
	c.Set("b", "2")
	fake.Advance(time.Second)
	if _, ok := c.Get("a"); ok {
		t.Error("Get at 10s of 10s: still cached")
	}
	if _, ok := c.Get("b"); !ok {
		t.Error("b, written 1s ago, expired")
	}
	// Update sees an expired entry as absent.
	fake.Advance(10 * time.Second)
	c.Update("b", false, func(old string, found bool) (string, bool) {
		if found {
			t.Errorf("Update found %q after its TTL", old)
		}
		return "3", true
	})
	if v, _ := c.Get("b"); v != "3" {
		t.Errorf("b = %q after Update; want 3", v)
	}
}

// Pinned entries expire after PinnedTTL, others after TTL; a write that
// unpins an entry gives it the TTL.
func TestPinnedTTL(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := New[string, string](Options{Size: 10, TTL: time.Minute, PinnedTTL: 2 * time.Second, Now: fake.Now})
	set := func(k string, pin bool) {
		c.Update(k, pin, func(string, bool) (string, bool) { return k, true })
	}
	set("pinned", true)
	set("plain", false)
	set("unpinned", true)
	set("unpinned", false)
	fake.Advance(2*time.Second - time.Nanosecond)
	if _, ok := c.Get("pinned"); !ok {
		t.Error("pinned entry gone before its PinnedTTL")
	}
	fake.Advance(time.Nanosecond)
	if _, ok := c.Get("pinned"); ok {
		t.Error("pinned entry kept past its PinnedTTL")
	}
	for _, k := range []string{"plain", "unpinned"} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("%s: gone at the pins' TTL", k)
		}
	}
	fake.Advance(time.Minute)
	if _, ok := c.Get("plain"); ok {
		t.Error("entry kept past its TTL")
	}
}

// Update's decision and write are one step: concurrent "only if newer"
// updates leave the highest value, whatever their order.
func TestUpdateAtomic(t *testing.T) {
	c := New[string, int](Options{Size: 10})
	var wg sync.WaitGroup
	for i := 1; i <= 1000; i++ {
		wg.Go(func() {
			c.Update("k", false, func(old int, found bool) (int, bool) {
				return i, !found || i > old
			})
		})
	}
	wg.Wait()
	if v, _ := c.Get("k"); v != 1000 {
		t.Errorf("k = %d after concurrent newer-only updates; want 1000", v)
	}
	c.Update("k", false, func(int, bool) (int, bool) { return 1, false })
	if v, _ := c.Get("k"); v != 1000 {
		t.Errorf("k = %d after a declined update; want 1000", v)
	}
	c.Delete("k")
	if _, ok := c.Get("k"); ok {
		t.Error("k still cached after Delete")
	}
	c.Set("a", 1)
	c.Clear()
	if _, ok := c.Get("a"); ok {
		t.Error("a still cached after Clear")
	}
}

// The cache runs no goroutine of its own, during use or after.
func TestNoGoroutines(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := New[int, int](Options{Size: 100, TTL: time.Second, Now: fake.Now, Stats: true})
	for i := range 100_000 {
		c.Set(i, i)
		c.Get(i / 2)
		if i%1000 == 0 {
			fake.Advance(100 * time.Millisecond)
		}
	}
	if n := Goroutines(); n != 0 {
		t.Errorf("%d goroutines of the cache's library running", n)
	}
}

// NewEvicting tells of entries evicted for room, and of no others; All
// lists what is cached.
func TestEvicted(t *testing.T) {
	evicted := map[string]int{}
	c := NewEvicting[string, int](Options{Size: 10}, func(k string, v int) { evicted[k] = v })
	for i := range 100 {
		c.Set(strconv.Itoa(i), i)
	}
	kept := map[string]int{}
	for k, v := range c.All() {
		kept[k] = v
	}
	if len(kept)+len(evicted) < 100 || len(kept) > 10 {
		t.Errorf("%d kept and %d evicted of 100 with room for 10", len(kept), len(evicted))
	}
	for k := range kept {
		if _, ok := evicted[k]; ok {
			t.Errorf("%s both kept and reported evicted", k)
		}
	}
	before := len(evicted)
	for k, v := range kept {
		c.Set(k, v+1) // a replacement is no eviction
		c.Delete(k)
	}
	if len(evicted) != before {
		t.Error("a deletion was reported as an eviction")
	}
}
