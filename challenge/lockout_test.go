package challenge

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/clock"
)

// Lockouts end when the page says, whatever the window, on both stores:
// from the moment a limit is reached they last Lockout, then the tries are
// counted afresh; one that follows within FailureWindow of the last
// doubles, up to MaxLockout; a right code forgets them.

// lockoutEngines gives an engine on each store, with its fake clock.
func lockoutEngines(t *testing.T, cfg Config) map[string]func(t *testing.T) (*Engine, *clock.Fake) {
	return map[string]func(t *testing.T) (*Engine, *clock.Fake){
		"embedded": func(t *testing.T) (*Engine, *clock.Fake) {
			f := newFixture(t, cfg)
			return f.e, f.clk
		},
		"redis": func(t *testing.T) (*Engine, *clock.Fake) {
			e, _, clk := twoInstances(t, cfg)
			return e, clk
		},
	}
}

// guessWrong sends n wrong app codes and returns the last error, failing
// unless every one before it was only "incorrect".
func guessWrong(t *testing.T, e *Engine, clk *clock.Fake, a Actor, secret string, n int) error {
	t.Helper()
	f := &fixture{t: t, clk: clk}
	var err error
	for i := range n {
		_, err = e.VerifyTOTP(ctx, a, wrong(f.code(secret, 0)))
		if i < n-1 && !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("wrong code %d of %d: %v, want only incorrect", i+1, n, err)
		}
	}
	return err
}

// lockedFor checks err is the lockout that starts now and lasts d.
func lockedFor(t *testing.T, clk *clock.Fake, err error, d time.Duration) {
	t.Helper()
	var l *LockedError
	if !errors.As(err, &l) {
		t.Fatalf("got %v, want a lockout of %s", err, d)
	}
	if got := l.Until.Sub(clk.Now()); got != d {
		t.Fatalf("locked for %s, want %s", got, d)
	}
}

func TestLockoutEndsOnTime(t *testing.T) {
	for _, c := range []struct {
		max             int
		window, lockout time.Duration
	}{
		{3, 15 * time.Minute, 20 * time.Second}, // the case reported: lockout far shorter than the window
		{3, time.Minute, 5 * time.Minute},       // lockout longer than the window
		{5, 10 * time.Second, 10 * time.Second},
		{1, time.Hour, time.Minute},
	} {
		cfg := Config{MaxFailures: c.max, FailureWindow: c.window, Lockout: c.lockout, MaxAddressFailures: 1000}
		for store, open := range lockoutEngines(t, cfg) {
			t.Run(fmt.Sprintf("%s/max%d/window%s/lockout%s", store, c.max, c.window, c.lockout), func(t *testing.T) {
				e, clk := open(t)
				a := Actor{User: "alice", IP: "192.0.2.1"}
				f := &fixture{t: t, clk: clk}
				secret, _ := enrolOn(t, e, clk, a)
				clk.Advance(30 * time.Second)

				lockedFor(t, clk, guessWrong(t, e, clk, a, secret, c.max), c.lockout)
				var l *LockedError
				if err := guessWrong(t, e, clk, a, secret, 1); !errors.As(err, &l) || l.Started {
					t.Fatalf("a guess during the lockout: %v, want the lockout, not a new one", err)
				}
				clk.Advance(c.lockout - time.Second)
				if _, err := e.VerifyTOTP(ctx, a, f.code(secret, 0)); !isLocked(err) {
					t.Fatalf("right code a second before the lockout ends: %v", err)
				}
				// Guesses during the lockout moved nothing: it ends when
				// it said it would, and the member has a full set of tries.
				clk.Advance(time.Second)
				if c.max > 1 {
					if err := guessWrong(t, e, clk, a, secret, c.max-1); !errors.Is(err, ErrCodeInvalid) {
						t.Fatalf("after the lockout: %v, want fresh tries", err)
					}
				}
				if _, err := e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
					t.Fatalf("right code when the lockout ended: %v", err)
				}
				// The right code forgot the lockout: the next is Lockout
				// again, not doubled.
				clk.Advance(30 * time.Second)
				lockedFor(t, clk, guessWrong(t, e, clk, a, secret, c.max), c.lockout)
			})
		}
	}
}

func TestRepeatedLockoutsDoubleUpToCeiling(t *testing.T) {
	cfg := Config{MaxFailures: 3, FailureWindow: 15 * time.Minute, Lockout: 20 * time.Second,
		MaxLockout: time.Minute, MaxAddressFailures: 1000}
	for store, open := range lockoutEngines(t, cfg) {
		t.Run(store, func(t *testing.T) {
			e, clk := open(t)
			a := Actor{User: "alice", IP: "192.0.2.1"}
			secret, _ := enrolOn(t, e, clk, a)
			clk.Advance(30 * time.Second)
			for _, want := range []time.Duration{20 * time.Second, 40 * time.Second, time.Minute, time.Minute} {
				lockedFor(t, clk, guessWrong(t, e, clk, a, secret, 3), want)
				clk.Advance(want)
			}
			// Wrong codes spread out over the day still count: the
			// next lockout, hours later, keeps doubling.
			for range 2 {
				guessWrong(t, e, clk, a, secret, 1)
				clk.Advance(3 * time.Hour)
			}
			lockedFor(t, clk, guessWrong(t, e, clk, a, secret, 1), time.Minute)
			// A lockout more than a day after the last one ended is the
			// first of a new row.
			clk.Advance(time.Minute + 24*time.Hour)
			lockedFor(t, clk, guessWrong(t, e, clk, a, secret, 3), 20*time.Second)
		})
	}
}

// A guesser who stays below the limit in every failure_window still
// reaches it: an account counts wrong codes in a row, not per window.
func TestSlowGuessingStillLocks(t *testing.T) {
	cfg := Config{MaxFailures: 5, FailureWindow: 15 * time.Minute, Lockout: 15 * time.Minute, MaxAddressFailures: 1000}
	for store, open := range lockoutEngines(t, cfg) {
		t.Run(store, func(t *testing.T) {
			e, clk := open(t)
			a := Actor{User: "alice", IP: "192.0.2.1"}
			secret, _ := enrolOn(t, e, clk, a)
			for range 4 {
				clk.Advance(20 * time.Minute)
				if err := guessWrong(t, e, clk, a, secret, 1); !errors.Is(err, ErrCodeInvalid) {
					t.Fatalf("a wrong code: %v", err)
				}
			}
			clk.Advance(20 * time.Minute)
			lockedFor(t, clk, guessWrong(t, e, clk, a, secret, 1), 15*time.Minute)
		})
	}
}

// The per-address limit: its lockout ends on time, the address then has
// its tries again, and repeated lockouts do not grow, since everyone
// behind the address shares them.
func TestAddressLockoutEndsOnTime(t *testing.T) {
	cfg := Config{MaxFailures: 50, MaxAddressFailures: 4, FailureWindow: 15 * time.Minute,
		Lockout: 30 * time.Second, MaxLockout: time.Hour}
	for store, open := range lockoutEngines(t, cfg) {
		t.Run(store, func(t *testing.T) {
			e, clk := open(t)
			secrets := map[string]string{}
			for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
				secrets[u], _ = enrolOn(t, e, clk, Actor{User: u, IP: "203.0.113.50"})
			}
			clk.Advance(30 * time.Second)
			from := func(u string) Actor { return Actor{User: u, IP: "192.0.2.7"} }
			f := &fixture{t: t, clk: clk}
			round := func(want time.Duration) {
				t.Helper()
				var err error
				for i, u := range []string{"alice", "bob", "carol", "dave"} {
					_, err = e.VerifyTOTP(ctx, from(u), wrong(f.code(secrets[u], 0)))
					if i < 3 && !errors.Is(err, ErrCodeInvalid) {
						t.Fatalf("guess %d: %v", i+1, err)
					}
				}
				lockedFor(t, clk, err, want)
				// Another member at the same address is locked out too.
				clk.Advance(want - time.Second)
				if _, err := e.VerifyTOTP(ctx, from("erin"), f.code(secrets["erin"], 0)); !isLocked(err) {
					t.Fatalf("a second before the address lockout ends: %v", err)
				}
				clk.Advance(time.Second)
			}
			round(30 * time.Second)
			round(30 * time.Second)
			if _, err := e.VerifyTOTP(ctx, from("erin"), f.code(secrets["erin"], 0)); err != nil {
				t.Fatalf("when the address lockout ended: %v", err)
			}
			clk.Advance(30 * time.Second)
			round(30 * time.Second)
		})
	}
}

// A right code forgets the account's lockouts only as they were when it
// was entered: a lockout written meanwhile by a parallel wrong code
// stands.
func TestRightCodeKeepsLockoutWrittenMeanwhile(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 3, Lockout: time.Minute, MaxAddressFailures: 1000})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	secret := f.enrol("alice")
	lockedFor(t, f.clk, guessWrong(t, f.e, f.clk, a, secret, 3), time.Minute)
	f.clk.Advance(time.Minute)

	right, err := f.e.begin(ctx, a) // the right code's guess, counted
	if err != nil {
		t.Fatal(err)
	}
	prev, err := f.e.readLock(ctx, lockKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	until, err := f.e.lock(ctx, lockKey("alice"), prev, true) // a parallel guess locks
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.succeeded(ctx, a, right); err != nil {
		t.Fatal(err)
	}
	var l *LockedError
	if err := f.e.Locked(ctx, a); !errors.As(err, &l) || !l.Until.Equal(until) {
		t.Fatalf("after the right code: %v, want the lockout until %s to stand", err, until)
	}
}

// A lock record that expires while a counter of its round lives on does
// not bring that round back: the next lockout starts a round of its own.
func TestLockoutRoundsNeverRepeat(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 5, Lockout: 15 * time.Minute, MaxAddressFailures: 1000})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	secret := f.enrol("alice")
	lockedFor(t, f.clk, guessWrong(t, f.e, f.clk, a, secret, 5), 15*time.Minute)
	f.clk.Advance(24*time.Hour + 14*time.Minute)
	if err := guessWrong(t, f.e, f.clk, a, secret, 4); !errors.Is(err, ErrCodeInvalid) {
		t.Fatal(err)
	}
	f.clk.Advance(2 * time.Minute) // the lock record has expired; the count of 4 has not
	lockedFor(t, f.clk, guessWrong(t, f.e, f.clk, a, secret, 5), 15*time.Minute)
	f.clk.Advance(15 * time.Minute)
	if err := guessWrong(t, f.e, f.clk, a, secret, 1); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("first wrong code after the lockout: %v, want a fresh round", err)
	}
}
