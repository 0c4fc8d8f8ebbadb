package twofactor

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func parseHandler(t *testing.T, input string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return h, err
}

func TestUnmarshalCaddyfileFullBlock(t *testing.T) {
	h, err := parseHandler(t, `two_factor {
		identity endpoint https://club.example/api/me {
			session_cookie club_sid
			cache 45s
			timeout 2s
		}
		protect /members/* /account/* {
			except /members/public/* /members/help
			enrolment optional
			remember_device 14d
			reminder 3d
		}
		protect /admin/* {
			enrolment required
			remember_device off
		}
		prefix /_mfa/
		login_url /login?from=gate
		logout_url /logout
		top_page /members/
		site_name "Example Club"
		session_idle 20m
		session_lifetime 8h
		templates /etc/caddy/2fa-templates
	}`)
	if err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}

	wantID := &Identity{
		Source:        "endpoint",
		URL:           "https://club.example/api/me",
		SessionCookie: "club_sid",
		Cache:         caddy.Duration(45 * time.Second),
		Timeout:       caddy.Duration(2 * time.Second),
	}
	if !reflect.DeepEqual(h.Identity, wantID) {
		t.Errorf("Identity = %+v, want %+v", h.Identity, wantID)
	}

	wantRules := []*Rule{
		{
			Paths:          []string{"/members/*", "/account/*"},
			Except:         []string{"/members/public/*", "/members/help"},
			Enrolment:      "optional",
			RememberDevice: "14d",
			Reminder:       caddy.Duration(72 * time.Hour),
		},
		{
			Paths:          []string{"/admin/*"},
			Enrolment:      "required",
			RememberDevice: "off",
		},
	}
	if len(h.Protect) != len(wantRules) {
		t.Fatalf("got %d rules, want %d", len(h.Protect), len(wantRules))
	}
	for i := range wantRules {
		if !reflect.DeepEqual(h.Protect[i], wantRules[i]) {
			t.Errorf("Protect[%d] = %+v, want %+v", i, h.Protect[i], wantRules[i])
		}
	}

	checks := []struct {
		field     string
		got, want any
	}{
		{"Prefix", h.Prefix, "/_mfa/"},
		{"LoginURL", h.LoginURL, "/login?from=gate"},
		{"LogoutURL", h.LogoutURL, "/logout"},
		{"TopPage", h.TopPage, "/members/"},
		{"SiteName", h.SiteName, "Example Club"},
		{"SessionIdle", h.SessionIdle, caddy.Duration(20 * time.Minute)},
		{"SessionLifetime", h.SessionLifetime, caddy.Duration(8 * time.Hour)},
		{"Templates", h.Templates, "/etc/caddy/2fa-templates"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestUnmarshalCaddyfileHeaderPlaceholder(t *testing.T) {
	h, err := parseHandler(t, `two_factor {
		identity header {http.auth.user.id} {
			session_cookie sid
		}
		protect /members/*
	}`)
	if err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}
	want := &Identity{Source: "header", Header: "{http.auth.user.id}", SessionCookie: "sid"}
	if !reflect.DeepEqual(h.Identity, want) {
		t.Errorf("Identity = %+v, want %+v", h.Identity, want)
	}
	if len(h.Protect) != 1 || !reflect.DeepEqual(h.Protect[0].Paths, []string{"/members/*"}) {
		t.Errorf("Protect = %+v", h.Protect)
	}
}

func TestUnmarshalCaddyfileProtectShorthand(t *testing.T) {
	h, err := parseHandler(t, `two_factor {
		identity header X-Member-Id
		protect /a/* /b/*
		prefix /.2fa/
	}`)
	if err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}
	if len(h.Protect) != 1 {
		t.Fatalf("got %d rules, want 1", len(h.Protect))
	}
	want := &Rule{Paths: []string{"/a/*", "/b/*"}}
	if !reflect.DeepEqual(h.Protect[0], want) {
		t.Errorf("rule = %+v, want %+v", h.Protect[0], want)
	}
	if h.Identity == nil || h.Identity.Source != "header" || h.Identity.Header != "X-Member-Id" {
		t.Errorf("Identity = %+v", h.Identity)
	}
	// The option after the shorthand rule must not be swallowed by it.
	if h.Prefix != "/.2fa/" {
		t.Errorf("Prefix = %q, want /.2fa/", h.Prefix)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // substring of the error
	}{
		{"argument after directive", "two_factor extra {\n}", "wrong argument count"},
		{"unknown option", "two_factor {\n\tbogus 1\n}", `unknown option "bogus"`},
		{"unknown identity source", "two_factor {\n\tidentity ldap cn=x\n}", `unknown source "ldap"`},
		{"identity without source", "two_factor {\n\tidentity\n}", "identity: expected a source"},
		{"endpoint without url", "two_factor {\n\tidentity endpoint\n}", "identity endpoint: expected the URL"},
		{"header without name", "two_factor {\n\tidentity header\n}", "identity header: expected a header name"},
		{"identity extra args", "two_factor {\n\tidentity endpoint https://a/ https://b/\n}", "wrong argument count"},
		{"identity twice", "two_factor {\n\tidentity header X-A\n\tidentity header X-B\n}", "identity given twice"},
		{"prefix twice", "two_factor {\n\tprefix /a/\n\tprefix /b/\n}", "prefix given twice"},
		{"top_page twice", "two_factor {\n\ttop_page /\n\ttop_page /x\n}", "top_page given twice"},
		{"prefix missing value", "two_factor {\n\tprefix\n}", "prefix: expected a value"},
		{"login_url missing value", "two_factor {\n\tlogin_url\n}", "login_url: expected a value"},
		{"logout_url missing value", "two_factor {\n\tlogout_url\n}", "logout_url: expected a value"},
		{"site_name extra args", "two_factor {\n\tsite_name Example Club\n}", "site_name: expected one value"},
		{"templates extra args", "two_factor {\n\ttemplates /a /b\n}", "templates: expected one value"},
		{"session_idle missing", "two_factor {\n\tsession_idle\n}", "session_idle: expected a value"},
		{"session_idle bad", "two_factor {\n\tsession_idle soon\n}", `session_idle: bad duration "soon"`},
		{"session_lifetime bad", "two_factor {\n\tsession_lifetime 12x\n}", `session_lifetime: bad duration "12x"`},
		{"protect without paths", "two_factor {\n\tprotect\n}", "protect: expected at least one path pattern"},
		{"protect block without paths", "two_factor {\n\tprotect {\n\t\tenrolment optional\n\t}\n}", "protect: expected at least one path pattern"},
		{"except without paths", "two_factor {\n\tprotect /a/* {\n\t\texcept\n\t}\n}", "except needs at least one path pattern"},
		{"unknown identity option", "two_factor {\n\tidentity endpoint https://a/me {\n\t\tcookie sid\n\t}\n}", `identity: unknown option "cookie"`},
		{"identity option twice", "two_factor {\n\tidentity endpoint https://a/me {\n\t\tcache 1s\n\t\tcache 2s\n\t}\n}", "identity: cache given twice"},
		{"identity cache bad", "two_factor {\n\tidentity endpoint https://a/me {\n\t\tcache long\n\t}\n}", `cache: bad duration "long"`},
		{"identity timeout missing", "two_factor {\n\tidentity endpoint https://a/me {\n\t\ttimeout\n\t}\n}", "timeout: expected a value"},
		{"session_cookie extra", "two_factor {\n\tidentity endpoint https://a/me {\n\t\tsession_cookie a b\n\t}\n}", "session_cookie: expected one value"},
		{"unknown protect option", "two_factor {\n\tprotect /a/* {\n\t\tremember 1d\n\t}\n}", `protect: unknown option "remember"`},
		{"protect option twice", "two_factor {\n\tprotect /a/* {\n\t\tenrolment optional\n\t\tenrolment required\n\t}\n}", "protect: enrolment given twice"},
		{"reminder bad", "two_factor {\n\tprotect /a/* {\n\t\treminder weekly\n\t}\n}", `reminder: bad duration "weekly"`},
		{"remember_device missing", "two_factor {\n\tprotect /a/* {\n\t\tremember_device\n\t}\n}", "remember_device: expected a value"},
		// remember_device is parsed and range-checked at adapt time.
		{"remember_device not a duration", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 3x\n\t}\n}", `protect: remember_device "3x": not a duration or off`},
		{"remember_device under 1m", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 30s\n\t}\n}", "remember_device 30s: must be between 1m and 400d, or off"},
		{"remember_device over 400d", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 401d\n\t}\n}", "remember_device 401d: must be between 1m and 400d"},
		{"remember_device Off", "two_factor {\n\tprotect /a/* {\n\t\tremember_device Off\n\t}\n}", `remember_device "Off"`},
		{"enrolment no value", "two_factor {\n\tprotect /a/* {\n\t\tenrolment\n\t}\n}", "protect: enrolment: expected required, optional, required grace <duration> or required from <date>"},
		{"enrolment two values", "two_factor {\n\tprotect /a/* {\n\t\tenrolment required grace\n\t}\n}", "protect: enrolment: expected required, optional"},
		{"enrolment optional grace", "two_factor {\n\tprotect /a/* {\n\t\tenrolment optional grace 14d\n\t}\n}", "protect: enrolment optional grace: a deadline needs enrolment required"},
		{"enrolment required until", "two_factor {\n\tprotect /a/* {\n\t\tenrolment required until 2027-01-15\n\t}\n}", "protect: enrolment required until: expected grace <duration> or from <date>"},
		{"enrolment grace bad", "two_factor {\n\tprotect /a/* {\n\t\tenrolment required grace fortnight\n\t}\n}", `protect: enrolment required grace: bad duration "fortnight"`},
		{"enrolment from bad", "two_factor {\n\tprotect /a/* {\n\t\tenrolment required from 15/01/2027\n\t}\n}", `protect: enrolment_from "15/01/2027": must be a date, like 2027-01-15`},
		{"enrolment from no zone", "two_factor {\n\tprotect /a/* {\n\t\tenrolment required from 2027-01-15T09:00:00\n\t}\n}", `enrolment_from "2027-01-15T09:00:00"`},
		{"networks without ranges", "two_factor {\n\tprotect /a/* {\n\t\tnetworks {\n\t\t\tsecond_factor skip\n\t\t}\n\t}\n}", "protect: networks: expected at least one address range"},
		{"networks unknown option", "two_factor {\n\tprotect /a/* {\n\t\tnetworks 192.0.2.0/24 {\n\t\t\tpaths /b/*\n\t\t}\n\t}\n}", `networks: unknown option "paths"`},
		{"networks option twice", "two_factor {\n\tprotect /a/* {\n\t\tnetworks 192.0.2.0/24 {\n\t\t\tsecond_factor skip\n\t\t\tsecond_factor required\n\t\t}\n\t}\n}", "networks: second_factor given twice"},
		{"networks deadline", "two_factor {\n\tprotect /a/* {\n\t\tnetworks 192.0.2.0/24 {\n\t\t\tenrolment required grace 14d\n\t\t}\n\t}\n}", "networks: enrolment: expected required or optional (a deadline, grace or from, is the rule's)"},
		{"networks second_factor missing", "two_factor {\n\tprotect /a/* {\n\t\tnetworks 192.0.2.0/24 {\n\t\t\tsecond_factor\n\t\t}\n\t}\n}", "second_factor: expected a value"},
		{"networks methods missing", "two_factor {\n\tprotect /a/* {\n\t\tnetworks 192.0.2.0/24 {\n\t\t\tmethods\n\t\t}\n\t}\n}", "networks: methods needs at least one"},
		{"networks remember_device bad", "two_factor {\n\tprotect /a/* {\n\t\tnetworks 192.0.2.0/24 {\n\t\t\tremember_device 30s\n\t\t}\n\t}\n}", "networks: remember_device 30s: must be between 1m and 400d"},
		{"remember_device unknown sub-option", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 30d {\n\t\t\trecheck\n\t\t}\n\t}\n}", `remember_device: unknown option "recheck" (only recheck_new_network)`},
		{"recheck bad value", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 30d {\n\t\t\trecheck_new_network yes\n\t\t}\n\t}\n}", `recheck_new_network "yes": expected on or off`},
		{"recheck two values", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 30d {\n\t\t\trecheck_new_network on off\n\t\t}\n\t}\n}", "wrong argument count"},
		{"recheck twice", "two_factor {\n\tprotect /a/* {\n\t\tremember_device 30d {\n\t\t\trecheck_new_network\n\t\t\trecheck_new_network\n\t\t}\n\t}\n}", "remember_device: recheck_new_network given twice"},
		{"enrolment from no such day", "two_factor {\n\tprotect /a/* {\n\t\tenrolment required from 2027-02-30\n\t}\n}", `enrolment_from "2027-02-30"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseHandler(t, tt.input)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// parseGlobal runs the global option parser and decodes the App it built.
func parseGlobal(t *testing.T, input string) (*App, map[string]any, error) {
	t.Helper()
	v, err := parseGlobalOption(caddyfile.NewTestDispenser(input), nil)
	if err != nil {
		return nil, nil, err
	}
	app, ok := v.(httpcaddyfile.App)
	if !ok {
		t.Fatalf("parseGlobalOption returned %T, want httpcaddyfile.App", v)
	}
	if app.Name != "two_factor" {
		t.Errorf("app name = %q, want two_factor", app.Name)
	}
	var out App
	if err := json.Unmarshal(app.Value, &out); err != nil {
		t.Fatalf("decoding app JSON %s: %v", app.Value, err)
	}
	var store map[string]any
	if out.StoreRaw != nil {
		if err := json.Unmarshal(out.StoreRaw, &store); err != nil {
			t.Fatalf("decoding store JSON %s: %v", out.StoreRaw, err)
		}
	}
	return &out, store, nil
}

func TestParseGlobalOption(t *testing.T) {
	app, store, err := parseGlobal(t, `two_factor {
		keys {env.TWOFA_KEY} {file./etc/caddy/old.key} literal-older-key
		store embedded /var/lib/caddy/2fa.db
		totp_period 60s
		totp_skew 2
		totp_digits 8
		totp_drift_window 20m
		max_failures 7
		max_address_failures 50
		failure_window 30m
		lockout 1h
		enrolment_timeout 5m
		reset_approval 2d
		admin_methods webauthn totp
	}`)
	if err != nil {
		t.Fatalf("parseGlobalOption: %v", err)
	}
	wantKeys := []string{"{env.TWOFA_KEY}", "{file./etc/caddy/old.key}", "literal-older-key"}
	if !reflect.DeepEqual(app.Keys, wantKeys) {
		t.Errorf("Keys = %q, want %q", app.Keys, wantKeys)
	}
	wantStore := map[string]any{"type": "embedded", "path": "/var/lib/caddy/2fa.db"}
	if !reflect.DeepEqual(store, wantStore) {
		t.Errorf("store = %v, want %v", store, wantStore)
	}
	if !reflect.DeepEqual(app.AdminMethods, []string{"webauthn", "totp"}) {
		t.Errorf("AdminMethods = %q", app.AdminMethods)
	}
	if off, _, err := parseGlobal(t, "two_factor {\n\tmax_address_failures off\n}"); err != nil || off.MaxAddressFailures != -1 {
		t.Errorf("max_address_failures off: %v, %d", err, off.MaxAddressFailures)
	}
	if off, _, err := parseGlobal(t, "two_factor {\n\treset_approval off\n}"); err != nil || off.ResetApproval != 0 {
		t.Errorf("reset_approval off: %v, %v", err, off.ResetApproval)
	}
	if app.TOTPSkew == nil || *app.TOTPSkew != 2 {
		t.Errorf("TOTPSkew = %v, want 2", app.TOTPSkew)
	}
	if app.TOTPDriftWindow == nil || *app.TOTPDriftWindow != caddy.Duration(20*time.Minute) {
		t.Errorf("TOTPDriftWindow = %v, want 20m", app.TOTPDriftWindow)
	}
	// off must survive the JSON round trip as an explicit 0: absent is
	// the default of 10m.
	if off, _, err := parseGlobal(t, "two_factor {\n\ttotp_drift_window off\n}"); err != nil || off.TOTPDriftWindow == nil || *off.TOTPDriftWindow != 0 {
		t.Errorf("totp_drift_window off: %v, %v", err, off.TOTPDriftWindow)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"TOTPPeriod", app.TOTPPeriod, caddy.Duration(time.Minute)},
		{"TOTPDigits", app.TOTPDigits, 8},
		{"MaxFailures", app.MaxFailures, 7},
		{"MaxAddressFailures", app.MaxAddressFailures, 50},
		{"FailureWindow", app.FailureWindow, caddy.Duration(30 * time.Minute)},
		{"Lockout", app.Lockout, caddy.Duration(time.Hour)},
		{"EnrolmentTimeout", app.EnrolmentTimeout, caddy.Duration(5 * time.Minute)},
		{"ResetApproval", app.ResetApproval, caddy.Duration(48 * time.Hour)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestParseGlobalOptionStoreWithoutPathAndZeroSkew(t *testing.T) {
	app, store, err := parseGlobal(t, `two_factor {
		store embedded
		totp_skew 0
		lockout 2m
	}`)
	if err != nil {
		t.Fatalf("parseGlobalOption: %v", err)
	}
	wantStore := map[string]any{"type": "embedded"}
	if !reflect.DeepEqual(store, wantStore) {
		t.Errorf("store = %v, want %v", store, wantStore)
	}
	// An explicit 0 must survive the JSON round trip: it means "no skew",
	// which differs from the default of 1.
	if app.TOTPSkew == nil || *app.TOTPSkew != 0 {
		t.Errorf("TOTPSkew = %v, want explicit 0", app.TOTPSkew)
	}
	// The option after store must still be parsed.
	if app.Lockout != caddy.Duration(2*time.Minute) {
		t.Errorf("Lockout = %v, want 2m", app.Lockout)
	}
	if len(app.Keys) != 0 {
		t.Errorf("Keys = %q, want none", app.Keys)
	}
}

func TestParseGlobalOptionEmptyBlock(t *testing.T) {
	app, store, err := parseGlobal(t, "two_factor")
	if err != nil {
		t.Fatalf("parseGlobalOption: %v", err)
	}
	if store != nil || app.TOTPSkew != nil || app.MaxFailures != 0 || len(app.Keys) != 0 {
		t.Errorf("empty option produced settings: %+v store=%v", app, store)
	}
}

func TestParseGlobalOptionErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"argument", "two_factor extra", "wrong argument count"},
		{"unknown option", "two_factor {\n\tkey abc\n}", `unknown option "key"`},
		{"repeated option", "two_factor {\n\tlockout 1m\n\tlockout 2m\n}", "lockout given twice"},
		{"repeated keys", "two_factor {\n\tkeys a\n\tkeys b\n}", "keys given twice"},
		{"keys without values", "two_factor {\n\tkeys\n}", "keys: at least one key is required"},
		{"bad number", "two_factor {\n\tmax_failures five\n}", `max_failures: bad number "five"`},
		{"bad skew", "two_factor {\n\ttotp_skew 1.5\n}", `totp_skew: bad number "1.5"`},
		{"bad drift window", "two_factor {\n\ttotp_drift_window soon\n}", `totp_drift_window: bad duration "soon"`},
		{"bad digits", "two_factor {\n\ttotp_digits six\n}", `totp_digits: bad number "six"`},
		{"missing number", "two_factor {\n\tmax_address_failures\n}", "max_address_failures: expected a number or off"},
		{"address limit zero", "two_factor {\n\tmax_address_failures 0\n}", `max_address_failures: bad number "0"`},
		{"address limit word", "two_factor {\n\tmax_address_failures none\n}", `max_address_failures: bad number "none"`},
		{"extra number", "two_factor {\n\ttotp_digits 6 8\n}", "totp_digits: expected one value"},
		{"bad duration", "two_factor {\n\tfailure_window forever\n}", `failure_window: bad duration "forever"`},
		{"bad period", "two_factor {\n\ttotp_period 30\n}", `totp_period: bad duration "30"`},
		{"bad enrolment timeout", "two_factor {\n\tenrolment_timeout soon\n}", `enrolment_timeout: bad duration "soon"`},
		{"bad reset approval", "two_factor {\n\treset_approval never\n}", `reset_approval: bad duration "never"`},
		{"reset approval without a value", "two_factor {\n\treset_approval\n}", "reset_approval"},
		{"admin methods sms", "two_factor {\n\tadmin_methods totp sms\n}", "admin_methods sms: not for the admin pages"},
		{"admin methods unknown", "two_factor {\n\tadmin_methods key\n}", `admin_methods "key": must be totp or webauthn`},
		{"admin methods empty", "two_factor {\n\tadmin_methods\n}", "admin_methods: expected totp, webauthn or both"},
		{"store without type", "two_factor {\n\tstore\n}", "wrong argument count"},
		{"store unknown type", "two_factor {\n\tstore memcached\n}", "two_factor.stores.memcached"},
		{"store extra args", "two_factor {\n\tstore embedded /a /b\n}", "wrong argument count"},
		{"store block option", "two_factor {\n\tstore embedded /a {\n\t\tsync off\n\t}\n}", `store embedded: unknown option "sync"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseGlobalOption(caddyfile.NewTestDispenser(tt.input), nil)
			if err == nil {
				t.Fatalf("no error (got %v), want one containing %q", v, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// Both forms of an enrolment deadline land in the rule's JSON fields, and
// provisioning reads them: a date at 00:00 UTC, a time with its zone.
func TestUnmarshalEnrolmentDeadline(t *testing.T) {
	h, err := parseHandler(t, `two_factor {
		protect /members/* {
			enrolment required grace 14d
		}
		protect /shop/* {
			enrolment required from 2027-01-15
		}
		protect /club/* {
			enrolment required from 2027-01-15T09:00:00+09:00
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if r := h.Protect[0]; r.Enrolment != "required" || r.EnrolmentGrace != caddy.Duration(14*24*time.Hour) || r.EnrolmentFrom != "" {
		t.Errorf("grace rule: %+v", r)
	}
	for i, want := range []time.Time{time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)} {
		r := h.Protect[i+1]
		d, err := r.deadline()
		if err != nil || d == nil || !d.From.Equal(want) || d.Grace != 0 {
			t.Errorf("date rule %d (%q): %+v, %v", i, r.EnrolmentFrom, d, err)
		}
	}
}

// Bad deadlines in JSON are refused at provisioning, naming the field.
func TestRuleDeadlineErrors(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{EnrolmentGrace: caddy.Duration(14 * 24 * time.Hour), EnrolmentFrom: "2027-01-15"}, "enrolment_grace, enrolment_from: give one or the other, not both"},
		{Rule{Enrolment: "optional", EnrolmentGrace: caddy.Duration(time.Hour)}, "enrolment_grace: needs enrolment required"},
		{Rule{Enrolment: "optional", EnrolmentFrom: "2027-01-15"}, "enrolment_from: needs enrolment required"},
		{Rule{EnrolmentGrace: caddy.Duration(59 * time.Minute)}, "enrolment_grace 59m0s: must be between 1h and 400d"},
		{Rule{EnrolmentGrace: caddy.Duration(401 * 24 * time.Hour)}, "enrolment_grace 9624h0m0s: must be between 1h and 400d"},
		{Rule{EnrolmentGrace: caddy.Duration(-time.Hour)}, "enrolment_grace -1h0m0s: must be between 1h and 400d"},
		{Rule{EnrolmentFrom: "soon"}, `enrolment_from "soon": must be a date`},
		{Rule{EnrolmentFrom: "1999-12-31"}, `enrolment_from "1999-12-31"`},
	} {
		tc.rule.Paths = []string{"/x/*"}
		if d, err := tc.rule.deadline(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, %v; want an error containing %q", tc.rule, d, err, tc.want)
		}
	}
	if d, err := (&Rule{Paths: []string{"/x/*"}, Enrolment: "required"}).deadline(); d != nil || err != nil {
		t.Errorf("no deadline: %+v, %v", d, err)
	}
}

// networks blocks may repeat, each with its own overrides; the rule's
// recheck sits under its remember_device.
func TestUnmarshalNetworks(t *testing.T) {
	h, err := parseHandler(t, `two_factor {
	protect /staff/* {
		remember_device 30d {
			recheck_new_network
		}
		networks 192.0.2.0/24 2001:db8:10::/48 {
			second_factor skip
			remember_device off
		}
		networks 198.51.100.0/24 {
			methods totp
			enrolment optional
			reminder 1d
			remember_device 1d {
				recheck_new_network off
			}
		}
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	rule := h.Protect[0]
	if rule.RememberDevice != "30d" || !rule.RecheckNewNetwork || len(rule.Networks) != 2 {
		t.Fatalf("rule %+v", rule)
	}
	want := []NetworkPolicy{
		{Ranges: []string{"192.0.2.0/24", "2001:db8:10::/48"}, SecondFactor: "skip", RememberDevice: "off"},
		{Ranges: []string{"198.51.100.0/24"}, Methods: []string{"totp"}, Enrolment: "optional", Reminder: caddy.Duration(24 * time.Hour),
			RememberDevice: "1d", RecheckNewNetwork: new(bool)},
	}
	for i, n := range rule.Networks {
		if !reflect.DeepEqual(*n, want[i]) {
			t.Errorf("networks[%d] = %+v, want %+v", i, *n, want[i])
		}
	}
}
