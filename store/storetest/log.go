package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// The append-only logs: IDs, ranges, paging, trimming.

func mustAppend(t *testing.T, s store.Store, log string, value []byte) store.LogEntry {
	t.Helper()
	es, err := s.LogAppend(t.Context(), log, value)
	if err != nil {
		t.Fatalf("LogAppend(%q): %v", log, err)
	}
	if len(es) != 1 {
		t.Fatalf("LogAppend(%q) of one value returned %d entries", log, len(es))
	}
	e := es[0]
	if _, _, err := store.ParseLogID(e.ID); err != nil {
		t.Fatalf("LogAppend(%q) gave ID %q: %v", log, e.ID, err)
	}
	if !bytes.Equal(e.Value, value) || e.Value == nil {
		t.Fatalf("LogAppend(%q) returned value %q, want %q", log, abbrev(e.Value), abbrev(value))
	}
	return e
}

func mustRange(t *testing.T, s store.Store, log, from, to string, limit int, newestFirst bool) []store.LogEntry {
	t.Helper()
	out, err := s.LogRange(t.Context(), log, from, to, limit, newestFirst)
	if err != nil {
		t.Fatalf("LogRange(%q, %q, %q, %d, %v): %v", log, from, to, limit, newestFirst, err)
	}
	return out
}

func ids(entries []store.LogEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

func wantIDs(t *testing.T, what string, got []store.LogEntry, want []string) {
	t.Helper()
	if g := ids(got); !slices.Equal(g, want) {
		t.Fatalf("%s = %v, want %v", what, g, want)
	}
}

// appendN appends n entries "0", "1", ... and returns them.
func appendN(t *testing.T, s store.Store, log string, n int) []store.LogEntry {
	t.Helper()
	out := make([]store.LogEntry, n)
	for i := range out {
		out[i] = mustAppend(t, s, log, fmt.Appendf(nil, "%d", i))
	}
	return out
}

// reversed returns the IDs of entries, newest first.
func reversed(entries []store.LogEntry) []string {
	out := ids(entries)
	slices.Reverse(out)
	return out
}

func testLogAppendOrder(t *testing.T, h Harness) {
	s := h.Store
	entries := appendN(t, s, "audit", 5)
	for i := 1; i < len(entries); i++ {
		if store.CompareLogIDs(entries[i-1].ID, entries[i].ID) >= 0 {
			t.Fatalf("ID %s appended after %s is not greater", entries[i].ID, entries[i-1].ID)
		}
		if entries[i].Time.Before(entries[i-1].Time) {
			t.Fatalf("entry %s has time %v before the previous one's %v", entries[i].ID, entries[i].Time, entries[i-1].Time)
		}
	}
	got := mustRange(t, s, "audit", "", "", 100, false)
	wantIDs(t, "the whole log", got, ids(entries))
	for i, e := range got {
		if string(e.Value) != fmt.Sprint(i) || !e.Time.Equal(entries[i].Time) {
			t.Fatalf("entry %d read back as %q at %v, want %q at %v", i, e.Value, e.Time, fmt.Sprint(i), entries[i].Time)
		}
		if ms, _, _ := store.ParseLogID(e.ID); e.Time.UnixMilli() != int64(ms) {
			t.Fatalf("entry %s has time %v, not its ID's millisecond", e.ID, e.Time)
		}
	}
	// The slices are the caller's.
	got[0].Value[0] = 'X'
	if again := mustRange(t, s, "audit", "", "", 1, false); string(again[0].Value) != "0" {
		t.Fatalf("changing a returned value changed the log: %q", again[0].Value)
	}
}

// Several values appended at once land in order, after what was there,
// with the IDs the entries then read back with.
func testLogAppendBatch(t *testing.T, h Harness) {
	s := h.Store
	first := mustAppend(t, s, "audit", []byte("before"))
	es, err := s.LogAppend(t.Context(), "audit", []byte("a"), []byte(""), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Fatalf("LogAppend of 3 values returned %d entries", len(es))
	}
	all := mustRange(t, s, "audit", "", "", 10, false)
	if len(all) != 4 || all[0].ID != first.ID {
		t.Fatalf("log after the batch: %v", ids(all))
	}
	for i, e := range es {
		if all[i+1].ID != e.ID || !bytes.Equal(all[i+1].Value, e.Value) || all[i+1].Value == nil {
			t.Errorf("entry %d returned %s %q, read back %s %q", i, e.ID, e.Value, all[i+1].ID, all[i+1].Value)
		}
		if store.CompareLogIDs(e.ID, all[i].ID) <= 0 {
			t.Errorf("entry %d's ID %s is not after %s", i, e.ID, all[i].ID)
		}
	}
	if string(all[1].Value) != "a" || len(all[2].Value) != 0 || string(all[3].Value) != "c" {
		t.Errorf("values out of order: %q %q %q", all[1].Value, all[2].Value, all[3].Value)
	}
}

func testLogConcurrentAppend(t *testing.T, h Harness) {
	s := h.Store
	const writers, each = 8, 25
	var (
		mu  sync.Mutex
		got = map[string]string{} // ID -> value
		own = make([][]string, writers)
	)
	parallel(writers, func(w int) {
		for i := range each {
			v := fmt.Sprintf("%d/%d", w, i)
			es, err := s.LogAppend(t.Context(), "audit", []byte(v))
			if err != nil {
				t.Errorf("LogAppend %s: %v", v, err)
				return
			}
			e := es[0]
			mu.Lock()
			if prev, dup := got[e.ID]; dup {
				t.Errorf("ID %s given to both %s and %s", e.ID, prev, v)
			}
			got[e.ID] = v
			own[w] = append(own[w], e.ID)
			mu.Unlock()
		}
	})
	if t.Failed() {
		return
	}
	all := mustRange(t, s, "audit", "", "", store.MaxLogRange, false)
	if len(all) != writers*each {
		t.Fatalf("%d entries after %d appends", len(all), writers*each)
	}
	for i, e := range all {
		if got[e.ID] != string(e.Value) {
			t.Fatalf("entry %s holds %q, its append said %q", e.ID, e.Value, got[e.ID])
		}
		if i > 0 && store.CompareLogIDs(all[i-1].ID, e.ID) >= 0 {
			t.Fatalf("range not in ID order: %s then %s", all[i-1].ID, e.ID)
		}
	}
	// Each writer's appends, one after the other, are in its order.
	for w, list := range own {
		if !slices.IsSortedFunc(list, store.CompareLogIDs) {
			t.Fatalf("writer %d's appends got IDs out of order: %v", w, list)
		}
	}
}

func testLogRangeBounds(t *testing.T, h Harness) {
	s := h.Store
	e := appendN(t, s, "audit", 6)
	all := ids(e)
	rev := reversed(e)
	cases := []struct {
		from, to string
		limit    int
		want     []string // oldest first
	}{
		{"", "", 10, all},
		{e[2].ID, "", 10, all[2:]},
		{"", e[2].ID, 10, all[:2]},
		{e[1].ID, e[4].ID, 10, all[1:4]},
		{e[3].ID, e[3].ID, 10, nil},
		{"0-0", "0-0", 10, nil},
		{"", "0-0", 10, nil},
		{"0-1", "", 10, all},
		{store.FormatLogID(^uint64(0), 0), "", 10, nil},
	}
	for _, c := range cases {
		name := fmt.Sprintf("[%s, %s)", c.from, c.to)
		wantIDs(t, name+" oldest first", mustRange(t, s, "audit", c.from, c.to, c.limit, false), c.want)
		want := slices.Clone(c.want)
		slices.Reverse(want)
		wantIDs(t, name+" newest first", mustRange(t, s, "audit", c.from, c.to, c.limit, true), want)
	}
	// A limit keeps the oldest, or the newest.
	wantIDs(t, "2 oldest", mustRange(t, s, "audit", "", "", 2, false), all[:2])
	wantIDs(t, "2 newest", mustRange(t, s, "audit", "", "", 2, true), rev[:2])
	wantIDs(t, "2 newest before e[4]", mustRange(t, s, "audit", "", e[4].ID, 2, true), []string{all[3], all[2]})
	wantIDs(t, "2 oldest from e[3]", mustRange(t, s, "audit", e[3].ID, "", 2, false), all[3:5])
	// An ID between two entries bounds as well as one of them.
	after, err := store.LogIDAfter(e[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "from just after e[1]", mustRange(t, s, "audit", after, "", 10, false), all[2:])
	wantIDs(t, "to just after e[1]", mustRange(t, s, "audit", "", after, 10, true), []string{all[1], all[0]})
}

func testLogPaging(t *testing.T, h Harness) {
	s := h.Store
	e := appendN(t, s, "audit", 103)
	const limit = 10

	var forward []store.LogEntry
	for from := ""; ; {
		page := mustRange(t, s, "audit", from, "", limit, false)
		forward = append(forward, page...)
		if len(page) < limit {
			break
		}
		next, err := store.LogIDAfter(page[len(page)-1].ID)
		if err != nil {
			t.Fatal(err)
		}
		from = next
	}
	wantIDs(t, "paged oldest first", forward, ids(e))

	var backward []store.LogEntry
	for to := ""; ; {
		page := mustRange(t, s, "audit", "", to, limit, true)
		backward = append(backward, page...)
		if len(page) < limit {
			break
		}
		to = page[len(page)-1].ID
	}
	wantIDs(t, "paged newest first", backward, reversed(e))

	// Newest first within a time window, as an audit query pages.
	from, to := e[20].ID, e[90].ID
	var window []store.LogEntry
	for bound := to; ; {
		page := mustRange(t, s, "audit", from, bound, limit, true)
		window = append(window, page...)
		if len(page) < limit {
			break
		}
		bound = page[len(page)-1].ID
	}
	wantIDs(t, "paged newest first in [e20, e90)", window, reversed(e[20:90]))
}

func testLogIDAt(t *testing.T, h Harness) {
	s := h.Store
	early := appendN(t, s, "audit", 2)
	h.Advance(2 * time.Second)
	late := appendN(t, s, "audit", 2)
	if d := late[0].Time.Sub(early[1].Time); d < 2*time.Second {
		t.Fatalf("entries 2s apart have times %v apart", d)
	}
	mid := early[1].Time.Add(time.Second)
	wantIDs(t, "from LogIDAt(a time between)", mustRange(t, s, "audit", store.LogIDAt(mid), "", 10, false), ids(late))
	wantIDs(t, "to LogIDAt(a time between)", mustRange(t, s, "audit", "", store.LogIDAt(mid), 10, false), ids(early))
	// At an entry's own time: from includes it, to excludes it.
	wantIDs(t, "from LogIDAt(late[0].Time)", mustRange(t, s, "audit", store.LogIDAt(late[0].Time), "", 10, false), ids(late))
	wantIDs(t, "to LogIDAt(late[0].Time)", mustRange(t, s, "audit", "", store.LogIDAt(late[0].Time), 10, false), ids(early))
	wantIDs(t, "from a millisecond after the last", mustRange(t, s, "audit", store.LogIDAt(late[1].Time.Add(time.Millisecond)), "", 10, false), nil)
	if id := store.LogIDAt(time.Unix(-5, 0)); id != "0-0" {
		t.Fatalf("LogIDAt before 1970 = %q, want 0-0", id)
	}
	if id := store.LogIDAt(time.UnixMilli(1700000000123).Add(999 * time.Microsecond)); id != "1700000000123-0" {
		t.Fatalf("LogIDAt within a millisecond = %q, want 1700000000123-0", id)
	}
}

func testLogTrim(t *testing.T, h Harness) {
	s := h.Store
	old := appendN(t, s, "audit", 3)
	h.Advance(time.Second)
	kept := appendN(t, s, "audit", 2)
	other := appendN(t, s, "other", 2)

	n, err := s.LogTrim(t.Context(), "audit", kept[0].Time)
	if err != nil || n != len(old) {
		t.Fatalf("LogTrim before the kept entries = %d, %v; want %d", n, err, len(old))
	}
	wantIDs(t, "after trimming", mustRange(t, s, "audit", "", "", 10, false), ids(kept))
	wantIDs(t, "another log after trimming", mustRange(t, s, "other", "", "", 10, false), ids(other))
	if n, err := s.LogTrim(t.Context(), "audit", kept[0].Time); err != nil || n != 0 {
		t.Fatalf("trimming again = %d, %v; want 0", n, err)
	}
	// Trimming everything leaves an empty log whose IDs still go up.
	if n, err := s.LogTrim(t.Context(), "audit", kept[1].Time.Add(time.Hour)); err != nil || n != len(kept) {
		t.Fatalf("trimming all = %d, %v; want %d", n, err, len(kept))
	}
	wantIDs(t, "after trimming all", mustRange(t, s, "audit", "", "", 10, false), nil)
	if e := mustAppend(t, s, "audit", []byte("after")); store.CompareLogIDs(e.ID, kept[1].ID) <= 0 {
		t.Fatalf("ID %s after trimming is not above the last ID %s", e.ID, kept[1].ID)
	}
}

// testLogTrimMany trims more entries than a batch of either store.
func testLogTrimMany(t *testing.T, h Harness) {
	s := h.Store
	const n = 2500
	appendN(t, s, "audit", n)
	h.Advance(time.Second)
	kept := mustAppend(t, s, "audit", []byte("kept"))
	got, err := s.LogTrim(t.Context(), "audit", kept.Time)
	if err != nil || got != n {
		t.Fatalf("LogTrim of %d entries = %d, %v", n, got, err)
	}
	wantIDs(t, "after trimming", mustRange(t, s, "audit", "", "", 10, false), []string{kept.ID})
}

func testLogEmptyAndMissing(t *testing.T, h Harness) {
	s := h.Store
	for _, newest := range []bool{false, true} {
		if got := mustRange(t, s, "nothing", "", "", 10, newest); len(got) != 0 {
			t.Fatalf("a missing log has entries %v", ids(got))
		}
	}
	if n, err := s.LogTrim(t.Context(), "nothing", time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("LogTrim of a missing log = %d, %v; want 0, nil", n, err)
	}
	// Logs are apart from keys, indexes and each other.
	mustSet(t, s, "audit", []byte("a key"), 0)
	mustIndexPut(t, s, "audit", "member")
	e := mustAppend(t, s, "audit", []byte("entry"))
	wantValue(t, s, "audit", []byte("a key"))
	wantIndex(t, s, "audit", []string{"member"})
	wantIDs(t, "the log beside a key and an index", mustRange(t, s, "audit", "", "", 10, false), []string{e.ID})
	if got := mustRange(t, s, "audit2", "", "", 10, false); len(got) != 0 {
		t.Fatalf("a log named like another has its entries: %v", ids(got))
	}
	if keys := scanAll(t, s, ""); !slices.Equal(keys, []string{"audit"}) {
		t.Fatalf("ScanKeys sees %q, want only the key", keys)
	}
}

func testLogBinaryValues(t *testing.T, h Harness) {
	s := h.Store
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	values := [][]byte{{}, {0}, []byte("a\x00b"), {0xff, 0xfe, 0xc3, 0x28}, []byte("v\r\n*1\r\n"), big}
	var want []string
	for _, v := range values {
		want = append(want, mustAppend(t, s, "bin", v).ID)
	}
	got := mustRange(t, s, "bin", "", "", 10, false)
	wantIDs(t, "binary entries", got, want)
	for i, e := range got {
		if !bytes.Equal(e.Value, values[i]) || e.Value == nil {
			t.Fatalf("entry %d read back as %q (nil: %v), want %q", i, abbrev(e.Value), e.Value == nil, abbrev(values[i]))
		}
	}
}

func testLogRefusals(t *testing.T, h Harness) {
	s := h.Store
	e := appendN(t, s, "audit", 2)
	ctx := t.Context()
	for _, c := range []struct {
		name     string
		log      string
		from, to string
		limit    int
		field    string
	}{
		{"limit 0", "audit", "", "", 0, "limit"},
		{"negative limit", "audit", "", "", -1, "limit"},
		{"limit above the most", "audit", "", "", store.MaxLogRange + 1, "limit"},
		{"from after to", "audit", e[1].ID, e[0].ID, 10, "from"},
		{"malformed from", "audit", "yesterday", "", 10, "from"},
		{"malformed to", "audit", "", "12", 10, "to"},
		{"signed to", "audit", "", "-1-0", 10, "to"},
		{"to too large", "audit", "", "99999999999999999999-0", 10, "to"},
		{"no log name", "", "", "", 10, "log name"},
	} {
		for _, newest := range []bool{false, true} {
			got, err := s.LogRange(ctx, c.log, c.from, c.to, c.limit, newest)
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Errorf("LogRange with %s (newest first %v) = %v, %v; want an error naming %q", c.name, newest, ids(got), err, c.field)
			}
		}
	}
	if _, err := s.LogAppend(ctx, "", []byte("v")); err == nil || !strings.Contains(err.Error(), "log name") {
		t.Errorf("LogAppend with no log name = %v, want an error naming the log name", err)
	}
	if _, err := s.LogAppend(ctx, "audit"); err == nil || !strings.Contains(err.Error(), "values") {
		t.Errorf("LogAppend of no values = %v, want an error naming the values", err)
	}
	if _, err := s.LogAppend(ctx, "audit", make([][]byte, store.MaxLogAppend+1)...); err == nil || !strings.Contains(err.Error(), "values") {
		t.Errorf("LogAppend of %d values = %v, want an error naming the values", store.MaxLogAppend+1, err)
	}
	if _, err := s.LogTrim(ctx, "", time.Now()); err == nil || !strings.Contains(err.Error(), "log name") {
		t.Errorf("LogTrim with no log name = %v, want an error naming the log name", err)
	}
	if _, err := store.LogIDAfter("x"); err == nil {
		t.Error("LogIDAfter of a malformed ID gave no error")
	}
	// Nothing refused changed the log.
	wantIDs(t, "after the refusals", mustRange(t, s, "audit", "", "", 10, false), ids(e))
}
