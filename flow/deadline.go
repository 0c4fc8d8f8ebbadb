package flow

import (
	"net/http"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
)

// Enrolment deadlines: a rule that is optional until a date, or until a
// grace period has passed since the gateway first saw the member on it
// (challenge/deadline.go keeps the start).

// Enrolment is what a rule asks now of a member without a second factor.
type Enrolment struct {
	// State is challenge.EnrolmentOptional, EnrolmentGrace or
	// EnrolmentRequired.
	State string
	// Deadline is when enrolment becomes (or became) required; zero
	// without a deadline, or on a grace rule that has not seen the member.
	Deadline time.Time
}

// EnrolmentState is what the policy asks of the member u (who has no
// second factor) at now. It reads the record only.
func (p *Policy) EnrolmentState(u *challenge.User, now time.Time) Enrolment {
	switch {
	case p.Optional:
		return Enrolment{State: challenge.EnrolmentOptional}
	case p.Deadline == nil:
		return Enrolment{State: challenge.EnrolmentRequired}
	}
	at, ok := p.Deadline.At(u)
	if !ok {
		// Not seen on the rule yet: their grace is all ahead of them.
		return Enrolment{State: challenge.EnrolmentGrace}
	}
	if now.Before(at) {
		return Enrolment{State: challenge.EnrolmentGrace, Deadline: at}
	}
	return Enrolment{State: challenge.EnrolmentRequired, Deadline: at}
}

// EnrolmentFor is what the policy asks now of the member u, who has no
// second factor, on a protected path. On a grace rule that has not seen
// them it records the start of their grace: one store write per member
// and rule (the first write wins between instances). Past a deadline it
// records, once per deadline, that they were held back. The verified
// path of enrolled members never comes here.
func (f *Flow) EnrolmentFor(r *http.Request, b *Backend, pol *Policy, user string, u *challenge.User, now time.Time) (Enrolment, error) {
	en := pol.EnrolmentState(u, now)
	if pol.Deadline == nil {
		return en, nil
	}
	if en.State == challenge.EnrolmentGrace && en.Deadline.IsZero() {
		ctx, cancel := withTimeout(r)
		defer cancel()
		at, err := b.Engine.StartGrace(ctx, f.actor(r, user), pol.Deadline)
		if err != nil {
			return en, err
		}
		en.Deadline = at
		if !now.Before(at) {
			// Another instance started it long ago (its clock, or a
			// store restored from before a config change).
			en.State = challenge.EnrolmentRequired
		}
	}
	if en.State == challenge.EnrolmentRequired && !pol.Deadline.Held(u, en.Deadline) {
		ctx, cancel := withTimeout(r)
		defer cancel()
		// Best effort: the member is held back whether or not the note
		// is written; a failed one is tried again on their next request.
		_ = b.Engine.HoldBack(ctx, f.actor(r, user), pol.Deadline, en.Deadline)
	}
	return en, nil
}

// DaysLeft is the whole days until deadline, rounded up: 1 on its last
// day, 0 once it has passed.
func DaysLeft(deadline, now time.Time) int {
	left := deadline.Sub(now)
	if left <= 0 {
		return 0
	}
	return int((left + 24*time.Hour - 1) / (24 * time.Hour))
}

// deadlinePassed tells an enrolment page that enrolment is required now
// because the deadline of where the member is going has passed.
func (f *Flow) deadlinePassed(p *request, u *challenge.User) {
	if p.policy == nil || u.Enrolled() {
		return
	}
	if en := p.policy.EnrolmentState(u, clock.Now()); en.State == challenge.EnrolmentRequired && !en.Deadline.IsZero() {
		p.page.Deadline, p.page.DeadlinePassed = en.Deadline, true
	}
}
