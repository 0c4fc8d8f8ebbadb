package twofactor

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-twofactor/twofactor/audit"
)

// UseFigures makes the running app's admin overview read its daily
// figures from fn rather than from where the app keeps them: tests show
// fixed figures this way, and a program that embeds Caddy may show its
// own. It fails before Start has opened the store; a config reload starts
// a new app, which reads its figures again as configured.
func (a *App) UseFigures(fn func(ctx context.Context, from, to time.Time) ([]audit.Day, error)) error {
	if a.running == nil {
		return errors.New("two_factor: the app has not started")
	}
	b := a.rt.Load()
	if b == nil {
		return errors.New("two_factor: the app has not started")
	}
	next := *b
	next.Figures = fn
	// A new Backend rather than a change to the one requests may be
	// reading.
	a.rt.Store(&next)
	return nil
}
