package challenge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

// A code from a phone whose clock is off, beyond the skew but within the
// drift window, is refused and counted, and says how far off the clock is.
func TestClockDrift(t *testing.T) {
	for _, tc := range []struct {
		name   string
		steps  int64 // the phone's clock, in 30 s steps from the server's
		offset time.Duration
	}{
		{"fast", 10, 5 * time.Minute},
		{"slow", -10, -5 * time.Minute},
		{"two steps past the skew, fast", 3, 90 * time.Second},
		{"just outside the skew, slow", -2, -time.Minute},
		{"at the window's edge, slow", -20, -10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			secret := f.enrol("alice")
			// Well past the step the enrolment used, which a slow phone's
			// code would otherwise replay.
			f.clk.Advance(15 * time.Minute)
			a := Actor{User: "alice", IP: "192.0.2.1"}
			_, err := f.e.VerifyTOTP(ctx, a, f.code(secret, tc.steps))
			var drift *ClockDriftError
			if !errors.As(err, &drift) {
				t.Fatalf("got %v, want a ClockDriftError", err)
			}
			if drift.Offset != tc.offset {
				t.Fatalf("offset %s, want %s", drift.Offset, tc.offset)
			}
			if !errors.Is(err, ErrCodeInvalid) {
				t.Fatal("a drifted code must still be a wrong code to every caller")
			}
			if n, _ := f.st.Get(ctx, failKey("alice")); string(n) != "1" {
				t.Fatalf("failure count %q, want 1", n)
			}
			ev := f.audit.FilterMessage("verify").FilterField(zap.String("reason", "clock_drift")).All()
			if len(ev) != 1 || ev[0].ContextMap()["drift_seconds"] != int64(tc.offset/time.Second) {
				t.Fatalf("audit events %+v, want one clock_drift with drift_seconds %d", ev, int64(tc.offset/time.Second))
			}
			// The drifted step was not recorded: the right code for now
			// still works.
			if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
				t.Fatalf("right code after a drifted one: %v", err)
			}
		})
	}
}

// A drifted match records no step, but a code a "fast" hint named is
// refused when its time comes (the hint must not tell a guesser a code to
// use later), while the member's other codes still work; a "slow" hint
// names a step that is past anyway.
func TestClockDriftDoesNotConsumeStep(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	ahead := f.code(secret, 4)
	if _, err := f.e.VerifyTOTP(ctx, a, ahead); !errors.As(err, new(*ClockDriftError)) {
		t.Fatalf("got %v, want a ClockDriftError", err)
	}
	f.clk.Advance(4 * 30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, ahead); !errors.Is(err, ErrCodeInvalid) || errors.As(err, new(*ClockDriftError)) {
		t.Fatalf("the hinted code once its step came: %v, want a wrong code", err)
	}
	// The next step's code works: LastStep did not move to the hint.
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatalf("the next code after the hinted one: %v", err)
	}
	u, _, err := f.e.loadUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.TOTP.Hinted) != 1 {
		t.Fatalf("hinted steps %v, want the one", u.TOTP.Hinted)
	}
}

// Drifted codes count toward max_failures like any wrong code: the fifth
// locks the account, and the right code is refused then.
func TestClockDriftCountsTowardLockout(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	for i := range 5 {
		_, err := f.e.VerifyTOTP(ctx, a, f.code(secret, int64(10+i)))
		if i < 4 && !errors.As(err, new(*ClockDriftError)) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
		if i == 4 && !isLocked(err) {
			t.Fatalf("guess 5 should lock: %v", err)
		}
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("right code during lockout: %v", err)
	}
}

// Outside the window, with the hint off, and within the skew, nothing
// changes.
func TestClockDriftBounds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps int64
		want  string // "ok", "plain" (ErrCodeInvalid only) or "drift"
	}{
		{"20 min fast, outside the window", Config{}, 40, "plain"},
		{"20 min slow, outside the window", Config{}, -40, "plain"},
		{"one step past the window", Config{}, 21, "plain"},
		{"window off", Config{DriftWindow: DriftOff}, 10, "plain"},
		{"within the skew, fast", Config{}, 1, "ok"},
		{"within the skew, slow", Config{}, -1, "ok"},
		{"wider window", Config{DriftWindow: time.Hour}, 100, "drift"},
		{"skew 2: two steps is accepted", Config{Skew: 2}, -2, "ok"},
		{"skew 2: four steps is drift", Config{Skew: 2}, 4, "drift"},
		{"skew 2: three steps slow is drift", Config{Skew: 2}, -3, "drift"},
		{"just past the skew, fast: plain (still on a fast phone when its time comes)", Config{}, 2, "plain"},
		{"skew 2: three steps fast is plain", Config{Skew: 2}, 3, "plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			secret := f.enrol("alice")
			// Clear of the step the enrolment used, for the slow cases.
			f.clk.Advance(3 * time.Minute)
			_, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", IP: "192.0.2.1"}, f.code(secret, tc.steps))
			drifted := errors.As(err, new(*ClockDriftError))
			switch {
			case tc.want == "ok" && err != nil,
				tc.want == "plain" && (!errors.Is(err, ErrCodeInvalid) || drifted),
				tc.want == "drift" && !drifted:
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
}

func TestDriftWindowValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{DriftWindow: 2 * time.Hour}, "totp_drift_window 2h0m0s: must be between 0 (off) and 1h"},
		{Config{DriftWindow: -time.Minute}, "totp_drift_window -1m0s"},
		{Config{Skew: 2, DriftWindow: 45 * time.Second}, "totp_drift_window 45s: must be at least the accepted skew window"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, ok := range []Config{{DriftWindow: DriftOff}, {DriftWindow: time.Hour}, {Skew: 2, DriftWindow: time.Minute}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// A code the member already used, typed again later than the skew allows,
// is a replay, not a slow clock: the audit log says so and whoever holds
// it learns nothing of clocks.
func TestClockDriftUsedCodeIsReplay(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	f.clk.Advance(15 * time.Minute)
	a := Actor{User: "alice", IP: "192.0.2.1"}
	used := f.code(secret, 0)
	if _, err := f.e.VerifyTOTP(ctx, a, used); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(2 * time.Minute)
	_, err := f.e.VerifyTOTP(ctx, a, used)
	if !errors.Is(err, ErrCodeInvalid) || errors.As(err, new(*ClockDriftError)) {
		t.Fatalf("a used code 2 minutes later: %v, want a plain wrong code", err)
	}
	if ev := f.audit.FilterMessage("totp_replay").All(); len(ev) != 1 {
		t.Fatalf("totp_replay events: %d, want 1", len(ev))
	}
	if ev := f.audit.FilterMessage("verify").FilterField(zap.String("reason", "replay")).All(); len(ev) != 1 {
		t.Fatalf("verify events with reason replay: %d, want 1", len(ev))
	}
}

// casFailOnce fails the next compare-and-swap of a member record, as a
// Redis blip would.
type casFailOnce struct {
	store.Store
	armed *bool
}

func (s casFailOnce) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if *s.armed && strings.HasPrefix(key, "user:") {
		*s.armed = false
		return false, fmt.Errorf("%w: injected", store.ErrUnavailable)
	}
	return s.Store.CompareAndSwap(ctx, key, old, value, ttl)
}

// A fast hint whose note cannot be written is not given: the code stays a
// plain wrong code, so the guesser does not learn it will be right later.
func TestClockDriftHintNotNotedNotGiven(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	armed := false
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(casFailOnce{Store: f.st, armed: &armed}, kr, Config{}, f.clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := Actor{User: "alice", IP: "192.0.2.1"}
	armed = true
	_, err = e.VerifyTOTP(ctx, a, f.code(secret, 6))
	if !errors.Is(err, ErrCodeInvalid) || errors.As(err, new(*ClockDriftError)) {
		t.Fatalf("a fast code whose note failed: %v, want a plain wrong code", err)
	}
	if armed {
		t.Fatal("the note was not tried")
	}
}
