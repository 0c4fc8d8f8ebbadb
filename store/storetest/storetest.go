// Package storetest is the contract every store.Store implementation must
// pass. The engine relies on these exact semantics (expiry, atomic
// compare-and-swap and counting, caller-owned slices) for lockouts and
// one-time enrolment, and on ordered indexes and key scans for listing its
// members, so an embedded database and Redis are held to one suite instead
// of each being trusted on its own tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// Harness is one fresh, empty store under test plus a way to make time pass
// for it.
type Harness struct {
	Store store.Store

	// Advance makes d pass for the store's expiry decisions. Stores with an
	// injectable clock move it; stores with a server-side clock (Redis) may
	// sleep. The suite only uses TTLs of 1s or more, and advances in whole
	// seconds.
	Advance func(d time.Duration)
}

// Run runs the contract as subtests. newHarness is called once per subtest
// and must return an empty store; it should register its own cleanup with
// t.Cleanup.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tc := range contract {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if h.Store == nil || h.Advance == nil {
				t.Fatal("storetest: newHarness returned a Harness without Store or Advance")
			}
			tc.fn(t, h)
		})
	}
}

var contract = []struct {
	name string
	fn   func(t *testing.T, h Harness)
}{
	{"Get/Missing", testGetMissing},
	{"Set/ThenGet", testSetGet},
	{"Set/EmptyValue", testSetEmptyValue},
	{"Set/ReplacesValueAndExpiry", testSetReplacesValueAndExpiry},
	{"TTL/Expiry", testTTLExpiry},
	{"Delete/SeveralAndMissing", testDelete},
	{"CAS/CreateIfAbsent", testCASCreateIfAbsent},
	{"CAS/EmptyOldIsNotAbsent", testCASEmptyOldIsNotAbsent},
	{"CAS/Mismatch", testCASMismatch},
	{"CAS/MatchSwaps", testCASMatchSwaps},
	{"CAS/NilValueDeletes", testCASNilValueDeletes},
	{"CAS/ExpiredIsAbsent", testCASExpiredIsAbsent},
	{"CAS/TTLApplies", testCASTTLApplies},
	{"Increment/Counts", testIncrementCounts},
	{"Increment/TTLNotExtended", testIncrementTTLNotExtended},
	{"Increment/NotACounter", testIncrementNotACounter},
	{"Concurrent/CASCreateOnce", testConcurrentCASCreate},
	{"Concurrent/Increment", testConcurrentIncrement},
	{"Concurrent/CASRetryLoop", testConcurrentCASRetry},
	{"Slices/CallerOwned", testCallerOwnedSlices},
	{"Values/Binary", testBinaryValues},
	{"Keys/SpecialAndPrefixes", testKeys},
	{"Index/PagesInByteOrder", testIndexOrder},
	{"Index/PutTwiceAndDelete", testIndexPutDelete},
	{"Index/ApartFromKeysAndEachOther", testIndexApart},
	{"Index/Refusals", testIndexRefusals},
	{"Index/RangeAndCount", testIndexRange},
	{"Index/CountFollowsPutAndDelete", testIndexCount},
	{"Concurrent/IndexPut", testConcurrentIndexPut},
	{"ScanKeys/LiveKeysWithPrefix", testScanKeys},
	{"ScanKeys/ManyBatches", testScanManyKeys},
	{"ScanKeys/VisitError", testScanVisitError},
	{"Log/AppendOrder", testLogAppendOrder},
	{"Log/AppendBatch", testLogAppendBatch},
	{"Log/ConcurrentAppend", testLogConcurrentAppend},
	{"Log/RangeBounds", testLogRangeBounds},
	{"Log/Paging", testLogPaging},
	{"Log/IDAt", testLogIDAt},
	{"Log/Trim", testLogTrim},
	{"Log/TrimMany", testLogTrimMany},
	{"Log/EmptyAndMissing", testLogEmptyAndMissing},
	{"Log/BinaryValues", testLogBinaryValues},
	{"Log/Refusals", testLogRefusals},
	{"Context/Canceled", testCanceledContext},
	{"Batch/Results", testBatchResults},
	{"Batch/SameKeyInOrder", testBatchSameKey},
	{"Batch/Expiry", testBatchExpiry},
	{"Batch/Refusals", testBatchRefusals},
	{"Batch/Concurrent", testBatchConcurrent},
}

// ---- helpers ----

func mustGet(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	v, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): unexpected error %v", key, err)
	}
	return v
}

func wantValue(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	if got := mustGet(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, abbrev(got), abbrev(want))
	}
}

func wantNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	v, err := s.Get(t.Context(), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want error wrapping store.ErrNotFound", key, abbrev(v), err)
	}
}

func mustSet(t *testing.T, s store.Store, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(t.Context(), key, value, ttl); err != nil {
		t.Fatalf("Set(%q, ttl=%v): %v", key, ttl, err)
	}
}

func mustCAS(t *testing.T, s store.Store, key string, old, value []byte, ttl time.Duration, want bool) {
	t.Helper()
	ok, err := s.CompareAndSwap(t.Context(), key, old, value, ttl)
	if err != nil {
		t.Fatalf("CompareAndSwap(%q, old=%q, value=%q): %v", key, abbrev(old), abbrev(value), err)
	}
	if ok != want {
		t.Fatalf("CompareAndSwap(%q, old=%s, value=%q) = %v, want %v", key, describeOld(old), abbrev(value), ok, want)
	}
}

func mustIncrement(t *testing.T, s store.Store, key string, ttl time.Duration, want int64) {
	t.Helper()
	n, err := s.Increment(t.Context(), key, ttl)
	if err != nil {
		t.Fatalf("Increment(%q): %v", key, err)
	}
	if n != want {
		t.Fatalf("Increment(%q) = %d, want %d", key, n, want)
	}
}

func describeOld(old []byte) string {
	if old == nil {
		return "nil"
	}
	return strconv.Quote(string(abbrev(old)))
}

// abbrev keeps failure messages about 64 KiB values readable.
func abbrev(b []byte) []byte {
	if len(b) <= 64 {
		return b
	}
	return fmt.Appendf(nil, "%q...(%d bytes)", b[:32], len(b))
}

// ---- single-goroutine semantics ----

func testGetMissing(t *testing.T, h Harness) {
	wantNotFound(t, h.Store, "missing")
}

func testSetGet(t *testing.T, h Harness) {
	mustSet(t, h.Store, "k", []byte("v1"), 0)
	wantValue(t, h.Store, "k", []byte("v1"))
	mustSet(t, h.Store, "k", []byte("second"), 0)
	wantValue(t, h.Store, "k", []byte("second"))
	wantNotFound(t, h.Store, "other")
}

func testSetEmptyValue(t *testing.T, h Harness) {
	// An empty value is a value: it must not read as missing.
	mustSet(t, h.Store, "k", []byte{}, 0)
	if got := mustGet(t, h.Store, "k"); len(got) != 0 {
		t.Fatalf("Get = %q, want empty", got)
	}
}

func testSetReplacesValueAndExpiry(t *testing.T, h Harness) {
	s := h.Store
	// Expiring value made permanent.
	mustSet(t, s, "a", []byte("old"), 1*time.Second)
	mustSet(t, s, "a", []byte("new"), 0)
	// Permanent value made expiring.
	mustSet(t, s, "b", []byte("old"), 0)
	mustSet(t, s, "b", []byte("new"), 1*time.Second)
	// Longer expiry shortened.
	mustSet(t, s, "c", []byte("old"), 3*time.Second)
	mustSet(t, s, "c", []byte("new"), 1*time.Second)

	h.Advance(1 * time.Second)
	wantValue(t, s, "a", []byte("new"))
	wantNotFound(t, s, "b")
	wantNotFound(t, s, "c")

	h.Advance(2 * time.Second)
	wantValue(t, s, "a", []byte("new"))
}

func testTTLExpiry(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "short", []byte("v"), 2*time.Second)
	mustSet(t, s, "forever", []byte("v"), 0)
	mustIncrement(t, s, "counter-forever", 0, 1)

	h.Advance(1 * time.Second)
	wantValue(t, s, "short", []byte("v"))

	h.Advance(1 * time.Second)
	wantNotFound(t, s, "short")
	wantValue(t, s, "forever", []byte("v"))
	wantValue(t, s, "counter-forever", []byte("1"))

	// Deleting an expired key is deleting a missing key: no error.
	if err := s.Delete(t.Context(), "short"); err != nil {
		t.Fatalf("Delete(expired): %v", err)
	}
	wantNotFound(t, s, "short")
}

func testDelete(t *testing.T, h Harness) {
	s := h.Store
	for _, k := range []string{"a", "b", "c"} {
		mustSet(t, s, k, []byte("v-"+k), 0)
	}
	if err := s.Delete(t.Context(), "a", "missing", "b", "also-missing"); err != nil {
		t.Fatalf("Delete(a, missing, b, also-missing): %v", err)
	}
	wantNotFound(t, s, "a")
	wantNotFound(t, s, "b")
	wantValue(t, s, "c", []byte("v-c"))

	if err := s.Delete(t.Context(), "missing"); err != nil {
		t.Fatalf("Delete(missing): %v", err)
	}
	if err := s.Delete(t.Context()); err != nil {
		t.Fatalf("Delete(): %v", err)
	}
	wantValue(t, s, "c", []byte("v-c"))

	// A deleted key can be created again.
	mustCAS(t, s, "a", nil, []byte("again"), 0, true)
	wantValue(t, s, "a", []byte("again"))
}

func testCASCreateIfAbsent(t *testing.T, h Harness) {
	s := h.Store
	mustCAS(t, s, "k", nil, []byte("first"), 0, true)
	wantValue(t, s, "k", []byte("first"))
	mustCAS(t, s, "k", nil, []byte("second"), 0, false)
	wantValue(t, s, "k", []byte("first"))
}

func testCASEmptyOldIsNotAbsent(t *testing.T, h Harness) {
	// nil old means "absent"; an empty, non-nil old means "currently the
	// empty value". Implementations that serialise old must keep them apart.
	s := h.Store
	mustCAS(t, s, "k", []byte{}, []byte("v"), 0, false)
	wantNotFound(t, s, "k")

	mustSet(t, s, "k", []byte{}, 0)
	mustCAS(t, s, "k", nil, []byte("v"), 0, false)
	mustCAS(t, s, "k", []byte{}, []byte("v"), 0, true)
	wantValue(t, s, "k", []byte("v"))
}

func testCASMismatch(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "k", []byte("current"), 0)
	mustCAS(t, s, "k", []byte("stale"), []byte("new"), 0, false)
	mustCAS(t, s, "k", []byte("curren"), []byte("new"), 0, false)
	mustCAS(t, s, "k", []byte("current!"), []byte("new"), 0, false)
	mustCAS(t, s, "k", []byte("current"), nil, 0, true) // sanity: it can match
	mustSet(t, s, "k", []byte("current"), 0)
	mustCAS(t, s, "k", []byte("CURRENT"), nil, 0, false)
	wantValue(t, s, "k", []byte("current"))

	// A non-nil old never matches a missing key, and must not create it.
	mustCAS(t, s, "missing", []byte("x"), []byte("new"), 0, false)
	wantNotFound(t, s, "missing")
}

func testCASMatchSwaps(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "k", []byte("v1"), 0)
	mustCAS(t, s, "k", []byte("v1"), []byte("v2"), 0, true)
	wantValue(t, s, "k", []byte("v2"))
	mustCAS(t, s, "k", []byte("v1"), []byte("v3"), 0, false)
	wantValue(t, s, "k", []byte("v2"))
	mustCAS(t, s, "k", []byte("v2"), []byte("v3"), 0, true)
	wantValue(t, s, "k", []byte("v3"))
}

func testCASNilValueDeletes(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "k", []byte("v"), 0)
	mustCAS(t, s, "k", []byte("wrong"), nil, 0, false)
	wantValue(t, s, "k", []byte("v"))
	mustCAS(t, s, "k", []byte("v"), nil, 0, true)
	wantNotFound(t, s, "k")
	// Deleted means absent again.
	mustCAS(t, s, "k", nil, []byte("v2"), 0, true)
	wantValue(t, s, "k", []byte("v2"))
}

func testCASExpiredIsAbsent(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "k", []byte("old"), 1*time.Second)
	mustSet(t, s, "j", []byte("old"), 1*time.Second)
	h.Advance(1 * time.Second)

	// An expired value no longer matches itself...
	mustCAS(t, s, "j", []byte("old"), []byte("new"), 0, false)
	wantNotFound(t, s, "j")
	// ...and counts as absent.
	mustCAS(t, s, "k", nil, []byte("new"), 0, true)
	wantValue(t, s, "k", []byte("new"))
}

func testCASTTLApplies(t *testing.T, h Harness) {
	s := h.Store
	mustCAS(t, s, "created", nil, []byte("v"), 2*time.Second, true)
	mustSet(t, s, "swapped", []byte("v"), 0)
	mustCAS(t, s, "swapped", []byte("v"), []byte("w"), 2*time.Second, true)
	mustSet(t, s, "permanent", []byte("v"), 1*time.Second)
	mustCAS(t, s, "permanent", []byte("v"), []byte("w"), 0, true)

	h.Advance(1 * time.Second)
	wantValue(t, s, "created", []byte("v"))
	wantValue(t, s, "swapped", []byte("w"))

	h.Advance(1 * time.Second)
	wantNotFound(t, s, "created")
	wantNotFound(t, s, "swapped")
	wantValue(t, s, "permanent", []byte("w"))
}

func testIncrementCounts(t *testing.T, h Harness) {
	s := h.Store
	for want := int64(1); want <= 3; want++ {
		mustIncrement(t, s, "n", 0, want)
	}
	wantValue(t, s, "n", []byte("3"))
	mustIncrement(t, s, "other", 0, 1)
	wantValue(t, s, "n", []byte("3"))

	// Deleting a counter resets it.
	if err := s.Delete(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	mustIncrement(t, s, "n", 0, 1)
	wantValue(t, s, "n", []byte("1"))
}

func testIncrementTTLNotExtended(t *testing.T, h Harness) {
	s := h.Store
	mustIncrement(t, s, "n", 2*time.Second, 1)
	h.Advance(1 * time.Second)
	mustIncrement(t, s, "n", 2*time.Second, 2)
	wantValue(t, s, "n", []byte("2"))

	// Two seconds after the first increment the counter is gone, even though
	// the second increment was only one second ago.
	h.Advance(1 * time.Second)
	wantNotFound(t, s, "n")

	// After expiry it restarts at 1, with a fresh ttl.
	mustIncrement(t, s, "n", 1*time.Second, 1)
	mustIncrement(t, s, "n", 1*time.Second, 2)
	h.Advance(1 * time.Second)
	wantNotFound(t, s, "n")
}

func testIncrementNotACounter(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "k", []byte("not a number"), 0)
	if n, err := s.Increment(t.Context(), "k", 0); err == nil {
		t.Fatalf("Increment on a non-numeric value = %d, nil; want an error", n)
	}
	wantValue(t, s, "k", []byte("not a number"))
}

// ---- concurrency ----

// parallel runs fn(i) for i in [0,n) in n goroutines that all start together
// (released by closing one channel), and waits for them.
func parallel(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func testConcurrentCASCreate(t *testing.T, h Harness) {
	s := h.Store
	const n = 50
	var (
		mu     sync.Mutex
		winner = -1
		wins   int
	)
	parallel(n, func(i int) {
		ok, err := s.CompareAndSwap(t.Context(), "k", nil, []byte(strconv.Itoa(i)), 0)
		if err != nil {
			t.Errorf("goroutine %d: CompareAndSwap: %v", i, err)
			return
		}
		if ok {
			mu.Lock()
			wins++
			winner = i
			mu.Unlock()
		}
	})
	if t.Failed() {
		return
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent create-if-absent CAS calls succeeded, want exactly 1", wins, n)
	}
	wantValue(t, s, "k", []byte(strconv.Itoa(winner)))
}

func testConcurrentIncrement(t *testing.T, h Harness) {
	s := h.Store
	const n = 100
	got := make([]int64, n)
	parallel(n, func(i int) {
		v, err := s.Increment(t.Context(), "n", time.Hour)
		if err != nil {
			t.Errorf("goroutine %d: Increment: %v", i, err)
		}
		got[i] = v
	})
	if t.Failed() {
		return
	}
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("sorted results of %d concurrent increments = %v, want 1..%d each once", n, got, n)
		}
	}
	wantValue(t, s, "n", []byte(strconv.Itoa(n)))
}

func testConcurrentCASRetry(t *testing.T, h Harness) {
	s := h.Store
	const n = 20
	token := func(i int) string { return fmt.Sprintf("<%02d>", i) }
	parallel(n, func(i int) {
		ctx := t.Context()
		for attempt := 0; ; attempt++ {
			if attempt > 10000 {
				t.Errorf("goroutine %d: CAS retry loop did not converge", i)
				return
			}
			cur, err := s.Get(ctx, "list")
			switch {
			case errors.Is(err, store.ErrNotFound):
				cur = nil
			case err != nil:
				t.Errorf("goroutine %d: Get: %v", i, err)
				return
			case cur == nil:
				cur = []byte{} // present but empty must not read as absent
			}
			next := append(slices.Clip(cur), token(i)...)
			ok, err := s.CompareAndSwap(ctx, "list", cur, next, 0)
			if err != nil {
				t.Errorf("goroutine %d: CompareAndSwap: %v", i, err)
				return
			}
			if ok {
				return
			}
		}
	})
	if t.Failed() {
		return
	}
	got := string(mustGet(t, s, "list"))
	for i := range n {
		if c := bytes.Count([]byte(got), []byte(token(i))); c != 1 {
			t.Errorf("token %s appears %d times in %q, want once (lost or duplicated update)", token(i), c, got)
		}
	}
	if want := n * len(token(0)); len(got) != want {
		t.Errorf("final value has %d bytes, want %d: %q", len(got), want, got)
	}
}

// ---- value and key handling ----

func testCallerOwnedSlices(t *testing.T, h Harness) {
	s := h.Store

	// The slice passed to Set may be reused by the caller afterwards.
	buf := []byte("original")
	mustSet(t, s, "set", buf, 0)
	copy(buf, "XXXXXXXX")
	wantValue(t, s, "set", []byte("original"))

	// Same for CompareAndSwap's value.
	buf = []byte("original")
	mustCAS(t, s, "cas", nil, buf, 0, true)
	copy(buf, "XXXXXXXX")
	wantValue(t, s, "cas", []byte("original"))

	// A slice returned by Get is the caller's to modify.
	got := mustGet(t, s, "set")
	for i := range got {
		got[i] = 'Y'
	}
	_ = append(got[:0], "ZZZZZZZZZZZZZZZZZZZZ"...) // may write past len into spare capacity
	wantValue(t, s, "set", []byte("original"))

	// Also for counters.
	mustIncrement(t, s, "n", 0, 1)
	got = mustGet(t, s, "n")
	got[0] = '9'
	wantValue(t, s, "n", []byte("1"))
	mustIncrement(t, s, "n", 0, 2)
}

func testBinaryValues(t *testing.T, h Harness) {
	s := h.Store

	all := make([]byte, 0, 2*256)
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = append(all, 0, 0, 0) // trailing NULs must survive too
	mustSet(t, s, "bytes", all, 0)
	wantValue(t, s, "bytes", all)
	mustCAS(t, s, "bytes", all, []byte{0, 'a', 0}, 0, true)
	wantValue(t, s, "bytes", []byte{0, 'a', 0})
	mustCAS(t, s, "bytes", []byte{0, 'a'}, nil, 0, false) // NUL is not a terminator
	mustCAS(t, s, "bytes", []byte{0, 'a', 0}, nil, 0, true)

	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	mustSet(t, s, "big", big, 0)
	wantValue(t, s, "big", big)
	big2 := slices.Clone(big)
	big2[len(big2)-1] ^= 0xff
	mustCAS(t, s, "big", big2, []byte("x"), 0, false) // differs only in the last byte
	mustCAS(t, s, "big", big, big2, 0, true)
	wantValue(t, s, "big", big2)
}

func testKeys(t *testing.T, h Harness) {
	s := h.Store
	keys := []string{
		"a", "ab", "a:b", "a:b:c", "a:", ":a",
		"{user}:lockout", "{user}", "user}",
		"a/b/c", "a/b", "/", "with space", "tab\tkey", "*", "?[]",
		"ünïcødé", "日本語:キー", "😀",
	}
	for i, k := range keys {
		mustSet(t, s, k, []byte("value-"+strconv.Itoa(i)), 0)
	}
	for i, k := range keys {
		wantValue(t, s, k, []byte("value-"+strconv.Itoa(i)))
	}

	// Removing or changing one key leaves its prefixes and extensions alone.
	if err := s.Delete(t.Context(), "a:b"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "a:b")
	wantValue(t, s, "a", []byte("value-0"))
	wantValue(t, s, "a:b:c", []byte("value-3"))
	mustCAS(t, s, "ab", []byte("value-1"), []byte("changed"), 0, true)
	wantValue(t, s, "a", []byte("value-0"))

	mustIncrement(t, s, "n", 0, 1)
	mustIncrement(t, s, "n:1", 0, 1)
	mustIncrement(t, s, "n:1", 0, 2)
	mustIncrement(t, s, "n", 0, 2)
	mustIncrement(t, s, "n1", 0, 1)
	wantValue(t, s, "n", []byte("2"))
	wantValue(t, s, "n:1", []byte("2"))
}

// ---- ordered indexes ----

// page reads the whole index, limit members at a time, checking that each
// page continues in order where the last one ended.
func page(t *testing.T, s store.Store, index string, limit int) []string {
	t.Helper()
	var all []string
	after := ""
	for {
		got, err := s.IndexPage(t.Context(), index, after, limit)
		if err != nil {
			t.Fatalf("IndexPage(%q, after %q, %d): %v", index, after, limit, err)
		}
		if len(got) > limit {
			t.Fatalf("IndexPage(%q, after %q, %d) returned %d members", index, after, limit, len(got))
		}
		all = append(all, got...)
		if len(got) < limit {
			return all
		}
		after = got[len(got)-1]
	}
}

func mustIndexPut(t *testing.T, s store.Store, index string, members ...string) {
	t.Helper()
	if err := s.IndexPut(t.Context(), index, members...); err != nil {
		t.Fatalf("IndexPut(%q, %q): %v", index, members, err)
	}
}

func wantIndex(t *testing.T, s store.Store, index string, want []string) {
	t.Helper()
	for _, limit := range []int{1, 3, 1000} {
		if got := page(t, s, index, limit); !slices.Equal(got, want) {
			t.Fatalf("index %q paged %d at a time = %q, want %q", index, limit, got, want)
		}
	}
}

func testIndexOrder(t *testing.T, h Harness) {
	s := h.Store
	wantIndex(t, s, "never-written", nil)
	members := []string{
		"b", "a", "ab", "a:b", "B", "{user}", "user}", "with space", "tab\tm", "*", "?[]",
		"ünïcødé", "日本語", "😀", "\x01", "\xff", "a\x00b", "z",
	}
	mustIndexPut(t, s, "i", members[:7]...)
	mustIndexPut(t, s, "i", members[7:]...)
	want := slices.Clone(members)
	slices.Sort(want) // Go compares strings byte by byte
	wantIndex(t, s, "i", want)

	// A page may start after a member that is not in the index.
	got, err := s.IndexPage(t.Context(), "i", "aa", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"ab", "b"}) {
		t.Fatalf("IndexPage(after %q, 2) = %q, want [ab b]", "aa", got)
	}
	if got, err := s.IndexPage(t.Context(), "i", "\xff", 5); err != nil || len(got) != 0 {
		t.Fatalf("IndexPage after the last member = %q, %v; want none", got, err)
	}
}

func testIndexPutDelete(t *testing.T, h Harness) {
	s := h.Store
	mustIndexPut(t, s, "i", "a", "b", "c")
	mustIndexPut(t, s, "i", "b", "b", "d")
	wantIndex(t, s, "i", []string{"a", "b", "c", "d"})

	if err := s.IndexDelete(t.Context(), "i", "b", "missing", "d"); err != nil {
		t.Fatalf("IndexDelete: %v", err)
	}
	wantIndex(t, s, "i", []string{"a", "c"})
	if err := s.IndexDelete(t.Context(), "never-written", "a"); err != nil {
		t.Fatalf("IndexDelete on a missing index: %v", err)
	}
	if err := s.IndexDelete(t.Context(), "i"); err != nil {
		t.Fatalf("IndexDelete of nothing: %v", err)
	}
	if err := s.IndexPut(t.Context(), "i"); err != nil {
		t.Fatalf("IndexPut of nothing: %v", err)
	}
	// Deleted means absent: it can come back.
	mustIndexPut(t, s, "i", "b")
	wantIndex(t, s, "i", []string{"a", "b", "c"})

	// Emptied, an index reads as empty, and can fill again.
	if err := s.IndexDelete(t.Context(), "i", "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	wantIndex(t, s, "i", nil)
	mustIndexPut(t, s, "i", "x")
	wantIndex(t, s, "i", []string{"x"})
}

func testIndexApart(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "users", []byte("a value"), 0)
	mustIndexPut(t, s, "users", "alice")
	mustIndexPut(t, s, "other", "bob")
	wantValue(t, s, "users", []byte("a value"))
	wantIndex(t, s, "users", []string{"alice"})
	wantIndex(t, s, "other", []string{"bob"})

	// Changing the key leaves the index alone, and the other way round.
	if err := s.Delete(t.Context(), "users"); err != nil {
		t.Fatal(err)
	}
	wantIndex(t, s, "users", []string{"alice"})
	if err := s.IndexDelete(t.Context(), "users", "alice"); err != nil {
		t.Fatal(err)
	}
	mustSet(t, s, "users", []byte("again"), 0)
	wantIndex(t, s, "users", nil)
	wantIndex(t, s, "other", []string{"bob"})

	// A scan of every key sees keys, never indexes.
	var keys []string
	if err := s.ScanKeys(t.Context(), "", func(k []string) error { keys = append(keys, k...); return nil }); err != nil {
		t.Fatal(err)
	}
	if slices.Sort(keys); !slices.Equal(slices.Compact(keys), []string{"users"}) {
		t.Fatalf("ScanKeys over everything = %q, want [users]", keys)
	}
}

func testIndexRefusals(t *testing.T, h Harness) {
	s := h.Store
	if err := s.IndexPut(t.Context(), "i", "a", ""); err == nil {
		t.Error("IndexPut of an empty member: want an error")
	}
	if err := s.IndexPut(t.Context(), "", "a"); err == nil {
		t.Error("IndexPut to an unnamed index: want an error")
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.IndexPage(t.Context(), "i", "", limit); err == nil {
			t.Errorf("IndexPage with limit %d: want an error", limit)
		}
	}
	wantIndex(t, s, "i", nil)
}

// rangeAll reads [from, to) limit members at a time, each page starting
// where the last one ended (the last member and a NUL byte).
func rangeAll(t *testing.T, s store.Store, index, from, to string, limit int) []string {
	t.Helper()
	var all []string
	for {
		got, err := s.IndexRange(t.Context(), index, from, to, limit)
		if err != nil {
			t.Fatalf("IndexRange(%q, [%q, %q), %d): %v", index, from, to, limit, err)
		}
		if len(got) > limit {
			t.Fatalf("IndexRange(%q, [%q, %q), %d) returned %d members", index, from, to, limit, len(got))
		}
		all = append(all, got...)
		if len(got) < limit {
			return all
		}
		from = got[len(got)-1] + "\x00"
	}
}

func mustCount(t *testing.T, s store.Store, index, from, to string, want int) {
	t.Helper()
	n, err := s.IndexCount(t.Context(), index, from, to)
	if err != nil {
		t.Fatalf("IndexCount(%q, [%q, %q)): %v", index, from, to, err)
	}
	if n != want {
		t.Fatalf("IndexCount(%q, [%q, %q)) = %d, want %d", index, from, to, n, want)
	}
}

func testIndexRange(t *testing.T, h Harness) {
	s := h.Store
	members := []string{"a", "a\x00", "a\x00b", "ab", "abc", "abd", "ac", "b", "b\xff", "\xff", "\xff\xff", "日本"}
	mustIndexPut(t, s, "i", members...)
	slices.Sort(members)
	for _, tc := range []struct {
		from, to string
		want     []string
	}{
		{"", "", members},
		{"a", "", members},
		{"ab", "ac", []string{"ab", "abc", "abd"}}, // a prefix: [p, p with its last byte one up)
		{"abc", "abd", []string{"abc"}},            // from is in, to is out
		{"a\x00", "a\x01", []string{"a\x00", "a\x00b"}},
		{"", "ab", []string{"a", "a\x00", "a\x00b"}},
		{"b", "", []string{"b", "b\xff", "日本", "\xff", "\xff\xff"}},
		{"\xff", "", []string{"\xff", "\xff\xff"}},
		{"c", "d", nil},
		{"b", "a", nil}, // empty: from after to
		{"abd\x00", "", []string{"ac", "b", "b\xff", "日本", "\xff", "\xff\xff"}},
	} {
		for _, limit := range []int{1, 2, 1000} {
			if got := rangeAll(t, s, "i", tc.from, tc.to, limit); !slices.Equal(got, tc.want) {
				t.Fatalf("IndexRange([%q, %q)) %d at a time = %q, want %q", tc.from, tc.to, limit, got, tc.want)
			}
		}
		mustCount(t, s, "i", tc.from, tc.to, len(tc.want))
	}
	mustCount(t, s, "never-written", "", "", 0)
	mustCount(t, s, "never-written", "a", "b", 0)
	if got := rangeAll(t, s, "never-written", "", "", 5); len(got) != 0 {
		t.Fatalf("IndexRange of an index never written = %q", got)
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.IndexRange(t.Context(), "i", "", "", limit); err == nil {
			t.Errorf("IndexRange with limit %d: want an error", limit)
		}
	}
}

// Counts follow puts (a member put twice counts once) and deletes, and
// each index counts its own.
func testIndexCount(t *testing.T, h Harness) {
	s := h.Store
	var many []string
	for i := range 1500 {
		many = append(many, fmt.Sprintf("%016x", i))
	}
	mustIndexPut(t, s, "big", many...)
	mustIndexPut(t, s, "big", many[:10]...)
	mustIndexPut(t, s, "small", "x")
	mustCount(t, s, "big", "", "", 1500)
	mustCount(t, s, "small", "", "", 1)
	mustCount(t, s, "big", fmt.Sprintf("%016x", 1000), "", 500)
	mustCount(t, s, "big", fmt.Sprintf("%016x", 10), fmt.Sprintf("%016x", 20), 10)
	if err := s.IndexDelete(t.Context(), "big", many[:100]...); err != nil {
		t.Fatal(err)
	}
	mustCount(t, s, "big", "", "", 1400)
	mustCount(t, s, "big", "", fmt.Sprintf("%016x", 200), 100)
	if err := s.IndexDelete(t.Context(), "big", many...); err != nil {
		t.Fatal(err)
	}
	mustCount(t, s, "big", "", "", 0)
	mustCount(t, s, "small", "", "", 1)
}

func testConcurrentIndexPut(t *testing.T, h Harness) {
	s := h.Store
	const n = 50
	parallel(n, func(i int) {
		if err := s.IndexPut(t.Context(), "i", fmt.Sprintf("m%02d", i), "shared"); err != nil {
			t.Errorf("goroutine %d: IndexPut: %v", i, err)
		}
	})
	if t.Failed() {
		return
	}
	want := []string{}
	for i := range n {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	wantIndex(t, s, "i", append(want, "shared"))
}

// ---- key scans ----

// scanAll returns the distinct keys ScanKeys visits, sorted.
func scanAll(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	calls := 0
	err := s.ScanKeys(t.Context(), prefix, func(batch []string) error {
		calls++
		if len(batch) == 0 {
			t.Errorf("ScanKeys(%q) visited an empty batch", prefix)
		}
		keys = append(keys, batch...)
		return nil
	})
	if err != nil {
		t.Fatalf("ScanKeys(%q): %v", prefix, err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func testScanKeys(t *testing.T, h Harness) {
	s := h.Store
	if got := scanAll(t, s, "user:"); len(got) != 0 {
		t.Fatalf("ScanKeys on an empty store = %q", got)
	}
	for _, k := range []string{"user:a", "user:b", "user:{x}", "user:", "users", "use", "other:user:c", "user:gone"} {
		mustSet(t, s, k, []byte("v"), 0)
	}
	mustSet(t, s, "user:expiring", []byte("v"), time.Second)
	mustIncrement(t, s, "user:counter", 0, 1)
	if err := s.Delete(t.Context(), "user:gone"); err != nil {
		t.Fatal(err)
	}
	mustIndexPut(t, s, "user:index", "user:member")
	h.Advance(time.Second)

	want := []string{"user:", "user:a", "user:b", "user:counter", "user:{x}"}
	if got := scanAll(t, s, "user:"); !slices.Equal(got, want) {
		t.Fatalf("ScanKeys(user:) = %q, want %q", got, want)
	}
	// Characters that are wildcards somewhere are only themselves here.
	for _, k := range []string{"?[]", "?[]x", "*", "*a", "\\", "\\*", "[a]"} {
		mustSet(t, s, k, []byte("v"), 0)
	}
	for prefix, want := range map[string][]string{
		"?[]": {"?[]", "?[]x"},
		"*":   {"*", "*a"},
		"\\":  {"\\", "\\*"},
		"[":   {"[a]"},
		"a":   nil,
	} {
		if got := scanAll(t, s, prefix); !slices.Equal(got, want) {
			t.Errorf("ScanKeys(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testScanManyKeys(t *testing.T, h Harness) {
	s := h.Store
	const n = 1500 // more than one batch of either store
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("k:%05d", i)
		mustSet(t, s, want[i], []byte("v"), 0)
	}
	mustSet(t, s, "l:other", []byte("v"), 0)
	if got := scanAll(t, s, "k:"); !slices.Equal(got, want) {
		t.Fatalf("ScanKeys(k:) over %d keys gave %d of them", n, len(got))
	}
}

func testScanVisitError(t *testing.T, h Harness) {
	s := h.Store
	for i := range 1500 {
		mustSet(t, s, fmt.Sprintf("k:%05d", i), []byte("v"), 0)
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.ScanKeys(t.Context(), "k:", func([]string) error { calls++; return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("ScanKeys with a failing visit = %v, want its error", err)
	}
	if calls != 1 {
		t.Fatalf("visit called %d times after it failed, want once", calls)
	}
}

// ---- contexts ----

func testCanceledContext(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "k", []byte("v"), 0)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	// A store may honour or ignore cancellation, but it must not hang.
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "k"); return err }},
		{"Set", func() error { return s.Set(ctx, "k2", []byte("v"), 0) }},
		{"Delete", func() error { return s.Delete(ctx, "k2") }},
		{"CompareAndSwap", func() error { _, err := s.CompareAndSwap(ctx, "k3", nil, []byte("v"), 0); return err }},
		{"Increment", func() error { _, err := s.Increment(ctx, "n", 0); return err }},
		{"IndexPut", func() error { return s.IndexPut(ctx, "i", "m") }},
		{"IndexDelete", func() error { return s.IndexDelete(ctx, "i", "m") }},
		{"IndexPage", func() error { _, err := s.IndexPage(ctx, "i", "", 10); return err }},
		{"ScanKeys", func() error { return s.ScanKeys(ctx, "", func([]string) error { return nil }) }},
		{"LogAppend", func() error { _, err := s.LogAppend(ctx, "l", []byte("v")); return err }},
		{"LogRange", func() error { _, err := s.LogRange(ctx, "l", "", "", 10, true); return err }},
		{"LogTrim", func() error { _, err := s.LogTrim(ctx, "l", time.Now()); return err }},
	}
	for _, c := range calls {
		done := make(chan error, 1)
		go func() { done <- c.fn() }()
		select {
		case err := <-done:
			t.Logf("%s with canceled context returned %v", c.name, err)
		case <-time.After(time.Second):
			t.Fatalf("%s with a canceled context did not return within 1s", c.name)
		}
	}

	// The store is still usable with a live context.
	wantValue(t, s, "k", []byte("v"))
}
