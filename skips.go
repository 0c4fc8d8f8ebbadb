package twofactor

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/cache"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/flow"
)

// Network skips, audited once per member-site session. A member whose
// request comes from a range whose policy skips the second factor passes
// on every request without a code; the audit trail and the metric count
// the session, not the requests. A request only looks its skip up in
// memory; the first of a session hands the audit to the background,
// where the store's mark (challenge.Engine.AuditOnce) makes it one event
// among the instances that share the store.

// skipsMax bounds the skips remembered as audited; past it the least
// used are forgotten first, which costs each at most one more store
// write (whose mark still keeps the audit at one).
const skipsMax = 100_000

// skipWriteTimeout bounds the store write and the audit of one skip.
const skipWriteTimeout = 5 * time.Second

// skipKeyBuf is the stack buffer a skip's key is hashed from: the rule's
// paths, the range, the member ID and the session fit in it unless they
// are unusually long (then the hash costs an allocation).
const skipKeyBuf = 512

// skipNotes is what the app remembers of the skips it has audited.
type skipNotes struct {
	// noted maps a skip's key to the Unix second its mark lapses: after
	// that the same key is audited again.
	noted *cache.Cache[[16]byte, int64]
	// life is the longest session_lifetime of the app's handlers, in
	// nanoseconds; 0 until one is told.
	life atomic.Int64
}

func newSkipNotes() *skipNotes {
	return &skipNotes{noted: cache.New[[16]byte, int64](cache.Options{Size: skipsMax})}
}

// markLife is how long a session's mark lasts: the longest
// session_lifetime of the app's handlers, or the default without one.
func (s *skipNotes) markLife() time.Duration {
	if d := time.Duration(s.life.Load()); d > 0 {
		return d
	}
	return defaultSessionLife
}

// lifetime raises the life of a session's mark to d if d is longer, so
// that a session of the handler with the longest session_lifetime is
// audited once too.
func (s *skipNotes) lifetime(d time.Duration) {
	for {
		old := s.life.Load()
		if int64(d) <= old || s.life.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// claim marks key as audited until the Unix second until, and reports
// whether this call did (false: another request marked it meanwhile, and
// audits it).
func (s *skipNotes) claim(key [16]byte, until int64, now time.Time) bool {
	claimed := false
	s.noted.Update(key, false, func(old int64, found bool) (int64, bool) {
		if found && now.Unix() < old {
			return old, false
		}
		claimed = true
		return until, true
	})
	return claimed
}

// noteSkip audits, once per member-site session, that a member passed a
// rule without a code because the request came from network, a range of
// one of the rule's networks blocks with second_factor skip: the event
// network_skip, result success, with the fields rule (the rule's label),
// network and enrolled. act is the member and the request's client
// address and user agent; binding is the hash of the member-site session
// cookie (id.Binding). A request without one (zero) is noted once per
// member, rule, network, the client's range (flow.NetworkOf) and UTC day.
//
// It runs on every skipped request: when the skip was noted already, it
// is one hash on the stack and one lookup in memory, without allocating.
// The first of a session marks it and hands the write to the background,
// where challenge.Engine.AuditOnce writes the event unless another
// instance sharing the store did.
func (a *App) noteSkip(b *flow.Backend, act challenge.Actor, binding [16]byte, rule, network string, enrolled bool, now time.Time) {
	s := a.skips
	if s == nil || b == nil || b.Engine == nil {
		return
	}
	key, until := skipKey(rule, network, act.User, act.IP, binding, now, s.markLife())
	if u, ok := s.noted.Get(key); ok && now.Unix() < u {
		return
	}
	if !s.claim(key, until, now) {
		return
	}
	ttl := time.Duration(until-now.Unix()) * time.Second
	engine := b.Engine
	a.bg.Go(func(ctx context.Context) {
		wctx, cancel := context.WithTimeout(ctx, skipWriteTimeout)
		defer cancel()
		engine.AuditOnce(wctx, act, key, ttl, "network_skip", "success",
			zap.String("rule", rule), zap.String("network", network), zap.Bool("enrolled", enrolled))
	})
}

// skipKey is the key of a skip: a hash of the rule's label, the network,
// the member and the session (binding), or, without a session, of the
// client's range (flow.NetworkOf of ip) and the UTC day. until is the Unix
// second its mark lapses: life after now for a session, the end of the
// day without one. Each part goes in with its length, so no two sets of
// parts hash alike by running into each other.
func skipKey(rule, network, user, ip string, binding [16]byte, now time.Time, life time.Duration) (key [16]byte, until int64) {
	var buf [skipKeyBuf]byte
	b := append(buf[:0], "network_skip"...)
	for _, part := range [...]string{rule, network, user} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	if binding != ([16]byte{}) {
		b = append(b, 's')
		b = append(b, binding[:]...)
		until = now.Add(max(life, time.Second)).Unix()
	} else {
		day := now.Unix() / 86400
		b = append(b, 'd')
		if p := flow.NetworkOf(flow.ClientAddr(ip)); p.IsValid() {
			b = p.AppendTo(b)
		}
		b = binary.AppendVarint(append(b, 0), day)
		until = (day + 1) * 86400
	}
	sum := sha256.Sum256(b)
	return [16]byte(sum[:16]), until
}

// skipRule registers label, a rule's paths as noteSkip's rule names it
// (such as "/staff/* /office/*"), as a value of network_skips_total's
// rule label, whose series starts at 0; skips of a rule not registered
// count as "other", so the label's values are the configuration's.
// Handler.Provision calls it for each rule with a second_factor skip
// block.
func (a *App) skipRule(label string) {
	if a.metrics != nil {
		a.metrics.skipRule(label)
	}
}

// skipLifetime tells the skips' notes of a handler's session_lifetime: a
// session's mark lasts the longest the app's handlers give (without any,
// the default 12h). Handler.Provision calls it.
func (a *App) skipLifetime(d time.Duration) {
	if a.skips != nil {
		a.skips.lifetime(d)
	}
}
