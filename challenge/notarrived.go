package challenge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// A member's report that a sign-in code never arrived. It is a signal for
// the operator (a mail server's reputation, a carrier's filter), not an
// action on the account: it sends nothing, changes no limit and counts
// once per code, so pressing it again, or in a loop, adds nothing.

// ErrNothingToReport refuses a report when no sign-in code went to this
// browser by that method within the code's lifetime: nothing was sent
// that could have failed to arrive.
var ErrNothingToReport = errors.New("challenge: no code was sent recently by that method, so there is nothing to report")

func notArrivedKey(user string, id []byte) string {
	return "notarrived:" + tag(user) + ":" + hex.EncodeToString(id)
}

// ReportNotArrived records that the sign-in code this browser (flow) asked
// for by method (email or sms) has not arrived: the audit event
// "code_not_arrived" with the method and the masked destination. It
// reports true when this report was recorded, and false, without error,
// when the same code was reported already. It refuses with
// ErrNothingToReport when no live code went to this browser by method.
func (e *Engine) ReportNotArrived(ctx context.Context, a Actor, flow, method string) (bool, error) {
	if method != MethodEmail && method != MethodSMS {
		return false, fmt.Errorf("%w: no codes are sent for method %q", ErrNothingToReport, method)
	}
	rec, _, err := e.pendingCode(ctx, a.User, flow, PurposeVerify)
	if errors.Is(err, ErrCodeExpired) || (err == nil && rec.Method != method) {
		return false, ErrNothingToReport
	}
	if err != nil {
		return false, err
	}
	// One marker per code, kept as long as the code: the first report
	// takes it, later ones find it taken.
	// At least a second: a zero TTL means none to a store, and the code
	// may have expired a moment after pendingCode read it.
	ttl := max(time.Unix(rec.Expires, 0).Sub(e.now()).Round(time.Second), time.Second)
	first, err := e.store.CompareAndSwap(ctx, notArrivedKey(a.User, rec.ID), nil, []byte{1}, ttl)
	if err != nil {
		return false, err
	}
	if !first {
		return false, nil
	}
	e.Audit(a, "code_not_arrived", "success", zap.String("method", rec.Method), zap.String("to", rec.Masked))
	return true, nil
}
