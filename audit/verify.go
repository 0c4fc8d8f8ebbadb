package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"

	"github.com/caddy-twofactor/twofactor/store"
)

// Problems Verify reports.
const (
	// Altered: an entry's record, number or links no longer match its MAC.
	Altered = "altered"
	// Inserted: an entry that is not the next link of the chain, such as
	// a forged one, a copy or one the store did not write.
	Inserted = "inserted"
	// Missing: entries are gone from the middle of the chain (a gap in
	// the sequence numbers), or from its end when the trail knows the
	// last number it appended.
	Missing = "missing"
)

// VerifyResult is what Verify found. Problem is "" when the log is
// intact, else Altered, Inserted or Missing; FirstBad is the ID of the
// first entry at fault: the entry after the gap for Missing, and "" when
// the newest entries are missing.
type VerifyResult struct {
	Checked  int    `json:"checked"`
	FirstBad string `json:"first_bad,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

// verifyChunk is how many entries Verify reads at once.
const verifyChunk = 1000

// Verify walks instance's log oldest first and checks its chain, stopping
// at the first fault. Checked counts the entries found sound.
//
// What it detects, without the key: any change to an entry's record,
// number or MACs (Altered); an entry added anywhere, forged or copied from
// elsewhere in the log (Inserted); entries deleted from the middle
// (Missing: a gap in the numbers, which are signed). An entry whose own
// MAC fails is Altered if the next entry still links to it, Inserted if
// the next links past it; the newest entry has no next, so a forged entry
// at the end that takes the next number reads as Altered.
//
// What it does not detect: the oldest entries removed, since trimming by
// age does exactly that and the first remaining entry's predecessor is
// gone (the chain starts from the prevMAC it carries, which its MAC
// covers; only an entry numbered 1 is checked against the genesis value);
// and the newest entries removed, unless instance is this trail's own and
// the trail has appended or loaded since it started, when the last number
// it knows is compared. A log deleted whole looks like a new one. Anyone
// holding the key can rewrite the chain, so the key stays out of the store.
func (t *Trail) Verify(ctx context.Context, instance string) (VerifyResult, error) {
	var res VerifyResult
	it := &walker{st: t.st, log: logName(instance)}
	var last *stored
	for {
		e, err := it.next(ctx)
		if err != nil {
			return res, fmt.Errorf("audit: verify %s: %w", instance, err)
		}
		if e == nil {
			break
		}
		cur, ok := decodeStored(*e)
		switch {
		case !ok:
			res.Problem = Inserted // not an entry of the trail
			if e.Value != nil {
				res.Problem = Altered
			}
		case !t.signedBy(cur.MAC, cur.Prev, cur.N, cur.Record):
			res.Problem = Altered
			nx, err := it.peek(ctx)
			if err != nil {
				return res, fmt.Errorf("audit: verify %s: %w", instance, err)
			}
			if nxs, ok := decodeStoredPtr(nx); ok && last != nil && bytes.Equal(nxs.Prev, last.MAC) && nxs.N == last.N+1 {
				res.Problem = Inserted // the chain goes on past it
			}
		case last == nil && cur.N == 1 && !t.isGenesis(cur.Prev, instance):
			res.Problem = Inserted // a first entry from another chain
		case last != nil && cur.N <= last.N:
			res.Problem = Inserted
		case last != nil && cur.N > last.N+1:
			res.Problem = Missing
		case last != nil && !hmac.Equal(cur.Prev, last.MAC):
			res.Problem = Inserted // a sound entry of another chain
		case recordInstance(cur.Record) != instance:
			res.Problem = Inserted // a sound chain copied from another instance's log
		}
		if res.Problem != "" {
			res.FirstBad = e.ID
			return res, nil
		}
		last = &cur
		res.Checked++
	}
	if instance == t.instance {
		t.c.mu.Lock()
		known, n := t.c.loaded, t.c.n
		t.c.mu.Unlock()
		if known && (last == nil && n > 0 || last != nil && last.N < n) {
			res.Problem = Missing
		}
	}
	return res, nil
}

// recordInstance is the instance a record names, which its MAC covers.
func recordInstance(rec []byte) string {
	var r struct {
		Instance string `json:"instance"`
	}
	_ = json.Unmarshal(rec, &r)
	return r.Instance
}

func decodeStored(e store.LogEntry) (stored, bool) {
	var s stored
	if e.Value == nil || json.Unmarshal(e.Value, &s) != nil || s.N == 0 || len(s.MAC) == 0 {
		return stored{}, false
	}
	return s, true
}

func decodeStoredPtr(e *store.LogEntry) (stored, bool) {
	if e == nil {
		return stored{}, false
	}
	return decodeStored(*e)
}

// walker reads a log oldest first, a chunk at a time, with a look ahead.
type walker struct {
	st   store.Store
	log  string
	buf  []store.LogEntry
	from string
	end  bool
}

func (w *walker) fill(ctx context.Context) error {
	if len(w.buf) > 0 || w.end {
		return nil
	}
	got, err := w.st.LogRange(ctx, w.log, w.from, "", verifyChunk, false)
	if err != nil {
		return err
	}
	if len(got) < verifyChunk {
		w.end = true
	}
	if len(got) > 0 {
		if w.from, err = store.LogIDAfter(got[len(got)-1].ID); err != nil {
			return err
		}
	}
	w.buf = got
	return nil
}

func (w *walker) peek(ctx context.Context) (*store.LogEntry, error) {
	if err := w.fill(ctx); err != nil || len(w.buf) == 0 {
		return nil, err
	}
	return &w.buf[0], nil
}

func (w *walker) next(ctx context.Context) (*store.LogEntry, error) {
	e, err := w.peek(ctx)
	if e != nil {
		w.buf = w.buf[1:]
	}
	return e, err
}
