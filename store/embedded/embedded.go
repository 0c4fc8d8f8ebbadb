// Package embedded is the default store: a bbolt database in one local file,
// like Caddy's own acme_server database. It needs no extra service and
// survives restarts, but bbolt locks the file, so only one process can use a
// database at a time; several Caddy instances sharing state need a networked
// store instead.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddy-twofactor/twofactor/store"
)

const (
	defaultLockTimeout   = time.Second
	defaultSweepInterval = time.Minute

	// sweepBatch is how many entries one sweep transaction examines, so that
	// a backlog of expired keys never holds the write lock for long.
	sweepBatch = 1000

	// headerLen is the size of the expiry that prefixes every stored value:
	// big-endian Unix nanoseconds, 0 for "never".
	headerLen = 8
)

var (
	entriesBucket = []byte("entries")
	// indexesBucket holds one bucket per ordered index, its members as
	// keys with empty values, so bbolt keeps them in byte order.
	indexesBucket = []byte("indexes")
	// logsBucket holds one bucket per log, its entries keyed by their ID
	// as 16 bytes, the millisecond and the sequence big-endian, so bbolt
	// keeps them in ID order.
	logsBucket = []byte("logs")
	// logLastBucket holds the last ID each log gave (16 bytes), kept
	// when trimming empties the log so that IDs never go back.
	logLastBucket = []byte("log-last")
	metaBucket    = []byte("meta")
	formatKey     = []byte("format")
	// formatVersion names the on-disk layout (expiry header + value), so a
	// future layout can recognise and migrate old files instead of
	// misreading them.
	formatVersion = []byte("1")
)

// errBadValue reports a stored value that Increment cannot count. It is the
// caller's data, not the database, that is wrong, so it is not ErrUnavailable.
var errBadValue = errors.New("embedded store: value is not a counter")

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Now is the clock for expiry decisions. Default: time.Now.
	// It must read after 1970, as expiries are stored as Unix nanoseconds.
	Now func() time.Time

	// LockTimeout bounds the wait for the database file lock held by
	// another process. Default (and for any value <= 0): 1s, so that a
	// second instance fails instead of hanging.
	LockTimeout time.Duration

	// SweepInterval is how often expired entries are deleted from disk.
	// Expired entries are already invisible; sweeping only reclaims space.
	// Default: 1m. Negative disables sweeping.
	SweepInterval time.Duration
}

// Store is a store.Store backed by a bbolt file. It is safe for concurrent
// use; every operation is one bbolt transaction and so atomic.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	stop chan struct{} // closed by Close to stop the sweeper; nil if none
	done chan struct{} // closed when the sweeper has returned
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it (parent directories 0700, file
// 0600, since it holds second-factor secrets) if needed.
//
// If another process, or another open Store in this process, holds the file,
// Open gives up after opts.LockTimeout with an error wrapping
// bbolt.ErrTimeout. Code that reopens across config reloads must therefore
// share one Store per path rather than open a second one.
func Open(path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = defaultSweepInterval
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: creating directory for %s: %w", store.ErrUnavailable, path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: database %s is already in use, probably by another Caddy instance "+
			"(to change a running instance's configuration, use `caddy reload` instead of starting a second one): %w",
			store.ErrUnavailable, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: opening %s: %w", store.ErrUnavailable, path, err)
	}
	if err := db.Update(initBuckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: initialising %s: %w", store.ErrUnavailable, path, err)
	}

	s := &Store{db: db, now: opts.Now}
	if opts.SweepInterval > 0 {
		s.stop = make(chan struct{})
		s.done = make(chan struct{})
		go s.sweepLoop(opts.SweepInterval)
	}
	return s, nil
}

// initBuckets creates the buckets of a new file and refuses files written in
// a layout this code does not understand.
func initBuckets(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	switch v := meta.Get(formatKey); {
	case v == nil:
		if err := meta.Put(formatKey, formatVersion); err != nil {
			return err
		}
	case !bytes.Equal(v, formatVersion):
		return fmt.Errorf("unsupported format version %q (want %q)", v, formatVersion)
	}
	for _, name := range [][]byte{indexesBucket, logsBucket, logLastBucket} {
		if _, err = tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	_, err = tx.CreateBucketIfNotExists(entriesBucket)
	return err
}

// Close stops the sweeper and closes the file, releasing its lock. Calling it
// again returns the first call's result; any other call after Close fails
// with store.ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("%w: closing: %w", store.ErrUnavailable, err)
		}
	})
	return s.closeErr
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v, _, live, err := decode(tx.Bucket(entriesBucket).Get([]byte(key)), s.now().UnixNano())
		if err != nil || !live {
			return err
		}
		// bbolt's slice points into the mmap and dies with the transaction.
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, classify(err)
	}
	if out == nil {
		return nil, store.ErrNotFound
	}
	return out, nil
}

// Set implements store.Store.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := checkArgs(key, ttl); err != nil {
		return err
	}
	return s.update(func(b *bolt.Bucket, now int64) error {
		return b.Put([]byte(key), encode(value, expiry(now, ttl)))
	})
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	return s.update(func(b *bolt.Bucket, _ int64) error {
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// CompareAndSwap implements store.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := s.usable(ctx); err != nil {
		return false, err
	}
	if err := checkArgs(key, ttl); err != nil {
		return false, err
	}
	var swapped bool
	err := s.update(func(b *bolt.Bucket, now int64) (err error) {
		// Set afresh on every run; see update.
		swapped, err = compareAndSwapIn(b, now, key, old, value, ttl)
		return err
	})
	return swapped && err == nil, err
}

// compareAndSwapIn is CompareAndSwap within a write transaction.
func compareAndSwapIn(b *bolt.Bucket, now int64, key string, old, value []byte, ttl time.Duration) (bool, error) {
	k := []byte(key)
	cur, _, live, err := decode(b.Get(k), now)
	if err != nil {
		return false, err
	}
	if !matches(cur, live, old) {
		return false, nil
	}
	if value == nil {
		return true, b.Delete(k)
	}
	return true, b.Put(k, encode(value, expiry(now, ttl)))
}

// matches reports whether the current entry satisfies CompareAndSwap's old:
// nil means absent, anything else (even empty) must equal a live value.
func matches(cur []byte, live bool, old []byte) bool {
	if old == nil {
		return !live
	}
	return live && bytes.Equal(cur, old)
}

// Increment implements store.Store.
func (s *Store) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	if err := checkArgs(key, ttl); err != nil {
		return 0, err
	}
	var n int64
	err := s.update(func(b *bolt.Bucket, now int64) (err error) {
		n, err = incrementIn(b, now, key, ttl)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// incrementIn is Increment within a write transaction.
func incrementIn(b *bolt.Bucket, now int64, key string, ttl time.Duration) (int64, error) {
	k := []byte(key)
	cur, curExp, live, err := decode(b.Get(k), now)
	if err != nil {
		return 0, err
	}
	n, exp := int64(1), expiry(now, ttl)
	if live {
		c, err := strconv.ParseInt(string(cur), 10, 64)
		if err != nil {
			return 0, errBadValue
		}
		if c == math.MaxInt64 {
			return 0, fmt.Errorf("%w: it would overflow", errBadValue)
		}
		// Keep the expiry set by the first increment.
		n, exp = c+1, curExp
	}
	return n, b.Put(k, encode(strconv.AppendInt(nil, n, 10), exp))
}

// Batch implements store.Batcher: the ops run in one transaction, so on
// this store they are even atomic together, and cost one disk sync (none
// when they only read). The store carries no notices: a publish op is refused.
func (s *Store) Batch(ctx context.Context, ops ...*store.Op) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := store.CheckOps(ops, false); err != nil || len(ops) == 0 {
		return err
	}
	for i, op := range ops {
		if op.Kind != store.OpGet {
			if err := checkArgs(op.Key, op.TTL); err != nil {
				return fmt.Errorf("batch op %d (%s): %w", i, op.Kind, err)
			}
		}
	}
	run := s.update
	if !slices.ContainsFunc(ops, func(op *store.Op) bool { return op.Kind != store.OpGet }) {
		run = s.view // reads only: no write transaction, no disk sync
	}
	return run(func(b *bolt.Bucket, now int64) error {
		for i, op := range ops {
			// Results are set afresh on every run; see update.
			var err error
			switch op.Kind {
			case store.OpGet:
				var v []byte
				var live bool
				v, _, live, err = decode(b.Get([]byte(op.Key)), now)
				op.Value, op.Found = nil, live && err == nil
				if op.Found {
					op.Value = bytes.Clone(v)
				}
			case store.OpSet:
				err = b.Put([]byte(op.Key), encode(op.Arg, expiry(now, op.TTL)))
			case store.OpDelete:
				err = b.Delete([]byte(op.Key))
			case store.OpCompareAndSwap:
				op.Swapped, err = compareAndSwapIn(b, now, op.Key, op.Old, op.Arg, op.TTL)
			case store.OpIncrement:
				op.Count, err = incrementIn(b, now, op.Key, op.TTL)
			}
			if err != nil {
				return fmt.Errorf("batch op %d (%s): %w", i, op.Kind, err)
			}
		}
		return nil
	})
}

var _ store.Batcher = (*Store)(nil)

// IndexPut implements store.Store.
func (s *Store) IndexPut(ctx context.Context, index string, members ...string) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if err := checkIndexArgs(index, members); err != nil {
		return err
	}
	if len(members) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(indexesBucket).CreateBucketIfNotExists([]byte(index))
		if err != nil {
			return err
		}
		for _, m := range members {
			if err := b.Put([]byte(m), []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	return classify(err)
}

// IndexDelete implements store.Store.
func (s *Store) IndexDelete(ctx context.Context, index string, members ...string) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	if len(members) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(indexesBucket).Bucket([]byte(index))
		if b == nil {
			return nil
		}
		for _, m := range members {
			if err := b.Delete([]byte(m)); err != nil {
				return err
			}
		}
		return nil
	})
	return classify(err)
}

// IndexPage implements store.Store.
func (s *Store) IndexPage(ctx context.Context, index, after string, limit int) ([]string, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("embedded store: index page of %d members", limit)
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(indexesBucket).Bucket([]byte(index))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, _ := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, _ = c.Next()
		}
		for ; k != nil && len(out) < limit; k, _ = c.Next() {
			out = append(out, string(k)) // a copy: k dies with the transaction
		}
		return nil
	})
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// IndexRange implements store.Store.
func (s *Store) IndexRange(ctx context.Context, index, from, to string, limit int) ([]string, error) {
	if limit < 1 {
		return nil, fmt.Errorf("embedded store: index range of %d members", limit)
	}
	var out []string
	err := s.indexRange(ctx, index, from, to, func(k []byte) bool {
		out = append(out, string(k)) // a copy: k dies with the transaction
		return len(out) < limit
	})
	return out, err
}

// IndexCount implements store.Store by walking the range: bbolt keeps no
// counts, and its keys of a range sit together on few pages.
func (s *Store) IndexCount(ctx context.Context, index, from, to string) (int, error) {
	n := 0
	err := s.indexRange(ctx, index, from, to, func([]byte) bool { n++; return true })
	return n, err
}

// indexRange calls each with the members of [from, to) in order, in one
// read transaction, until it returns false.
func (s *Store) indexRange(ctx context.Context, index, from, to string, each func(k []byte) bool) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(indexesBucket).Bucket([]byte(index))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, _ := c.First()
		if from != "" {
			k, _ = c.Seek([]byte(from))
		}
		for ; k != nil && (to == "" || string(k) < to); k, _ = c.Next() {
			if !each(k) {
				return nil
			}
		}
		return nil
	})
	return classify(err)
}

// logID is a log entry's ID as its bbolt key: 16 bytes that sort as the
// IDs do.
func logID(ms, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, ms)
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// logIDKey is the key of a well-formed log ID.
func logIDKey(id string) []byte {
	ms, seq, _ := store.ParseLogID(id)
	return logID(ms, seq)
}

// logEntry reads an entry back from its key and value.
func logEntry(k, v []byte) (store.LogEntry, error) {
	if len(k) != 16 {
		return store.LogEntry{}, fmt.Errorf("%w: corrupt log entry key of %d bytes", store.ErrUnavailable, len(k))
	}
	ms, seq := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:])
	return store.LogEntry{ID: store.FormatLogID(ms, seq), Time: time.UnixMilli(int64(ms)), Value: append([]byte{}, v...)}, nil
}

func checkLogName(op, log string) error {
	if log == "" || len(log) > bolt.MaxKeySize {
		return fmt.Errorf("embedded store: %s: log name of %d bytes", op, len(log))
	}
	return nil
}

// LogAppend implements store.Store, in one transaction. The ID is the
// clock's millisecond, or the last ID's if the clock reads earlier, with
// the sequence counting up within it, as Redis numbers stream entries.
func (s *Store) LogAppend(ctx context.Context, log string, values ...[]byte) ([]store.LogEntry, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if err := checkLogName("log append", log); err != nil {
		return nil, err
	}
	if err := store.CheckLogAppend(log, values); err != nil {
		return nil, err
	}
	var es []store.LogEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		es = es[:0]
		b, err := tx.Bucket(logsBucket).CreateBucketIfNotExists([]byte(log))
		if err != nil {
			return err
		}
		ms, seq := uint64(max(s.now().UnixMilli(), 0)), uint64(0)
		if last := tx.Bucket(logLastBucket).Get([]byte(log)); len(last) == 16 {
			lastMS, lastSeq := binary.BigEndian.Uint64(last), binary.BigEndian.Uint64(last[8:])
			if ms <= lastMS {
				ms, seq = lastMS, lastSeq+1
			}
		}
		if ms == 0 && seq == 0 {
			seq = 1 // 0-0 is below every ID, as on Redis
		}
		var k []byte
		for i, value := range values {
			k = logID(ms, seq+uint64(i))
			if err := b.Put(k, bytes.Clone(value)); err != nil {
				return err
			}
			e, err := logEntry(k, value)
			if err != nil {
				return err
			}
			es = append(es, e)
		}
		return tx.Bucket(logLastBucket).Put([]byte(log), k)
	})
	if err != nil {
		return nil, classify(err)
	}
	return es, nil
}

// LogRange implements store.Store with a cursor, in one read transaction.
func (s *Store) LogRange(ctx context.Context, log, from, to string, limit int, newestFirst bool) ([]store.LogEntry, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if err := store.CheckLogRange(log, from, to, limit); err != nil {
		return nil, err
	}
	var lo, hi []byte // [lo, hi); nil: no bound
	if from != "" {
		lo = logIDKey(from)
	}
	if to != "" {
		hi = logIDKey(to)
	}
	var out []store.LogEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(logsBucket).Bucket([]byte(log))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		step := c.Next
		switch {
		case !newestFirst && lo == nil:
			k, v = c.First()
		case !newestFirst:
			k, v = c.Seek(lo)
		default:
			step = c.Prev
			if k, v = c.Last(); hi != nil {
				if k, v = c.Seek(hi); k == nil {
					k, v = c.Last()
				} else {
					k, v = c.Prev()
				}
			}
		}
		for ; k != nil && len(out) < limit; k, v = step() {
			if (lo != nil && bytes.Compare(k, lo) < 0) || (hi != nil && bytes.Compare(k, hi) >= 0) {
				break
			}
			e, err := logEntry(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// logTrimBatch is how many entries one LogTrim transaction deletes, so an
// append waits for at most one batch. Tests make it smaller.
var logTrimBatch = 1000

// logTrimmed is called between LogTrim's transactions; tests append there.
var logTrimmed = func() {}

// LogTrim implements store.Store, oldest first, a batch per write
// transaction.
func (s *Store) LogTrim(ctx context.Context, log string, before time.Time) (int, error) {
	if err := checkLogName("log trim", log); err != nil {
		return 0, err
	}
	bound := logIDKey(store.LogIDAt(before))
	total := 0
	for {
		if err := s.usable(ctx); err != nil {
			return total, err
		}
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			b := tx.Bucket(logsBucket).Bucket([]byte(log))
			if b == nil {
				return nil
			}
			var old [][]byte
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, bound) < 0 && len(old) < logTrimBatch; k, _ = c.Next() {
				old = append(old, bytes.Clone(k))
			}
			// Deleted after the walk: a cursor that deletes as it
			// goes can skip the next key.
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(old)
			return nil
		})
		if err != nil {
			return total, classify(err)
		}
		total += n
		if n < logTrimBatch {
			return total, nil
		}
		logTrimmed()
	}
}

// scanBatch is how many keys ScanKeys reads per transaction: a long read
// transaction would keep bbolt from reusing freed pages.
const scanBatch = 1000

// ScanKeys implements store.Store, in key order.
func (s *Store) ScanKeys(ctx context.Context, prefix string, visit func(keys []string) error) error {
	from := []byte(prefix)
	for {
		if err := s.usable(ctx); err != nil {
			return err
		}
		var keys []string
		var next []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			now := s.now().UnixNano()
			c := tx.Bucket(entriesBucket).Cursor()
			k, v := c.Seek(from)
			for n := 0; k != nil && bytes.HasPrefix(k, []byte(prefix)); n++ {
				if n == scanBatch {
					next = bytes.Clone(k)
					break
				}
				if _, _, live, err := decode(v, now); err == nil && live {
					keys = append(keys, string(k))
				}
				k, v = c.Next()
			}
			return nil
		})
		if err != nil {
			return classify(err)
		}
		if len(keys) > 0 {
			if err := visit(keys); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

func checkIndexArgs(index string, members []string) error {
	if index == "" || len(index) > bolt.MaxKeySize {
		return fmt.Errorf("embedded store: index name of %d bytes", len(index))
	}
	for _, m := range members {
		if m == "" || len(m) > bolt.MaxKeySize {
			return fmt.Errorf("embedded store: index member of %d bytes", len(m))
		}
	}
	return nil
}

// usable fails fast for a canceled context or a closed store. bbolt itself
// ignores contexts, so cancellation is only honoured before a call starts.
func (s *Store) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, bolt.ErrDatabaseNotOpen)
	}
	return nil
}

// update runs fn in a write transaction on the entries bucket, with the
// current time. It uses db.Update rather than db.Batch: Batch waits up to
// MaxBatchDelay (10ms) to gather writers, which measured ~40x slower than
// Update for a lone writer and only pays off with dozens of concurrent ones.
// fn still sets its results afresh on every run, so switching to Batch (which
// may re-run fn) stays safe.
func (s *Store) update(fn func(b *bolt.Bucket, now int64) error) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return fn(tx.Bucket(entriesBucket), s.now().UnixNano())
	})
	return classify(err)
}

// view is update for a read-only transaction.
func (s *Store) view(fn func(b *bolt.Bucket, now int64) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return fn(tx.Bucket(entriesBucket), s.now().UnixNano())
	})
	return classify(err)
}

// classify wraps database failures in store.ErrUnavailable so callers fail
// closed, and passes through errors that are already classified.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, errBadValue) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// checkArgs rejects arguments bbolt would reject, before they can be
// mistaken for the database being unavailable.
func checkArgs(key string, ttl time.Duration) error {
	switch {
	case key == "":
		return errors.New("embedded store: empty key")
	case len(key) > bolt.MaxKeySize:
		return fmt.Errorf("embedded store: key of %d bytes exceeds %d", len(key), bolt.MaxKeySize)
	case ttl < 0:
		return fmt.Errorf("embedded store: negative ttl %v", ttl)
	}
	return nil
}

// expiry returns the stored expiry for a value written at now with ttl.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	if e := now + int64(ttl); e > now {
		return e
	}
	return math.MaxInt64 // overflow: as good as never
}

// encode returns a new buffer holding the expiry header and value. bbolt
// keeps the slice until commit, so it must not be the caller's.
func encode(value []byte, exp int64) []byte {
	buf := make([]byte, headerLen+len(value))
	binary.BigEndian.PutUint64(buf, uint64(exp))
	copy(buf[headerLen:], value)
	return buf
}

// decode splits a stored entry into its value and expiry and reports whether
// it is live at now. A missing entry (raw == nil) is not live.
func decode(raw []byte, now int64) (value []byte, exp int64, live bool, err error) {
	if raw == nil {
		return nil, 0, false, nil
	}
	if len(raw) < headerLen {
		return nil, 0, false, fmt.Errorf("%w: corrupt entry of %d bytes", store.ErrUnavailable, len(raw))
	}
	exp = int64(binary.BigEndian.Uint64(raw))
	if exp != 0 && exp <= now {
		return nil, exp, false, nil
	}
	return raw[headerLen:], exp, true, nil
}

// sweepLoop runs sweep every interval until Close. Errors are left for the
// next round: expired entries are invisible anyway, so a failed sweep only
// delays reclaiming space.
func (s *Store) sweepLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.sweep()
		}
	}
}

// sweep deletes expired entries and returns how many it deleted. It scans
// sweepBatch entries per read transaction, which does not block writers, and
// deletes what it found in a short write transaction that re-checks each
// entry, since the key may have been rewritten in between. It returns early
// when the store is closing.
func (s *Store) sweep() (int, error) {
	var (
		deleted int
		from    []byte // first key of the next batch; nil starts at the beginning
	)
	for {
		select {
		case <-s.stop: // nil (blocks) when there is no sweeper goroutine
			return deleted, nil
		default:
		}

		var expired [][]byte
		var next []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			now := s.now().UnixNano()
			c := tx.Bucket(entriesBucket).Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for n := 0; k != nil; n++ {
				if n == sweepBatch {
					next = bytes.Clone(k)
					break
				}
				if _, _, live, err := decode(v, now); err == nil && !live {
					expired = append(expired, bytes.Clone(k))
				}
				k, v = c.Next()
			}
			return nil
		})
		if err != nil {
			return deleted, classify(err)
		}

		if len(expired) > 0 {
			n := 0
			err := s.db.Update(func(tx *bolt.Tx) error {
				n = 0
				now := s.now().UnixNano()
				b := tx.Bucket(entriesBucket)
				for _, k := range expired {
					raw := b.Get(k)
					if _, _, live, err := decode(raw, now); raw == nil || err != nil || live {
						continue
					}
					if err := b.Delete(k); err != nil {
						return err
					}
					n++
				}
				return nil
			})
			if err != nil {
				return deleted, classify(err)
			}
			deleted += n
		}

		if next == nil {
			return deleted, nil
		}
		from = next
	}
}
