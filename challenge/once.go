package challenge

import (
	"context"
	"encoding/hex"
	"time"

	"go.uber.org/zap"
)

// Events audited once for an occasion however often it comes round: a
// member passing by network on every request of a member-site session is
// one event, not one per request. The caller remembers in memory what it
// has audited; the store's mark makes it once across the instances that
// share it.

// oncePrefix begins the keys that mark an occasion as audited
// (AuditOnce). They are short-lived and no backup holds them: Export
// reads the records it copies by member and kind, and Import looks at the
// users and seen indexes, so neither lists nor trips over them.
const oncePrefix = "once:"

// onceKey is the mark of the occasion key of user's, in the member's
// Cluster hash slot.
func onceKey(user string, key [16]byte) string {
	return oncePrefix + tag(user) + ":" + hex.EncodeToString(key[:])
}

// AuditOnce audits the event as Audit does (the audit log and, for the
// events it records, the member's activity), unless it was audited for
// the same occasion within ttl, by this engine or another sharing the
// store. key names the occasion: the caller hashes what makes two events
// one (for a network skip: the rule, the range, the member and the
// member-site session). The mark is set only if absent, so of two
// instances racing, one audits. On a store error the event is audited
// anyway, with dedupe=local: a duplicate is better than a lost event.
// A ttl under a second is taken as a second (a mark without expiry would
// never leave the store). It reports whether it audited.
func (e *Engine) AuditOnce(ctx context.Context, a Actor, key [16]byte, ttl time.Duration, name, result string, fields ...zap.Field) bool {
	won, err := e.store.CompareAndSwap(ctx, onceKey(a.User, key), nil, []byte{1}, max(ttl, time.Second))
	switch {
	case err != nil:
		fields = append(fields[:len(fields):len(fields)], zap.String("dedupe", "local"))
	case !won:
		return false
	}
	e.Audit(a, name, result, fields...)
	return true
}
