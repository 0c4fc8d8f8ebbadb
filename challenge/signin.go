package challenge

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// A verification against a networked store is a few round trips, each a
// batch of independent reads and writes (store.RunBatch: one pipeline on
// Redis, split by node on a Cluster and sent in parallel):
//
//  1. read the lock records, the member's record and activity list, and
//     what the method needs (the outstanding code, the passkey ceremony);
//  2. count the guess (account and address counters, named by the lock
//     records' rounds, which is why they wait for the first);
//  3. evaluate it, and write the member's record by compare-and-swap
//     against the value read in 1 (read afresh only when the swap loses);
//  4. the success's bookkeeping: the change notice, the activity list,
//     the address's refund, the failure count and lockout forgotten.
//
// A wrong guess ends after 2 with its audit event's activity entry, and
// the lockout when it is the last one allowed. Nothing is atomic across
// keys, as it never was: each step's order is the one the single calls
// had, and the fault sweep (faults_test.go) fails the store at each op.

// signIn is one verification in progress.
type signIn struct {
	e    *Engine
	a    Actor
	at   *attempt
	user *store.Op // the member's record, read in the first round trip
	// method is the method verifying, recorded with the range signed in
	// from (Actor.Network).
	method string
	// activity is the member's activity list as read in the first round
	// trip, used by the first event recorded, then nil.
	activity *store.Op
}

// startSignIn begins a verification: it reads the locks, the member's
// activity list, record (unless a malformed guess makes it needless) and
// reads, then counts the guess with the ops then returns (see
// beginWith), refusing it when locked.
func (e *Engine) startSignIn(ctx context.Context, a Actor, record bool, reads []*store.Op, then func() []*store.Op) (*signIn, error) {
	s := &signIn{e: e, a: a, activity: store.GetOp(activityKey(a.User))}
	first := []*store.Op{s.activity}
	if record {
		s.user = store.GetOp(userKey(a.User))
		first = append(first, s.user)
	}
	at, err := e.beginWith(ctx, a, append(first, reads...), then)
	if err != nil {
		return nil, err
	}
	s.at = at
	return s, nil
}

// record is the member's record as the first round trip read it, or
// read now if it did not.
func (s *signIn) record(ctx context.Context) (*userRead, error) {
	if s.user == nil {
		u, raw, err := s.e.loadUser(ctx, s.a.User)
		if err != nil {
			return nil, err
		}
		return &userRead{u: u, raw: raw}, nil
	}
	return s.e.userFrom(ctx, s.a.User, s.user)
}

// write changes the member's record, swapping against the record the
// first round trip read, in one round trip with with (which runs whether
// or not change refuses). Once that record is used, or if the swap
// loses, it reads afresh as updateUser does, without with, if every op
// of with that swaps (a code taken) did.
func (s *signIn) write(ctx context.Context, with *store.Op, change func(u *User) error) (*User, error) {
	r, err := s.record(ctx)
	s.user = nil // used: read afresh next time
	if err != nil {
		return nil, err
	}
	change = s.seen(change)
	swapped, err := s.e.swapUser(ctx, r, change, with)
	switch {
	case err != nil:
		return nil, err
	case with.Kind == store.OpCompareAndSwap && !with.Swapped:
		// A twin submission (the same browser sending the code twice at
		// once) took the code: the twin writes again, on this record if
		// this swap went through, and reports the outcome.
		return nil, nil // the caller looks again
	case swapped:
		return r.u, nil
	}
	return s.e.writeUser(ctx, s.a.User, nil, change)
}

// seen has change record the browser signing in (Actor.Browser) and the
// range it signs in from (Actor.Network) too, when the caller gave them:
// in the verification's own write, so knowing them costs no round trip,
// and the write's change notice tells the other instances' caches.
func (s *signIn) seen(change func(u *User) error) func(u *User) error {
	b, n := s.a.Browser, s.a.Network
	if b == nil && !n.IsValid() {
		return change
	}
	return func(u *User) error {
		if err := change(u); err != nil {
			return err
		}
		if b != nil {
			s.e.seeBrowser(u, b)
		}
		seeNetwork(u, n, s.method, s.e.now())
		return nil
	}
}

// audit writes an audit event, its entry on the member's activity list
// starting from the list read in the first round trip.
func (s *signIn) audit(ctx context.Context, name, result string, fields ...zap.Field) {
	s.e.logAudit(s.a, name, result, fields)
	if entry, ok := activityEntry(s.a, name, result, fields, s.e.now()); ok {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		read := s.activity
		s.activity = nil
		s.e.addActivity(ctx, s.a.User, entry, read)
	}
}

// failed counts the guess as wrong: see Engine.failed.
func (s *signIn) failed(ctx context.Context) error { return s.e.failed(ctx, s.a, s.at) }

// succeeded ends a right guess: its audit event, and one round trip with
// the event's activity entry, with, and the failure count cleared
// (Engine.succeeded). Best effort: the sign-in stands whatever happens
// here.
func (s *signIn) succeeded(ctx context.Context, with []*store.Op, name string, fields ...zap.Field) {
	e := s.e
	ctx = context.WithoutCancel(ctx)
	events := []struct {
		name   string
		fields []zap.Field
	}{{name, fields}}
	if b := s.a.Browser; b != nil {
		// The write recorded the browser (seen).
		b.Recorded = true
		if b.First {
			events = append(events, struct {
				name   string
				fields []zap.Field
			}{"new_browser", nil})
		}
	}
	var entries []Activity
	for _, ev := range events {
		e.logAudit(s.a, ev.name, "success", ev.fields)
		if entry, ok := activityEntry(s.a, ev.name, "success", ev.fields, e.now()); ok {
			entries = append(entries, entry)
		}
	}
	listed := len(entries) > 0
	var add *store.Op
	if listed && s.activity != nil {
		add = activityOp(s.a.User, s.activity, entries...)
	}
	ops := append([]*store.Op{}, with...)
	if add != nil {
		ops = append(ops, add)
	}
	err := e.succeeded(ctx, s.a, s.at, ops...)
	if listed && err == nil && (add == nil || !add.Swapped) {
		// The list changed since it was read: add the entry afresh.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		for _, entry := range entries {
			e.addActivity(ctx, s.a.User, entry, nil)
		}
	}
}
