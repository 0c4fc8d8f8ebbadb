package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// MaxLimit is the most records one Query page returns.
const MaxLimit = 1000

// readFactor bounds the entries one page reads: at most readFactor*limit,
// then the page ends with a Next even if it has fewer than limit records,
// so a filter that matches little cannot make one request read the whole
// trail (as the member list does).
const readFactor = 20

// Filter selects records; zero fields match everything. Since is
// inclusive, Until exclusive, both by the record's time (the gateway's
// clock). Every field is matched in memory, within the read budget: the
// log's IDs count the store's clock, which may differ from the gateway's,
// so they do not bound the reads.
type Filter struct {
	Since, Until time.Time
	Event        string
	Member       string
	Actor        string
	IP           string
	Result       string
}

// FieldError is a query or export refused for one of its arguments:
// Field names it as the admin API and the CLI do (since, until, event,
// result, ip, limit, after, format), so callers can answer naming it.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "audit: query: " + e.Field + " " + e.Problem }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// check refuses filters no record could match, naming the field.
func (f Filter) check() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fieldError("since", "%s is not before until %s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	for _, v := range []struct{ name, value string }{{"event", f.Event}, {"result", f.Result}} {
		if strings.Trim(v.value, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != "" {
			return fieldError(v.name, "%q: want lower-case letters, digits, '_', '.' or '-'", v.value)
		}
	}
	if f.IP != "" {
		if _, err := netip.ParseAddr(f.IP); err != nil {
			return fieldError("ip", "%q is not an IP address", f.IP)
		}
	}
	return nil
}

func (f Filter) match(r Record) bool {
	return (f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until)) &&
		(f.Event == "" || r.Event == f.Event) &&
		(f.Member == "" || r.Member == f.Member) &&
		(f.Actor == "" || r.Actor == f.Actor) &&
		(f.IP == "" || r.IP == f.IP) &&
		(f.Result == "" || r.Result == f.Result)
}

// Page is one page of a query, newest first. Next, if not empty, is the
// after of the following page; a page may have fewer than limit records
// (even none) and still a Next, when it used up its read budget.
type Page struct {
	Records []Entry
	Next    string
}

// cursor is where each instance's log continues: the ID to read below
// (exclusive), or done. An instance not in it (nothing taken from it yet)
// starts from its newest entry, so records appended to it after the first
// page may show on a later one, out of order; records appended meanwhile
// to an instance already paged into show only on a new query. Every
// record present throughout shows exactly once.
type cursor struct {
	To   map[string]string `json:"to,omitempty"`
	Done []string          `json:"done,omitempty"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(after string) (cursor, error) {
	var c cursor
	if after == "" {
		return c, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(after)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	for _, id := range c.To {
		if err == nil {
			_, _, err = store.ParseLogID(id)
		}
	}
	if err != nil {
		return cursor{}, fieldError("after", "is not a cursor this trail gave")
	}
	return c, nil
}

// source is one instance's log as read newest first.
type source struct {
	inst string
	buf  []Entry // read, not yet taken
	to   string  // read below this next ("" for the newest)
	from string  // the to this page started at
	last string  // ID of the last entry taken
	done bool    // nothing left below to
}

// Query returns up to limit (1 to MaxLimit) records matching f, newest
// first by record time across every instance's log, starting after the
// cursor after ("" for the newest). It reads at most 20*limit entries.
func (t *Trail) Query(ctx context.Context, f Filter, after string, limit int) (Page, error) {
	if limit < 1 || limit > MaxLimit {
		return Page{}, fieldError("limit", "%d, want 1 to %d", limit, MaxLimit)
	}
	if err := f.check(); err != nil {
		return Page{}, err
	}
	cur, err := decodeCursor(after)
	if err != nil {
		return Page{}, err
	}
	insts, err := t.Instances(ctx)
	if err != nil {
		return Page{}, err
	}
	var srcs []*source
	for _, inst := range insts {
		s := &source{inst: inst}
		if id, ok := cur.To[inst]; ok {
			s.to = id
		}
		s.from = s.to
		for _, d := range cur.Done {
			s.done = s.done || d == inst
		}
		srcs = append(srcs, s)
	}
	budget := readFactor * limit
	chunk := min(limit+1, store.MaxLogRange)
	var page Page
	for len(page.Records) < limit {
		// Every source needs a head to know which is newest.
		short := false
		for _, s := range srcs {
			if len(s.buf) > 0 || s.done {
				continue
			}
			if budget == 0 {
				short = true
				break
			}
			n := min(chunk, budget)
			got, err := t.st.LogRange(ctx, logName(s.inst), "", s.to, n, true)
			if err != nil {
				return Page{}, fmt.Errorf("audit: query %s: %w", s.inst, err)
			}
			budget -= len(got)
			if len(got) < n {
				s.done = true
			}
			if len(got) > 0 {
				s.to = got[len(got)-1].ID
			}
			for _, e := range got {
				s.buf = append(s.buf, decodeEntry(e, s.inst))
			}
		}
		if short {
			break
		}
		var best *source
		for _, s := range srcs {
			if len(s.buf) > 0 && (best == nil || s.buf[0].Record.Time.After(best.buf[0].Record.Time)) {
				best = s
			}
		}
		if best == nil {
			return page, nil // every log is read to its end
		}
		e := best.buf[0]
		best.buf = best.buf[1:]
		best.last = e.ID
		if f.match(e.Record) {
			page.Records = append(page.Records, e)
		}
	}
	next := cursor{To: map[string]string{}}
	more := false
	for _, s := range srcs {
		switch {
		case s.last != "":
			next.To[s.inst] = s.last
		case s.from != "":
			next.To[s.inst] = s.from
		}
		if s.done && len(s.buf) == 0 {
			next.Done = append(next.Done, s.inst)
		} else {
			more = true
		}
	}
	if more {
		page.Next = next.encode()
	}
	return page, nil
}

// decodeEntry reads a record from a log entry. One that does not decode
// is still shown, as an event "unreadable", so a damaged trail is visible
// in queries too; Verify says what is wrong with it.
func decodeEntry(e store.LogEntry, inst string) Entry {
	var s stored
	var r Record
	if e.Value == nil || json.Unmarshal(e.Value, &s) != nil || json.Unmarshal(s.Record, &r) != nil {
		r = Record{Time: e.Time, Event: "unreadable", Instance: inst}
	}
	return Entry{ID: e.ID, Record: r}
}
