package twofactor

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/store"
)

// The daily figures behind the dashboard and the weekly report: the audit
// events, classified as the metrics classify them, counted per day by
// this instance (audit.Tally) and written to the store in the
// background.

const (
	// figuresTick is how often, in real time, the background loop looks
	// at the gateway's clock to see what is due.
	figuresTick = time.Second
	// figuresFlush is how often, by the gateway's clock, the counts go to
	// the store.
	figuresFlush = 10 * time.Second
	// membersSnapshot is how often, by the gateway's clock, the member
	// counts are noted in the day's figures.
	membersSnapshot = 5 * time.Minute
	// stopFlushTimeout bounds the last flush when the app stops.
	stopFlushTimeout = 5 * time.Second
)

// countFigures counts one audit event in the day's figures, once the app
// has started.
func (a *App) countFigures(ev auditEvent) {
	f := a.figures.Load()
	if f == nil {
		return
	}
	if kind, labels := classify(ev.event, ev.result, ev.fields); kind != "" {
		f.tally.Observe(kind, labels...)
	}
	if ev.event == "verify" && ev.result == "success" && ev.recoveredAfter >= 0 {
		f.tally.ObserveRecovered(float64(ev.recoveredAfter))
	}
}

// figures is this instance's tally of the day and what it reads.
type figures struct {
	tally  *audit.Tally
	st     store.Store
	engine *challenge.Engine
	logger *zap.Logger

	// Under loop (and read, with a snapshot, by read): the gateway's
	// times of the last flush and member snapshot.
	lastFlush, lastMembers time.Time
}

// newFigures counts instance's figures on st, kept for retention (the
// audit trail's).
func newFigures(st store.Store, engine *challenge.Engine, logger *zap.Logger, instance string, retention time.Duration) (*figures, error) {
	tally, err := audit.NewTally(st, instance, retention, clock.Now)
	if err != nil {
		return nil, err
	}
	return &figures{tally: tally, st: st, engine: engine, logger: logger}, nil
}

// run flushes the counts and notes the member counts as they fall due,
// until stop ends; then it flushes once more within ctx, the task's.
func (f *figures) run(ctx context.Context, stop <-chan struct{}, due ...func(context.Context, time.Time)) {
	tick := time.NewTicker(figuresTick)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			fctx, cancel := context.WithTimeout(ctx, stopFlushTimeout)
			defer cancel()
			if err := f.tally.Flush(fctx); err != nil {
				f.logger.Warn("figures: writing the day's counts at stop", zap.Error(err))
			}
			return
		case <-tick.C:
		}
		now := clock.Now()
		if now.Sub(f.lastMembers) >= membersSnapshot || !sameDay(now, f.lastMembers) {
			if f.snapshot(ctx) == nil {
				f.lastMembers = now
			}
		}
		if now.Sub(f.lastFlush) >= figuresFlush || !sameDay(now, f.lastFlush) {
			if err := f.tally.Flush(ctx); err != nil {
				f.logger.Warn("figures: writing the day's counts; kept for the next try", zap.Error(err))
			} else {
				if f.lastFlush.IsZero() {
					f.logger.Info("figures: this instance's counts written; again every 10s while they change")
				}
				f.lastFlush = now
			}
		}
		for _, d := range due {
			d(ctx, now)
		}
	}
}

// snapshot notes the member counts in today's figures.
func (f *figures) snapshot(ctx context.Context) error {
	c, err := f.engine.CountMembers(ctx)
	if err != nil {
		return err
	}
	f.tally.Members(int64(c.Seen), int64(c.Enrolled))
	return nil
}

// read returns the figures of the days from from to to, site-wide, after
// writing this instance's counts so far: what an admin just did shows.
func (f *figures) read(ctx context.Context, from, to time.Time) ([]audit.Day, error) {
	_ = f.snapshot(ctx) // best effort: the last snapshot stands otherwise
	if err := f.tally.Flush(ctx); err != nil {
		return nil, err
	}
	days, unreadable, err := audit.Days(ctx, f.st, from, to)
	if len(unreadable) > 0 {
		f.logger.Warn("figures: documents that cannot be parsed are left out of the figures",
			zap.Int("count", len(unreadable)), zap.Strings("keys", unreadable[:min(len(unreadable), maxLoggedKeys)]))
	}
	return days, err
}

// maxLoggedKeys is how many unreadable documents a read names in its log.
const maxLoggedKeys = 10

func sameDay(a, b time.Time) bool {
	return a.UTC().Truncate(24 * time.Hour).Equal(b.UTC().Truncate(24 * time.Hour))
}

// readFigures is flow.Backend's Figures: the days' figures, with the
// members this instance saw a moment ago noted first.
func (a *App) readFigures(ctx context.Context, from, to time.Time) ([]audit.Day, error) {
	f := a.figures.Load()
	if f == nil {
		return nil, flow.ErrNotReady
	}
	a.seen.flush(ctx)
	return f.read(ctx, from, to)
}
