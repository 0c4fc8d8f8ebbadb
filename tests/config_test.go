package tests

import (
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Enrolments survive a restart with the same data; a reload shares the open
// database instead of waiting for its file lock.
func TestRestartKeepsEnrolments(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")

	// Reload: a new config while the old one runs.
	e2 := start(t, setup{dbPath: e.dbPath, clock: e.clock})
	b := e2.browser()
	b.login("alice")
	if r := b.get("/members/"); r.location() != "/.2fa/challenge?return_to=%2Fmembers%2F" {
		t.Fatalf("after reload: %d %q", r.status, r.location())
	}

	// Full stop, then start again.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	e3 := start(t, setup{dbPath: e.dbPath, clock: e.clock})
	b = e3.browser()
	b.login("alice")
	if r := b.get("/members/"); r.location() != "/.2fa/challenge?return_to=%2Fmembers%2F" {
		t.Fatalf("after restart: %d %q", r.status, r.location())
	}
	if r := b.verify(e3.code(secret, 0), "/members/", false); r.status != 303 {
		t.Fatalf("verify after restart: %d %s", r.status, r.body)
	}
}

// A wrong key never turns enrolled members into unenrolled ones: Caddy
// refuses the config.
func TestWrongKeyRefusesToLoad(t *testing.T) {
	e := start(t, setup{})
	enrolled(e, "alice")
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	other := e.caddyfile(setup{global: `keys "another-key-another-key-another-key-0123" ` + "\n\t\tstore embedded " + `"` + e.dbPath + `"`})
	err := load(other)
	if err == nil || !strings.Contains(err.Error(), "keys") || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("wrong key: %v", err)
	}
	// Rotation: the new key first, the old one kept.
	rotated := e.caddyfile(setup{global: `keys "another-key-another-key-another-key-0123" "` + testKey + `"` + "\n\t\tstore embedded " + `"` + e.dbPath + `"`})
	if err := load(rotated); err != nil {
		t.Fatalf("rotated keys: %v", err)
	}
	_ = caddy.Stop()
}

// Without keys or a store configured, a key is generated once, kept with
// mode 0600, and reused.
func TestGeneratedKey(t *testing.T) {
	// The data directory is this test binary's own; start it empty.
	if err := os.RemoveAll(filepath.Join(caddy.AppDataDir(), "two_factor")); err != nil {
		t.Fatal(err)
	}
	e := start(t, setup{global: "max_failures 5"})
	enrolled(e, "alice")
	path := filepath.Join(caddy.AppDataDir(), "two_factor", "key")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", info.Mode().Perm())
	}
	key, _ := os.ReadFile(path)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	e2 := start(t, setup{global: "max_failures 5", clock: e.clock})
	b := e2.browser()
	b.login("alice")
	if r := b.get("/members/"); r.location() != "/.2fa/challenge?return_to=%2Fmembers%2F" {
		t.Fatalf("after restart on the generated key: %q", r.location())
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(key) {
		t.Fatal("the generated key changed")
	}
}

// Bad configuration is refused with a message naming what is wrong.
func TestBadConfigRefused(t *testing.T) {
	e := &env{t: t, port: testnet.FreePort(t), siteURL: "http://127.0.0.1:1", echoURL: "http://127.0.0.1:2", dbPath: filepath.Join(t.TempDir(), "db"), logPath: filepath.Join(t.TempDir(), "log")}
	for _, tc := range []struct {
		name   string
		setup  setup
		expect string
	}{
		{"unknown option", setup{policy: defaultPolicy + "\n\tcolour blue\n"}, `unknown option "colour"`},
		{"unknown global option", setup{global: "frobnicate 1"}, `unknown option "frobnicate"`},
		{"bad duration", setup{policy: defaultPolicy + "\n\tsession_idle soon\n"}, "session_idle: bad duration"},
		{"bad remember", setup{policy: strings.Replace(defaultPolicy, "remember_device 30d", "remember_device 9000d", 1)}, "remember_device"},
		{"short key", setup{global: `keys "short"`}, "keys[0]: the key is 5 bytes"},
		{"unresolved key", setup{global: `keys {env.TWOFACTOR_TEST_UNSET_KEY}`}, "keys[0]"},
		{"bad path pattern", setup{policy: "identity header {http.auth.user.id}\n\tprotect members/*"}, `path pattern "members/*"`},
		{"escaped except pattern", setup{policy: "identity header {http.auth.user.id}\n\tprotect /* {\n\t\texcept /caf%C3%A9/*\n\t}"}, `except "/caf%C3%A9/*": write the path decoded`},
		{"unknown identity source", setup{policy: "identity ldap x\n\tprotect /x"}, `unknown source "ldap"`},
		{"no identity", setup{policy: "protect /x"}, "identity: required"},
		{"endpoint without cookie", setup{policy: "identity endpoint http://127.0.0.1:1/me\n\tprotect /x"}, "session_cookie: required"},
		{"relative endpoint", setup{policy: "identity endpoint /me {\n\t\tsession_cookie s\n\t}\n\tprotect /x"}, "absolute http or https URL"},
		{"no protected paths", setup{policy: "identity header {http.auth.user.id}"}, "no protected paths"},
		{"bad enrolment", setup{policy: "identity header {http.auth.user.id}\n\tprotect /x {\n\t\tenrolment sometimes\n\t}"}, `enrolment "sometimes"`},
		{"open redirect login_url", setup{policy: defaultPolicy + "\n\tlogin_url https://evil.example/\n"}, "login_url"},
		{"open redirect logout_url", setup{policy: defaultPolicy + "\n\tlogout_url https://evil.example/\n"}, "logout_url"},
		{"bad totp digits", setup{global: "totp_digits 7"}, "digits 7"},
		{"bad skew", setup{global: "totp_skew 5"}, "skew 5"},
		{"drift window too long", setup{global: "totp_drift_window 2h"}, "totp_drift_window 2h0m0s: must be between 0 (off) and 1h"},
		{"drift window negative", setup{global: "totp_drift_window -5m"}, "totp_drift_window -5m0s: must be between 0 (off) and 1h"},
		{"drift window inside the skew", setup{global: "totp_skew 2\n\t\ttotp_drift_window 45s"}, "totp_drift_window 45s: must be at least the accepted skew window (totp_skew × totp_period = 1m0s)"},
		{"repeated option", setup{policy: defaultPolicy + "\n\tprefix /a/\n\tprefix /b/\n"}, "prefix given twice"},
		{"sns for email", setup{global: "email sns {\n\t\t\tregion ap-northeast-1\n\t\t}"}, "cannot send email"},
		{"smtp for sms", setup{global: "sms smtp {\n\t\t\thost mail.example.com\n\t\t\tfrom a@example.com\n\t\t}"}, "cannot send SMS"},
		{"unknown sender", setup{global: "email pigeon"}, "pigeon"},
		{"mailbox without dir", setup{global: "email mailbox"}, "mailbox: expected the directory"},
		{"smtp without host", setup{global: "email smtp {\n\t\t\tfrom a@example.com\n\t\t}"}, "host"},
		{"smtp bad tls", setup{global: "email smtp {\n\t\t\thost mail.example.com\n\t\t\tfrom a@example.com\n\t\t\ttls maybe\n\t\t}"}, "tls"},
		{"sns without region", setup{global: "sms sns {\n\t\t\tsender_id Example\n\t\t}"}, "region"},
		{"method without sender", setup{policy: "identity header {http.auth.user.id}\n\tprotect /x {\n\t\tmethods sms\n\t}"}, "no sms sender"},
		{"unknown method", setup{policy: "identity header {http.auth.user.id}\n\tprotect /x {\n\t\tmethods fax\n\t}"}, `methods "fax": must be totp, webauthn, email or sms`},
		{"methods webauthn without webauthn", setup{policy: "identity header {http.auth.user.id}\n\tprotect /x {\n\t\tmethods webauthn\n\t}"}, "protect[0]: methods webauthn: needs webauthn on this handler"},
		{"admin_methods sms", setup{global: "admin_methods sms"}, "admin_methods sms: not for the admin pages, where a stolen password with the admin's mailbox or a swapped SIM would pass"},
		{"admin_methods email beside the app", setup{global: "admin_methods totp email"}, "admin_methods email: not for the admin pages"},
		{"admin_methods unknown", setup{global: "admin_methods passkey"}, `admin_methods "passkey": must be totp or webauthn`},
		{"admin_methods webauthn without webauthn", setup{global: "admin_methods webauthn"}, "admin_methods webauthn (in the global two_factor option): needs webauthn on this handler"},
		{"bad phone region", setup{global: "phone_region XX"}, "phone_region"},
		{"bad allowed region", setup{global: "phone_countries JP ZZ"}, "phone_countries"},
		{"long sms code ttl", setup{global: "sms_code_ttl 30m"}, "sms_code_ttl"},
		{"code attempts", setup{global: "code_attempts 11"}, "code_attempts 11"},
		{"max_lockout below lockout", setup{global: "lockout 1h\n\t\tmax_lockout 30m"}, "max_lockout 30m0s: must be between lockout (1h0m0s) and 168h"},
		{"max_lockout too long", setup{global: "max_lockout 200h"}, "max_lockout 200h0m0s"},
		{"reset_approval too short", setup{global: "reset_approval 5m"}, "reset_approval 5m0s: must be between 10m0s and 168h0m0s, or 0 for off"},
		{"reset_approval too long", setup{global: "reset_approval 8d"}, "reset_approval 192h0m0s: must be between"},
		{"reset_approval negative", setup{global: "reset_approval -1h"}, "reset_approval -1h0m0s: must be between"},
		{"bad id_case", setup{policy: "identity header {http.auth.user.id} {\n\t\tid_case lower\n\t}\n\tprotect /x"}, `id_case "lower": must be exact or fold`},
		{"short resend cooldown", setup{global: "resend_cooldown 1s"}, "resend_cooldown"},
		{"hourly cap", setup{global: "hourly_sends_per_user 1000"}, "hourly_sends_per_user"},
		{"member cache too small", setup{global: "member_cache_size 999"}, "member_cache_size 999: must be between 1000 and 10000000"},
		{"member cache not a number", setup{global: "member_cache_size lots"}, "member_cache_size"},
		{"identity cache too large", setup{policy: "identity endpoint http://127.0.0.1:1/me {\n\t\tsession_cookie s\n\t\tcache_size 10000001\n\t}\n\tprotect /x"}, "identity: cache_size 10000001: must be between 1000 and 10000000"},
		{"bad new_device_notice", setup{policy: defaultPolicy + "\n\tnew_device_notice sometimes\n"}, "new_device_notice"},
		{"bad trusted network", setup{policy: defaultPolicy + "\n\ttrusted_networks 10.0.0.0/33\n"}, "trusted_networks"},
		{"site_url with a path", setup{policy: defaultPolicy + "\n\tsite_url https://example.com/members\n"}, "site_url"},
		{"site_url not http", setup{policy: defaultPolicy + "\n\tsite_url ftp://example.com\n"}, "site_url"},
		{"bad step_up", setup{policy: defaultPolicy + "\n\tstep_up 2h\n"}, "step_up"},
		{"webauthn without site_url", setup{policy: defaultPolicy + "\n\twebauthn\n"}, "webauthn: needs site_url"},
		{"webauthn on plain http elsewhere", setup{policy: defaultPolicy + "\n\tsite_url http://members.example\n\twebauthn\n"}, `webauthn: webauthn_origins "http://members.example": must be https`},
		{"webauthn bad user_verification", setup{policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn {\n\t\tuser_verification always\n\t}\n"}, `webauthn: user_verification "always": must be preferred or required`},
		{"webauthn bad attestation", setup{policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn {\n\t\tattestation enterprise\n\t}\n"}, `webauthn: attestation "enterprise": must be none, indirect or direct`},
		{"webauthn short challenge_timeout", setup{policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn {\n\t\tchallenge_timeout 5s\n\t}\n"}, "webauthn: challenge_timeout 5s: must be between 30s and 10m"},
		{"webauthn bad aaguid", setup{policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn {\n\t\taaguids not-a-uuid\n\t}\n"}, `webauthn_aaguids "not-a-uuid"`},
		{"webauthn unknown option", setup{policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn {\n\t\tresident_key required\n\t}\n"}, `webauthn: unknown option "resident_key"`},
		{"webauthn on an IP address", setup{policy: defaultPolicy + "\n\tsite_url http://127.0.0.1:8080\n\twebauthn\n"}, `webauthn: site_url "http://127.0.0.1:8080": its host is the relying party ID, which must be a domain name`},
		{"webauthn public suffix", setup{policy: defaultPolicy + "\n\tsite_url https://github.io\n\twebauthn\n"}, "must be a registrable domain"},
		{"two handlers, two relying parties", setup{
			policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn\n",
			sites:  "\nhttp://127.0.0.1:1 {\n\ttwo_factor {\n\t\tidentity header {http.auth.user.id}\n\t\tprotect /x\n\t\tsite_url https://other.example\n\t\twebauthn\n\t}\n}\n",
		}, `handlers that enable webauthn share one relying party ID`},
		{"two handlers, two settings", setup{
			policy: defaultPolicy + "\n\tsite_url https://members.example\n\twebauthn\n",
			sites:  "\nhttp://127.0.0.1:1 {\n\ttwo_factor {\n\t\tidentity header {http.auth.user.id}\n\t\tprotect /x\n\t\tsite_url https://members.example:8443\n\t\twebauthn {\n\t\t\tuser_verification required\n\t\t}\n\t}\n}\n",
		}, `of another handler; handlers that enable webauthn share their settings`},
		{"redis without address", setup{global: "store redis {\n\t\t\tdb 1\n\t\t}"}, "redis addresses"},
		{"redis unknown option", setup{global: "store redis {\n\t\t\taddress 127.0.0.1:1\n\t\t\tcolour red\n\t\t}"}, `redis: unknown option "colour"`},
		{"redis ca_file without tls", setup{global: "store redis {\n\t\t\taddress 127.0.0.1:1\n\t\t\tca_file /nonexistent\n\t\t}"}, "needs tls"},
		{"redis db on a cluster", setup{global: "store redis {\n\t\t\taddress 127.0.0.1:1 127.0.0.1:2\n\t\t\tdb 2\n\t\t}"}, "a Cluster has only database 0"},
		{"redis sentinel password without sentinel", setup{global: "store redis {\n\t\t\taddress 127.0.0.1:1\n\t\t\tsentinel_password x\n\t\t}"}, "need master_name"},
		{"unknown admin role", setup{global: "admins {\n\t\t\talice admin\n\t\t}"}, `admins[0].role "admin": must be viewer, support or approver`},
		{"admin role in capitals", setup{global: "admins {\n\t\t\talice Approver\n\t\t}"}, `admins[0].role "Approver"`},
		{"admin listed twice", setup{global: "admins {\n\t\t\talice viewer\n\t\t\talice support\n\t\t}"}, "admins: alice given twice"},
		{"admins one member under fold", setup{global: "admins {\n\t\t\tAlice viewer\n\t\t\talice approver\n\t\t}", policy: "identity header {http.auth.user.id} {\n\t\tid_case fold\n\t}\n\tprotect /x"}, `admins[1].id "alice": the same member as "Alice" under identity id_case fold`},
		{"admin without a role", setup{global: "admins {\n\t\t\talice\n\t\t}"}, "admins: alice: expected one role"},
		{"role_header without from_identity", setup{policy: "identity header {http.auth.user.id} {\n\t\trole_header X-Role\n\t}\n\tprotect /x"}, "role_header: needs admin roles from the identity"},
		{"role_header with the endpoint", setup{global: "admins {\n\t\t\tfrom_identity\n\t\t}", policy: "identity endpoint http://127.0.0.1:1/me {\n\t\tsession_cookie s\n\t\trole_header X-Role\n\t}\n\tprotect /x"}, "role_header: only for source header"},
		{"role_header from the request", setup{global: "admins {\n\t\t\tfrom_identity\n\t\t}", policy: "identity header {http.auth.user.id} {\n\t\trole_header {http.request.header.X-Role}\n\t}\n\tprotect /x"}, "role_header \"{http.request.header.X-Role}\": the request's own values come from the client"},
		{"weekly report without email", setup{global: "weekly_report {\n\t\t\tto security@example.com\n\t\t}"}, "weekly_report.to: the report is sent by email: configure the email sender"},
		{"weekly report hour", setup{global: "weekly_report {\n\t\t\thour 24\n\t\t}"}, "weekly_report.hour 24: must be 0 to 23 (UTC)"},
		{"weekly report threshold", setup{global: "weekly_report {\n\t\t\tnon_delivery_threshold 5\n\t\t}"}, "weekly_report.non_delivery_threshold 5: must be 0 to 1"},
		{"audit retention too short", setup{global: "audit_retention 1h"}, "audit_retention 1h0m0s: must be between 1d and 3650d"},
		{"audit retention too long", setup{global: "audit_retention 4000d"}, "audit_retention"},
		{"instance name too long", setup{global: "instance_name " + strings.Repeat("x", 201)}, "instance_name"},
		{"redis negative timeout", setup{global: "store redis {\n\t\t\taddress 127.0.0.1:1\n\t\t\ttimeout -1s\n\t\t}"}, "must be positive"},
	} {
		err := load(e.caddyfile(tc.setup))
		if err == nil || !strings.Contains(err.Error(), tc.expect) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.expect)
		}
	}
	_ = caddy.Stop()
}

// The example configuration adapts, and the JSON keeps its meaning.
func TestCaddyfileExampleAdapts(t *testing.T) {
	body, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Fatalf("warnings: %v", warnings)
	}
	for _, want := range []string{
		`"handler":"two_factor"`, `"source":"endpoint"`, `"url":"http://127.0.0.1:9080/api/me"`,
		`"session_cookie":"member_session"`, `"paths":["/members/*"]`, `"remember_device":"off"`,
		`"login_url":"/login"`, `"site_name":"Demo Members"`, `"methods":["totp"]`,
		`"email":{"dir":"./demo-state/mailbox","sender":"mailbox"}`, `"phone_countries":["JP","US","GB"]`,
		`"admins":[{"id":"admin","role":"approver"}]`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted JSON lacks %s:\n%s", want, out)
		}
	}
	// two_factor runs after forward_auth and before reverse_proxy.
	s := string(out)
	if i, j := strings.Index(s, `"handler":"two_factor"`), strings.Index(s, `"handler":"reverse_proxy"`); i < 0 || j < 0 || i > j {
		t.Errorf("two_factor is not ordered before reverse_proxy:\n%s", s)
	}
}
