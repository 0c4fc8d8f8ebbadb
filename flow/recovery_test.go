package flow

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/session"
)

// The renewal step after a recovery code: open to the member's sessions
// however long ago their code was entered, and only while a set is due.

// useRecovery gives alice a set of recovery codes and signs in with uses of
// them, as the challenge does; it returns her record after the last.
func (fx *fixture) useRecovery(uses int) *challenge.User {
	fx.t.Helper()
	ctx := context.Background()
	a := challenge.Actor{User: "alice", IP: "192.0.2.1"}
	codes, err := fx.b.Engine.GenerateRecoveryCodes(ctx, a)
	if err != nil {
		fx.t.Fatal(err)
	}
	var u *challenge.User
	for _, c := range codes[:uses] {
		if u, err = fx.b.Engine.UseRecoveryCode(ctx, a, c); err != nil {
			fx.t.Fatal(err)
		}
	}
	return u
}

func (fx *fixture) route(method, path string) *route {
	fx.t.Helper()
	rt := fx.f.router[path][method]
	if rt == nil {
		fx.t.Fatalf("no route %s %s", method, path)
	}
	return rt
}

// A member who signed in with a recovery code and came to the renewal step
// after step_up makes the new set without another code; with the set made,
// the same session needs a recent code for a set again.
func TestRenewalStepOutlastsStepUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		uses int // codes used; the tenth leaves none to step up with
	}{{"nine left", 1}, {"none left", challenge.RecoveryCodeCount}} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			if u := fx.useRecovery(tc.uses); u.Recovery.Left != challenge.RecoveryCodeCount-tc.uses || !RenewalDue(u) {
				t.Fatalf("after %d codes: %d left, renewal due %v", tc.uses, u.Recovery.Left, RenewalDue(u))
			}
			fx.clock.Advance(11 * time.Minute)
			page, post := fx.route("GET", "recovery"), fx.route("POST", "recovery")
			csrf := session.NewSecret()
			br := browser{user: "alice", csrf: csrf, session: fx.sessionWith("alice", challenge.MethodRecovery, 11*time.Minute, false)}

			// Every other step-up route still asks for a recent code.
			for i := range routes {
				rt := &routes[i]
				if rt.guards&(stepUp|mayEnrol) != 0 {
					if w := fx.do(rt, br, fx.token(br)); !toChallenge(w) {
						t.Errorf("%s 11 minutes after the recovery code: %d %q, want the challenge", routeName(rt), w.Code, w.Header().Get("Location"))
					}
				}
			}
			// A remembered device is no code, however the renewal stands.
			remembered := browser{user: "alice", csrf: csrf, session: fx.sessionWith("alice", challenge.MethodTOTP, 0, true)}
			for _, rt := range []*route{page, post} {
				if w := fx.do(rt, remembered, fx.token(remembered)); !toChallenge(w) {
					t.Errorf("%s from a remembered device: %d %q, want the challenge", routeName(rt), w.Code, w.Header().Get("Location"))
				}
			}

			if w := fx.do(page, br, ""); w.Code != http.StatusOK {
				t.Fatalf("the renewal step 11 minutes after the recovery code: %d %q", w.Code, w.Header().Get("Location"))
			}
			if w := fx.do(post, br, fx.token(br)); w.Code != http.StatusOK {
				t.Fatalf("the new set 11 minutes after the recovery code: %d %q", w.Code, w.Header().Get("Location"))
			}
			if u := fx.state("alice"); RenewalDue(u) || u.Recovery.Left != challenge.RecoveryCodeCount {
				t.Fatalf("after the new set: renewal due %v, %d left", RenewalDue(u), u.Recovery.Left)
			}
			// Renewed: the guard is stepUp again, so no second set
			// without a recent code.
			for _, rt := range []*route{page, post} {
				if w := fx.do(rt, br, fx.token(br)); !toChallenge(w) {
					t.Errorf("%s after the new set, with a code 11 minutes old: %d %q, want the challenge", routeName(rt), w.Code, w.Header().Get("Location"))
				}
			}
		})
	}
}

// Renewal is the member's, not the session's: a session begun later with
// another method (a new app enrolled, a sign-in elsewhere) is held back
// and may make the set too.
func TestRenewalDueForEverySessionOfTheMember(t *testing.T) {
	fx := newFixture(t)
	if RenewalDue(fx.state("alice")) {
		t.Fatal("renewal due before any recovery code")
	}
	before := fx.sessionWith("alice", challenge.MethodTOTP, 0, false)
	fx.useRecovery(1)
	u := fx.state("alice")
	if !RenewalDue(u) {
		t.Fatal("no renewal due after a recovery code")
	}
	// Sessions from before the code ended with it.
	var s session.Session
	if fx.b.Jar.Codec().DecodeSession(before, &s) != nil || fx.f.SessionLive(&s, &Identity{ID: "alice"}, u, fx.clock.Now()) {
		t.Fatal("a session from before the recovery code is live")
	}
	fx.clock.Advance(11 * time.Minute)
	br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionWith("alice", challenge.MethodTOTP, 11*time.Minute, false)}
	if w := fx.do(fx.route("POST", "recovery"), br, fx.token(br)); w.Code != http.StatusOK {
		t.Fatalf("the new set from an app session: %d %q", w.Code, w.Header().Get("Location"))
	}
	if RenewalDue(fx.state("alice")) {
		t.Fatal("renewal still due after the new set")
	}
}

// Only the renewal step waives step_up, and the table says so.
func TestOnlyTheRenewalStepWaivesStepUp(t *testing.T) {
	for i := range routes {
		rt := &routes[i]
		if (rt.guards&stepUpOrRenewal != 0) != (rt.path == "recovery") {
			t.Errorf("%s: guards %s", routeName(rt), rt.guards)
		}
	}
	noop := func(*Flow, *request) error { return nil }
	for _, g := range []guard{stepUp, mayEnrol} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("a route with step-up or renewal and %s was accepted", g)
				}
			}()
			newRouter([]route{{"GET", "x", signedIn | enrolled | stepUpOrRenewal | g, noop}})
		}()
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("a route with step-up or renewal for members without a factor was accepted")
		}
	}()
	newRouter([]route{{"GET", "x", signedIn | stepUpOrRenewal, noop}})
}
