package flow

import (
	"testing"
	"time"
)

// The line about one member goes out once per interval, then says how
// many refusals it held back; other members are told apart.
func TestLogLimit(t *testing.T) {
	var l logLimit
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		subject string
		at      time.Duration
		ok      bool
		held    int
	}{
		{"alice", 0, true, 0},
		{"alice", time.Second, false, 0},
		{"bob", time.Second, true, 0},
		{"alice", time.Hour - time.Second, false, 0},
		{"alice", time.Hour, true, 2},
		{"alice", time.Hour + time.Minute, false, 0},
		{"bob", 2 * time.Hour, true, 0},
	}
	for i, s := range steps {
		ok, held := l.allow(s.subject, t0.Add(s.at), time.Hour)
		if ok != s.ok || held != s.held {
			t.Fatalf("step %d (%s at %s): %v, %d held; want %v, %d", i, s.subject, s.at, ok, held, s.ok, s.held)
		}
	}
}
