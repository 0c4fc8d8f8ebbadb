package twofactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

// The durable audit trail. Every event the engine audits passes through
// trailCore on its way to the two_factor.audit logger, becomes an
// audit.Record and waits in a queue; one writer per instance appends the
// queue to the trail in the background, so a sign-in never waits on the
// store for its audit record. When the store is slow or down the queue
// absorbs the backlog; past trailQueue records the newest are dropped,
// counted in caddy_two_factor_audit_dropped_total and still written to
// the audit logger (the file or SIEM copy), rather than hold up sign-ins.

// trailQueue bounds the records waiting to be appended.
const trailQueue = 16384

// defaultAuditRetention is how long the trail keeps records by default:
// over a year, so a yearly review finds the whole year.
const defaultAuditRetention = 400 * 24 * time.Hour

// auditRetention bounds: a day (shorter loses what an admin needs to
// look into a report) to ten years.
const minAuditRetention, maxAuditRetention = 24 * time.Hour, 3650 * 24 * time.Hour

// trimEvery is how often the trail is trimmed by age.
const trimEvery = time.Hour

type trailItem struct {
	rec   audit.Record
	flush chan struct{} // non-nil: a marker, closed when reached
}

// trailWriter queues the audit records and appends them. Like
// seenRecorder, its queue is never closed: a request of an old config
// still running after Stop drops its record instead of panicking.
type trailWriter struct {
	queue    chan trailItem
	stop     chan struct{}
	stopOnce sync.Once
	dropped  prometheus.Counter
	logger   *zap.Logger
	lastWarn atomic.Int64 // Unix seconds of the last warning about drops
	trail    atomic.Pointer[audit.Trail]
}

func newTrailWriter(reg prometheus.Registerer, logger *zap.Logger) (*trailWriter, error) {
	w := &trailWriter{
		queue: make(chan trailItem, trailQueue), stop: make(chan struct{}), logger: logger,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "audit_dropped_total",
			Help: "Audit records not appended to the durable trail because its queue was full (the store was slow or down); the audit logger still has them."}),
	}
	if err := reg.Register(w.dropped); err != nil {
		return nil, err
	}
	return w, nil
}

// add queues r without waiting.
func (w *trailWriter) add(r audit.Record) {
	select {
	case w.queue <- trailItem{rec: r}:
	default:
		w.dropped.Inc()
		now := time.Now().Unix()
		if last := w.lastWarn.Load(); now-last >= 60 && w.lastWarn.CompareAndSwap(last, now) {
			w.logger.Warn("audit trail: queue full, records dropped from the trail (still in the audit log); is the store slow or down?")
		}
	}
}

// run appends the queue to t until close, then what is queued.
func (w *trailWriter) run(ctx context.Context, t *audit.Trail) {
	w.trail.Store(t)
	for {
		select {
		case it := <-w.queue:
			w.write(ctx, t, it)
		case <-w.stop:
			for {
				select {
				case it := <-w.queue:
					w.write(ctx, t, it)
				default:
					return
				}
			}
		}
	}
}

// write appends one record, retrying while the store is unavailable: the
// queue holds the records behind it meanwhile.
func (w *trailWriter) write(ctx context.Context, t *audit.Trail, it trailItem) {
	if it.flush != nil {
		close(it.flush)
		return
	}
	wait := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := t.Append(actx, it.rec)
		cancel()
		if err == nil || !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			if err != nil {
				w.logger.Error("audit trail: record refused", zap.String("event", it.rec.Event), zap.Error(err))
			}
			return
		}
		select {
		case <-ctx.Done():
			w.logger.Error("audit trail: record lost at shutdown, store unavailable", zap.String("event", it.rec.Event))
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// sync waits until the records queued before it are appended, so an
// admin's query sees the events that led to it.
func (w *trailWriter) sync(ctx context.Context) {
	done := make(chan struct{})
	select {
	case w.queue <- trailItem{flush: done}:
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

func (w *trailWriter) close() {
	w.stopOnce.Do(func() { close(w.stop) })
}

// trim removes records older than retention now and every trimEvery.
func (w *trailWriter) trim(ctx context.Context, t *audit.Trail, retention time.Duration, now func() time.Time) {
	for {
		n, err := t.Trim(ctx, now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			w.logger.Warn("audit trail: trimming old records", zap.Error(err))
		case n > 0:
			w.logger.Info("audit trail: old records trimmed", zap.Int("records", n), zap.Duration("retention", retention))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(trimEvery):
		}
	}
}

// trailCore is a zap core that turns the audit events it is given into
// records for w and writes nothing: teed with the audit logger's core.
type trailCore struct {
	w      *trailWriter
	now    func() time.Time // the gateway's clock, which queries by time use
	fields []zapcore.Field
}

func (c *trailCore) Enabled(zapcore.Level) bool { return true }

func (c *trailCore) With(fields []zapcore.Field) zapcore.Core {
	return &trailCore{w: c.w, now: c.now, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *trailCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c *trailCore) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	c.w.add(auditRecord(c.now(), append(append([]zapcore.Field(nil), c.fields...), fields...)))
	return nil
}

func (c *trailCore) Sync() error { return nil }

// recordFields are the event fields a record has a place for; the rest go
// to its details.
var recordFields = map[string]bool{"event": true, "result": true, "user": true, "ip": true, "admin_ip": true,
	"user_agent": true, "method": true, "actor": true}

// auditRecord builds the record of an audit event from its fields. The
// browser is reduced to a summary; error texts stay out (a mail server's
// error may quote the full address; error_class says what failed).
func auditRecord(at time.Time, fields []zapcore.Field) audit.Record {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		if f.Type == zapcore.ErrorType {
			continue
		}
		f.AddTo(enc)
	}
	str := func(k string) string {
		s, _ := enc.Fields[k].(string)
		return s
	}
	r := audit.Record{Time: at.UTC(), Event: str("event"), Result: str("result"), Member: str("user"),
		Actor: str("actor"), IP: str("ip"), Browser: audit.Browser(str("user_agent")), Method: str("method")}
	if r.IP == "" {
		r.IP = str("admin_ip") // an admin action: the admin's address
	}
	for k, v := range enc.Fields {
		if recordFields[k] {
			continue
		}
		if r.Details == nil {
			r.Details = map[string]string{}
		}
		r.Details[k] = detail(v)
	}
	return r
}

// detail is a details value as text.
func detail(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = detail(p)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}

// withTrail returns the audit logger that also queues its events for w.
func withTrail(logger *zap.Logger, w *trailWriter, now func() time.Time) *zap.Logger {
	return logger.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewTee(core, &trailCore{w: w, now: now})
	}))
}

// instanceName is this instance's name in the trail: the app's
// instance_name, else the host name.
func (a *App) instanceName() (string, error) {
	if a.InstanceName != "" {
		return a.InstanceName, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("instance_name: not set and the host name is unknown (%v); set it", err)
	}
	return h, nil
}

// startTrail opens the trail on st and starts its writer and trimmer.
func (a *App) startTrail(st store.Store, kr *keyring.Keyring, now func() time.Time) (*audit.Trail, error) {
	name, err := a.instanceName()
	if err != nil {
		return nil, err
	}
	t, err := audit.New(st, kr.MACKeys("audit chain"), name, now)
	if err != nil {
		return nil, err
	}
	a.bg.Go(func(ctx context.Context) { a.trailW.run(ctx, t) })
	a.bg.watch(func(ctx context.Context) { a.trailW.trim(ctx, t, time.Duration(a.AuditRetention), now) })
	return t, nil
}
