// Package store keeps the gateway's state: enrolments, pending enrolments,
// failure counters, lockouts and remembered devices. The engine sees it as a
// small set of atomic operations on keyed byte values with expiry, plus
// ordered indexes for listing, so that an embedded database and Redis can
// implement exactly the same semantics and pass one contract test suite
// (package storetest).
package store

import (
	"context"
	"errors"
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
}
