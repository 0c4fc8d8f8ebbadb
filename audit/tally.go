package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// The daily figures in the store: one document per instance per UTC day,
// under figuresKey, each instance adding its own counts to its own
// document, and the day's index listing the instances that wrote one.
// Readers add the documents up; no two instances ever write one key.

// figuresKey is instance's document for the day date (yyyy-mm-dd).
func figuresKey(date, instance string) string { return "figures:" + date + ":" + instance }

// figuresIndex lists the instances with a document for the day date.
func figuresIndex(date string) string { return "figures:" + date }

const dateLayout = "2006-01-02"

// MaxFiguresRange is the most days Days reads at once: a little over
// the default retention.
const MaxFiguresRange = 400

// Tally counts one instance's figures in memory as audit events happen,
// and adds them to the instance's documents in the store when flushed.
// Observe is a mutex and a few map increments: it runs on the request
// path, so it never touches the store.
type Tally struct {
	st       store.Store
	instance string
	ttl      time.Duration
	now      func() time.Time

	flushMu sync.Mutex // one Flush at a time, so a day's delta is added once
	mu      sync.Mutex
	pending map[int64]*Day // counts not yet in the store, by Unix day

	trimmed int64 // the Unix day of the last trim, under flushMu
}

// NewTally returns the tally of instance on st, whose documents live for
// retention (the audit trail's).
func NewTally(st store.Store, instance string, retention time.Duration, now func() time.Time) (*Tally, error) {
	if instance == "" || len(instance) > MaxInstanceLen || strings.ContainsAny(instance, "\x00\n") {
		return nil, fmt.Errorf("audit: figures: instance: %q, want 1 to %d bytes without a NUL or newline", instance, MaxInstanceLen)
	}
	if retention <= 0 {
		return nil, fmt.Errorf("audit: figures: retention %s: must be positive", retention)
	}
	return &Tally{st: st, instance: instance, ttl: retention, now: now, pending: map[int64]*Day{}}, nil
}

// today returns the day being counted now, creating it. Called with mu
// held.
func (t *Tally) today() *Day {
	n := t.now().UTC()
	unixDay := n.Unix() / 86400
	d := t.pending[unixDay]
	if d == nil {
		d = newDay(time.Unix(unixDay*86400, 0).UTC())
		t.pending[unixDay] = d
	}
	return d
}

// Observe counts one event of kind with its labels (see Kind) in the
// current UTC day.
func (t *Tally) Observe(kind Kind, labels ...string) {
	t.mu.Lock()
	t.today().count(kind, 1, labels...)
	t.mu.Unlock()
}

// ObserveRecovered counts a member back in seconds after a lockout or a
// recovery-code sign-in.
func (t *Tally) ObserveRecovered(seconds float64) {
	t.mu.Lock()
	t.today().Recovered.Observe(seconds)
	t.mu.Unlock()
}

// Members notes the site's member counts now, for today's snapshot.
func (t *Tally) Members(seen, enrolled int64) {
	t.mu.Lock()
	d := t.today()
	d.Seen, d.Enrolled = seen, enrolled
	t.mu.Unlock()
}

// Flush adds the counts made since the last flush to the instance's
// documents, oldest day first, so a day that ended is written before the
// next. Counts it could not write are kept for the next Flush. On a new
// process, the first flush adds to the document an earlier one left for
// the day, so counts continue across a restart.
func (t *Tally) Flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.mu.Lock()
	pending := t.pending
	t.pending = map[int64]*Day{}
	t.mu.Unlock()

	days := make([]int64, 0, len(pending))
	for d := range pending {
		days = append(days, d)
	}
	slices.Sort(days)
	var errs []error
	if today := t.now().Unix() / 86400; today != t.trimmed {
		if err := t.trim(ctx, today); err != nil {
			errs = append(errs, err)
		} else {
			t.trimmed = today
		}
	}
	for _, d := range days {
		if err := t.add(ctx, *pending[d]); err != nil {
			errs = append(errs, err)
			t.mu.Lock()
			if cur := t.pending[d]; cur != nil {
				pending[d].Add(*cur)
				if cur.Seen >= 0 { // the later snapshot wins
					pending[d].Seen, pending[d].Enrolled = cur.Seen, cur.Enrolled
				}
			}
			t.pending[d] = pending[d]
			t.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// trimDays is how many days past retention each day's trim looks at, so
// an instance that was down for weeks still clears the indexes of the
// days it missed.
const trimDays = 31

// trim removes the day indexes of days past retention: their documents
// expire by themselves, the indexes do not.
func (t *Tally) trim(ctx context.Context, today int64) error {
	lastKept := today - int64(t.ttl/(24*time.Hour)) - 1
	for d := lastKept - trimDays; d < lastKept; d++ {
		index := figuresIndex(time.Unix(d*86400, 0).UTC().Format(dateLayout))
		for {
			instances, err := t.st.IndexPage(ctx, index, "", 100)
			if err != nil {
				return fmt.Errorf("audit: figures: trimming %s: %w", index, err)
			}
			if len(instances) == 0 {
				break
			}
			if err := t.st.IndexDelete(ctx, index, instances...); err != nil {
				return fmt.Errorf("audit: figures: trimming %s: %w", index, err)
			}
		}
	}
	return nil
}

// maxSwaps bounds the retries of a document's read-add-swap. Only this
// instance writes it, but two configs of one process (during a reload)
// can flush at once.
const maxSwaps = 10

// add adds delta to the instance's document for its day.
func (t *Tally) add(ctx context.Context, delta Day) error {
	date := delta.Date.Format(dateLayout)
	if err := t.st.IndexPut(ctx, figuresIndex(date), t.instance); err != nil {
		return fmt.Errorf("audit: figures of %s: listing the instance: %w", date, err)
	}
	key := figuresKey(date, t.instance)
	for range maxSwaps {
		old, err := t.st.Get(ctx, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("audit: figures of %s: %w", date, err)
		}
		doc := *newDay(delta.Date)
		if old != nil {
			if err := json.Unmarshal(old, &doc); err != nil {
				// Unreadable: start the day's document again rather than
				// stop counting for the rest of the day.
				doc = *newDay(delta.Date)
			}
		}
		seen, enrolled := doc.Seen, doc.Enrolled
		doc.Add(delta)
		doc.Seen, doc.Enrolled = seen, enrolled
		if delta.Seen >= 0 {
			doc.Seen, doc.Enrolled = delta.Seen, delta.Enrolled
		}
		value, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		if bytes.Equal(old, value) {
			return nil
		}
		ok, err := t.st.CompareAndSwap(ctx, key, old, value, t.ttl)
		if err != nil {
			return fmt.Errorf("audit: figures of %s: %w", date, err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("audit: figures of %s: the document kept changing; retrying at the next flush", date)
}

// Days returns one Day per UTC day from from's day to to's, each adding up
// every instance's counts, with the member counts the highest any
// instance noted. A day without figures has no counts and Seen and
// Enrolled -1. The range is at most MaxFiguresRange days.
//
// A document that does not parse is left out rather than failing the
// read: unreadable lists the keys of those left out, for the caller to
// log once per read.
func Days(ctx context.Context, st store.Store, from, to time.Time) (days []Day, unreadable []string, err error) {
	first, last := from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour)
	if last.Before(first) {
		return nil, nil, fmt.Errorf("audit: figures: from %s is after to %s", first.Format(dateLayout), last.Format(dateLayout))
	}
	if n := int(last.Sub(first)/(24*time.Hour)) + 1; n > MaxFiguresRange {
		return nil, nil, fmt.Errorf("audit: figures: from %s to %s is %d days; at most %d at once",
			first.Format(dateLayout), last.Format(dateLayout), n, MaxFiguresRange)
	}
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		day, err := readDay(ctx, st, d, &unreadable)
		if err != nil {
			return nil, nil, err
		}
		days = append(days, day)
	}
	return days, unreadable, nil
}

// readDay adds up the instances' documents of the day date, appending the
// keys of those that do not parse to unreadable.
func readDay(ctx context.Context, st store.Store, date time.Time, unreadable *[]string) (Day, error) {
	day := newDay(date)
	name := date.Format(dateLayout)
	for after := ""; ; {
		instances, err := st.IndexPage(ctx, figuresIndex(name), after, 100)
		if err != nil {
			return Day{}, fmt.Errorf("audit: figures of %s: %w", name, err)
		}
		for _, instance := range instances {
			key := figuresKey(name, instance)
			b, err := st.Get(ctx, key)
			if errors.Is(err, store.ErrNotFound) {
				continue // expired, or listed before its first write
			}
			if err != nil {
				return Day{}, fmt.Errorf("audit: figures of %s: %w", name, err)
			}
			var doc Day
			if json.Unmarshal(b, &doc) != nil {
				*unreadable = append(*unreadable, key)
				continue
			}
			day.Add(doc)
		}
		if len(instances) < 100 {
			return *day, nil
		}
		after = instances[len(instances)-1]
	}
}
