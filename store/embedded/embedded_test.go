package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/storetest"
)

var epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// open opens a store at a fresh path with a fake clock and registers Close.
func open(t testing.TB, opts Options) (*Store, *clock.Fake, string) {
	t.Helper()
	clk := clock.NewFake(epoch)
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	path := filepath.Join(t.TempDir(), "state", "twofactor.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk, path
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		s, clk, _ := open(t, Options{SweepInterval: -1})
		return storetest.Harness{Store: s, Advance: clk.Advance}
	})
}

// reopenable opens a store with a fake clock at a fresh path, and returns
// what opening it again takes; the caller closes it.
func reopenable(t *testing.T) (*Store, *clock.Fake, string, Options) {
	t.Helper()
	clk := clock.NewFake(epoch)
	path := filepath.Join(t.TempDir(), "twofactor.db")
	opts := Options{Now: clk.Now, SweepInterval: -1}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, path, opts
}

func TestSurvivesReopen(t *testing.T) {
	ctx := t.Context()
	s, clk, path, opts := reopenable(t)
	if err := s.Set(ctx, "enrolment", []byte("secret"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "remembered", []byte("device"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Increment(ctx, "failures", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for k, want := range map[string]string{"enrolment": "secret", "remembered": "device", "failures": "3"} {
		if got, err := s.Get(ctx, k); err != nil || string(got) != want {
			t.Errorf("after reopen Get(%q) = %q, %v; want %q", k, got, err, want)
		}
	}
	// The expiry survived too.
	clk.Advance(2 * time.Second)
	if _, err := s.Get(ctx, "remembered"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired after reopen: Get = %v, want ErrNotFound", err)
	}
	if n, err := s.Increment(ctx, "failures", time.Hour); err != nil || n != 4 {
		t.Errorf("Increment after reopen = %d, %v; want 4", n, err)
	}
}

func TestOpenWhileInUse(t *testing.T) {
	_, _, path := open(t, Options{SweepInterval: -1})

	const lockTimeout = 200 * time.Millisecond
	type result struct {
		s   *Store
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s, err := Open(path, Options{LockTimeout: lockTimeout, SweepInterval: -1})
		done <- result{s, err}
	}()

	var r result
	select {
	case r = <-done:
	case <-time.After(10 * lockTimeout):
		t.Fatal("second Open of a database in use hangs")
	}
	elapsed := time.Since(start)
	if r.err == nil {
		r.s.Close()
		t.Fatal("second Open of a database in use succeeded")
	}
	if !errors.Is(r.err, bolt.ErrTimeout) || !errors.Is(r.err, store.ErrUnavailable) {
		t.Errorf("error %q does not wrap bbolt.ErrTimeout and store.ErrUnavailable", r.err)
	}
	for _, want := range []string{"already in use", path, "caddy reload"} {
		if !strings.Contains(r.err.Error(), want) {
			t.Errorf("error %q does not mention %q", r.err, want)
		}
	}
	if elapsed < lockTimeout/2 || elapsed > 5*lockTimeout {
		t.Errorf("second Open gave up after %v, want about %v", elapsed, lockTimeout)
	}
}

// countEntries counts raw entries, expired or not, in a closed database file.
func countEntries(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(entriesBucket).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// fill writes n entries named prefix-i with ttl in one transaction, quicker
// than n Set calls.
func fill(t *testing.T, s *Store, prefix string, n int, ttl time.Duration) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(entriesBucket)
		now := s.now().UnixNano()
		for i := range n {
			if err := b.Put(fmt.Appendf(nil, "%s-%06d", prefix, i), encode([]byte("v"), expiry(now, ttl))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSweeperDeletesExpired(t *testing.T) {
	s, clk, path := open(t, Options{SweepInterval: 5 * time.Millisecond})
	ctx := t.Context()

	// Interleave keys so that expired and live ones share sweep batches,
	// and use more than one batch.
	const expired = 2*sweepBatch + 500
	fill(t, s, "b-expiring", expired, time.Second)
	fill(t, s, "a-forever", 10, 0)
	fill(t, s, "c-later", 10, time.Hour)
	if err := s.Set(ctx, "b-expiring-rewritten", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "b-expiring-rewritten", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)

	// Wait for the sweeper goroutine to get there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(entriesBucket).Stats().KeyN; return nil })
		if n == 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d entries, want 21", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if n := countEntries(t, path); n != 21 {
		t.Fatalf("after Close the file holds %d entries, want 21", n)
	}
	s2, err := Open(path, Options{Now: clk.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, k := range []string{"a-forever-000009", "c-later-000000", "b-expiring-rewritten"} {
		if _, err := s2.Get(ctx, k); err != nil {
			t.Errorf("sweeper removed live key %q: %v", k, err)
		}
	}
}

func TestSweepBatches(t *testing.T) {
	s, clk, _ := open(t, Options{SweepInterval: -1})
	if s.stop != nil || s.done != nil {
		t.Error("SweepInterval < 0 started a sweeper")
	}
	fill(t, s, "x", 3*sweepBatch+1, time.Second)
	fill(t, s, "y", 5, 0)

	if n, err := s.sweep(); err != nil || n != 0 {
		t.Fatalf("sweep before expiry = %d, %v; want 0", n, err)
	}
	clk.Advance(time.Second)
	if n, err := s.sweep(); err != nil || n != 3*sweepBatch+1 {
		t.Fatalf("sweep = %d, %v; want %d", n, err, 3*sweepBatch+1)
	}
	if n, err := s.sweep(); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v; want 0", n, err)
	}
}

func TestFileModes(t *testing.T) {
	_, _, path := open(t, Options{SweepInterval: -1})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode = %v, want 0700", di.Mode().Perm())
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	s, _, path := open(t, Options{SweepInterval: time.Millisecond})
	ctx := t.Context()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	_, errGet := s.Get(ctx, "k")
	errSet := s.Set(ctx, "k", []byte("v"), 0)
	errDel := s.Delete(ctx, "k")
	_, errCAS := s.CompareAndSwap(ctx, "k", nil, []byte("v"), 0)
	_, errInc := s.Increment(ctx, "k", 0)
	for name, err := range map[string]error{"Get": errGet, "Set": errSet, "Delete": errDel, "CompareAndSwap": errCAS, "Increment": errInc} {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}

	// Close released the lock.
	s2, err := Open(path, Options{LockTimeout: 200 * time.Millisecond, SweepInterval: -1})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestOpenRejectsForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-bolt.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{SweepInterval: -1})
	if err == nil {
		s.Close()
		t.Fatal("Open of a non-bbolt file succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open error %v does not wrap ErrUnavailable", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	s, _, _ := open(t, Options{SweepInterval: -1})
	ctx := t.Context()
	long := strings.Repeat("k", bolt.MaxKeySize+1)
	errs := map[string]error{
		"Set empty key":    s.Set(ctx, "", []byte("v"), 0),
		"Set long key":     s.Set(ctx, long, []byte("v"), 0),
		"Set negative ttl": s.Set(ctx, "k", []byte("v"), -time.Second),
	}
	_, errs["CAS empty key"] = s.CompareAndSwap(ctx, "", nil, []byte("v"), 0)
	_, errs["Increment negative ttl"] = s.Increment(ctx, "k", -1)
	for name, err := range errs {
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s = %v, want a non-ErrUnavailable error", name, err)
		}
	}
	if _, err := s.Get(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(\"\") = %v, want ErrNotFound", err)
	}
}

func TestCanceledContextError(t *testing.T) {
	s, _, _ := open(t, Options{SweepInterval: -1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Set(ctx, "k", []byte("v"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Set with canceled context = %v, want context.Canceled", err)
	}
	if _, err := s.Get(t.Context(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("canceled Set wrote anyway: Get = %v", err)
	}
}

func TestIncrementOverflow(t *testing.T) {
	s, _, _ := open(t, Options{SweepInterval: -1})
	ctx := t.Context()
	if err := s.Set(ctx, "n", []byte(strconv.FormatInt(1<<63-1, 10)), 0); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Increment(ctx, "n", 0); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Increment at MaxInt64 = %d, %v; want a non-ErrUnavailable error", n, err)
	}
}

func BenchmarkIncrement(b *testing.B) {
	s, _, _ := open(b, Options{Now: time.Now, SweepInterval: -1})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Increment(ctx, "serial", time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var id atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			key := "parallel-" + strconv.FormatInt(id.Add(1)%8, 10)
			for pb.Next() {
				if _, err := s.Increment(ctx, key, time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkGet(b *testing.B) {
	s, _, _ := open(b, Options{Now: time.Now, SweepInterval: -1})
	ctx := context.Background()
	if err := s.Set(ctx, "k", make([]byte, 128), 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "k"); err != nil {
			b.Fatal(err)
		}
	}
}

// Log IDs never go back: not when the clock does, not when trimming
// empties the log, not across a reopen.
func TestLogIDsWhenTheClockGoesBack(t *testing.T) {
	ctx := t.Context()
	s, clk, path, opts := reopenable(t)
	appendAt := func(what string) store.LogEntry {
		t.Helper()
		e, err := s.LogAppend(ctx, "audit", []byte(what))
		if err != nil {
			t.Fatalf("LogAppend %s: %v", what, err)
		}
		return e[0]
	}
	first := appendAt("first")
	if want := fmt.Sprintf("%d-0", epoch.UnixMilli()); first.ID != want || !first.Time.Equal(epoch) {
		t.Fatalf("first entry %s at %v, want %s at %v", first.ID, first.Time, want, epoch)
	}
	if same := appendAt("same millisecond"); same.ID != fmt.Sprintf("%d-1", epoch.UnixMilli()) {
		t.Fatalf("second entry in the same millisecond has ID %s", same.ID)
	}
	clk.Advance(-time.Hour)
	back := appendAt("clock an hour back")
	if back.ID != fmt.Sprintf("%d-2", epoch.UnixMilli()) || !back.Time.Equal(epoch) {
		t.Fatalf("with the clock an hour back: ID %s at %v, want the last millisecond, sequence 2", back.ID, back.Time)
	}
	// Trimmed empty, then reopened: the next ID still follows the last.
	if n, err := s.LogTrim(ctx, "audit", epoch.Add(time.Hour)); err != nil || n != 3 {
		t.Fatalf("LogTrim = %d, %v; want 3", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if next := appendAt("after trim and reopen"); next.ID != fmt.Sprintf("%d-3", epoch.UnixMilli()) {
		t.Fatalf("after trimming all and reopening, with the clock back: ID %s, want sequence 3 of the last millisecond", next.ID)
	}
	clk.Set(epoch.Add(time.Minute))
	if fwd := appendAt("clock ahead again"); fwd.ID != fmt.Sprintf("%d-0", epoch.Add(time.Minute).UnixMilli()) {
		t.Fatalf("with the clock past the last ID: %s, want the clock's millisecond, sequence 0", fwd.ID)
	}
	// A clock before 1970 still gives an ID above 0-0.
	s2, _, _ := open(t, Options{SweepInterval: -1, Now: func() time.Time { return time.Unix(-100, 0) }})
	if es, err := s2.LogAppend(ctx, "audit", nil); err != nil || es[0].ID != "0-1" || es[0].Value == nil {
		t.Fatalf("append with a clock before 1970 = %+v, %v; want ID 0-1 and an empty value", es, err)
	}
	// A batch numbers on from the last ID within the millisecond.
	if es, err := s2.LogAppend(ctx, "audit", nil, nil); err != nil || es[0].ID != "0-2" || es[1].ID != "0-3" {
		t.Fatalf("a batch after it = %+v, %v; want IDs 0-2 and 0-3", es, err)
	}
}

// LogTrim deletes in batches, one transaction each, and appends go in
// between them.
func TestLogTrimBatches(t *testing.T) {
	ctx := t.Context()
	s, clk, _ := open(t, Options{SweepInterval: -1})
	defer func(n int, f func()) { logTrimBatch, logTrimmed = n, f }(logTrimBatch, logTrimmed)
	logTrimBatch = 7
	for i := range 30 {
		if _, err := s.LogAppend(ctx, "audit", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	before := clk.Now()
	var between []string
	logTrimmed = func() {
		// No transaction is open here: an append would deadlock if
		// the trim held the write lock.
		es, err := s.LogAppend(ctx, "audit", []byte("during the trim"))
		if err != nil {
			t.Errorf("append between batches: %v", err)
			return
		}
		between = append(between, es[0].ID)
	}
	n, err := s.LogTrim(ctx, "audit", before)
	if err != nil || n != 30 {
		t.Fatalf("LogTrim = %d, %v; want 30", n, err)
	}
	if len(between) != 30/7 {
		t.Fatalf("%d appends between batches of 7 out of 30, want %d", len(between), 30/7)
	}
	left, err := s.LogRange(ctx, "audit", "", "", 100, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range left {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, between) {
		t.Fatalf("after the trim the log holds %v, want the appends made during it %v", got, between)
	}
}
