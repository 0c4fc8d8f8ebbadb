package flow

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/session"
)

// The admin guards, over the whole route table: who may open which admin
// page, and with which session.

func adminRoutes(t *testing.T) []*route {
	t.Helper()
	var out []*route
	for i := range routes {
		if routes[i].guards&adminRoles != 0 {
			out = append(out, &routes[i])
		}
	}
	if len(out) == 0 {
		t.Fatal("no admin routes")
	}
	return out
}

func TestNoAdminRouteOpensToAMemberWhoIsNoAdmin(t *testing.T) {
	fx := newFixture(t)
	// carol is enrolled with the app, like alice, but has no role.
	fx.enrolTOTP("carol")
	for _, rt := range adminRoutes(t) {
		for _, role := range []string{"", "Approver", "admin", " viewer", "viewer "} {
			fx.roles["carol"] = role
			br := browser{user: "carol", csrf: session.NewSecret(), session: fx.sessionFor("carol", 0, false)}
			w := fx.do(rt, br, fx.token(br))
			if w.Code != http.StatusForbidden {
				t.Errorf("%s for a member with role %q: %d, want 403", routeName(rt), role, w.Code)
			}
			if body := strings.ToLower(w.Body.String()); strings.Contains(body, "admin") || strings.Contains(body, "管理") {
				t.Errorf("%s: the 403 page speaks of the admin pages:\n%s", routeName(rt), body)
			}
		}
	}
}

func TestAViewerCannotAct(t *testing.T) {
	fx := newFixture(t)
	fx.roles["alice"] = RoleViewer
	acts := 0
	for _, rt := range adminRoutes(t) {
		br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
		w := fx.do(rt, br, fx.token(br))
		if rt.minRole() == RoleViewer {
			if w.Code == http.StatusForbidden || toChallenge(w) {
				t.Errorf("%s for a viewer: %d", routeName(rt), w.Code)
			}
			continue
		}
		acts++
		if w.Code != http.StatusForbidden {
			t.Errorf("%s for a viewer: %d, want 403", routeName(rt), w.Code)
		}
	}
	if acts == 0 {
		t.Fatal("no admin actions")
	}
}

func TestEveryAdminRouteNeedsARecentAppCode(t *testing.T) {
	fx := newFixture(t)
	for _, rt := range adminRoutes(t) {
		csrf := session.NewSecret()
		for _, c := range []struct {
			what    string
			session string
		}{
			{"no session", ""},
			{"an app code 11 minutes ago", fx.sessionFor("alice", 11*time.Minute, false)},
			{"a remembered device", fx.sessionFor("alice", 0, true)},
			{"an emailed code", fx.sessionWith("alice", challenge.MethodEmail, 0, false)},
			{"a texted code", fx.sessionWith("alice", challenge.MethodSMS, 0, false)},
			{"a recovery code", fx.sessionWith("alice", challenge.MethodRecovery, 0, false)},
		} {
			br := browser{user: "alice", csrf: csrf, session: c.session}
			w := fx.do(rt, br, fx.token(br))
			if !toChallenge(w) {
				t.Errorf("%s with %s: %d %q, want the challenge", routeName(rt), c.what, w.Code, w.Header().Get("Location"))
				continue
			}
			if back := w.Header().Get("Location"); !strings.Contains(back, "return_to=%2F.2fa%2Fadmin%2F") {
				t.Errorf("%s: the challenge does not return to the admin pages: %q", routeName(rt), back)
			}
		}
		br := browser{user: "alice", csrf: csrf, session: fx.sessionFor("alice", 9*time.Minute, false)}
		if w := fx.do(rt, br, fx.token(br)); toChallenge(w) || w.Code == http.StatusForbidden {
			t.Errorf("%s with an app code 9 minutes ago: %d %q", routeName(rt), w.Code, w.Header().Get("Location"))
		}
	}
}

// On the way to an admin page the challenge offers only the app, and no
// "remember this device".
func TestChallengeForAdminPagesOffersOnlyTheApp(t *testing.T) {
	fx := newFixture(t)
	fx.policy.Methods = []string{challenge.MethodTOTP, challenge.MethodEmail}
	r := httptest.NewRequest(http.MethodGet, "http://club.example/.2fa/challenge?return_to=%2F.2fa%2Fadmin%2F", nil)
	r.Header.Set(userHeader, "alice")
	w := httptest.NewRecorder()
	if err := fx.f.Serve(w, r); err != nil || w.Code != http.StatusOK {
		t.Fatalf("challenge: %d %v", w.Code, err)
	}
	if body := w.Body.String(); strings.Contains(body, `name="remember"`) {
		t.Error("the challenge for an admin page offers to remember the device")
	}
	if got := fx.f.adminPolicy.Methods; len(got) != 1 || got[0] != challenge.MethodTOTP {
		t.Errorf("admin methods %v", got)
	}
	if fx.f.adminPolicy.Allows(challenge.MethodEmail) || fx.f.adminPolicy.Allows(challenge.MethodSMS) {
		t.Error("the admin policy accepts email or SMS codes")
	}
}

// An admin without the app is told to add it, not sent round the
// challenge.
func TestAdminWithoutTheApp(t *testing.T) {
	fx := newFixture(t)
	fx.roles["bob"] = RoleApprover
	rt := fx.f.router["admin/"]["GET"]
	br := browser{user: "bob", csrf: session.NewSecret()}
	w := fx.do(rt, br, "")
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "/.2fa/methods?return_to=%2F.2fa%2Fadmin%2F") {
		t.Fatalf("admin without the app: %d\n%s", w.Code, w.Body.String())
	}
}

func TestRolesAreExactNames(t *testing.T) {
	for role, want := range map[string]bool{"viewer": true, "support": true, "approver": true,
		"": false, "Viewer": false, "APPROVER": false, "admin": false, " support": false, "support\n": false} {
		if ValidRole(role) != want {
			t.Errorf("ValidRole(%q) = %v", role, !want)
		}
	}
	if !(roleRank(RoleViewer) < roleRank(RoleSupport) && roleRank(RoleSupport) < roleRank(RoleApprover)) {
		t.Error("roles out of order")
	}
}

func TestAdminRoutesDeclareTheirGuards(t *testing.T) {
	noop := func(*Flow, *request) error { return nil }
	for _, tc := range []struct {
		name string
		rt   route
		want string
	}{
		{"admin page without a role", route{"GET", "admin/x", signedIn | adminStepUp, noop}, "admin role guard"},
		{"admin page without step-up", route{"GET", "admin/x", signedIn | adminView, noop}, "admin step-up"},
		{"two roles", route{"GET", "admin/x", signedIn | adminView | adminSupport | adminStepUp, noop}, "one minimum"},
		{"role outside admin/", route{"GET", "methods2", signedIn | adminView | adminStepUp, noop}, "belong to pages under admin/"},
		{"admin step-up outside admin/", route{"GET", "x", signedIn | adminStepUp, noop}, "belong to pages under admin/"},
		{"member step-up on an admin page", route{"GET", "admin/x", signedIn | adminView | adminStepUp | stepUp, noop}, "instead of"},
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
}

func TestReadIDs(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"lines", "alice\n\n bob \r\ncarol", []string{"alice", "bob", "carol"}},
		{"csv", "\ufeffid,email\n\"alice\",a@example.com\nbob,\"b,x\"\n", []string{"id", "alice", "bob"}},
	} {
		got, msg := readIDs(strings.NewReader(tc.in))
		if msg != "" || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q %q, want %q", tc.name, got, msg, tc.want)
		}
	}
	many := strings.Repeat("x\n", challenge.MaxReconcile) + "y\n"
	if _, msg := readIDs(strings.NewReader(many)); msg != "admin_reconcile_too_many" {
		t.Errorf("%d IDs: %q", challenge.MaxReconcile+1, msg)
	}
}

// Which forms an admin sees on a pending reset: approve for an approver
// who is neither the requester nor the member; withdraw for the requester
// or an approver who is not the member. The engine and the route guards
// enforce the same.
func TestResetRequestView(t *testing.T) {
	q := challenge.ResetRequest{ID: "r", Member: "carol", Requester: "sam"}
	for _, tt := range []struct {
		id, role          string
		approve, withdraw bool
	}{
		{"alice", RoleViewer, false, false},
		{"sam", RoleSupport, false, true},
		{"dave", RoleSupport, false, false},
		{"sam", RoleApprover, false, true},
		{"carol", RoleApprover, false, false}, // the member: never their own
		{"boss", RoleApprover, true, true},
	} {
		p := &request{id: Identity{ID: tt.id, Role: tt.role}}
		if v := resetRequestView(p, q); v.CanApprove != tt.approve || v.CanWithdraw != tt.withdraw {
			t.Errorf("%s (%s): approve %v, withdraw %v; want %v, %v", tt.id, tt.role, v.CanApprove, v.CanWithdraw, tt.approve, tt.withdraw)
		}
	}
}

// Config.AdminMethods replaces the default: with passkeys only, an admin
// who has only the app is told to add a passkey, and a session verified
// with the app, however fresh, opens nothing; the challenge on the way
// offers the passkey alone. With both, the app still opens them.
func TestAdminMethodsFromConfig(t *testing.T) {
	fx := newFixture(t)
	cfg := fx.f.cfg
	cfg.WebAuthn = true
	cfg.AdminMethods = []string{challenge.MethodWebAuthn}
	fx.f = New(cfg)
	if fx.f.adminPolicy.Allows(challenge.MethodTOTP) || !fx.f.adminPolicy.Allows(challenge.MethodWebAuthn) || !fx.f.adminPolicy.NoRecovery {
		t.Fatalf("admin policy %+v", fx.f.adminPolicy)
	}
	for _, rt := range adminRoutes(t) {
		br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
		w := fx.do(rt, br, fx.token(br))
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "need a passkey or security key") ||
			!strings.Contains(w.Body.String(), "/.2fa/methods?return_to=%2F.2fa%2Fadmin%2F") {
			t.Errorf("%s for an admin with only the app, admin methods webauthn: %d\n%s", routeName(rt), w.Code, w.Body.String())
		}
	}

	cfg.AdminMethods = []string{challenge.MethodTOTP, challenge.MethodWebAuthn}
	fx.f = New(cfg)
	rt := fx.f.router["admin/"]["GET"]
	br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
	if w := fx.do(rt, br, ""); w.Code != http.StatusOK {
		t.Errorf("admin methods totp webauthn, a fresh app session: %d %q", w.Code, w.Header().Get("Location"))
	}
	fx.roles["bob"] = RoleViewer
	w := fx.do(rt, browser{user: "bob", csrf: session.NewSecret()}, "")
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "an authenticator app, or a passkey or security key") {
		t.Errorf("an admin with neither: %d\n%s", w.Code, w.Body.String())
	}
}
