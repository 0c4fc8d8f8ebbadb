package twofactor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/flow"
)

func TestStripClientHeaders(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		keep []string // names left afterwards
	}{
		{
			name: "canonical names",
			in: http.Header{
				"X-2fa-User": {"root"}, "X-2fa-Method": {"totp"}, "X-2fa-Enrolled": {"true"},
				"Accept": {"text/html"},
			},
			keep: []string{"Accept"},
		},
		{
			name: "case variants",
			in: http.Header{
				"x-2fa-user": {"a"}, "X-2FA-USER": {"b"}, "x-2FA-method": {"c"}, "X-2Fa-Enrolled": {"d"},
				"Cookie": {"sid=1"},
			},
			keep: []string{"Cookie"},
		},
		{
			name: "underscore variants",
			in: http.Header{
				"X_2FA_User": {"a"}, "x_2fa_method": {"b"}, "X-2fa_Enrolled": {"c"}, "X_2fa-User": {"d"},
				"User-Agent": {"ua"},
			},
			keep: []string{"User-Agent"},
		},
		{
			name: "duplicates and unknown gateway-looking names",
			in: http.Header{
				"X-2fa-User": {"a", "b", "c"}, "X-2fa-": {"x"}, "X-2fa-Anything-Else": {"y"},
			},
		},
		{
			name: "unrelated headers stay",
			in: http.Header{
				"X-2fauser": {"a"}, "X-Forwarded-For": {"203.0.113.9"}, "X-2F": {"b"}, "X-2fa": {"c"},
				"X-2fb-User": {"d"}, "Y-2fa-User": {"e"}, "X-3fa-User": {"f"}, "Xx-2fa-User": {"g"},
				"X-2fa.User": {"h"}, "X": {"i"},
			},
			keep: []string{"X", "X-2F", "X-2fa", "X-2fa.User", "X-2fauser", "X-2fb-User", "X-3fa-User", "X-Forwarded-For", "Xx-2fa-User", "Y-2fa-User"},
		},
		{
			name: "headers naming another path or method, every spelling",
			in: http.Header{
				"X-Original-Url": {"/members/x"}, "X_ORIGINAL_URL": {"/members/x"}, "x-original-uri": {"/members/x"},
				"X-Rewrite-Url": {"/members/x"}, "X_Rewrite_URL": {"/members/x"}, "X-Override-Url": {"/members/x"},
				"X-Http-Method-Override": {"GET"}, "x_http_method_override": {"GET"}, "X-Http-Method": {"GET"},
				"X-Method-Override": {"GET", "POST"}, "Accept": {"*/*"},
			},
			keep: []string{"Accept"},
		},
		{
			name: "near misses stay",
			in: http.Header{
				"X-Original-Urls": {"a"}, "X-Original": {"b"}, "X-Http-Methods": {"c"}, "X-Forwarded-Uri": {"d"},
				"Y-Original-Url": {"e"}, "X-Original.Url": {"f"}, "Original-Url": {"g"},
			},
			keep: []string{"Original-Url", "X-Forwarded-Uri", "X-Http-Methods", "X-Original", "X-Original-Urls", "X-Original.Url", "Y-Original-Url"},
		},
		{
			name: "empty",
			in:   http.Header{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[string][]string{}
			for _, k := range tt.keep {
				want[k] = append([]string(nil), tt.in[k]...)
			}
			stripClientHeaders(tt.in)
			var got []string
			for k := range tt.in {
				got = append(got, k)
			}
			sort.Strings(got)
			keep := append([]string(nil), tt.keep...)
			sort.Strings(keep)
			if strings.Join(got, ",") != strings.Join(keep, ",") {
				t.Errorf("left %q, want %q", got, keep)
			}
			for k, v := range want {
				if !reflect.DeepEqual(tt.in[k], v) {
					t.Errorf("%s changed to %q, want %q", k, tt.in[k], v)
				}
			}
		})
	}
}

func TestSameHeaderNameGatewayPrefix(t *testing.T) {
	tests := []struct {
		p    string
		want bool
	}{
		{"x-2fa-", true},
		{"X-2FA-", true},
		{"X-2fa-", true},
		{"x_2fa_", true},
		{"X_2Fa-", true},
		{"x-2fa_", true},
		{"x-2fb-", false},
		{"x-2fa.", false},
		{"x-2fax", false},
		{"y-2fa-", false},
		{"x--2fa", false},
		{"x-3fa-", false},
		{"-x2fa-", false},
		{"X-2FA ", false},
		{"x-2Fà", false}, // six bytes, not ASCII
	}
	for _, tt := range tests {
		if len(tt.p) != 6 {
			t.Fatalf("test case %q is not six bytes", tt.p)
		}
		if got := sameHeaderName(tt.p, "x-2fa-"); got != tt.want {
			t.Errorf("sameHeaderName(%q, x-2fa-) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestSetUpstream(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/members/", nil)
	r.Header["X-2fa-User"] = []string{"forged"}
	setUpstream(r, "u-1", "totp", true)
	want := map[string]string{"X-2fa-User": "u-1", "X-2fa-Method": "totp", "X-2fa-Enrolled": "true"}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want exactly %q", k, got, v)
		}
	}
	setUpstream(r, "u-2", "none", false)
	if got := r.Header.Get("X-2fa-Enrolled"); got != "false" {
		t.Errorf("X-2fa-Enrolled = %q, want false", got)
	}
	// The shared backing array must not let one header spill into another.
	r.Header.Add("X-2fa-User", "appended")
	if got := r.Header.Get("X-2fa-Method"); got != "none" {
		t.Errorf("appending to X-2fa-User changed X-2fa-Method to %q", got)
	}
}

func TestRuleProvision(t *testing.T) {
	tests := []struct {
		name         string
		rule         Rule
		wantErr      string
		wantRemember time.Duration
		wantReminder time.Duration
		wantOptional bool
	}{
		{name: "defaults", rule: Rule{Paths: []string{"/members/*"}},
			wantRemember: 30 * 24 * time.Hour, wantReminder: 7 * 24 * time.Hour},
		{name: "required", rule: Rule{Paths: []string{"/m/*"}, Enrolment: "required"},
			wantRemember: defaultRemember, wantReminder: defaultReminder},
		{name: "optional", rule: Rule{Paths: []string{"/m/*"}, Enrolment: "optional", Reminder: caddy.Duration(72 * time.Hour)},
			wantRemember: defaultRemember, wantReminder: 72 * time.Hour, wantOptional: true},
		{name: "remember off", rule: Rule{Paths: []string{"/admin/*"}, RememberDevice: "off"},
			wantRemember: 0, wantReminder: defaultReminder},
		{name: "remember 14d", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "14d"},
			wantRemember: 14 * 24 * time.Hour, wantReminder: defaultReminder},
		{name: "remember 400d", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "400d"},
			wantRemember: 400 * 24 * time.Hour, wantReminder: defaultReminder},
		{name: "remember 1m", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "1m"},
			wantRemember: time.Minute, wantReminder: defaultReminder},
		{name: "star pattern", rule: Rule{Paths: []string{"*.pdf"}, Except: []string{"/public/*"}},
			wantRemember: defaultRemember, wantReminder: defaultReminder},

		{name: "remember over 400d", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "401d"}, wantErr: "remember_device"},
		{name: "remember under 1m", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "59s"}, wantErr: "remember_device"},
		{name: "remember 0", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "0"}, wantErr: "remember_device"},
		{name: "remember negative", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "-1h"}, wantErr: "remember_device"},
		{name: "remember bad", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "forever"}, wantErr: `remember_device "forever"`},
		{name: "remember Off", rule: Rule{Paths: []string{"/m/*"}, RememberDevice: "Off"}, wantErr: "remember_device"},
		{name: "no paths", rule: Rule{}, wantErr: "paths"},
		{name: "reminder negative", rule: Rule{Paths: []string{"/m/*"}, Reminder: caddy.Duration(-time.Hour)}, wantErr: "reminder"},
		{name: "reminder under 1m", rule: Rule{Paths: []string{"/m/*"}, Reminder: caddy.Duration(time.Second)}, wantErr: "reminder"},
		{name: "relative path", rule: Rule{Paths: []string{"members/*"}}, wantErr: `"members/*"`},
		{name: "empty path", rule: Rule{Paths: []string{"/a/*", ""}}, wantErr: `path pattern ""`},
		{name: "relative except", rule: Rule{Paths: []string{"/a/*"}, Except: []string{"public"}}, wantErr: `"public"`},
		{name: "bad enrolment", rule: Rule{Paths: []string{"/a/*"}, Enrolment: "sometimes"}, wantErr: `enrolment "sometimes"`},
		{name: "enrolment case", rule: Rule{Paths: []string{"/a/*"}, Enrolment: "Optional"}, wantErr: "enrolment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := tt.rule
			app := &App{}
			err := rule.provision(testCaddyContext(t), app, false)
			if err == nil {
				err = rule.validate(app, false)
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want one containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("provision: %v", err)
			}
			if rule.policy.Remember != tt.wantRemember {
				t.Errorf("remember = %v, want %v", rule.policy.Remember, tt.wantRemember)
			}
			if rule.policy.Reminder != tt.wantReminder {
				t.Errorf("reminder = %v, want %v", rule.policy.Reminder, tt.wantReminder)
			}
			if rule.policy.Optional != tt.wantOptional {
				t.Errorf("optional = %v, want %v", rule.policy.Optional, tt.wantOptional)
			}
		})
	}
}

// A rule's methods are the policy's, in their order and once each; with
// none listed, passkeys join where the handler offers them. A session
// verified another way does not pass a rule that accepts only passkeys,
// except by a recovery code, the way back in to repair one's methods.
func TestRuleMethods(t *testing.T) {
	tests := []struct {
		name     string
		methods  []string
		webAuthn bool
		want     []string
	}{
		{"default", nil, false, []string{"totp"}},
		{"default with passkeys", nil, true, []string{"webauthn", "totp"}},
		{"passkeys only", []string{"webauthn"}, true, []string{"webauthn"}},
		{"repeated", []string{"webauthn", "totp", "webauthn"}, true, []string{"webauthn", "totp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := Rule{Paths: []string{"/strong/*"}, Methods: tt.methods}
			app := &App{}
			if err := rule.provision(testCaddyContext(t), app, tt.webAuthn); err != nil {
				t.Fatal(err)
			}
			if err := rule.validate(app, tt.webAuthn); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rule.policy.Methods, tt.want) {
				t.Errorf("methods %q, want %q", rule.policy.Methods, tt.want)
			}
		})
	}
	rule := Rule{Paths: []string{"/strong/*"}, Methods: []string{"webauthn"}}
	if err := rule.provision(testCaddyContext(t), &App{}, true); err != nil {
		t.Fatal(err)
	}
	for method, want := range map[string]bool{"webauthn": true, "recovery": true, "totp": false, "email": false, "sms": false, "device": false, "": false} {
		if got := rule.policy.Allows(method); got != want {
			t.Errorf("a webauthn-only rule allows a session verified by %q: %v, want %v", method, got, want)
		}
	}
}

// admin_methods: the app or the passkey, never codes that a mailbox or a
// SIM receives; by default the app, and each handler offers only those it
// can (passkeys where it enables webauthn).
func TestAdminMethods(t *testing.T) {
	for _, tt := range []struct {
		methods []string
		err     string
	}{
		{nil, ""},
		{[]string{"totp", "webauthn"}, ""},
		{[]string{"webauthn"}, ""},
		{[]string{"webauthn", "webauthn"}, ""},
		{[]string{"sms"}, "admin_methods sms: not for the admin pages"},
		{[]string{"totp", "email"}, "admin_methods email: not for the admin pages"},
		{[]string{"passkey"}, `admin_methods "passkey": must be totp or webauthn`},
	} {
		app := &App{AdminMethods: tt.methods, AuditRetention: caddy.Duration(defaultAuditRetention), PhoneRegion: "JP"}
		err := app.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("admin_methods %q: %v, want %q", tt.methods, err, tt.err)
		}
	}
	for _, tt := range []struct {
		app      []string
		webAuthn bool
		want     []string
	}{
		{nil, false, []string{"totp"}},
		{nil, true, []string{"totp"}},
		{[]string{"webauthn", "totp"}, false, []string{"totp"}},
		{[]string{"webauthn", "totp"}, true, []string{"webauthn", "totp"}},
		{[]string{"webauthn"}, false, nil},
	} {
		h := &Handler{app: &App{AdminMethods: tt.app}}
		if tt.webAuthn {
			h.WebAuthn = &WebAuthn{}
		}
		if got := h.adminMethods(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("admin_methods %q, webauthn %v: the handler offers %q, want %q", tt.app, tt.webAuthn, got, tt.want)
		}
	}
}

func TestRuleProvisionKeepsConfig(t *testing.T) {
	rule := Rule{Paths: []string{"/Members/*"}, Except: []string{"/Members/Public/*"}}
	if err := rule.provision(testCaddyContext(t), &App{}, false); err != nil {
		t.Fatal(err)
	}
	// Protection is case-insensitive and covers the directory itself, but
	// the configuration as written (and as shown by the admin API) is left
	// alone: exceptions are matched in its case.
	if !reflect.DeepEqual(rule.Paths, []string{"/Members/*"}) || !reflect.DeepEqual(rule.Except, []string{"/Members/Public/*"}) {
		t.Errorf("config changed: %q %q", rule.Paths, rule.Except)
	}
	if !reflect.DeepEqual([]string(rule.paths), []string{"/members/*", "/members"}) {
		t.Errorf("protect matcher: %q, want the lower-cased patterns and the directory", rule.paths)
	}
}

func TestRuleFor(t *testing.T) {
	h := &Handler{Protect: []*Rule{
		{Paths: []string{"/members/*"}, Except: []string{"/members/public/*"}},
		{Paths: []string{"/members/*", "/admin/*"}, RememberDevice: "off"},
		{Paths: []string{"*.pdf"}},
	}}
	ctx := testCaddyContext(t)
	for i, rule := range h.Protect {
		if err := rule.provision(ctx, &App{}, false); err != nil {
			t.Fatalf("rule %d: %v", i, err)
		}
	}
	const refused = -2
	tests := []struct {
		path string
		want int // index of the rule, -1 for none, refused for errBadPath
	}{
		{"/members/page", 0},
		{"/members", 0},
		{"/members/", 0},
		{"/Members", 0},
		{"/Members/Public/x", 0}, // exceptions keep their case
		{"/members;/x", 0},
		{"/members;jsessionid=1/x", 0},
		{"/x/..;/members/x", 0},
		{"/members%5cx", 0},
		{`/members\x`, 0},
		{"/members./x", 0},
		{"/members%20/x", 0},
		{"/members.%20./x", 0},
		{"/members/%252e%252e/members/x", 0},
		{"/members/x;a=b", 0},
		{"/members/public;/x", refused}, // rule 0 as sent, rule 1 as Tomcat reads it
		{"/members/public/x;a=b", 1},
		{"/members%00/x", refused},
		{"/members/x%00", refused},
		{"/members/x%0a", refused},
		{"/members/%2500", refused},
		{"/members/.../x", refused},
		{"/members/.%20/x", refused},
		{"/members/%25252e", 0},         // a dot encoded three times
		{"/members/%2525252e", refused}, // and four
		{"/members/a%2Fb", 0},
		{"/members%2fx", 0},
		{"/members%2f..%2fadmin/x", 1},
		{"/docs/guide.pdf;x", 2},
		{"/docs/guide.pdf.", 2},
		{"/docs/guide.pdf%2520", 2},
		{"/membersonly.", -1},
		{"/public/a;b", -1},
		{"/public/%2525", -1}, // a literal percent sign, encoded twice
		{"/MEMBERS/Page", 0},
		{"/members/public/x", 1}, // excepted from the first, caught by the second
		{"/admin/users", 1},
		{"/Admin/users", 1},
		{"/docs/guide.pdf", 2},
		{"/docs/guide.PDF", 2},
		{"/", -1},
		{"/public/members/x", -1},
		{"/membersonly", -1},
		{"/public/../members/secret", 0},
		{"/members/./page", 0},
		{"//members/page", 0},
	}
	for _, tt := range tests {
		// Caddy's path matcher reads the request's replacer, which Caddy
		// always puts in the context.
		r := withReplacer(httptest.NewRequest(http.MethodGet, "http://club.example"+tt.path, nil), nil)
		got, err := h.ruleFor(r)
		if tt.want == refused {
			if err != errBadPath {
				t.Errorf("ruleFor(%q) = rule %d, %v; want errBadPath", tt.path, indexOf(h.Protect, got), err)
			}
			continue
		}
		want := (*Rule)(nil)
		if tt.want >= 0 {
			want = h.Protect[tt.want]
		}
		if got != want || err != nil {
			t.Errorf("ruleFor(%q) = rule %d, %v; want rule %d", tt.path, indexOf(h.Protect, got), err, tt.want)
		}
	}
	if got := h.policyFor(withReplacer(httptest.NewRequest(http.MethodGet, "/", nil), nil), "/admin/x?y=1"); got != &h.Protect[1].policy {
		t.Errorf("policyFor(/admin/x?y=1) = %+v, want rule 1's", got)
	}
	if got := h.policyFor(withReplacer(httptest.NewRequest(http.MethodGet, "/", nil), nil), "/elsewhere"); got != nil {
		t.Errorf("policyFor(/elsewhere) = %+v, want none", got)
	}
}

func indexOf(rules []*Rule, r *Rule) int {
	for i := range rules {
		if rules[i] == r {
			return i
		}
	}
	return -1
}

func TestHandlerValidate(t *testing.T) {
	valid := func() *Handler {
		h := &Handler{
			Prefix:          "/.2fa/",
			TopPage:         "/",
			Protect:         []*Rule{{Paths: []string{"/members/*"}, policy: flow.Policy{Reminder: defaultReminder}}},
			SessionIdle:     caddy.Duration(30 * time.Minute),
			SessionLifetime: caddy.Duration(12 * time.Hour),
			StepUp:          caddy.Duration(10 * time.Minute),
			Identity:        &Identity{Source: "header", Header: "{http.auth.user.id}"},
			app:             &App{},
			logger:          zap.NewNop(),
		}
		return h
	}
	tests := []struct {
		name    string
		edit    func(h *Handler)
		wantErr string // "" for valid
	}{
		{name: "defaults", edit: func(*Handler) {}},
		{name: "short prefix", edit: func(h *Handler) { h.Prefix = "/x/" }},
		{name: "login_url path", edit: func(h *Handler) { h.LoginURL = "/login?from=gate" }},
		{name: "logout_url path", edit: func(h *Handler) { h.LogoutURL = "/logout?from=gate" }},
		{name: "top_page path", edit: func(h *Handler) { h.TopPage = "/members/home" }},
		{name: "idle equals lifetime", edit: func(h *Handler) {
			h.SessionIdle, h.SessionLifetime = caddy.Duration(time.Hour), caddy.Duration(time.Hour)
		}},
		{name: "minimum idle", edit: func(h *Handler) { h.SessionIdle = caddy.Duration(time.Minute) }},
		{name: "maximum lifetime", edit: func(h *Handler) { h.SessionLifetime = caddy.Duration(30 * 24 * time.Hour) }},

		{name: "empty prefix", edit: func(h *Handler) { h.Prefix = "" }, wantErr: "prefix"},
		{name: "relative prefix", edit: func(h *Handler) { h.Prefix = ".2fa/" }, wantErr: "prefix"},
		{name: "prefix without trailing slash", edit: func(h *Handler) { h.Prefix = "/.2fa" }, wantErr: "prefix"},
		{name: "root prefix", edit: func(h *Handler) { h.Prefix = "/" }, wantErr: "prefix"},
		{name: "double slash prefix", edit: func(h *Handler) { h.Prefix = "//" }, wantErr: "prefix"},
		{name: "top_page absolute URL", edit: func(h *Handler) { h.TopPage = "https://evil.example/" }, wantErr: "top_page"},
		{name: "top_page protocol-relative", edit: func(h *Handler) { h.TopPage = "//evil.example/" }, wantErr: "top_page"},
		{name: "top_page relative", edit: func(h *Handler) { h.TopPage = "members" }, wantErr: "top_page"},
		{name: "top_page empty", edit: func(h *Handler) { h.TopPage = "" }, wantErr: "top_page"},
		{name: "login_url absolute URL", edit: func(h *Handler) { h.LoginURL = "https://club.example/login" }, wantErr: "login_url"},
		{name: "login_url backslash", edit: func(h *Handler) { h.LoginURL = "/\\evil.example/login" }, wantErr: "login_url"},
		{name: "login_url javascript", edit: func(h *Handler) { h.LoginURL = "javascript:alert(1)" }, wantErr: "login_url"},
		{name: "logout_url absolute URL", edit: func(h *Handler) { h.LogoutURL = "https://club.example/logout" }, wantErr: "logout_url"},
		{name: "logout_url protocol-relative", edit: func(h *Handler) { h.LogoutURL = "//evil.example/logout" }, wantErr: "logout_url"},
		{name: "logout_url backslash", edit: func(h *Handler) { h.LogoutURL = "/\\evil.example/logout" }, wantErr: "logout_url"},
		{name: "idle under 1m", edit: func(h *Handler) { h.SessionIdle = caddy.Duration(59 * time.Second) }, wantErr: "session_idle"},
		{name: "idle over lifetime", edit: func(h *Handler) {
			h.SessionIdle, h.SessionLifetime = caddy.Duration(2*time.Hour), caddy.Duration(time.Hour)
		}, wantErr: "session_idle"},
		{name: "lifetime over 30d", edit: func(h *Handler) { h.SessionLifetime = caddy.Duration(30*24*time.Hour + time.Second) }, wantErr: "session_lifetime"},
		{name: "no protect rules", edit: func(h *Handler) { h.Protect = nil }, wantErr: "protect"},
		{name: "step_up under 1m", edit: func(h *Handler) { h.StepUp = caddy.Duration(59 * time.Second) }, wantErr: "step_up"},
		{name: "step_up over 1h", edit: func(h *Handler) { h.StepUp = caddy.Duration(time.Hour + time.Second) }, wantErr: "step_up"},
		{name: "step_up 1h", edit: func(h *Handler) { h.StepUp = caddy.Duration(time.Hour) }},
		{name: "admin methods totp and webauthn, webauthn off", edit: func(h *Handler) {
			h.app.AdminMethods = []string{"totp", "webauthn"}
		}},
		{name: "admin methods webauthn, webauthn on", edit: func(h *Handler) {
			h.app.AdminMethods, h.WebAuthn = []string{"webauthn"}, &WebAuthn{}
		}},
		{name: "admin methods webauthn, webauthn off", edit: func(h *Handler) {
			h.app.AdminMethods = []string{"webauthn"}
		}, wantErr: "admin_methods webauthn (in the global two_factor option): needs webauthn on this handler"},
		{name: "methods webauthn, webauthn off", edit: func(h *Handler) {
			h.Protect = append(h.Protect, &Rule{Paths: []string{"/strong/*"}, Methods: []string{"webauthn"}, policy: flow.Policy{Reminder: defaultReminder}})
		}, wantErr: "protect[1]: methods webauthn: needs webauthn on this handler"},
		{name: "methods webauthn, webauthn on", edit: func(h *Handler) {
			h.WebAuthn = &WebAuthn{}
			h.Protect = append(h.Protect, &Rule{Paths: []string{"/strong/*"}, Methods: []string{"webauthn"}, policy: flow.Policy{Reminder: defaultReminder}})
		}},
		{name: "methods passkey", edit: func(h *Handler) {
			h.Protect[0].Methods = []string{"passkey"}
		}, wantErr: `protect[0]: methods "passkey": must be totp, webauthn, email or sms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := valid()
			tt.edit(h)
			err := h.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidIdentity(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"u-42", true},
		{"ann@club.example", true},
		{"会員-7", true},
		{"with space", true},
		{strings.Repeat("a", maxIdentityLength), true},
		{strings.Repeat("a", maxIdentityLength+1), false},
		{strings.Repeat("会", maxIdentityLength/3+1), false}, // the limit is in bytes
		{"", false},
		{"a\x00", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\rb", false},
		{"\x1f", false},
		{"a\x7f", false},
		{"a\u0085b", false},       // NEL
		{"admin\u202egnp", false}, // right-to-left override
		{"a\xffb", false},         // not UTF-8
	}
	for _, tt := range tests {
		if got := validIdentity(tt.id); got != tt.want {
			t.Errorf("validIdentity(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestJSONID(t *testing.T) {
	tests := []struct {
		raw     string
		want    string
		wantErr bool
	}{
		{raw: `"abc"`, want: "abc"},
		{raw: `"123"`, want: "123"},
		{raw: `123`, want: "123"},
		{raw: `-7`, want: "-7"},
		{raw: `0`, want: "0"},
		{raw: `12.5`, want: "12.5"},
		{raw: `98765432109876543210`, want: "98765432109876543210"}, // beyond int64 and float64 precision
		{raw: `"caf\u00e9"`, want: "café"},
		{raw: ``, wantErr: true},
		{raw: `null`, wantErr: true},
		{raw: `""`, wantErr: true},
		{raw: `"a\u0000"`, wantErr: true},
		{raw: `"a\nb"`, wantErr: true},
		{raw: `"` + strings.Repeat("x", maxIdentityLength+1) + `"`, wantErr: true},
		{raw: `true`, wantErr: true},
		{raw: `{}`, wantErr: true},
		{raw: `[1]`, wantErr: true},
		{raw: `["a"]`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := jsonID(json.RawMessage(tt.raw))
		if tt.wantErr {
			if err == nil {
				t.Errorf("jsonID(%.40s) = %q, want an error", tt.raw, got)
			} else if got != "" {
				t.Errorf("jsonID(%.40s) returned %q with error %v", tt.raw, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("jsonID(%s) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

func TestJSONIDLongNumber(t *testing.T) {
	raw := strings.Repeat("9", maxIdentityLength+1)
	got, err := jsonID(json.RawMessage(raw))
	if err == nil {
		t.Fatalf("%d-digit numeric id accepted (%d bytes); want an error", len(raw), len(got))
	}
	if got != "" {
		t.Errorf("returned %q with error %v", got, err)
	}
}

// realisticHeaders is what a browser sends for a page on a member site
// behind a proxy: twelve headers, none of them the gateway's.
func realisticHeaders() http.Header {
	return http.Header{
		"Accept":          {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Accept-Encoding": {"gzip, deflate, br, zstd"},
		"Accept-Language": {"ja,en-US;q=0.7,en;q=0.3"},
		"Cache-Control":   {"max-age=0"},
		"Connection":      {"keep-alive"},
		"Cookie":          {"sid=8f14e45fceea167a5a36dedd4bea2543; theme=dark; 2fa_session=AbCdEf"},
		"Referer":         {"https://club.example/members/"},
		"Sec-Fetch-Dest":  {"document"},
		"Sec-Fetch-Mode":  {"navigate"},
		"Sec-Fetch-Site":  {"same-origin"},
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"},
		"X-Forwarded-For": {"203.0.113.7"},
	}
}

func TestStripClientHeadersAllocatesNothing(t *testing.T) {
	h := realisticHeaders()
	allocs := testing.AllocsPerRun(100, func() { stripClientHeaders(h) })
	if allocs != 0 {
		t.Errorf("stripClientHeaders allocates %v times per call, want 0", allocs)
	}
	if len(h) != 12 {
		t.Errorf("%d headers left of 12", len(h))
	}
}

func BenchmarkStripClientHeaders(b *testing.B) {
	h := realisticHeaders()
	b.ReportAllocs()
	for b.Loop() {
		stripClientHeaders(h)
	}
	if len(h) != 12 {
		b.Fatalf("%d headers left of 12", len(h))
	}
}
