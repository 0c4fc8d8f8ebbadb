package challenge

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// How long members stay stuck: from an account lockout, or a sign-in with
// a recovery code, to their next verification with an enrolled method.
// The start is kept in the member's record (User.StuckSince), so it
// survives restarts and is the same on every instance; it is written only
// with writes that happen anyway (a recovery code's, a verification's)
// and at a lockout, which is rare.

// errStillStuck leaves the record as it is: the member has no factors to
// be locked out of, or is stuck already (the earliest start counts).
var errStillStuck = errors.New("already stuck")

// markStuck notes that the member's lockout began now. Best effort: the
// lockout stands whether or not the note is written.
func (e *Engine) markStuck(ctx context.Context, id string) {
	_, _ = e.updateUser(context.WithoutCancel(ctx), id, func(u *User) error {
		if !u.Enrolled() || !u.StuckSince.IsZero() {
			return errStillStuck
		}
		u.StuckSince = e.now().UTC()
		return nil
	})
}

// stuckByRecovery notes, inside a recovery code's write, that the member
// signed in without their usual methods.
func (e *Engine) stuckByRecovery(u *User) {
	if u.StuckSince.IsZero() {
		u.StuckSince = e.now().UTC()
	}
}

// unstuck ends the member's stuck time, inside a verification's write,
// and returns its length in whole seconds, or -1 when they were not
// stuck.
func (e *Engine) unstuck(u *User) int64 {
	if u.StuckSince.IsZero() {
		return -1
	}
	d := max(e.now().Sub(u.StuckSince), 0)
	u.StuckSince = time.Time{}
	return int64(d / time.Second)
}

// recoveredField is the verify event's field for a member no longer
// stuck: after is unstuck's answer.
func recoveredField(fields []zap.Field, after int64) []zap.Field {
	if after < 0 {
		return fields
	}
	return append(fields, zap.Int64("recovered_after", after))
}
