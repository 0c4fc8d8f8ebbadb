package challenge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// A lease lets the hot path trust a cached member record for longer than
// Config.CacheTTL, without weakening the promise that a change made on
// any instance reaches every instance within CacheTTL.
//
// Every write of a record announces itself in its own atomic step
// (Engine.announced), and a store whose notices arrive in order
// (store.Notifier.InOrder) delivers them before anything it ran later.
// So this engine publishes a beat of its own every beatEvery; when the
// beat comes back on the subscription, every write finished before the
// beat was sent has been delivered, and its notice has replaced the
// cached copy. A copy read while the subscription stood, with no
// interruption since, is then as good as one read when that beat was
// sent; while beats keep coming back within CacheTTL, it is trusted.
// When they stop (Redis unreachable, the subscription broken, a store
// that is not the one this engine knew, a write whose notice the store
// refused: store.Unannounced), copies fall back to CacheTTL.
//
// The ordering is the operator's to vouch for (the Redis store's
// lease_records): one server or a Sentinel's master reached directly
// has it, a proxy that sends connections to different servers does
// not. A Cluster forwards notices between nodes over links that can
// drop them, so there is never a lease there.
type lease struct {
	start time.Time // the engine clock's reading at start; times below count from it
	// since is when the current subscription began; -1 while there is
	// none.
	since atomic.Int64
	// confirmed is when the newest beat received back was sent.
	confirmed atomic.Int64
	nonce     string // tells this engine's beats from other instances'

	mu    sync.Mutex
	seq   uint64
	beats [8]beat // the newest sent, by seq modulo its length
}

// beat is one round of the check: when it was sent, whether the store
// answered it as the store this engine knew, and whether it came back.
type beat struct {
	seq               uint64
	at                int64
	checked, received bool
}

// beatEvery is how often a lease is confirmed: a few beats fit in the
// default CacheTTL (2s), so one lost beat ends no lease.
const beatEvery = 500 * time.Millisecond

// leaseMaxAge bounds how long a leased copy is kept at all: a member
// who returns after it is read from the store again.
const leaseMaxAge = 5 * time.Minute

// beatPrefix begins a beat on the changes channel.
const beatPrefix = "beat "

func newLease(now time.Time) *lease {
	var n [8]byte
	_, _ = rand.Read(n[:])
	l := &lease{start: now, nonce: hex.EncodeToString(n[:])}
	l.since.Store(-1)
	return l
}

func (l *lease) at(t time.Time) int64 { return int64(t.Sub(l.start)) }

// covers reports whether a copy read at readAt is still good at now:
// read while the current subscription stood, and a beat sent within ttl
// of now came back.
func (l *lease) covers(readAt, now time.Time, ttl time.Duration) bool {
	if l == nil {
		return false
	}
	since := l.since.Load()
	return since >= 0 && l.at(readAt) >= since && l.at(now)-l.confirmed.Load() < int64(ttl)
}

// subscribed starts a subscription at now: notices sent before it may be
// lost, so no copy read before now is covered, and no beat counts until
// one comes back on it.
func (l *lease) subscribed(now time.Time) {
	l.confirmed.Store(-1 << 62)
	l.since.Store(l.at(now))
}

// next numbers a beat sent at now, and returns its message.
func (l *lease) next(now time.Time) (uint64, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.beats[l.seq%uint64(len(l.beats))] = beat{seq: l.seq, at: l.at(now)}
	return l.seq, []byte(beatPrefix + l.nonce + " " + strconv.FormatUint(l.seq, 10))
}

// checked records that the store answered beat seq as the store this
// engine knew; received that it came back. Both, and it confirms.
func (l *lease) checked(seq uint64) { l.mark(seq, func(b *beat) { b.checked = true }) }

// received takes a beat message off the changes channel; it reports
// whether msg was a beat (this engine's or another's).
func (l *lease) received(msg string) bool {
	rest, ok := strings.CutPrefix(msg, beatPrefix)
	if !ok {
		return false
	}
	nonce, n, _ := strings.Cut(rest, " ")
	seq, err := strconv.ParseUint(n, 10, 64)
	if l != nil && err == nil && nonce == l.nonce {
		l.mark(seq, func(b *beat) { b.received = true })
	}
	return true
}

func (l *lease) mark(seq uint64, set func(*beat)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.beats[seq%uint64(len(l.beats))]
	if b.seq != seq {
		return // too old: newer beats have taken its place
	}
	set(b)
	if b.checked && b.received && b.at > l.confirmed.Load() {
		l.confirmed.Store(b.at)
	}
}

// beat sends one beat: a read of the store's identity and of the mark of
// a write that went unannounced (store.Unannounced), and the beat, in one
// round trip, in that order. A store that is not the one this engine
// knew (emptied, replaced, restored behind its back) confirms nothing,
// and the copies read from the old one are forgotten; while the mark
// stands nothing is confirmed either.
func (e *Engine) beat(ctx context.Context, l *lease) {
	seq, msg := l.next(e.now())
	check, mark := store.GetOp(keyCheckKey), store.GetOp(store.Unannounced)
	ctx, cancel := context.WithTimeout(ctx, beatEvery)
	defer cancel()
	if err := store.RunBatch(ctx, e.store, check, mark, store.PublishOp(changesChannel, msg)); err != nil {
		return
	}
	if want := e.storeID.Load(); want != nil {
		id, err := e.storeIDOf(check.Value)
		if !check.Found || err != nil || id != *want {
			e.users.restarted(e.now())
			return
		}
	}
	if !mark.Found {
		l.checked(seq)
	}
}

// beating sends beats until ctx ends.
func (e *Engine) beating(ctx context.Context, l *lease) {
	t := time.NewTicker(beatEvery)
	defer t.Stop()
	for {
		e.beat(ctx, l)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
