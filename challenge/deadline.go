package challenge

import (
	"context"
	"errors"
	"sort"
	"time"

	"go.uber.org/zap"
)

// Enrolment deadlines: a rule that makes enrolment required only after a
// grace period, per member from when the gateway first saw them on the
// rule, or from a date for everyone. Until then a member without a second
// factor passes as on an optional rule; after it they must enrol.
//
// The start of a member's grace is kept in their record, per path pattern
// of the rule rather than per rule, so an operator who edits a rule
// (another grace period, one more pattern, a reordered list) does not
// give everyone a fresh grace: the start is the earliest one recorded
// for any of the rule's patterns. Only a rule whose patterns are all new
// starts afresh.

// Deadline is an enrolment deadline of one rule.
type Deadline struct {
	// Paths are the rule's path patterns; they key the member's marks.
	Paths []string
	// Grace counts from the first sight of the member on the rule; From
	// is one date for everyone. Exactly one is set.
	Grace time.Duration
	From  time.Time
}

// GraceMark is what the gateway keeps of a member on one path pattern of
// a rule with a deadline, in Unix seconds.
type GraceMark struct {
	// Start is when the member's grace began there: the first sight of
	// them, not enrolled, on a rule with a grace period.
	Start int64 `json:"start,omitempty"`
	// Held is when they were first held back because the deadline had
	// passed, so the audit trail says so once per deadline.
	Held int64 `json:"held,omitempty"`
}

// MaxGraceMarks bounds the path patterns a member's record keeps marks
// for, and so the distinct patterns the rules with deadlines may have
// between them (the Caddy layer refuses more). When a write would pass
// the bound, only marks of patterns no rule has any more go, oldest
// first: dropping a live rule's mark would give its member a new grace.
const MaxGraceMarks = 32

// Enrolment states, as the upstream is told them.
const (
	// EnrolmentOptional: the rule lets members without a second factor
	// through, with reminders, and sets no deadline.
	EnrolmentOptional = "optional"
	// EnrolmentGrace: enrolment becomes required at a deadline still to
	// come; until then members pass as on an optional rule.
	EnrolmentGrace = "grace"
	// EnrolmentRequired: members must have a second factor to pass.
	EnrolmentRequired = "required"
)

// keys returns the patterns that carry the rule's marks.
func (d *Deadline) keys() []string {
	if len(d.Paths) > MaxGraceMarks {
		return d.Paths[:MaxGraceMarks]
	}
	return d.Paths
}

// Started returns when the member's grace began on the rule: the earliest
// start over its patterns; false when it has not (or the rule has a date).
// A few map lookups, no allocation: it runs on every request of a member
// without a second factor.
func (d *Deadline) Started(u *User) (time.Time, bool) {
	var first int64
	if u != nil {
		for _, p := range d.keys() {
			if m, ok := u.Grace[p]; ok && m.Start > 0 && (first == 0 || m.Start < first) {
				first = m.Start
			}
		}
	}
	if first == 0 {
		return time.Time{}, false
	}
	return time.Unix(first, 0).UTC(), true
}

// At returns when enrolment becomes required for the member: From, or
// Grace after their grace started; false when their grace has not
// started yet (the gateway has not seen them on the rule).
func (d *Deadline) At(u *User) (time.Time, bool) {
	if d.Grace == 0 {
		return d.From, true
	}
	start, ok := d.Started(u)
	if !ok {
		return time.Time{}, false
	}
	return start.Add(d.Grace), true
}

// held reports whether the member was held back since deadline on the
// rule (a mark from an earlier, since moved, deadline does not count).
func (d *Deadline) held(u *User, deadline time.Time) bool {
	for _, p := range d.keys() {
		if m, ok := u.Grace[p]; ok && m.Held >= deadline.Unix() {
			return true
		}
	}
	return false
}

// Held reports whether the member was recorded as held back since
// deadline: nothing to write on their next request.
func (d *Deadline) Held(u *User, deadline time.Time) bool { return u != nil && d.held(u, deadline) }

// errUnchanged aborts a write with nothing to change.
var errUnchanged = errors.New("challenge: nothing to change")

// StartGrace records the first sight of the member on the rule, unless
// another request or instance recorded it first, and returns the
// deadline that applies: the first write wins, and every instance reads
// the same start. It writes the start for each of the rule's patterns
// that has none, so a later rule that keeps any of them keeps the start.
func (e *Engine) StartGrace(ctx context.Context, a Actor, d *Deadline) (time.Time, error) {
	readAt := e.now()
	now := readAt.Unix()
	var deadline time.Time
	var fresh *User // the record as read, when another request wrote the start
	started := false
	_, err := e.updateUser(ctx, a.User, func(u *User) error {
		if at, ok := d.At(u); ok {
			deadline, started, fresh = at, false, u
			return errUnchanged
		}
		start := now
		if u.Epoch > 0 {
			// Their factors were reset or replaced: they had a second
			// factor, so a grace counted from now would be a new one
			// (up to 400 days on the password alone after a reset).
			// Enrolment is required from now, as on a required rule.
			start = now - int64(d.Grace/time.Second)
		}
		e.mark(u, d, func(m *GraceMark) { m.Start = start })
		deadline, started = time.Unix(start, 0).UTC().Add(d.Grace), start == now
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return time.Time{}, err
	}
	e.keep(fresh, readAt)
	if started {
		e.Audit(a, "enrolment_grace_started", "success", zap.Strings("paths", d.Paths),
			zap.Duration("grace", d.Grace), zap.Time("deadline", deadline))
	}
	return deadline, nil
}

// HoldBack records that the member, without a second factor, was held
// back on the rule because its deadline had passed, and says so in the
// audit trail the first time for that deadline.
func (e *Engine) HoldBack(ctx context.Context, a Actor, d *Deadline, deadline time.Time) error {
	readAt := e.now()
	now := readAt.Unix()
	first := false
	var start time.Time
	var fresh *User
	_, err := e.updateUser(ctx, a.User, func(u *User) error {
		start, _ = d.Started(u)
		if d.held(u, deadline) {
			first, fresh = false, u
			return errUnchanged
		}
		e.mark(u, d, func(m *GraceMark) { m.Held = now })
		first = true
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return err
	}
	e.keep(fresh, readAt)
	if first {
		fields := []zap.Field{zap.Strings("paths", d.Paths), zap.Time("deadline", deadline)}
		if !start.IsZero() {
			fields = append(fields, zap.Time("grace_started", start))
		}
		e.Audit(a, "enrolment_deadline_passed", "refused", fields...)
	}
	return nil
}

// keep puts a record read, not written, into this instance's copies
// (when it is newer than the copy): another instance wrote the mark the
// copy lacked, and requests would otherwise come back to the store for
// it until the copy expires. readAt is a time before the read began.
func (e *Engine) keep(u *User, readAt time.Time) {
	if u != nil {
		e.users.put(u, readAt, e.cfg.CacheTTL, false)
	}
}

// mark sets a field of the member's mark on each of rule d's patterns,
// keeping the marks within their bound.
func (e *Engine) mark(u *User, d *Deadline, set func(*GraceMark)) {
	if u.Grace == nil {
		u.Grace = map[string]GraceMark{}
	}
	for _, p := range d.keys() {
		m := u.Grace[p]
		set(&m)
		u.Grace[p] = m
	}
	trimMarks(u.Grace, d.keys(), e.cfg.Deadlines)
}

// trimMarks keeps at most MaxGraceMarks marks, dropping only those of
// patterns that neither keep nor any rule in live has, the oldest first.
func trimMarks(marks map[string]GraceMark, keep []string, live []Deadline) {
	if len(marks) <= MaxGraceMarks {
		return
	}
	kept := make(map[string]bool, len(keep))
	for _, p := range keep {
		kept[p] = true
	}
	for i := range live {
		for _, p := range live[i].keys() {
			kept[p] = true
		}
	}
	var others []string
	for p := range marks {
		if !kept[p] {
			others = append(others, p)
		}
	}
	sort.Slice(others, func(i, j int) bool {
		a, b := marks[others[i]], marks[others[j]]
		if x, y := max(a.Start, a.Held), max(b.Start, b.Held); x != y {
			return x < y
		}
		return others[i] < others[j]
	})
	for _, p := range others {
		if len(marks) <= MaxGraceMarks {
			return
		}
		delete(marks, p)
	}
}

// MemberDeadline is when enrolment becomes (or became) required for a
// member on one rule, as the admin pages show it.
type MemberDeadline struct {
	Paths []string  `json:"paths"`
	At    time.Time `json:"at"`
	// Passed: enrolment is required now (since At).
	Passed bool `json:"passed"`
	// Grace is the rule's grace period, in nanoseconds as Caddy writes
	// durations (0 for a date); GraceStarted is when the member's began.
	Grace        time.Duration `json:"grace,omitempty"`
	GraceStarted *time.Time    `json:"grace_started,omitempty"`
}

// deadlines returns the member's deadlines on the rules that have one,
// earliest first; none for a member with a second factor, and none on a
// grace rule that has not seen them yet.
func (e *Engine) deadlines(u *User) []MemberDeadline {
	if u.Enrolled() || len(e.cfg.Deadlines) == 0 {
		return nil
	}
	var out []MemberDeadline
	now := e.now()
	for i := range e.cfg.Deadlines {
		d := &e.cfg.Deadlines[i]
		at, ok := d.At(u)
		if !ok {
			continue
		}
		md := MemberDeadline{Paths: d.Paths, At: at.UTC(), Passed: !now.Before(at), Grace: d.Grace}
		if start, ok := d.Started(u); ok && d.Grace > 0 {
			md.GraceStarted = &start
		}
		out = append(out, md)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
