package twofactor

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-twofactor/twofactor/store"
)

// countStoreErrors wraps the opened store so that every operation that
// fails because the store is unavailable counts in errs
// (store_errors_total), by operation. Everything the gateway does with the
// store goes through it: the engine, the hot path's reads, the audit
// trail. A store that carries change notices stays a store.Notifier.
func countStoreErrors(st store.Store, errs *prometheus.CounterVec) store.Store {
	c := &errorCountingStore{st: st}
	for i, op := range storeOps {
		c.errs[i] = errs.WithLabelValues(op)
	}
	if n, ok := st.(store.Notifier); ok {
		return &errorCountingNotifier{errorCountingStore: c, n: n}
	}
	return c
}

// storeOp indexes storeOps.
type storeOp int

const (
	opGet storeOp = iota
	opSet
	opDelete
	opCAS
	opIncrement
	opIndex
	opLog
	opPublish
	opBatch
	opOther
)

type errorCountingStore struct {
	st   store.Store
	errs [opOther + 1]prometheus.Counter // resolved once: no label lookup per error
}

// count counts err if it says the store is unavailable, and returns it.
func (c *errorCountingStore) count(op storeOp, err error) error {
	if err != nil && errors.Is(err, store.ErrUnavailable) {
		c.errs[op].Inc()
	}
	return err
}

func (c *errorCountingStore) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := c.st.Get(ctx, key)
	return v, c.count(opGet, err)
}

func (c *errorCountingStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return c.count(opSet, c.st.Set(ctx, key, value, ttl))
}

func (c *errorCountingStore) Delete(ctx context.Context, keys ...string) error {
	return c.count(opDelete, c.st.Delete(ctx, keys...))
}

func (c *errorCountingStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	ok, err := c.st.CompareAndSwap(ctx, key, old, value, ttl)
	return ok, c.count(opCAS, err)
}

func (c *errorCountingStore) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	n, err := c.st.Increment(ctx, key, ttl)
	return n, c.count(opIncrement, err)
}

func (c *errorCountingStore) IndexPut(ctx context.Context, index string, members ...string) error {
	return c.count(opIndex, c.st.IndexPut(ctx, index, members...))
}

func (c *errorCountingStore) IndexDelete(ctx context.Context, index string, members ...string) error {
	return c.count(opIndex, c.st.IndexDelete(ctx, index, members...))
}

func (c *errorCountingStore) IndexPage(ctx context.Context, index, after string, limit int) ([]string, error) {
	v, err := c.st.IndexPage(ctx, index, after, limit)
	return v, c.count(opIndex, err)
}

func (c *errorCountingStore) IndexRange(ctx context.Context, index, from, to string, limit int) ([]string, error) {
	v, err := c.st.IndexRange(ctx, index, from, to, limit)
	return v, c.count(opIndex, err)
}

func (c *errorCountingStore) IndexCount(ctx context.Context, index, from, to string) (int, error) {
	n, err := c.st.IndexCount(ctx, index, from, to)
	return n, c.count(opIndex, err)
}

func (c *errorCountingStore) ScanKeys(ctx context.Context, prefix string, visit func(keys []string) error) error {
	return c.count(opOther, c.st.ScanKeys(ctx, prefix, visit))
}

func (c *errorCountingStore) LogAppend(ctx context.Context, log string, values ...[]byte) ([]store.LogEntry, error) {
	es, err := c.st.LogAppend(ctx, log, values...)
	return es, c.count(opLog, err)
}

func (c *errorCountingStore) LogRange(ctx context.Context, log, from, to string, limit int, newestFirst bool) ([]store.LogEntry, error) {
	v, err := c.st.LogRange(ctx, log, from, to, limit, newestFirst)
	return v, c.count(opLog, err)
}

func (c *errorCountingStore) LogTrim(ctx context.Context, log string, before time.Time) (int, error) {
	n, err := c.st.LogTrim(ctx, log, before)
	return n, c.count(opLog, err)
}

// Batch keeps the wrapped store's batches whole: one round trip, counted
// once if it fails.
func (c *errorCountingStore) Batch(ctx context.Context, ops ...*store.Op) error {
	return c.count(opBatch, store.RunBatch(ctx, c.st, ops...))
}

// errorCountingNotifier is errorCountingStore over a store that carries
// change notices.
type errorCountingNotifier struct {
	*errorCountingStore
	n store.Notifier
}

func (c *errorCountingNotifier) Publish(ctx context.Context, channel string, msg []byte) error {
	return c.count(opPublish, c.n.Publish(ctx, channel, msg))
}

func (c *errorCountingNotifier) InOrder() bool { return c.n.InOrder() }

// Subscribe reports no errors to count: it retries until ctx ends.
func (c *errorCountingNotifier) Subscribe(ctx context.Context, channel string, deliver func(msg []byte), restart func()) {
	c.n.Subscribe(ctx, channel, deliver, restart)
}

var (
	_ store.Store    = (*errorCountingStore)(nil)
	_ store.Batcher  = (*errorCountingStore)(nil)
	_ store.Notifier = (*errorCountingNotifier)(nil)
)
