package flow

import (
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
)

func TestDaysLeft(t *testing.T) {
	at := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		before time.Duration
		want   int
	}{
		{14 * 24 * time.Hour, 14},
		{4*24*time.Hour + 12*time.Hour, 5},
		{24*time.Hour + time.Second, 2},
		{24 * time.Hour, 1},
		{time.Second, 1},
		{0, 0},
		{-time.Hour, 0},
	} {
		if got := DaysLeft(at, at.Add(-tc.before)); got != tc.want {
			t.Errorf("%s before: %d days, want %d", tc.before, got, tc.want)
		}
	}
}

// What a rule asks of a member without a second factor, by its form and
// the time.
func TestEnrolmentState(t *testing.T) {
	now := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	from := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
	seen := &challenge.User{ID: "bob", Grace: map[string]challenge.GraceMark{"/members/*": {Start: now.Add(-3 * 24 * time.Hour).Unix()}}}
	grace := &challenge.Deadline{Paths: []string{"/members/*"}, Grace: 7 * 24 * time.Hour}
	for _, tc := range []struct {
		name     string
		pol      Policy
		u        *challenge.User
		at       time.Time
		state    string
		deadline time.Time
	}{
		{"optional", Policy{Optional: true}, nil, now, challenge.EnrolmentOptional, time.Time{}},
		{"required", Policy{}, nil, now, challenge.EnrolmentRequired, time.Time{}},
		{"before the date", Policy{Deadline: &challenge.Deadline{From: from}}, nil, now, challenge.EnrolmentGrace, from},
		{"at the date", Policy{Deadline: &challenge.Deadline{From: from}}, nil, from, challenge.EnrolmentRequired, from},
		{"grace not started", Policy{Deadline: grace}, &challenge.User{ID: "bob"}, now, challenge.EnrolmentGrace, time.Time{}},
		{"in grace", Policy{Deadline: grace}, seen, now, challenge.EnrolmentGrace, now.Add(4 * 24 * time.Hour)},
		{"grace over", Policy{Deadline: grace}, seen, now.Add(4 * 24 * time.Hour), challenge.EnrolmentRequired, now.Add(4 * 24 * time.Hour)},
	} {
		en := tc.pol.EnrolmentState(tc.u, tc.at)
		if en.State != tc.state || !en.Deadline.Equal(tc.deadline) {
			t.Errorf("%s: %+v, want %s %s", tc.name, en, tc.state, tc.deadline)
		}
	}
}
