package flow

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

// The route table: every route declares its guards, and the table applies
// them before any page code runs. These tests walk the whole table, so a
// route added later is covered without a line here.

const userHeader = "X-Test-User" // the test's stand-in for the member site

// fixture is a Flow over a real engine and store: alice is enrolled with
// the authenticator app, bob has no second factor.
type fixture struct {
	t      *testing.T
	f      *Flow
	b      *Backend
	clock  *clock.Fake
	policy *Policy
	// roles are the admin roles the Caddy layer would resolve: alice is an
	// approver.
	roles map[string]string
	// audit is what the engine wrote to the audit logger.
	audit *observer.ObservedLogs
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fake := clock.NewFake(time.Date(2030, 4, 1, 9, 0, 1, 0, time.UTC))
	t.Cleanup(clock.Set(fake.Now))
	st, err := embedded.Open(filepath.Join(t.TempDir(), "db"), embedded.Options{Now: fake.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := keyring.New([]byte("route table test key, at least 32 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	engine, err := challenge.New(st, kr, challenge.Config{}, fake.Now, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := pages.New("")
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{t: t, b: &Backend{Engine: engine, Jar: session.NewJar(kr)}, clock: fake,
		policy: &Policy{Remember: 24 * time.Hour, Reminder: time.Hour, Methods: []string{challenge.MethodTOTP}},
		roles:  map[string]string{"alice": RoleApprover}, audit: logs}
	fx.f = New(Config{
		Prefix: "/.2fa/", TopPage: "/", SiteName: "Test",
		SessionIdle: 30 * time.Minute, SessionLifetime: 12 * time.Hour, StepUp: 10 * time.Minute,
		RequiresEnrolment: true,
		Pages:             renderer,
		Backend:           func(context.Context) *Backend { return fx.b },
		Identify: func(r *http.Request) (Identity, error) {
			id := r.Header.Get(userHeader)
			return Identity{ID: id, Role: fx.roles[id]}, nil
		},
		PolicyFor: func(*http.Request, string) *Policy { return fx.policy },
	})

	fx.enrolTOTP("alice")
	return fx
}

// enrolTOTP enrols user with the authenticator app.
func (fx *fixture) enrolTOTP(user string) {
	fx.t.Helper()
	ctx := context.Background()
	a := challenge.Actor{User: user, IP: "192.0.2.1"}
	en, err := fx.b.Engine.StartTOTP(ctx, a, "Test", user, "enrol-flow")
	if err != nil {
		fx.t.Fatal(err)
	}
	code, err := totp.GenerateCodeCustom(en.Secret, fx.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		fx.t.Fatal(err)
	}
	if _, err := fx.b.Engine.ConfirmTOTP(ctx, a, "enrol-flow", code); err != nil {
		fx.t.Fatal(err)
	}
}

// browser is a CSRF secret and a session cookie, as a browser holds them.
type browser struct {
	user    string
	csrf    string
	session string // sealed session cookie value, "" for none
}

// sessionFor seals a session for user, verified by a code age ago
// (remembered: from a remembered device instead).
func (fx *fixture) sessionFor(user string, age time.Duration, remembered bool) string {
	fx.t.Helper()
	return fx.sessionWith(user, challenge.MethodTOTP, age, remembered)
}

// sessionWith is sessionFor with the method the session was verified by.
func (fx *fixture) sessionWith(user, method string, age time.Duration, remembered bool) string {
	fx.t.Helper()
	u := fx.state(user)
	now := fx.clock.Now()
	s := session.Session{
		User: user, ID: session.NewID(), Method: method, Epoch: u.Epoch, Remembered: remembered,
		Issued: now.Add(-age).Unix(), LastSeen: now.Unix(), Expires: now.Add(time.Hour).Unix(),
	}
	return fx.b.Jar.Codec().EncodeSession(&s)
}

func (fx *fixture) state(user string) *challenge.User {
	fx.t.Helper()
	u, err := fx.b.Engine.State(context.Background(), user)
	if err != nil {
		fx.t.Fatal(err)
	}
	return u
}

// do sends rt's request as br, with the form token token (for posts).
func (fx *fixture) do(rt *route, br browser, token string) *httptest.ResponseRecorder {
	fx.t.Helper()
	// A test may give a GET route's path a query of its own.
	sep := "?"
	if strings.Contains(rt.path, "?") {
		sep = "&"
	}
	target := "http://club.example/.2fa/" + rt.path + sep + "return_to=%2Fmembers%2F"
	var body *strings.Reader
	if rt.method == http.MethodPost {
		form := url.Values{"return_to": {"/members/"}}
		if token != "" {
			form.Set("csrf", token)
		}
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(rt.method, target, body)
	switch {
	case jsonRoutes[rt.path]:
		// A script's post: the token in its header, the body JSON.
		r = httptest.NewRequest(rt.method, target, strings.NewReader("{}"))
		r.Header.Set("Content-Type", "application/json")
		if token != "" {
			r.Header.Set(csrfHeader, token)
		}
	case rt.method == http.MethodPost:
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if br.user != "" {
		r.Header.Set(userHeader, br.user)
	}
	var cookies []string
	if br.csrf != "" {
		cookies = append(cookies, session.CSRFCookie+"="+br.csrf)
	}
	if br.session != "" {
		cookies = append(cookies, session.SessionCookie+"="+br.session)
	}
	if len(cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(cookies, "; "))
	}
	w := httptest.NewRecorder()
	if err := fx.f.Serve(w, r); err != nil {
		fx.t.Fatalf("%s %s: %v", rt.method, rt.path, err)
	}
	return w
}

// audited takes the audit entries of event written since the last call,
// each as its fields.
func (fx *fixture) audited(event string) []map[string]any {
	var out []map[string]any
	for _, e := range fx.audit.TakeAll() {
		if e.Message == event {
			out = append(out, e.ContextMap())
		}
	}
	return out
}

func (fx *fixture) token(br browser) string { return fx.b.Jar.CSRFToken(br.csrf, br.user) }

func routeName(rt *route) string { return rt.method + " " + rt.path }

func toChallenge(w *httptest.ResponseRecorder) bool {
	return strings.HasPrefix(sentTo(w), "/.2fa/challenge?")
}

// sentTo is where a page's redirect, or a JSON route's refusal, sends the
// member on to.
func sentTo(w *httptest.ResponseRecorder) string {
	if w.Code == http.StatusSeeOther {
		return w.Header().Get("Location")
	}
	var answer struct{ Redirect string }
	if w.Code == http.StatusForbidden && json.Unmarshal(w.Body.Bytes(), &answer) == nil {
		return answer.Redirect
	}
	return ""
}

func TestEveryRouteNeedsASignedInMember(t *testing.T) {
	fx := newFixture(t)
	for i := range routes {
		rt := &routes[i]
		if w := fx.do(rt, browser{csrf: session.NewSecret()}, ""); w.Code != http.StatusUnauthorized {
			t.Errorf("%s without a member: %d, want 401", routeName(rt), w.Code)
		}
	}
}

func TestEveryPostRefusesAMissingOrForeignCSRFToken(t *testing.T) {
	fx := newFixture(t)
	posts := 0
	for i := range routes {
		rt := &routes[i]
		if rt.method != http.MethodPost {
			continue
		}
		posts++
		alice := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
		other := browser{user: "alice", csrf: session.NewSecret()}
		bob := browser{user: "bob", csrf: alice.csrf}
		for _, c := range []struct {
			what  string
			br    browser
			token string
		}{
			{"no token", alice, ""},
			{"no CSRF cookie", browser{user: "alice", session: alice.session}, fx.token(alice)},
			{"another browser's token", alice, fx.token(other)},
			{"another member's token", alice, fx.token(bob)},
			{"a token with its last character changed", alice, flipLast(fx.token(alice))},
		} {
			w := fx.do(rt, c.br, c.token)
			if w.Code != http.StatusForbidden {
				t.Errorf("%s with %s: %d, want 403", routeName(rt), c.what, w.Code)
			}
			if len(w.Result().Cookies()) != 0 {
				t.Errorf("%s with %s set cookies %v", routeName(rt), c.what, w.Result().Cookies())
			}
		}
		// The right token passes the guard, so the refusals above are the
		// guard's doing.
		if w := fx.do(rt, alice, fx.token(alice)); w.Code == http.StatusForbidden {
			t.Errorf("%s with its own token: 403", routeName(rt))
		}
	}
	if posts == 0 {
		t.Fatal("no POST routes")
	}
}

func flipLast(s string) string {
	b := []byte(s)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

func TestEveryStepUpRouteRefusesASessionWithoutARecentCode(t *testing.T) {
	fx := newFixture(t)
	checked := 0
	for i := range routes {
		rt := &routes[i]
		// stepUpOrRenewal is stepUp while no renewal is due, as here.
		if rt.guards&(stepUp|mayEnrol|stepUpOrRenewal) == 0 {
			continue
		}
		checked++
		csrf := session.NewSecret()
		for _, c := range []struct {
			what    string
			session string
		}{
			{"no session", ""},
			{"a code entered 11 minutes ago", fx.sessionFor("alice", 11*time.Minute, false)},
			{"a remembered device", fx.sessionFor("alice", 0, true)},
			{"another member's session", fx.sessionFor("bob", 0, false)},
		} {
			br := browser{user: "alice", csrf: csrf, session: c.session}
			if w := fx.do(rt, br, fx.token(br)); !toChallenge(w) {
				t.Errorf("%s with %s: %d %q, want the challenge", routeName(rt), c.what, w.Code, w.Header().Get("Location"))
			}
		}
		br := browser{user: "alice", csrf: csrf, session: fx.sessionFor("alice", 9*time.Minute, false)}
		if w := fx.do(rt, br, fx.token(br)); toChallenge(w) {
			t.Errorf("%s with a code entered 9 minutes ago: sent to the challenge", routeName(rt))
		}
	}
	if checked == 0 {
		t.Fatal("no step-up routes")
	}
}

// A member without a second factor may enrol without one; the routes that
// need one send them to enrolment.
func TestMembersWithoutASecondFactor(t *testing.T) {
	fx := newFixture(t)
	for i := range routes {
		rt := &routes[i]
		br := browser{user: "bob", csrf: session.NewSecret()}
		w := fx.do(rt, br, fx.token(br))
		switch {
		case rt.guards&enrolled != 0:
			if !strings.HasPrefix(sentTo(w), "/.2fa/enrol?") {
				t.Errorf("%s for a member without a factor: %d %q, want enrolment", routeName(rt), w.Code, w.Header().Get("Location"))
			}
		case rt.guards&mayEnrol != 0:
			if toChallenge(w) || w.Code == http.StatusForbidden {
				t.Errorf("%s for a member without a factor: %d %q", routeName(rt), w.Code, w.Header().Get("Location"))
			}
		}
	}
}

func TestRoutesMustDeclareTheirGuards(t *testing.T) {
	noop := func(*Flow, *request) error { return nil }
	for _, tc := range []struct {
		name string
		rt   route
		want string
	}{
		{"no guards", route{"GET", "x", 0, noop}, "declares no guards"},
		{"not signed in", route{"GET", "x", enrolled, noop}, "signed-in member"},
		{"post without CSRF", route{"POST", "x", signedIn, noop}, "lacks the CSRF guard"},
		{"get with CSRF", route{"GET", "x", signedIn | csrfToken, noop}, "only posts"},
		{"other method", route{"PUT", "x", signedIn | csrfToken, noop}, "only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), tc.want) {
					t.Fatalf("newRouter: %v, want a panic about %q", r, tc.want)
				}
			}()
			newRouter([]route{tc.rt})
		})
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "twice") {
			t.Fatalf("a route given twice: %v", r)
		}
	}()
	newRouter([]route{{"GET", "x", signedIn, noop}, {"GET", "x", signedIn, noop}})
}

// Unknown pages and methods are refused before anything else.
func TestUnknownPageAndMethod(t *testing.T) {
	fx := newFixture(t)
	r := httptest.NewRequest(http.MethodGet, "http://club.example/.2fa/nowhere", nil)
	w := httptest.NewRecorder()
	if err := fx.f.Serve(w, r); err != nil || w.Code != http.StatusNotFound {
		t.Fatalf("unknown page: %d %v", w.Code, err)
	}
	r = httptest.NewRequest(http.MethodDelete, "http://club.example/.2fa/challenge", nil)
	w = httptest.NewRecorder()
	if err := fx.f.Serve(w, r); err != nil || w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("DELETE: %d %q %v", w.Code, w.Header().Get("Allow"), err)
	}
	// A script is refused with a *Refusal for the Caddy layer to hand on.
	r = httptest.NewRequest(http.MethodGet, "http://club.example/.2fa/nowhere", nil)
	r.Header.Set("Sec-Fetch-Mode", "cors")
	var refusal *Refusal
	if err := fx.f.Serve(httptest.NewRecorder(), r); err == nil || !asRefusal(err, &refusal) || refusal.Status != http.StatusNotFound {
		t.Fatalf("script asking for an unknown page: %v", err)
	}
}

func asRefusal(err error, r **Refusal) bool {
	rf, ok := err.(*Refusal)
	*r = rf
	return ok
}
