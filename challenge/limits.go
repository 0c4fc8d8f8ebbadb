package challenge

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// Wrong codes are limited per account and per client address. A guess is
// counted before the code is evaluated, so parallel guesses cannot get
// past the limit.
//
// The account counts wrong codes in a row: one counter shared by every
// method, session and address, cleared only by a right code or a lockout,
// and forgotten a day after the first (NIST SP 800-63B 5.2.2 limits
// consecutive failures; a counter that a short window forgets would let a
// patient guesser go on for ever below the limit). Reaching MaxFailures
// locks for Lockout from that moment; the tries after it are counted
// afresh. Each lockout within a day of the last one ending lasts twice as
// long as that one, up to MaxLockout, so a guesser slows down fast while a
// member who mistyped waits only Lockout; a right code forgets them.
//
// The address counts wrong codes over FailureWindow, minus right ones (an
// office behind one address must not lock itself out by signing in).
// Reaching MaxAddressFailures locks the address for Lockout; address
// lockouts never grow, since everyone behind the address shares them.
//
// One lock record per account or address holds the lockout's end, how many
// lockouts came in a row, and the round: counters are keyed by round, so a
// lockout starts a fresh count without deleting the old one, and a guess
// that read the round before the lockout lands on the old, full counter
// and is refused.

// accountMemory is how long an account's wrong codes and lockouts are
// remembered without a right code.
const accountMemory = 24 * time.Hour

func failKey(user string) string   { return "fail:" + tag(user) }
func lockKey(user string) string   { return "lock:" + tag(user) }
func addrFailKey(ip string) string { return "ipfail:" + addressBucket(ip) }
func addrLockKey(ip string) string { return "iplock:" + addressBucket(ip) }
func addrOKKey(ip string) string   { return "ipok:" + addressBucket(ip) }

// inRound names a counter of the given round; round 0 keeps the plain
// key, as before rounds existed.
func inRound(key string, round int64) string {
	if round == 0 {
		return key
	}
	return key + "#" + strconv.FormatInt(round, 10)
}

// addressBucket groups IPv6 clients by /64, the block one subscriber
// usually controls, so rotating addresses inside it does not reset the
// limit.
func addressBucket(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// addressLimited reports whether the per-address limit applies.
func (e *Engine) addressLimited(a Actor) bool {
	return a.IP != "" && e.cfg.MaxAddressFailures > 0
}

// lockState is what a lock record holds.
type lockState struct {
	until time.Time // end of the current or last lockout
	row   int64     // lockouts in a row, each soon after the last
	round int64     // counting round: one more after every lockout
	raw   []byte    // as stored, for a compare-and-swap; nil when absent
}

// lockSecondsBefore tells timestamps in Unix seconds (earlier lock records,
// cooldowns) from those in milliseconds: seconds stay below it until the
// year 5138, milliseconds passed it in 1973.
const lockSecondsBefore = 1e11

func readTime(v []byte) time.Time {
	n := int64(binary.BigEndian.Uint64(v))
	if n < lockSecondsBefore {
		return time.Unix(n, 0)
	}
	return time.UnixMilli(n)
}

func (l lockState) encode() []byte {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v, uint64(l.until.UnixMilli()))
	binary.BigEndian.PutUint64(v[8:], uint64(l.row))
	binary.BigEndian.PutUint64(v[16:], uint64(l.round))
	return v
}

func (e *Engine) readLock(ctx context.Context, key string) (lockState, error) {
	op := store.GetOp(key)
	if err := store.RunBatch(ctx, e.store, op); err != nil {
		return lockState{}, err
	}
	return lockFrom(op), nil
}

// lockFrom decodes the lock record a Get read.
func lockFrom(op *store.Op) lockState {
	v := op.Value
	if !op.Found {
		return lockState{}
	}
	switch len(v) {
	case 8: // an earlier version's lock: its end only
		return lockState{until: readTime(v), row: 1, raw: v}
	case 24:
		return lockState{until: readTime(v), row: int64(binary.BigEndian.Uint64(v[8:])),
			round: int64(binary.BigEndian.Uint64(v[16:])), raw: v}
	}
	return lockState{}
}

// attempt is one counted guess in progress.
type attempt struct {
	user, addr           lockState
	userCount, addrCount int64
}

// A guess costs two round trips to the store before it is evaluated:
// the first reads the lock records, with whatever else the verification
// needs to read (the member's record, the outstanding code); the second
// counts the guess, on counters named by the lock records' rounds. Each
// is one batch (store.RunBatch): one pipeline on Redis.

// begin counts a guess for the actor, refusing it without evaluation when
// the account or the address is locked.
func (e *Engine) begin(ctx context.Context, a Actor) (*attempt, error) {
	return e.beginWith(ctx, a, nil, nil)
}

// beginWith is begin that also reads reads in its first round trip, and
// sends the ops then returns (made from what was read) in its second,
// with the counting: ops that need no evaluation of the guess, since they
// run even when the count turns out to be over the limit.
func (e *Engine) beginWith(ctx context.Context, a Actor, reads []*store.Op, then func() []*store.Op) (*attempt, error) {
	at := &attempt{}
	userLock := store.GetOp(lockKey(a.User))
	first := append([]*store.Op{userLock}, reads...)
	var addrLock *store.Op
	if e.addressLimited(a) {
		addrLock = store.GetOp(addrLockKey(a.IP))
		first = append(first, addrLock)
	}
	if err := store.RunBatch(ctx, e.store, first...); err != nil {
		return nil, err
	}
	at.user = lockFrom(userLock)
	if addrLock != nil {
		at.addr = lockFrom(addrLock)
	}
	if err := e.lockedNow(at.user, at.addr); err != nil {
		return nil, err
	}
	userFail := store.IncrementOp(inRound(failKey(a.User), at.user.round), accountMemory)
	count := []*store.Op{userFail}
	var refunds, addrFail *store.Op
	if e.addressLimited(a) {
		// Right codes are given back, so only wrong ones count: an
		// office behind one address must not lock itself out by
		// signing in. Refunds are read first (before the count in the
		// pipeline, which one Redis runs in order), so parallel
		// guesses can only err towards the limit. On Redis Cluster the
		// two keys may live on different nodes, which run their parts
		// of the pipeline at the same time: a refund given meanwhile
		// may be seen, an attempt's slack at most per sign-in running
		// in parallel from the address.
		win, ttl := e.addressWindow(at.addr.round)
		refunds = store.GetOp(addrOKKey(a.IP) + win)
		addrFail = store.IncrementOp(addrFailKey(a.IP)+win, ttl)
		count = append(count, refunds, addrFail)
	}
	if then != nil {
		count = append(count, then()...)
	}
	if err := store.RunBatch(ctx, e.store, count...); err != nil {
		return nil, err
	}
	at.userCount = userFail.Count
	if e.addressLimited(a) {
		ok, err := counterValue(refunds)
		if err != nil {
			return nil, err
		}
		at.addrCount = addrFail.Count - ok
	}
	if at.userCount > int64(e.cfg.MaxFailures) || (e.addressLimited(a) && at.addrCount > int64(e.cfg.MaxAddressFailures)) {
		return nil, e.lockedError(ctx, a)
	}
	return at, nil
}

// Locked reports whether the actor is locked out now, without counting.
func (e *Engine) Locked(ctx context.Context, a Actor) error {
	return e.checkLocks(ctx, a)
}

func (e *Engine) checkLocks(ctx context.Context, a Actor) error {
	user, addr, err := e.locks(ctx, a)
	if err != nil {
		return err
	}
	return e.lockedNow(user, addr)
}

// locks reads the account's and the address's lock records.
func (e *Engine) locks(ctx context.Context, a Actor) (user, addr lockState, err error) {
	if user, err = e.readLock(ctx, lockKey(a.User)); err != nil {
		return
	}
	if e.addressLimited(a) {
		addr, err = e.readLock(ctx, addrLockKey(a.IP))
	}
	return
}

// lockedNow returns the LockedError for the later of two lockouts that
// have not ended, or nil.
func (e *Engine) lockedNow(user, addr lockState) error {
	until := user.until
	if addr.until.After(until) {
		until = addr.until
	}
	if until.After(e.now()) {
		return &LockedError{Until: until}
	}
	return nil
}

func (e *Engine) lockedError(ctx context.Context, a Actor) error {
	if err := e.checkLocks(ctx, a); err != nil {
		return err
	}
	// Over the count but the lock record is not written yet (a parallel
	// guess is writing it): report the shortest lockout.
	return &LockedError{Until: e.now().Add(e.cfg.Lockout)}
}

// failed records that the guess was wrong. It locks the account or the
// address when this guess used up the allowance, and then returns the
// LockedError to show instead of "incorrect". Only one guess per round
// reaches the limit exactly (begin refuses those past it), so one lockout
// is written per round.
func (e *Engine) failed(ctx context.Context, a Actor, at *attempt) error {
	var locked *LockedError
	if at.userCount >= int64(e.cfg.MaxFailures) {
		until, err := e.lock(ctx, lockKey(a.User), at.user, true)
		if err != nil {
			return err
		}
		e.listLock(ctx, a.User, at.user.until, until)
		e.markStuck(ctx, a.User)
		e.Audit(a, "lockout", "account_locked", zap.Duration("for", until.Sub(e.now())))
		locked = &LockedError{Until: until, Started: true}
	}
	if e.addressLimited(a) && at.addrCount >= int64(e.cfg.MaxAddressFailures) {
		until, err := e.lock(ctx, addrLockKey(a.IP), at.addr, false)
		if err != nil {
			return err
		}
		e.Audit(a, "lockout", "address_locked", zap.Duration("for", until.Sub(e.now())))
		if locked == nil || until.After(locked.Until) {
			locked = &LockedError{Until: until, Started: locked != nil}
		}
	}
	if locked == nil {
		return nil
	}
	return locked
}

// lock writes the lockout that follows prev and returns when it ends. An
// account's lockouts in a row grow; an address's do not. The record
// outlives the lockout by as long as a next one counts as in a row.
func (e *Engine) lock(ctx context.Context, key string, prev lockState, grows bool) (time.Time, error) {
	now := e.now()
	// An address counter lives up to a window and a minute (addressWindow).
	memory := e.cfg.FailureWindow + 2*time.Minute
	if grows {
		memory = accountMemory
	}
	row := int64(0)
	if grows && prev.raw != nil && now.Before(prev.until.Add(memory)) {
		row = prev.row
	}
	d := e.lockoutAfter(row)
	// Rounds are unique, not counted up: a record that expired while a
	// counter of its round lived on must not bring that round back.
	next := lockState{until: now.Add(d), row: row + 1, round: max(prev.round+1, now.UnixMilli())}
	if err := e.store.Set(ctx, key, next.encode(), d+memory); err != nil {
		return time.Time{}, err
	}
	return next.until, nil
}

// lockoutAfter is how long a lockout lasts that follows n in a row:
// Lockout doubled n times, at most MaxLockout.
func (e *Engine) lockoutAfter(n int64) time.Duration {
	d := e.cfg.Lockout
	for ; n > 0 && d < e.cfg.MaxLockout; n-- {
		d *= 2
	}
	return min(d, e.cfg.MaxLockout)
}

// succeeded clears the account's failure count and forgets its lockouts,
// and gives the address back the attempt it counted: one round trip, in
// which with (the change notice, the activity list) go too.
func (e *Engine) succeeded(ctx context.Context, a Actor, at *attempt, with ...*store.Op) error {
	ops := slices.Clip(with)
	if e.addressLimited(a) {
		win, ttl := e.addressWindow(at.addr.round)
		ops = append(ops, store.IncrementOp(addrOKKey(a.IP)+win, ttl))
	}
	var forget *store.Op
	if at.user.row > 0 {
		// Keep the round, so an older round's full counter is never
		// counted again. Only the record this guess began with is
		// replaced: a lockout written meanwhile stands.
		forgot := lockState{round: at.user.round}
		forget = store.CompareAndSwapOp(lockKey(a.User), at.user.raw, forgot.encode(), accountMemory)
		ops = append(ops, forget)
	}
	ops = append(ops, store.DeleteOp(inRound(failKey(a.User), at.user.round)))
	if err := store.RunBatch(ctx, e.store, ops...); err != nil {
		return err
	}
	if forget != nil && forget.Swapped {
		e.listLock(ctx, a.User, at.user.until, time.Time{})
	}
	return nil
}

// addressWindow names the current failure window for address counters
// in the given round and how long its counters must live. The windows are aligned to the
// clock, so an address's attempts and its given-back right codes always
// count over the same window.
func (e *Engine) addressWindow(round int64) (string, time.Duration) {
	w := int64(e.cfg.FailureWindow / time.Second)
	now := e.now().Unix()
	n := now / w
	return inRound(":"+strconv.FormatInt(n, 10), round), time.Duration((n+1)*w-now)*time.Second + time.Minute
}
