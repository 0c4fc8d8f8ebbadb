// Package store keeps the gateway's state: enrolments, pending enrolments,
// failure counters, lockouts and remembered devices. The engine sees it as a
// small set of atomic operations on keyed byte values with expiry, plus
// ordered indexes for listing, so that an embedded database and Redis can
// implement exactly the same semantics and pass one contract test suite
// (package storetest).
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNotFound reports that a key has no live (unexpired) value.
	ErrNotFound = errors.New("store: not found")

	// ErrUnavailable wraps failures to reach or use the backing store.
	// Callers fail closed on it.
	ErrUnavailable = errors.New("store: unavailable")
)

// Store is the state the second-factor engine needs. Every method is atomic
// with respect to every other call on the same key, across goroutines and,
// for shared stores, across processes. A ttl of zero means the value never
// expires; a positive ttl makes it disappear after that long. Expired values
// behave exactly like missing ones. Keys that begin with a NUL byte are the
// store's own.
type Store interface {
	// Get returns the live value stored under key, or ErrNotFound.
	// The returned slice belongs to the caller.
	Get(ctx context.Context, key string) ([]byte, error)

	// Set stores value under key, replacing any previous value and expiry.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Delete removes the keys. Missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error

	// CompareAndSwap replaces the value of key with value, with the given
	// ttl, only if the current live value equals old byte for byte. A nil
	// old means "only if absent"; a nil value deletes the key. It reports
	// whether the swap happened.
	CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error)

	// Increment adds one to the counter at key and returns the new count.
	// A counter that did not exist starts at zero and expires ttl after
	// this first increment; later increments do not extend its expiry.
	// Get on a counter returns its count as decimal ASCII.
	Increment(ctx context.Context, key string, ttl time.Duration) (int64, error)

	// IndexPut adds members to the ordered index named index, creating
	// it. A member already there stays once. Members and names are
	// non-empty. Indexes are apart from keys: a key and an index may share
	// a name, and no other method sees an index.
	IndexPut(ctx context.Context, index string, members ...string) error

	// IndexDelete removes members from the index. Missing members, and a
	// missing index, are not an error.
	IndexDelete(ctx context.Context, index string, members ...string) error

	// IndexPage returns, in byte order, up to limit (at least 1) members of
	// the index that sort after after; "" starts at the first. Fewer than
	// limit means the end. To page through, pass the last member returned.
	IndexPage(ctx context.Context, index, after string, limit int) ([]string, error)

	// IndexRange returns, in byte order, up to limit (at least 1) members
	// m of the index with from <= m < to; a to of "" sets no upper bound.
	// To page through, pass as from the last member returned followed by
	// a NUL byte, the next string in byte order. Members that share a
	// fixed-width prefix (a time, a hash) are a range: listing filters are
	// ranges of such indexes.
	IndexRange(ctx context.Context, index, from, to string, limit int) ([]string, error)

	// IndexCount returns how many members m of the index have
	// from <= m < to (a to of "" sets no upper bound; from and to both ""
	// count the whole index). Redis answers without reading the members
	// (O(log n)); the embedded store reads the keys of the range, which
	// bbolt keeps together, so a million count in tens of milliseconds.
	IndexCount(ctx context.Context, index, from, to string) (int, error)

	// ScanKeys calls visit with batches of the live keys that begin with
	// prefix, until all are visited or visit returns an error, which
	// ScanKeys returns. A key live for the whole scan is visited at least
	// once; one written or deleted meanwhile may or may not be; a key may
	// come twice, and in no set order. visit is never called concurrently.
	// It reads the whole key space, so it is for maintenance in the
	// background (building an index from the keys), never for a request.
	ScanKeys(ctx context.Context, prefix string, visit func(keys []string) error) error

	// LogAppend appends values, in order, to the append-only log named
	// log, creating it, and returns the entries as stored. All are
	// appended or none (one transaction), which lets a writer with a
	// backlog pay one round trip or one disk sync for many entries. The
	// store gives each entry an ID (see LogEntry) greater than every ID
	// the log has had, trimmed ones included, even if its clock goes back.
	// At least one value and at most MaxLogAppend. Logs are apart from
	// keys and indexes.
	LogAppend(ctx context.Context, log string, values ...[]byte) ([]LogEntry, error)

	// LogRange returns up to limit (1 to MaxLogRange) entries of the log
	// with from <= ID < to, oldest first, or newest first if newestFirst;
	// a from or to of "" sets no bound, and LogIDAt turns a time into a
	// bound. To page oldest first, pass as from LogIDAfter of the last ID
	// returned; newest first, pass the last ID as to. A missing log has
	// no entries. A from after to, a malformed ID or a limit out of range
	// is refused with an error naming the argument.
	LogRange(ctx context.Context, log, from, to string, limit int, newestFirst bool) ([]LogEntry, error)

	// LogTrim removes the entries of the log with IDs below
	// LogIDAt(before), those appended before it to the millisecond, and
	// returns how many it removed. It works in batches, so appends to the
	// log wait at most for one batch; an entry appended meanwhile stays.
	LogTrim(ctx context.Context, log string, before time.Time) (int, error)
}

// Notifier is implemented by stores shared between processes. Each gateway
// instance keeps recently read records in memory; a notice tells the other
// instances that one changed, so a revocation takes effect everywhere at
// once instead of when their copies expire. Notices are best effort: a
// subscriber that was disconnected may have missed some, which is why
// Subscribe reports every (re)connection.
type Notifier interface {
	// Publish sends msg to the current subscribers of channel in every
	// process.
	Publish(ctx context.Context, channel string, msg []byte) error

	// Subscribe calls deliver for each message published on channel until
	// ctx ends. It calls restart when the subscription starts and after
	// every interruption, since notices sent in between are lost.
	Subscribe(ctx context.Context, channel string, deliver func(msg []byte), restart func())

	// InOrder reports whether every subscriber receives the notices in
	// the order the store ran them, those announced by a compare-and-swap
	// (Op.Announce) included: then a process that receives back a notice
	// it published has received every notice the store ran before that
	// one. True of one Redis server or a Sentinel's master; false of a
	// Cluster, whose nodes forward notices over links that can drop them.
	InOrder() bool
}

// LogEntry is one entry of an append-only log.
type LogEntry struct {
	// ID is "<ms>-<seq>" in decimal, as Redis Streams number entries: the
	// Unix milliseconds of the append by the store's clock (or the last
	// entry's, if the clock went back), then a sequence number that
	// counts up within the millisecond. IDs of one log are unique and
	// increase in append order; compare them with CompareLogIDs, not as
	// strings. The store's clock is Redis's own on Redis, not the
	// gateway's: a record that needs the gateway's time carries it in
	// its value.
	ID string
	// Time is the millisecond part of ID as a time.
	Time time.Time
	// Value is what was appended, never nil (an empty value is empty):
	// nil marks an entry the store cannot read as one, such as a stream
	// entry something else wrote. The slice belongs to the caller.
	Value []byte
}

// MaxLogRange is the most entries one LogRange returns.
const MaxLogRange = 10000

// MaxLogAppend is the most values one LogAppend appends.
const MaxLogAppend = 1000

// CheckLogAppend reports a LogAppend the contract refuses: an empty log
// name, or no values or too many.
func CheckLogAppend(log string, values [][]byte) error {
	if log == "" {
		return errors.New("store: log append: empty log name")
	}
	if len(values) < 1 || len(values) > MaxLogAppend {
		return fmt.Errorf("store: log append: %d values, want 1 to %d", len(values), MaxLogAppend)
	}
	return nil
}

// LogIDAt returns the smallest log ID at or after t: as LogRange's from,
// it starts at the first entry appended at t or later; as its to, it stops
// before it. It counts t to the millisecond, rounded down, as IDs do;
// times before 1970 give the smallest ID.
func LogIDAt(t time.Time) string {
	return FormatLogID(uint64(max(t.UnixMilli(), 0)), 0)
}

// FormatLogID returns the ID of millisecond ms and sequence seq.
func FormatLogID(ms, seq uint64) string {
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
}

// ParseLogID splits a log ID into its millisecond and sequence number.
func ParseLogID(id string) (ms, seq uint64, err error) {
	m, q, ok := strings.Cut(id, "-")
	if ok {
		if ms, err = parseDecimal(m); err == nil {
			if seq, err = parseDecimal(q); err == nil {
				return ms, seq, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("store: %q is not a log ID (<ms>-<seq>, both decimal)", id)
}

// parseDecimal accepts digits only: no sign, no spaces, at most 20.
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not decimal")
	}
	return strconv.ParseUint(s, 10, 64)
}

// CompareLogIDs returns -1, 0 or +1 as log ID a is before, equal to or
// after b. Both must be well formed (ParseLogID).
func CompareLogIDs(a, b string) int {
	am, as, _ := ParseLogID(a)
	bm, bs, _ := ParseLogID(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(as, bs)
}

// LogIDAfter returns the smallest log ID after id, the from that pages on
// past an entry with that ID.
func LogIDAfter(id string) (string, error) {
	ms, seq, err := ParseLogID(id)
	if err != nil {
		return "", err
	}
	if seq == ^uint64(0) {
		return FormatLogID(ms+1, 0), nil
	}
	return FormatLogID(ms, seq+1), nil
}

// CheckLogRange refuses the arguments of a LogRange no store can answer,
// with an error naming the argument; stores call it first.
func CheckLogRange(log, from, to string, limit int) error {
	if log == "" {
		return errors.New("store: log range: empty log name")
	}
	if limit < 1 || limit > MaxLogRange {
		return fmt.Errorf("store: log range: limit %d, want 1 to %d", limit, MaxLogRange)
	}
	for _, b := range []struct{ name, id string }{{"from", from}, {"to", to}} {
		if b.id == "" {
			continue
		}
		if _, _, err := ParseLogID(b.id); err != nil {
			return fmt.Errorf("log range: %s: %w", b.name, err)
		}
	}
	if from != "" && to != "" && CompareLogIDs(from, to) > 0 {
		return fmt.Errorf("store: log range: from %s is after to %s", from, to)
	}
	return nil
}
