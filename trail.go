package twofactor

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

// The durable audit trail. The audit logger is teed (audit.Tee) so that
// every event the engine audits is also queued as a record, and one
// audit.Writer per instance appends the queue in the background: a
// sign-in never waits on the store for its audit record. Records dropped
// because the queue was full are counted in
// caddy_two_factor_audit_dropped_total; the audit logger (file or SIEM
// copy) still has them.

// defaultAuditRetention is how long the trail keeps records by default:
// over a year, so a yearly review finds the whole year.
const defaultAuditRetention = 400 * 24 * time.Hour

// auditRetention bounds: a day (shorter loses what an admin needs to
// look into a report) to ten years.
const minAuditRetention, maxAuditRetention = 24 * time.Hour, 3650 * 24 * time.Hour

// auditPerMinute is how many records of one event, result and member (or
// address) reach the trail in a minute; the rest are summed up in one
// audit_suppressed record. Far above what a person does (a lockout comes
// after 5 wrong codes), far below what a script sending refused requests
// would write: 20 a minute is under 11 million records a year for one
// member, where the script alone would write that in an hour.
const auditPerMinute = 20

// trimEvery is how often the trail is trimmed by age.
const trimEvery = time.Hour

// instanceName is this instance's name in the trail and the daily
// figures: the app's instance_name, else the host name.
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
func (a *App) startTrail(st store.Store, kr *keyring.Keyring, instance string, now func() time.Time) (*audit.Trail, error) {
	t, err := audit.New(st, kr.MACKeys("audit chain"), instance, now)
	if err != nil {
		return nil, err
	}
	// A reload's new trail and the old one, still appending its last
	// records, must go on from the same link.
	t.ShareChain(a.chainScope())
	a.bg.Go(func(ctx context.Context) { a.trailW.Run(ctx, t) })
	a.bg.watch(func(ctx context.Context) { a.trimTrail(ctx, t, now) })
	return t, nil
}

// chainScope names the data the store reaches, for the trail's shared
// chain state: the shared store's identity, or the embedded database's
// file. "" (a store module of another kind) keeps each trail's own.
func (a *App) chainScope() string {
	if s, ok := a.storage.(*EmbeddedStore); ok && s.key != "" {
		return "embedded " + s.key
	}
	return a.storeIdentity
}

// trimTrail removes records older than audit_retention now and every
// trimEvery, until ctx ends.
func (a *App) trimTrail(ctx context.Context, t *audit.Trail, now func() time.Time) {
	retention := time.Duration(a.AuditRetention)
	for {
		n, err := t.Trim(ctx, now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			a.logger.Warn("audit trail: trimming old records", zap.Error(err))
		case n > 0:
			a.logger.Info("audit trail: old records trimmed", zap.Int("records", n), zap.Duration("retention", retention))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(trimEvery):
		}
	}
}
