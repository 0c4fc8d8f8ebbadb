package audit

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/cache"
	"github.com/caddy-twofactor/twofactor/store"
)

// QueueLen bounds the records a Writer holds waiting to be appended.
const QueueLen = 16384

// Writer appends records to a trail in the background, so that whoever
// audits an event (a sign-in) never waits on the store. When the store is
// slow or down the queue absorbs the backlog; past QueueLen records the
// newest are dropped and onDrop is called, rather than hold up sign-ins.
// Its queue is never closed: a record added after Close (by a request an
// old config finishes after a reload) goes to the writer now running on
// the same shared chain (Trail.ShareChain), or, with none, is dropped and
// reported to onDrop too, instead of panicking.
type Writer struct {
	queue    chan item
	stop     chan struct{}
	stopOnce sync.Once
	closed   atomic.Bool
	shared   atomic.Value // string: Run's trail's shared chain, if any
	onDrop   func()
	logger   *zap.Logger
	lastWarn atomic.Int64 // Unix seconds of the last warning about drops
	waiting  bool         // Run's: the store was unavailable at the last try

	// The throttle (Throttle): records admitted per key this minute.
	// Every use of counts is under mu, so its evictions (summarise) are.
	mu     sync.Mutex
	limit  int
	now    func() time.Time
	counts *cache.Cache[string, *window]
}

type item struct {
	rec   Record
	flush chan struct{} // non-nil: a marker, closed when reached
}

// window counts one key's records in one minute.
type window struct {
	minute      int64 // Unix minutes
	n           int   // records seen
	sample      Record
	first, last time.Time // of the records held back
}

// maxThrottleKeys bounds the keys the throttle tracks. Past it the keys
// repeated least are forgotten first, what they held back summed up at
// once, so a flood of one-off keys (many addresses) neither grows memory
// nor frees the keys that repeat from their limit.
const maxThrottleKeys = 100_000

// NewWriter returns a writer that reports drops to onDrop (may be nil)
// and its problems to logger.
func NewWriter(logger *zap.Logger, onDrop func()) *Writer {
	if onDrop == nil {
		onDrop = func() {}
	}
	return &Writer{queue: make(chan item, QueueLen), stop: make(chan struct{}), onDrop: onDrop, logger: logger}
}

// Throttle limits the records that reach the trail to perMinute a minute
// for each event, result and member (or client address, for events
// without a member), by now's minutes. Those held back are summed up in
// one "audit_suppressed" record once their minute is over, so a member or
// a client repeating a refused request cannot grow the trail at the rate
// they send requests, while the trail still says it happened and how
// often. The audit log keeps every record. Call it before Add is used.
func (w *Writer) Throttle(perMinute int, now func() time.Time) {
	w.limit, w.now = perMinute, now
	w.counts = cache.NewEvicting[string, *window](cache.Options{Size: maxThrottleKeys}, func(_ string, c *window) { w.summarise(c) })
}

// Add queues r without waiting.
func (w *Writer) Add(r Record) {
	if w.closed.Load() {
		if key, _ := w.shared.Load().(string); key != "" {
			if next, ok := running.Load(key); ok && next != w && !next.(*Writer).closed.Load() {
				next.(*Writer).Add(r)
				return
			}
		}
		w.drop()
		return
	}
	if w.limit > 0 && !w.admit(r) {
		return
	}
	w.enqueue(r)
}

func (w *Writer) enqueue(r Record) {
	select {
	case w.queue <- item{rec: r}:
	default:
		w.drop()
	}
}

func (w *Writer) drop() {
	w.onDrop()
	now := time.Now().Unix()
	if last := w.lastWarn.Load(); now-last >= 60 && w.lastWarn.CompareAndSwap(last, now) {
		w.logger.Warn("audit trail: records dropped from the trail (still in the audit log): the queue is full " +
			"(is the store slow or down?) or the configuration is being replaced")
	}
}

// admit counts r against its key's minute and reports whether it goes
// to the trail.
func (w *Writer) admit(r Record) bool {
	at := r.Time
	if at.IsZero() {
		at = w.now()
	}
	minute := at.Unix() / 60
	key := r.Event + "\x00" + r.Result + "\x00" + r.Member
	if r.Member == "" {
		key += "\x00" + r.IP
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, _ := w.counts.Get(key)
	if c != nil && c.minute != minute {
		w.summarise(c)
		c = nil
	}
	if c == nil {
		c = &window{minute: minute, sample: r}
		w.counts.Set(key, c)
	}
	c.n++
	if c.n <= w.limit {
		return true
	}
	if c.first.IsZero() {
		c.first = at
	}
	c.last = at
	return false
}

// summarise queues the record of what c held back, if anything. Called
// with mu held.
func (w *Writer) summarise(c *window) {
	held := c.n - w.limit
	if held <= 0 {
		return
	}
	w.enqueue(Record{Time: c.last, Event: "audit_suppressed", Result: c.sample.Result, Member: c.sample.Member,
		IP: c.sample.IP, Method: c.sample.Method, Details: map[string]string{
			"event": c.sample.Event, "held_back": strconv.Itoa(held),
			"from": c.first.UTC().Format(time.RFC3339), "to": c.last.UTC().Format(time.RFC3339),
		}})
}

// sweep summarises and forgets the keys whose minute is over.
func (w *Writer) sweep() {
	if w.limit == 0 {
		return
	}
	minute := w.now().Unix() / 60
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, c := range w.counts.All() {
		if c.minute < minute {
			w.summarise(c)
			w.counts.Delete(k)
		}
	}
}

// batchLen is the most records Run appends at once: when sign-ins come
// faster than single appends, a backlog goes in one transaction (one
// round trip, one disk sync) instead of one each.
const batchLen = 256

// sweepEvery is how often Run writes the throttle's summaries.
const sweepEvery = 10 * time.Second

// running is the writer running on each shared chain: the one a closed
// writer of the same chain hands its late records to.
var running sync.Map

// Run appends the queue to t until Close, then what is queued.
func (w *Writer) Run(ctx context.Context, t *Trail) {
	if t.shared != "" {
		w.shared.Store(t.shared)
		running.Store(t.shared, w)
		defer running.CompareAndDelete(t.shared, w)
	}
	batch := make([]Record, 0, batchLen)
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case it := <-w.queue:
			w.drain(ctx, t, it, batch)
		case <-tick.C:
			w.sweep()
		case <-w.stop:
			w.mu.Lock()
			if w.counts != nil {
				for _, c := range w.counts.All() {
					w.summarise(c)
				}
				w.counts.Clear()
			}
			w.mu.Unlock()
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
	w.closed.Store(true)
	w.stopOnce.Do(func() { close(w.stop) })
}
