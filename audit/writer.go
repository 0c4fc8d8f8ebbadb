package audit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// QueueLen bounds the records a Writer holds waiting to be appended.
const QueueLen = 16384

// Writer appends records to a trail in the background, so that whoever
// audits an event (a sign-in) never waits on the store. When the store is
// slow or down the queue absorbs the backlog; past QueueLen records the
// newest are dropped and onDrop is called, rather than hold up sign-ins.
// Its queue is never closed: a record added after Close (by a request of
// an old config still running) is dropped instead of panicking.
type Writer struct {
	queue    chan item
	stop     chan struct{}
	stopOnce sync.Once
	onDrop   func()
	logger   *zap.Logger
	lastWarn atomic.Int64 // Unix seconds of the last warning about drops
	waiting  bool         // Run's: the store was unavailable at the last try
}

type item struct {
	rec   Record
	flush chan struct{} // non-nil: a marker, closed when reached
}

// NewWriter returns a writer that reports drops to onDrop (may be nil)
// and its problems to logger.
func NewWriter(logger *zap.Logger, onDrop func()) *Writer {
	if onDrop == nil {
		onDrop = func() {}
	}
	return &Writer{queue: make(chan item, QueueLen), stop: make(chan struct{}), onDrop: onDrop, logger: logger}
}

// Add queues r without waiting.
func (w *Writer) Add(r Record) {
	select {
	case w.queue <- item{rec: r}:
	default:
		w.onDrop()
		now := time.Now().Unix()
		if last := w.lastWarn.Load(); now-last >= 60 && w.lastWarn.CompareAndSwap(last, now) {
			w.logger.Warn("audit trail: queue full, records dropped from the trail (still in the audit log); is the store slow or down?")
		}
	}
}

// batchLen is the most records Run appends at once: when sign-ins come
// faster than single appends, a backlog goes in one transaction (one
// round trip, one disk sync) instead of one each.
const batchLen = 256

// Run appends the queue to t until Close, then what is queued.
func (w *Writer) Run(ctx context.Context, t *Trail) {
	batch := make([]Record, 0, batchLen)
	for {
		select {
		case it := <-w.queue:
			w.drain(ctx, t, it, batch)
		case <-w.stop:
			for {
				select {
				case it := <-w.queue:
					w.drain(ctx, t, it, batch)
				default:
					return
				}
			}
		}
	}
}

// drain appends first and what else is queued, up to batchLen records at
// once, releasing a Sync marker once what was queued before it is in.
func (w *Writer) drain(ctx context.Context, t *Trail, first item, batch []Record) {
	it, ok := first, true
	for ok {
		if it.flush != nil {
			w.write(ctx, t, batch)
			batch = batch[:0]
			close(it.flush)
		} else {
			// Checked one by one, so one bad record cannot sink a batch.
			r := it.rec
			if r.Time.IsZero() {
				r.Time = t.now()
			}
			if err := r.Check(); err != nil {
				w.logger.Error("audit trail: record refused", zap.String("event", r.Event), zap.Error(err))
			} else {
				batch = append(batch, r)
			}
		}
		if len(batch) == batchLen {
			w.write(ctx, t, batch)
			batch = batch[:0]
		}
		select {
		case it = <-w.queue:
		default:
			ok = false
		}
	}
	w.write(ctx, t, batch)
}

// write appends a batch, retrying while the store is unavailable: the
// queue holds the records behind it meanwhile.
func (w *Writer) write(ctx context.Context, t *Trail, batch []Record) {
	if len(batch) == 0 {
		return
	}
	wait := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := t.Append(actx, batch...)
		cancel()
		if err == nil || !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			if err != nil {
				w.logger.Error("audit trail: records refused", zap.Int("records", len(batch)), zap.Error(err))
			}
			if err == nil && w.waiting {
				w.waiting = false
				w.logger.Info("audit trail: store back, queued records appended")
			}
			return
		}
		if !w.waiting {
			w.waiting = true
			w.logger.Warn("audit trail: store unavailable, records wait in the queue", zap.Int("queued", len(w.queue)), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			w.logger.Error("audit trail: records lost at shutdown, store unavailable", zap.Int("records", len(batch)))
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Sync waits until the records queued before it are appended, so that a
// query sees the events that led to it.
func (w *Writer) Sync(ctx context.Context) {
	done := make(chan struct{})
	select {
	case w.queue <- item{flush: done}:
	case <-w.stop:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-w.stop:
	case <-ctx.Done():
	}
}

// Close makes Run append what is queued and return.
func (w *Writer) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
}
