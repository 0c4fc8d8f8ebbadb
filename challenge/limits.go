package challenge

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// Wrong codes are limited per account (one counter shared by every method,
// however many sessions or addresses the guesses come from) and per client
// address. A guess is counted before the code is evaluated, so parallel
// guesses cannot get past the limit; a success clears the account counter.

func failKey(user string) string   { return "fail:" + tag(user) }
func lockKey(user string) string   { return "lock:" + tag(user) }
func addrFailKey(ip string) string { return "ipfail:" + addressBucket(ip) }
func addrLockKey(ip string) string { return "iplock:" + addressBucket(ip) }
func addrOKKey(ip string) string   { return "ipok:" + addressBucket(ip) }

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

// attempt is one counted guess in progress.
type attempt struct {
	userCount int64
	addrCount int64
}

// begin counts a guess for the actor, refusing it without evaluation when
// the account or the address is locked.
func (e *Engine) begin(ctx context.Context, a Actor) (*attempt, error) {
	if err := e.checkLocks(ctx, a); err != nil {
		return nil, err
	}
	n, err := e.store.Increment(ctx, failKey(a.User), e.cfg.FailureWindow)
	if err != nil {
		return nil, err
	}
	at := &attempt{userCount: n}
	if e.addressLimited(a) {
		// Right codes are given back, so only wrong ones count: an
		// office behind one address must not lock itself out by
		// signing in. Refunds are read first, so parallel guesses
		// can only err towards the limit.
		win, ttl := e.addressWindow()
		ok, err := e.counter(ctx, addrOKKey(a.IP)+win)
		if err != nil {
			return nil, err
		}
		if at.addrCount, err = e.store.Increment(ctx, addrFailKey(a.IP)+win, ttl); err != nil {
			return nil, err
		}
		at.addrCount -= ok
	}
	if n > int64(e.cfg.MaxFailures) || (e.addressLimited(a) && at.addrCount > int64(e.cfg.MaxAddressFailures)) {
		return nil, e.lockedError(ctx, a)
	}
	return at, nil
}

// Locked reports whether the actor is locked out now, without counting.
func (e *Engine) Locked(ctx context.Context, a Actor) error {
	return e.checkLocks(ctx, a)
}

func (e *Engine) checkLocks(ctx context.Context, a Actor) error {
	until, err := e.lockUntil(ctx, lockKey(a.User))
	if err != nil {
		return err
	}
	if e.addressLimited(a) {
		addrUntil, err := e.lockUntil(ctx, addrLockKey(a.IP))
		if err != nil {
			return err
		}
		if addrUntil.After(until) {
			until = addrUntil
		}
	}
	if until.After(e.now()) {
		return &LockedError{Until: until}
	}
	return nil
}

func (e *Engine) lockUntil(ctx context.Context, key string) (time.Time, error) {
	v, err := e.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	if len(v) != 8 {
		return time.Time{}, nil
	}
	return time.Unix(int64(binary.BigEndian.Uint64(v)), 0), nil
}

func (e *Engine) lockedError(ctx context.Context, a Actor) error {
	if err := e.checkLocks(ctx, a); err != nil {
		return err
	}
	// Over the count but the lock record is gone or not yet written (a
	// parallel guess is writing it): report the full lockout.
	return &LockedError{Until: e.now().Add(e.cfg.Lockout)}
}

// failed records that the guess was wrong. It locks the account or the
// address when this guess used up the allowance, and then returns the
// LockedError to show instead of "incorrect".
func (e *Engine) failed(ctx context.Context, a Actor, at *attempt) error {
	var locked error
	until := e.now().Add(e.cfg.Lockout)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(until.Unix()))
	if at.userCount >= int64(e.cfg.MaxFailures) {
		if err := e.store.Set(ctx, lockKey(a.User), v[:], e.cfg.Lockout); err != nil {
			return err
		}
		e.Audit(a, "lockout", "account_locked")
		locked = &LockedError{Until: until, Started: true}
	}
	if e.addressLimited(a) && at.addrCount >= int64(e.cfg.MaxAddressFailures) {
		if err := e.store.Set(ctx, addrLockKey(a.IP), v[:], e.cfg.Lockout); err != nil {
			return err
		}
		e.Audit(a, "lockout", "address_locked")
		locked = &LockedError{Until: until}
	}
	return locked
}

// succeeded clears the account's consecutive-failure count and gives the
// address back the attempt it counted.
func (e *Engine) succeeded(ctx context.Context, a Actor) error {
	if e.addressLimited(a) {
		win, ttl := e.addressWindow()
		if _, err := e.store.Increment(ctx, addrOKKey(a.IP)+win, ttl); err != nil {
			return err
		}
	}
	return e.store.Delete(ctx, failKey(a.User))
}

// addressWindow names the current failure window for address counters
// and how long its counters must live. The windows are aligned to the
// clock, so an address's attempts and its given-back right codes always
// count over the same window.
func (e *Engine) addressWindow() (string, time.Duration) {
	w := int64(e.cfg.FailureWindow / time.Second)
	now := e.now().Unix()
	n := now / w
	return ":" + strconv.FormatInt(n, 10), time.Duration((n+1)*w-now)*time.Second + time.Minute
}
