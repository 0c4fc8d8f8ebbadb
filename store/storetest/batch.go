package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// batch runs ops on the store's own Batch: a store that fell back to one
// call per op would pass the results but not the point.
func batch(t *testing.T, s store.Store, ops ...*store.Op) {
	t.Helper()
	b, ok := s.(store.Batcher)
	if !ok {
		t.Fatalf("%T is not a store.Batcher", s)
	}
	if err := b.Batch(t.Context(), ops...); err != nil {
		t.Fatalf("Batch: %v", err)
	}
}

func testBatchResults(t *testing.T, h Harness) {
	s := h.Store
	mustSet(t, s, "a", []byte("old"), 0)
	mustSet(t, s, "gone", []byte("x"), 0)
	mustIncrement(t, s, "n", 0, 1)
	getA, getMissing := store.GetOp("a"), store.GetOp("missing")
	casA, casAbsent, casWrong := store.CompareAndSwapOp("a", []byte("old"), []byte("new"), 0),
		store.CompareAndSwapOp("c", nil, []byte("made"), 0), store.CompareAndSwapOp("gone", []byte("y"), nil, 0)
	incN, incM := store.IncrementOp("n", 0), store.IncrementOp("m", 0)
	empty := store.GetOp("empty")
	mustSet(t, s, "empty", []byte{}, 0)
	batch(t, s, getA, getMissing, store.SetOp("b", []byte("set"), 0), casA, casAbsent, casWrong, incN, incM,
		store.DeleteOp("gone-too"), empty)
	if !getA.Found || string(getA.Value) != "old" {
		t.Errorf("Get a: %q, found %t; want \"old\"", getA.Value, getA.Found)
	}
	if getMissing.Found || getMissing.Value != nil {
		t.Errorf("Get missing: %q, found %t; want not found", getMissing.Value, getMissing.Found)
	}
	if !empty.Found || empty.Value == nil || len(empty.Value) != 0 {
		t.Errorf("Get of an empty value: %q (nil %t), found %t; want found, empty", empty.Value, empty.Value == nil, empty.Found)
	}
	if !casA.Swapped || !casAbsent.Swapped || casWrong.Swapped {
		t.Errorf("swaps: match %t, absent %t, mismatch %t; want true, true, false", casA.Swapped, casAbsent.Swapped, casWrong.Swapped)
	}
	if incN.Count != 2 || incM.Count != 1 {
		t.Errorf("counts %d, %d; want 2, 1", incN.Count, incM.Count)
	}
	wantValue(t, s, "a", []byte("new"))
	wantValue(t, s, "b", []byte("set"))
	wantValue(t, s, "c", []byte("made"))
	wantValue(t, s, "gone", []byte("x"))
	wantValue(t, s, "n", []byte("2"))

	// The values read belong to the caller.
	getA = store.GetOp("a")
	batch(t, s, getA)
	getA.Value[0] = 'X'
	wantValue(t, s, "a", []byte("new"))

	// An op's results are its own, whatever it held before.
	getA.Found, getA.Value = true, []byte("stale")
	getMissing.Found, getMissing.Value = true, []byte("stale")
	batch(t, s, getA, getMissing, store.DeleteOp("a"))
	if getMissing.Found || getMissing.Value != nil || string(getA.Value) != "new" {
		t.Errorf("a second run: %q %t, %q; want \"new\", nothing", getA.Value, getMissing.Found, getMissing.Value)
	}
	wantNotFound(t, s, "a")
}

func testBatchSameKey(t *testing.T, h Harness) {
	s := h.Store
	get1, cas, get2, inc1, inc2, get3 := store.GetOp("k"), store.CompareAndSwapOp("k", []byte("v1"), []byte("v2"), 0),
		store.GetOp("k"), store.IncrementOp("n", 0), store.IncrementOp("n", 0), store.GetOp("k")
	batch(t, s, store.SetOp("k", []byte("v1"), 0), get1, cas, get2, inc1, inc2, store.DeleteOp("k"), get3)
	if string(get1.Value) != "v1" || !cas.Swapped || string(get2.Value) != "v2" || get3.Found {
		t.Errorf("in order: %q, swapped %t, %q, found after delete %t", get1.Value, cas.Swapped, get2.Value, get3.Found)
	}
	if inc1.Count != 1 || inc2.Count != 2 {
		t.Errorf("counts %d, %d; want 1, 2", inc1.Count, inc2.Count)
	}
}

func testBatchExpiry(t *testing.T, h Harness) {
	s := h.Store
	batch(t, s, store.SetOp("set", []byte("v"), 2*time.Second), store.IncrementOp("n", 2*time.Second),
		store.CompareAndSwapOp("cas", nil, []byte("v"), 2*time.Second), store.SetOp("kept", []byte("v"), 0))
	h.Advance(1 * time.Second)
	inc := store.IncrementOp("n", 2*time.Second)
	batch(t, s, inc)
	if inc.Count != 2 {
		t.Fatalf("count %d, want 2", inc.Count)
	}
	h.Advance(1 * time.Second)
	get := store.GetOp("set")
	batch(t, s, get)
	if get.Found {
		t.Error("a value set with a 2s ttl is there after 2s")
	}
	wantNotFound(t, s, "n") // the second increment did not extend it
	wantNotFound(t, s, "cas")
	wantValue(t, s, "kept", []byte("v"))
}

func testBatchRefusals(t *testing.T, h Harness) {
	s := h.Store
	b, ok := s.(store.Batcher)
	if !ok {
		t.Fatalf("%T is not a store.Batcher", s)
	}
	_, notices := s.(store.Notifier)
	for _, c := range []struct {
		name string
		ops  []*store.Op
		want string
	}{
		{"negative ttl", []*store.Op{store.SetOp("x", []byte("v"), 0), store.IncrementOp("y", -time.Second)}, "op 1"},
		{"unknown kind", []*store.Op{store.SetOp("x", []byte("v"), 0), {Kind: 99, Key: "y"}}, "op 1"},
		{"nil op", []*store.Op{store.SetOp("x", []byte("v"), 0), nil}, "op 1"},
		{"announced set", []*store.Op{store.SetOp("x", []byte("v"), 0), store.SetOp("y", []byte("v"), 0).Announce("changes", []byte("m"))}, "op 1"},
	} {
		err := b.Batch(t.Context(), c.ops...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
		wantNotFound(t, s, "x") // refused before anything ran
	}
	if !notices {
		err := b.Batch(t.Context(), store.SetOp("x", []byte("v"), 0), store.PublishOp("changes", []byte("m")))
		if err == nil || !strings.Contains(err.Error(), "op 1") {
			t.Errorf("publish on a store without notices: %v, want an error naming op 1", err)
		}
		wantNotFound(t, s, "x")
		err = b.Batch(t.Context(), store.SetOp("x", []byte("v"), 0), store.CompareAndSwapOp("y", nil, []byte("v"), 0).Announce("changes", []byte("m")))
		if err == nil || !strings.Contains(err.Error(), "op 1") {
			t.Errorf("an announced swap on a store without notices: %v, want an error naming op 1", err)
		}
		wantNotFound(t, s, "x")
		wantNotFound(t, s, "y")
	}
	if err := b.Batch(t.Context()); err != nil {
		t.Errorf("an empty batch: %v", err)
	}
}

// testBatchConcurrent checks that each op stays atomic on its key when
// batches run at once: every increment counted once, one create wins.
func testBatchConcurrent(t *testing.T, h Harness) {
	s := h.Store
	const n = 20
	won := make([]bool, n)
	parallel(n, func(i int) {
		cas := store.CompareAndSwapOp("once", nil, []byte{byte(i)}, 0)
		if err := store.RunBatch(t.Context(), s, store.IncrementOp("count", 0), cas, store.IncrementOp("count2", 0)); err != nil {
			t.Error(err)
		}
		won[i] = cas.Swapped
	})
	wantValue(t, s, "count", []byte("20"))
	wantValue(t, s, "count2", []byte("20"))
	winners := 0
	for i, w := range won {
		if w {
			winners++
			wantValue(t, s, "once", []byte{byte(i)})
		}
	}
	if winners != 1 {
		t.Errorf("%d batches created the key, want 1", winners)
	}
}
