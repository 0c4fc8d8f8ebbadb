package flow

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
)

// A member whose data is sealed under a key that is no longer configured
// (removed before every record had moved to the current one) cannot pass:
// the gateway fails closed and tells the operator what to do.

// keyMissingEvery is how often the log names again one member whose data
// is under a key no longer configured: each of their attempts ends in the
// same 503 until the key is back.
const keyMissingEvery = time.Hour

// keyMissingLog is what that log line says: the cause, and what the
// operator does about it, whoever the member.
const keyMissingLog = "keys: this member's second-factor data is sealed under a key that is no longer configured, " +
	"so they get 503 until it is back; put the removed key back in keys, after the current one: " +
	"the member's data moves to the current key at their next sign-in, and the count of records " +
	"under an older key, logged at start, says when the old key can go"

// keyMissing fails closed for a member whose data no configured key opens.
func (f *Flow) keyMissing(p *request) error {
	if ok, held := f.keyMissingLimit.allow(p.id.ID, clock.Now(), keyMissingEvery); ok {
		f.logger.Error(keyMissingLog, zap.String("user", p.id.ID), zap.Int("refusals_not_logged", held))
	}
	return f.unavailablePage(p.w, p.r)
}

// logLimit lets a log line about one subject through once per interval,
// counting the ones it holds back.
type logLimit struct {
	mu   sync.Mutex
	seen map[string]logSeen
}

type logSeen struct {
	at   time.Time
	held int
}

// logLimitMax bounds the subjects remembered; past it, they are forgotten
// all at once, which at worst repeats a line.
const logLimitMax = 10_000

// allow reports whether a line about subject may go out now, and how many
// were held back since the last one.
func (l *logLimit) allow(subject string, now time.Time, every time.Duration) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil || len(l.seen) >= logLimitMax {
		l.seen = map[string]logSeen{}
	}
	s, ok := l.seen[subject]
	if ok && now.Sub(s.at) < every {
		s.held++
		l.seen[subject] = s
		return false, 0
	}
	l.seen[subject] = logSeen{at: now}
	return true, s.held
}
