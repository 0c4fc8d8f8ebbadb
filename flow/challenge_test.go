package flow

import (
	"fmt"
	"testing"
	"time"
)

// The drift message rounds to whole minutes, never says 0, and picks the
// singular for 1.
func TestClockDriftMessage(t *testing.T) {
	for _, tc := range []struct {
		offset time.Duration
		want   string
	}{
		{5 * time.Minute, "code_clock_fast [5]"},
		{-5 * time.Minute, "code_clock_slow [5]"},
		{30 * time.Second, "code_clock_fast_one [1]"},
		{-15 * time.Second, "code_clock_slow_one [1]"},
		{-90 * time.Second, "code_clock_slow [2]"},
		{150 * time.Second, "code_clock_fast [3]"},
		{time.Hour, "code_clock_fast [60]"},
	} {
		key, args := clockDriftError(tc.offset)
		if got := fmt.Sprint(key, " ", args); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.offset, got, tc.want)
		}
	}
}
