package pages

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	texttemplate "text/template"
	"text/template/parse"
	"time"
)

// dynamicKeys are catalog keys the templates receive in fields (Error,
// Title, Message, LinkLabel, Notice) from the gateway's handlers.
var dynamicKeys = []string{
	// errors and messages
	"code_incorrect", "code_malformed", "locked", "csrf_failed", "sign_in_first", "unavailable",
	"enrol_expired", "signed_out", "not_found", "method_not_allowed", "bad_request",
	"second_factor_required", "too_many_attempts",
	"code_clock_fast", "code_clock_fast_one", "code_clock_slow", "code_clock_slow_one", "clock_drift_advice",
	// codes by email and SMS, several methods
	"confirm_remove", "last_method", "method_removed", "new_codes_offered", "devices_forgotten",
	"activity_verified", "activity_failed", "activity_added", "activity_removed", "activity_codes",
	"activity_remembered", "activity_forgotten", "activity_locked", "activity_signed_out",
	"activity_new_browser", "activity_default", "activity_unlocked", "activity_admin_reset", "activity_admin_reset_requested", "activity_admin_reset_withdrawn", "activity_admin_devices", "activity_admin_sessions", "activity_other", "method_name_recovery",
	"code_rejected", "recovery_malformed", "send_failed", "no_email_address", "email_invalid", "phone_invalid",
	"phone_not_mobile", "phone_country", "method_unavailable", "resend_wait", "too_many_codes",
	"sms_unavailable",
	// headings
	"error_title", "title_challenge", "title_enrol", "title_remind", "title_logout",
	"title_signed_out", "title_locked", "title_unavailable", "title_sign_in", "title_not_found",
	"title_too_many", "title_wait", "title_methods",
	// link labels
	"continue", "back_to_site",
	// notices
	"recovery_replaced", "recovery_renew_required",
	// admin pages
	"title_forbidden", "forbidden", "admin_role_too_low", "admin_needs_app", "admin_add_app", "form_too_large",
	"admin_bad_field", "admin_no_member", "admin_no_record", "admin_reason_required", "admin_reason_too_long",
	"admin_confirm_reset", "admin_address_invalid", "admin_address_unlocked", "admin_done_unlock", "admin_done_devices",
	"admin_done_sessions", "admin_done_reset", "admin_reconcile_empty", "admin_reconcile_too_many", "admin_reconcile_unreadable",
	// passkeys and security keys
	"passkey_name_invalid", "passkey_removed", "admin_passkey_last_needs_approval", "passkey_renamed", "method_added_webauthn", "passkey_default_name",
	"passkey_default_name_on", "passkey_kind_synced", "passkey_kind_device", "passkey_kind_phone", "passkey_kind_key",
}

func newRenderer(t *testing.T, dir string) *Renderer {
	t.Helper()
	r, err := New(dir)
	if err != nil {
		t.Fatalf("New(%q): %v", dir, err)
	}
	return r
}

func render(t *testing.T, r *Renderer, name string, p *Page, secure bool) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := r.Render(rec, http.StatusOK, name, p, secure); err != nil {
		t.Fatalf("Render(%s): %v", name, err)
	}
	return rec
}

// fullPage sets every field, so every branch that depends on one shows.
func fullPage(lang string) *Page {
	return &Page{
		Lang: lang, SiteName: "Members", Prefix: "/.2fa/", CSRF: "csrf-token-value", ReturnTo: "/members/page?x=1",
		Error: "locked", ErrorArgs: []any{Wait(5 * time.Minute)},
		ShowRemember: true, RememberDays: 30,
		Method: "email", Methods: options(), SentTo: "a***@example.com", CodeSent: true, ResendIn: 30,
		CanAdd: true, NotAllowedHere: true, Address: "alice@example.com", Regions: "JP, US", Region: "JP",
		QRCode: "data:image/png;base64,iVBORw0KGgo=", OTPAuthURI: "otpauth://totp/Members:alice?secret=JBSWY3DPEHPK3PXP",
		Secret: "JBSWY3DPEHPK3PXP", Issuer: "Members", Account: "alice@example.com",
		Title: "title_locked", Message: "locked", MessageArgs: []any{Wait(7 * time.Minute)}, Status: 429,
		Link: "/members/", LinkLabel: "back_to_site",
		RecoveryCodes: recoveryCodes(), RecoveryDownload: recoveryDownload(recoveryCodes()),
		RecoveryLeft: 2, HasRecovery: true, RecoveredOn: "2026-11-20", Notice: "new_codes_offered",
		Devices: []DeviceOption{
			{ID: "ab12", Summary: "Chrome · Windows", IP: "192.0.2.1", Created: "2026-11-01 10:00", LastUsed: "2026-11-20 09:00", Current: true},
			{ID: "cd34", IP: "2001:db8::1", Created: "2026-10-01 10:00", LastUsed: "2026-10-02 09:00"},
		},
		Networks:        networkOptions(),
		RecordsNetworks: true,
		Activity: []ActivityItem{
			{When: "2026-11-20 09:00", What: "activity_verified", WhatArgs: []any{"SMS"}, IP: "192.0.2.1", Browser: "Chrome · Windows"},
			{When: "2026-11-20 08:59", What: "activity_failed", WhatArgs: []any{"SMS"}, IP: "192.0.2.1", Failure: true},
		},
		Passkey: true, PasskeyRemember: true, PasskeyName: "Passkey on Windows", MaxPasskeyName: 64, PasskeyAdd: true,
		Passkeys: []PasskeyOption{
			{ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Name: "YubiKey 5", Added: "2026-11-01", LastUsed: "2026-11-20", Kind: "passkey_kind_key"},
			{ID: "00112233445566778899aabbccddeeff", Name: "Pixel", Added: "2026-11-02", Kind: "passkey_kind_synced"},
		},
		Admin: adminPage(),
	}
}

// adminPage sets every field of the admin pages.
func adminPage() *AdminPage {
	return &AdminPage{
		Actor: "boss", Role: "support", CanAct: true, Reason: "called back <b>", Search: "ali", Filter: "locked", Order: "last_seen",
		Counts: &AdminCounts{Members: 12, Seen: 10, Enrolled: 7, Locked: 1, TOTP: 6, Email: 2, SMS: 1},
		Members: []AdminMember{
			{ID: "alice", Methods: []string{"totp", "sms"}, LastSeen: "2026-11-20", Locked: true},
			{ID: "bob"},
		},
		Next:     "/.2fa/admin/members?after=bob&filter=locked",
		Overview: overviewFixture(),
		Member: &AdminMemberDetail{
			ID: "alice", Enrolled: true, HasRecord: true, Methods: options(), HasRecovery: true, RecoveryLeft: 3,
			Devices:   []DeviceOption{{ID: "ab12", Summary: "Chrome · Windows", IP: "192.0.2.1", Created: "2026-11-01 10:00", LastUsed: "2026-11-20 09:00"}},
			Networks:  networkOptions(),
			Activity:  []ActivityItem{{When: "2026-11-20 09:00", What: "activity_admin_reset", IP: "192.0.2.1"}},
			FirstSeen: "2026-10-01", LastSeen: "2026-11-20", LockedUntil: "2026-11-20 10:00 UTC", SessionsEnd: "2026-11-19 08:00 UTC",
		},
		Reconciled: &AdminReconciled{Enrolled: []string{"alice"}, SeenNotEnrolled: []string{"bob"}, NeverSeen: []string{"carol"}, IDs: "alice\nbob\ncarol"},
		MaxIDs:     100000,
	}
}

// networkOptions are known ranges of both families.
func networkOptions() []NetworkOption {
	return []NetworkOption{
		{Range: "192.0.2.0/24", Last: "2026-11-20 09:00"},
		{Range: "2001:db8:10::/48", Last: "2026-11-01 10:00"},
	}
}

// recoveryCodes is a set of recovery codes as the engine formats them.
func recoveryCodes() []string {
	return []string{
		"7K3M-Q9TX-4HPA-2WRE", "0123-4567-89AB-CDEF", "GHJK-MNPQ-RSTV-WXYZ", "ZYXW-VTSR-QPNM-KJHG", "FEDC-BA98-7654-3210",
		"M2QX-8T0V-KE5R-PA9W", "1HZC-JG4N-6SYD-B3FQ", "W7PE-R2KA-X0MT-9VQC", "D5NJ-YH1S-G8BZ-3F6R", "QC4T-0MKW-7XEJ-PV2A",
	}
}

func recoveryDownload(codes []string) template.URL {
	text := strings.Join(codes, "\n") + "\n"
	return template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text)))
}

// options is a list of every method in every state.
func options() []MethodOption {
	return []MethodOption{
		{Name: "totp", Default: true, Usable: true, Added: "2024-04-01", LastUsed: "2024-05-02"},
		{Name: "email", SentTo: "a***@example.com", Usable: true, Added: "2024-04-03"},
		{Name: "sms", SentTo: "+81 *** 5678", Added: "2024-04-05", LastUsed: "2024-04-06"},
	}
}

// variants change fullPage to reach the branches it does not show.
var variants = []struct {
	name   string
	change func(*Page)
}{
	{"full", func(*Page) {}},
	{"required", func(p *Page) { p.Required = true }},
	{"enrolled", func(p *Page) { p.Enrolled = true; p.NotAllowedHere = false; p.CanAdd = false }},
	{"totp", func(p *Page) { p.Method = "totp"; p.CodeSent = false; p.ShowRemember = false }},
	{"sms", func(p *Page) { p.Method = "sms"; p.SentTo = "+81 *** 5678" }},
	{"not sent", func(p *Page) { p.CodeSent = false }},
	{"sms not sent", func(p *Page) { p.Method = "sms"; p.CodeSent = false }},
	{"no address", func(p *Page) { p.CodeSent = false; p.SentTo = ""; p.Error = "" }},
	{"resend now", func(p *Page) { p.ResendIn = 0; p.RememberDays = 1 }},
	{"no methods", func(p *Page) { p.Methods = nil; p.Method = "" }},
	{"recovery", func(p *Page) { p.Method = "recovery"; p.CodeSent = false }},
	{"recovery codes left", func(p *Page) { p.RecoveryLeft = 7; p.Notice, p.NoticeArgs = "recovery_replaced", nil }},
	{"no recovery codes", func(p *Page) {
		p.HasRecovery, p.RecoveryLeft, p.RecoveryCodes, p.RecoveryDownload = false, 0, nil, ""
		p.Notice, p.NoticeArgs = "", nil
	}},
	{"no networks", func(p *Page) { p.Networks = nil; p.Admin.Member.Networks = nil }},
	{"networks not recorded", func(p *Page) { p.Networks, p.RecordsNetworks = nil, false; p.Admin.Member.Networks = nil }},
	{"no error", func(p *Page) { p.Error, p.ErrorArgs = "", nil; p.Region, p.Regions = "", "" }},
	{"figures unavailable", func(p *Page) { p.Admin.Overview.Unavailable = true; p.Admin.Overview.Latest = nil }},
	{"passkey only", func(p *Page) {
		p.Method, p.Methods, p.PasskeyOnly, p.CodeSent, p.ShowRemember = "webauthn", nil, true, false, false
		p.Passkeys = []PasskeyOption{p.Passkeys[0]}
		p.Passkeys[0].Kept = true
	}},
	{"no passkey", func(p *Page) {
		p.Passkey, p.PasskeyRemember, p.Passkeys, p.PasskeyAdd, p.FirstCodes = false, false, nil, false, false
	}},
	{"first codes", func(p *Page) {
		p.FirstCodes = true
		p.Method = "webauthn"
		p.Notice, p.NoticeArgs = "method_added_webauthn", nil
	}},
	{"no destinations", func(p *Page) {
		for i := range p.Methods {
			p.Methods[i].SentTo = ""
			p.Methods[i].Usable = false
		}
	}},
}

// countdownScript and recoveryScript are the script tags a page may carry.
// html/template writes a "+" in an attribute as "&#43;", which the
// browser reads back as "+".
var (
	countdownScript = `<script src="/.2fa/static/countdown.js" integrity="` + attrEscape(countdownIntegrity) + `" defer></script>`
	recoveryScript  = `<script src="/.2fa/static/recovery.js" integrity="` + attrEscape(recoveryIntegrity) + `" defer></script>`
	localtimeScript = `<script src="/.2fa/static/localtime.js" integrity="` + attrEscape(localtimeIntegrity) + `" defer></script>`
	webauthnScript  = `<script src="/.2fa/static/webauthn.js" integrity="` + attrEscape(webauthnIntegrity) + `" defer></script>`
)

func attrEscape(s string) string { return strings.ReplaceAll(s, "+", "&#43;") }

// templateKeys collects the string literals passed to .T in the parse
// trees of every template, and reports calls whose key is not a literal.
func templateKeys(t *testing.T) map[string][]string {
	t.Helper()
	keys := make(map[string][]string) // key → templates using it
	for _, file := range templateNames() {
		b, err := embeddedTemplates.ReadFile("templates/" + file)
		if err != nil {
			t.Fatal(err)
		}
		set, err := texttemplate.New(file).Funcs(texttemplate.FuncMap(funcs)).Parse(string(b))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tmpl := range set.Templates() {
			if tmpl.Tree != nil {
				walk(tmpl.Tree.Root, func(key string) { keys[key] = append(keys[key], file+":"+tmpl.Name()) })
			}
		}
	}
	return keys
}

func walk(n parse.Node, found func(string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, found)
		}
	case *parse.ActionNode:
		walk(n.Pipe, found)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c, found)
		}
	case *parse.CommandNode:
		if len(n.Args) >= 2 {
			var ident []string // .T, or $.T inside a range
			switch f := n.Args[0].(type) {
			case *parse.FieldNode:
				ident = f.Ident
			case *parse.VariableNode:
				ident = f.Ident
			}
			if len(ident) > 0 && ident[len(ident)-1] == "T" {
				if s, ok := n.Args[1].(*parse.StringNode); ok {
					found(s.Text)
				}
			}
		}
		for _, a := range n.Args {
			walk(a, found)
		}
	case *parse.IfNode:
		walk(n.Pipe, found)
		walk(n.List, found)
		walk(n.ElseList, found)
	case *parse.RangeNode:
		walk(n.Pipe, found)
		walk(n.List, found)
		walk(n.ElseList, found)
	case *parse.WithNode:
		walk(n.Pipe, found)
		walk(n.List, found)
		walk(n.ElseList, found)
	case *parse.TemplateNode:
		walk(n.Pipe, found)
	}
}

func TestCatalogsHaveSameKeys(t *testing.T) {
	en, ja := catalogs["en"], catalogs["ja"]
	if len(en) == 0 || len(ja) == 0 {
		t.Fatalf("empty catalog: en %d, ja %d keys", len(en), len(ja))
	}
	for k := range en {
		if _, ok := ja[k]; !ok {
			t.Errorf("key %q is in en.json but not in ja.json", k)
		}
	}
	for k := range ja {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is in ja.json but not in en.json", k)
		}
	}
	for lang, m := range catalogs {
		for k, v := range m {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: key %q has empty text", lang, k)
			}
		}
	}
}

// TestCatalogsNoDuplicateKeys catches a key written twice in one file,
// which encoding/json would silently resolve to the last one.
func TestCatalogsNoDuplicateKeys(t *testing.T) {
	for _, lang := range languages {
		b, err := embeddedMessages.ReadFile("messages/" + lang + ".json")
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if _, err := dec.Token(); err != nil { // {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			k := tok.(string)
			if seen[k] {
				t.Errorf("%s.json: duplicate key %q", lang, k)
			}
			seen[k] = true
			if _, err := dec.Token(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCatalogsFormatVerbs checks that both languages agree on format verbs,
// so arguments fit the Japanese text as well as the English.
func TestCatalogsFormatVerbs(t *testing.T) {
	verbs := regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)
	for k, en := range catalogs["en"] {
		a, b := verbs.FindAllString(en, -1), verbs.FindAllString(catalogs["ja"][k], -1)
		if strings.Join(a, " ") != strings.Join(b, " ") {
			t.Errorf("key %q: en verbs %v, ja verbs %v", k, a, b)
		}
	}
	if got := (&Page{Lang: "en"}).T("locked", Wait(3*time.Minute)); got != "Too many incorrect codes. Try again in 3 minutes." {
		t.Errorf("T(locked, 3m) = %q", got)
	}
	if got := (&Page{Lang: "ja"}).T("locked", Wait(3*time.Minute)); !strings.Contains(got, "3分後") {
		t.Errorf("ja T(locked, 3m) = %q", got)
	}
}

func TestTemplateKeysExist(t *testing.T) {
	keys := templateKeys(t)
	// The scan must actually find keys, or this test would pass vacuously.
	for _, k := range []string{"title_challenge", "verify", "remember_device", "code_label", "later", "sign_out",
		"use_totp", "make_default", "resend_in"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("template scan did not find key %q; found %d keys", k, len(keys))
		}
	}
	all := make(map[string][]string, len(keys)+len(dynamicKeys))
	for k, where := range keys {
		all[k] = where
	}
	for _, k := range dynamicKeys {
		all[k] = append(all[k], "handlers")
	}
	for k, where := range all {
		for _, lang := range languages {
			if _, ok := catalogs[lang][k]; !ok {
				t.Errorf("key %q (used by %v) missing from %s.json", k, where, lang)
			}
		}
	}
}

func TestTUnknownKey(t *testing.T) {
	if got := (&Page{Lang: "ja"}).T("no_such_key"); got != "no_such_key" {
		t.Errorf("T(unknown) = %q, want the key", got)
	}
	var p *Page
	if got := p.T("verify"); got != "Verify" {
		t.Errorf("nil page T(verify) = %q", got)
	}
	if got := (&Page{Lang: "de"}).T("verify"); got != "Verify" {
		t.Errorf("unsupported language T(verify) = %q, want English", got)
	}
}

// TestRenderAllPages renders every page in both languages with every field
// set, and in the variants that reach the other branches: no error, no
// catalog key left untranslated, no format verb left unfilled, Japanese
// pages free of the English texts, every form carrying its hidden fields.
func TestRenderAllPages(t *testing.T) {
	r := newRenderer(t, "")
	keyLike := regexp.MustCompile(`>\s*([a-z]+_[a-z_]+)\s*<`)
	dataTemplate := regexp.MustCompile(` data-template="[^"]*"`)
	// The passkey script's messages are keyed by the routes' error keys.
	dataKey := regexp.MustCompile(` data-key="[a-z_]+"`)
	for _, lang := range languages {
		for _, name := range pageNames {
			for _, v := range variants {
				p := fullPage(lang)
				v.change(p)
				where := lang + "/" + name + "/" + v.name
				body := render(t, r, name, p, true).Body.String()
				if name == "enrol_webauthn" || name == "challenge" && p.Passkey {
					checkPasskeyMessages(t, where, body)
				}
				body = dataKey.ReplaceAllString(body, "")
				if !strings.HasPrefix(body, "<!doctype html>") || !strings.Contains(body, "</html>") {
					t.Errorf("%s: not a whole document", where)
				}
				if !strings.Contains(body, `<html lang="`+lang+`">`) {
					t.Errorf("%s: no lang attribute", where)
				}
				if !strings.Contains(body, `<link rel="stylesheet" href="/.2fa/static/style.css">`) {
					t.Errorf("%s: no stylesheet", where)
				}
				if m := keyLike.FindStringSubmatch(body); m != nil {
					t.Errorf("%s: untranslated key %q", where, m[1])
				}
				for k := range catalogs["en"] {
					if strings.Contains(k, "_") && (strings.Contains(body, `"`+k+`"`) || strings.Contains(body, ">"+k+"<")) {
						t.Errorf("%s: untranslated key %q", where, k)
					}
				}
				// The countdown's text keeps its %d for the script to fill in.
				if text := dataTemplate.ReplaceAllString(body, ""); strings.Contains(text, "%d") || strings.Contains(text, "%s") {
					t.Errorf("%s: unfilled format verb", where)
				}
				scripts := strings.Count(body, "<script")
				wantCountdown := (name == "challenge" && p.CodeSent && (p.Method == "email" || p.Method == "sms") ||
					name == "enrol_code") && p.ResendIn > 0
				wantRecovery := name == "recovery" && len(p.RecoveryCodes) > 0
				// The pages that show times, and a message page that does.
				wantLocal := name == "methods" || name == "admin_member" || name == "message" && p.LocalTimes
				countdowns, recoveries := strings.Count(body, countdownScript), strings.Count(body, recoveryScript)
				locals := strings.Count(body, localtimeScript)
				// The passkey script where a page has a passkey part.
				wantWebAuthn := name == "enrol_webauthn" || name == "challenge" && p.Passkey
				passkeys := strings.Count(body, webauthnScript)
				if scripts != countdowns+recoveries+locals+passkeys || countdowns > 1 || recoveries > 1 || locals > 1 || passkeys > 1 ||
					(countdowns == 1) != wantCountdown || (recoveries == 1) != wantRecovery || (locals == 1) != wantLocal || (passkeys == 1) != wantWebAuthn {
					t.Errorf("%s: %d script tags, want the countdown script %v, the recovery script %v, the local-time script %v, the passkey script %v",
						where, scripts, wantCountdown, wantRecovery, wantLocal, wantWebAuthn)
				}
				for _, bad := range []string{" style=", "<style", "http://", "https://", "%!"} {
					if strings.Contains(body, bad) {
						t.Errorf("%s: output contains %q", where, bad)
					}
				}
				if lang == "ja" {
					for _, en := range []string{"Verify", "Set up", "Later", "Sign out", "Continue", "authenticator app",
						"Authenticator app", "Resend", "Send code", "Try another way", "Email", "Text a code", "Text message",
						"We sent", "We will", "Make default", "Default", "Not available", "Not used", "Added", "Last used",
						"Reload", "Enter", "Choose another", "Add a way", "phone number", "email address", "SMS codes",
						"Recovery", "recovery code", "Download", "Copy", "Print", "Generate", "saved", "left.", "signed in"} {
						if strings.Contains(body, en) {
							t.Errorf("%s: English text %q", where, en)
						}
					}
				}
				for _, form := range regexp.MustCompile(`(?s)<form.*?</form>`).FindAllString(body, -1) {
					if strings.HasPrefix(form, `<form method="get"`) {
						// A search: it changes nothing, and must not put the
						// CSRF token in a URL.
						if strings.Contains(form, `name="csrf"`) {
							t.Errorf("%s: a GET form carries the CSRF token:\n%s", where, form)
						}
						continue
					}
					if !strings.Contains(form, `method="post"`) ||
						!strings.Contains(form, `<input type="hidden" name="csrf" value="csrf-token-value">`) ||
						!strings.Contains(form, `<input type="hidden" name="return_to" value="/members/page?x=1">`) {
						t.Errorf("%s: form without method, csrf or return_to:\n%s", where, form)
					}
				}
			}
		}
	}
}

func TestChallengePage(t *testing.T) {
	r := newRenderer(t, "")
	for lang, msg := range map[string]string{
		"ja": "認証コードが正しくありません。",
		"en": "The verification code is incorrect.",
	} {
		p := &Page{Lang: lang, SiteName: "Members", Prefix: "/.2fa/", CSRF: "tok123", ReturnTo: "/x", Error: "code_incorrect"}
		body := render(t, r, "challenge", p, false).Body.String()
		mi, ii := strings.Index(body, msg), strings.Index(body, `name="code"`)
		if mi < 0 || ii < 0 || mi > ii {
			t.Errorf("%s: message at %d, input at %d; want the message above the input:\n%s", lang, mi, ii, body)
		}
		alert := regexp.MustCompile(`<[a-z]+ [^>]*role="alert"[^>]*>([^<]*)<`).FindStringSubmatch(body)
		if alert == nil || alert[1] != msg {
			t.Errorf("%s: no role=alert element holding %q: %v", lang, msg, alert)
		}
		input := regexp.MustCompile(`<input [^>]*name="code"[^>]*>`).FindString(body)
		for _, attr := range []string{`type="text"`, `autocomplete="one-time-code"`, `inputmode="numeric"`,
			`pattern="[0-9]*"`, `maxlength="8"`, ` required`, ` autofocus`} {
			if !strings.Contains(input, attr) {
				t.Errorf("%s: code input %q lacks %s", lang, input, attr)
			}
		}
		if !strings.Contains(body, `<form method="post" action="/.2fa/challenge">`) {
			t.Errorf("%s: no form posting to the challenge", lang)
		}
		if !strings.Contains(body, `<input type="hidden" name="csrf" value="tok123">`) {
			t.Errorf("%s: csrf token not carried", lang)
		}
		if strings.Contains(body, `name="remember"`) {
			t.Errorf("%s: remember checkbox shown without ShowRemember", lang)
		}
	}

	body := render(t, r, "challenge", &Page{Lang: "en", Prefix: "/.2fa/", ShowRemember: true, RememberDays: 30}, false).Body.String()
	if !regexp.MustCompile(`<input type="checkbox" name="remember" value="1">`).MatchString(body) {
		t.Errorf("remember checkbox missing with ShowRemember:\n%s", body)
	}
	if !strings.Contains(body, "Don&#39;t ask for a code on this device for 30 days") {
		t.Errorf("remember label missing:\n%s", body)
	}
	if strings.Contains(body, `role="alert"`) {
		t.Error("alert shown without an error")
	}
	body = render(t, r, "challenge", &Page{Lang: "ja", Prefix: "/.2fa/", ShowRemember: true, RememberDays: 1}, false).Body.String()
	if !strings.Contains(body, "1日間") {
		t.Errorf("ja one-day label missing:\n%s", body)
	}
}

func TestEnrolPages(t *testing.T) {
	r := newRenderer(t, "")
	p := fullPage("en")
	p.Error = "code_incorrect"
	p.Secret = "JBSWY3DPEHPK3PXPQ"
	body := render(t, r, "enrol", p, false).Body.String()
	for _, want := range []string{
		`<img src="data:image/png;base64,iVBORw0KGgo=" alt="QR code for your authenticator app"`,
		`<a href="otpauth://totp/Members:alice?secret=JBSWY3DPEHPK3PXP">Open in an authenticator app on this device</a>`,
		`<code>JBSW Y3DP EHPK 3PXP Q</code>`,
		`alice@example.com`,
		`<form method="post" action="/.2fa/enrol/confirm">`,
		`autocomplete="one-time-code"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("enrol page lacks %s", want)
		}
	}
	if strings.Index(body, "The verification code is incorrect.") > strings.Index(body, `name="code"`) {
		t.Error("enrol: error below the input")
	}

	p = &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/r", Required: true}
	body = render(t, r, "enrol_start", p, false).Body.String()
	if !strings.Contains(body, `action="/.2fa/enrol"`) || !strings.Contains(body, "requires 2-step verification") {
		t.Errorf("enrol_start (required):\n%s", body)
	}
	if strings.Contains(body, `action="/.2fa/remind"`) {
		t.Error("required enrolment offers \"later\"")
	}
	p.Required = false
	body = render(t, r, "enrol_start", p, false).Body.String()
	if !strings.Contains(body, `action="/.2fa/remind"`) || strings.Contains(body, "requires 2-step verification") {
		t.Errorf("enrol_start (optional):\n%s", body)
	}
}

func TestMessagePage(t *testing.T) {
	r := newRenderer(t, "")
	body := render(t, r, "message", &Page{Lang: "ja", Prefix: "/.2fa/", Title: "title_locked", Message: "locked",
		MessageArgs: []any{Wait(15 * time.Minute)}, Link: "/top", LinkLabel: "continue"}, false).Body.String()
	for _, want := range []string{"<h1>しばらくお待ちください</h1>", "15分後", `<a class="button" href="/top">続ける</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %s:\n%s", want, body)
		}
	}
	body = render(t, r, "message", &Page{Lang: "en", Prefix: "/.2fa/", Message: "unavailable"}, false).Body.String()
	if !strings.Contains(body, "<h1>Something went wrong</h1>") || strings.Contains(body, "<a ") {
		t.Errorf("message page defaults:\n%s", body)
	}
}

func TestEscaping(t *testing.T) {
	r := newRenderer(t, "")
	evil := `"><script>alert('x')</script>`
	p := fullPage("en")
	p.ReturnTo = "/a?b=1&c=" + evil
	p.SiteName = "Site " + evil
	p.Account = "acct " + evil
	p.Issuer = "iss " + evil
	p.CSRF = `tok"en`
	p.SentTo = "sent " + evil
	p.Address = "addr " + evil
	p.Region, p.Regions = "reg "+evil, "regs "+evil
	for i := range p.Methods {
		p.Methods[i].SentTo = "to " + evil
	}
	// Times are markup made by When and Day; the device's address goes
	// through TH's escaping beside them.
	p.Devices = append([]DeviceOption(nil), p.Devices...)
	p.Devices[0].IP = "ip " + evil
	p.Member = "member " + evil
	// A passkey's name is the member's own text.
	p.Passkeys = []PasskeyOption{{ID: "ab" + evil, Name: "key " + evil, Added: "2026-11-01"}}
	p.PasskeyName = "name " + evil
	p.RecoveryCodes = append([]string{"code " + evil}, p.RecoveryCodes[1:]...)
	for _, name := range pageNames {
		for _, v := range variants {
			q := *p
			q.Methods = append([]MethodOption(nil), p.Methods...)
			v.change(&q)
			body := render(t, r, name, &q, false).Body.String()
			body = strings.NewReplacer(countdownScript, "", recoveryScript, "", localtimeScript, "", webauthnScript, "").Replace(body)
			if strings.Contains(body, "<script") || strings.Contains(body, `"><`+"script") {
				t.Errorf("%s/%s: unescaped script:\n%s", name, v.name, body)
			}
			if strings.Contains(body, `value="tok"en"`) {
				t.Errorf("%s/%s: csrf attribute broken out", name, v.name)
			}
		}
	}
	const escaped = "&#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
	for _, c := range []struct {
		name   string
		change func(*Page)
		want   []string
	}{
		{"challenge", func(*Page) {}, []string{
			"sent " + escaped, "Email a code to to " + escaped, "Signed in as member " + escaped,
		}},
		{"enrol_email", func(p *Page) { p.SentTo = "" }, []string{`value="addr ` + escaped + `"`}},
		{"enrol_email", func(*Page) {}, []string{"sent " + escaped}},
		{"enrol_sms", func(*Page) {}, []string{`value="addr ` + escaped + `"`, "reg " + escaped, "regs " + escaped}},
		{"enrol_code", func(*Page) {}, []string{"sent " + escaped}},
		{"methods", func(*Page) {}, []string{"to " + escaped, "From ip " + escaped}},
		{"recovery", func(*Page) {}, []string{"<li><code>code " + escaped + "</code></li>"}},
	} {
		q := *p
		c.change(&q)
		body := render(t, r, c.name, &q, false).Body.String()
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: lacks %s:\n%s", c.name, w, body)
			}
		}
	}
	// A link's query is escaped as a query, and decodes to what it was.
	body := render(t, r, "challenge", p, false).Body.String()
	links := hrefs(t, body, "/.2fa/challenge")
	if len(links) == 0 {
		t.Fatalf("no other ways:\n%s", body)
	}
	for _, u := range links {
		if u.Query().Get("return_to") != p.ReturnTo || strings.ContainsAny(u.RawQuery, `"<>' `) {
			t.Errorf("link %q does not carry return_to %q safely", u, p.ReturnTo)
		}
	}
	body = render(t, r, "remind", p, false).Body.String()
	link := regexp.MustCompile(`<a class="button" href="([^"]*)"`).FindStringSubmatch(body)
	want := "/.2fa/enrol?return_to=%2fa%3fb%3d1%26c%3d%22%3e%3cscript%3ealert%28%27x%27%29%3c%2fscript%3e"
	if link == nil || !strings.EqualFold(link[1], want) {
		t.Errorf("remind link = %v, want %s", link, want)
	}
	if !strings.Contains(body, `value="/a?b=1&amp;c=&#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"`) {
		t.Errorf("return_to hidden field not escaped as expected:\n%s", body)
	}
	body = render(t, r, "enrol", p, false).Body.String()
	if !strings.Contains(body, "acct &#34;&gt;&lt;script&gt;") {
		t.Errorf("account not escaped:\n%s", body)
	}
	// A dangerous scheme in a link is neutralised.
	body = render(t, r, "message", &Page{Lang: "en", Message: "continue", Link: "javascript:alert(1)"}, false).Body.String()
	if strings.Contains(body, "javascript:") {
		t.Errorf("javascript: link rendered:\n%s", body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	r := newRenderer(t, "")
	want := map[string]string{
		"Cache-Control":          "no-store",
		"Pragma":                 "no-cache",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
		"Content-Security-Policy": "default-src 'none'; script-src '" + countdownIntegrity + "' '" + recoveryIntegrity + "' '" + localtimeIntegrity + "' '" + webauthnIntegrity + "'; " +
			"style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
		"Content-Type": "text/html; charset=utf-8",
	}
	for _, secure := range []bool{false, true} {
		rec := httptest.NewRecorder()
		if err := r.Render(rec, http.StatusUnauthorized, "challenge", &Page{Lang: "en", Prefix: "/p/"}, secure); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", rec.Code)
		}
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("secure=%v: %s = %q, want %q", secure, k, got, v)
			}
		}
		// Only the embedded scripts may run, by their hashes: not inline
		// code, and not the member site's own scripts from the same origin.
		csp := rec.Header().Get("Content-Security-Policy")
		var scriptSrc string
		for _, d := range strings.Split(csp, ";") {
			if f := strings.Fields(d); len(f) > 0 && f[0] == "script-src" {
				scriptSrc = strings.Join(f[1:], " ")
			}
		}
		hashes := []string{countdownIntegrity, recoveryIntegrity, localtimeIntegrity, webauthnIntegrity}
		distinct := slices.Compact(slices.Sorted(slices.Values(hashes)))
		if scriptSrc != "'"+strings.Join(hashes, "' '")+"'" || len(distinct) != len(hashes) ||
			strings.Contains(csp, "unsafe-") || strings.Contains(scriptSrc, "'self'") {
			t.Errorf("CSP %q: want the hashes of countdown.js, recovery.js, localtime.js and webauthn.js only in script-src", csp)
		}
		// The passkey script's fetch goes to the gateway only: connect-src
		// is 'self' and nothing more.
		var connect []string
		for _, d := range strings.Split(csp, ";") {
			if f := strings.Fields(d); len(f) > 0 && f[0] == "connect-src" {
				connect = f[1:]
			}
		}
		if !slices.Equal(connect, []string{"'self'"}) {
			t.Errorf("CSP %q: connect-src %v, want 'self' only", csp, connect)
		}
		hsts := rec.Header().Get("Strict-Transport-Security")
		if secure && hsts != "max-age=31536000" {
			t.Errorf("HSTS = %q over https", hsts)
		}
		if !secure && hsts != "" {
			t.Errorf("HSTS = %q over http", hsts)
		}
	}
}

func TestLanguage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "en"},
		{"ja-JP,ja;q=0.9", "ja"},
		{"ja", "ja"},
		{"en-US", "en"},
		{"en-GB,en;q=0.9,ja;q=0.8", "en"},
		{"fr, ja;q=0.5", "ja"},
		{"ja;q=0.4, en;q=0.8", "en"},
		{"fr", "en"},
		{"de-DE,de;q=0.9", "en"},
		{"zh-CN", "en"},
		{"*", "en"},
		{"ja-Jpan-JP", "ja"},
		{"not a ;; valid = header", "en"},
		{strings.Repeat("ja,", 1000), "en"},
	} {
		if got := Language(tc.in); got != tc.want {
			t.Errorf("Language(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOverrideDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "challenge.html",
		`{{define "title"}}Custom{{end}}{{define "content"}}<p class="custom">CUSTOM {{.T "verify"}} {{.SiteName}}</p>{{end}}`)
	writeFile(t, dir, ".DS_Store", "ignored")
	r := newRenderer(t, dir)
	body := render(t, r, "challenge", &Page{Lang: "ja", SiteName: "<b>", Prefix: "/.2fa/"}, false).Body.String()
	if !strings.Contains(body, `<p class="custom">CUSTOM 認証する &lt;b&gt;</p>`) {
		t.Errorf("override not used:\n%s", body)
	}
	if !strings.Contains(body, "<title>Custom – &lt;b&gt;</title>") {
		t.Errorf("override not inside the embedded layout:\n%s", body)
	}
	// Other pages stay embedded.
	body = render(t, r, "logout", &Page{Lang: "en", Prefix: "/.2fa/", SiteName: "Example"}, false).Body.String()
	if !strings.Contains(body, "<h1>Sign out of Example</h1>") {
		t.Errorf("logout page not the embedded one:\n%s", body)
	}

	// A replacement layout applies to every page.
	writeFile(t, dir, "layout.html", `<!doctype html><html lang="{{.Lang}}"><body class="mine">{{template "content" .}}</body></html>`)
	r = newRenderer(t, dir)
	body = render(t, r, "remind", &Page{Lang: "en", Prefix: "/.2fa/"}, false).Body.String()
	if !strings.Contains(body, `<body class="mine">`) || !strings.Contains(body, "Set up now") {
		t.Errorf("layout override not used:\n%s", body)
	}
}

func TestOverrideDirErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		want             []string
	}{
		{"unknown file", "challange.html", "x", []string{"challange.html", "not a known template"}},
		{"stylesheet", "style.css", "x", []string{"style.css"}},
		{"parse error", "enrol.html", `{{define "content"}}{{if .Error}}{{end}`, []string{"enrol.html"}},
		{"missing content", "logout.html", `{{define "title"}}x{{end}}`, []string{"logout.html", `"content"`}},
		{"missing template", "remind.html", `{{define "title"}}x{{end}}{{define "content"}}{{template "nope" .}}{{end}}`,
			[]string{"remind.html", "nope"}},
		{"unknown function", "message.html", `{{define "title"}}x{{end}}{{define "content"}}{{frob .}}{{end}}`,
			[]string{"message.html", "frob"}},
		{"broken layout", "layout.html", `<html>{{template "content" .}`, []string{"layout.html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, tc.file, tc.text)
			r, err := New(dir)
			if err == nil {
				t.Fatalf("New accepted %s", tc.file)
			}
			if r != nil {
				t.Error("non-nil Renderer with an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("New accepted a missing directory")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir); err == nil || !strings.Contains(err.Error(), "static") {
		t.Errorf("subdirectory: err = %v", err)
	}
}

func TestRenderExecutionError(t *testing.T) {
	dir := t.TempDir()
	// Fails only at execution, after writing some output.
	writeFile(t, dir, "challenge.html",
		`{{define "title"}}T{{end}}{{define "content"}}PARTIAL-OUTPUT {{index .ErrorArgs 5}}{{end}}`)
	r := newRenderer(t, dir)
	rec := httptest.NewRecorder()
	err := r.Render(rec, http.StatusOK, "challenge", &Page{Lang: "en", Prefix: "/.2fa/"}, true)
	if err == nil {
		t.Fatal("Render reported no error")
	}
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", rec.Code)
	}
	body := rec.Body.String()
	if strings.Contains(body, "PARTIAL") || strings.Contains(body, "<html") {
		t.Errorf("partial page written: %q", body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("500 cacheable")
	}

	// Unknown page and nil page are errors too.
	for _, c := range []struct {
		name string
		p    *Page
	}{{"nosuch", &Page{}}, {"challenge", nil}} {
		rec := httptest.NewRecorder()
		if err := newRenderer(t, "").Render(rec, 200, c.name, c.p, false); err == nil || rec.Code != 500 {
			t.Errorf("Render(%q, %v): err %v, status %d", c.name, c.p, err, rec.Code)
		}
	}
}

func TestServeStatic(t *testing.T) {
	get := func(name string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		ServeStatic(rec, httptest.NewRequest(http.MethodGet, "/.2fa/static/x", nil), name)
		return rec
	}
	rec := get("style.css")
	if rec.Code != http.StatusOK {
		t.Fatalf("style.css: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/css; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("Cache-Control %q", cc)
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	if !strings.Contains(rec.Body.String(), ".card") {
		t.Error("stylesheet body missing")
	}

	// Revalidation with the ETag.
	req := httptest.NewRequest(http.MethodGet, "/.2fa/static/style.css", nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec2 := httptest.NewRecorder()
	ServeStatic(rec2, req, "style.css")
	if rec2.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", rec2.Code)
	}

	rec = get("countdown.js")
	if rec.Code != http.StatusOK {
		t.Fatalf("countdown.js: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("countdown.js Content-Type %q", ct)
	}
	if !strings.Contains(rec.Body.String(), "data-wait") || rec.Header().Get("ETag") == "" {
		t.Error("countdown.js body or ETag missing")
	}
	countdownETag := rec.Header().Get("ETag")

	rec = get("recovery.js")
	if rec.Code != http.StatusOK {
		t.Fatalf("recovery.js: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("recovery.js Content-Type %q", ct)
	}
	if !strings.Contains(rec.Body.String(), "data-action") || rec.Header().Get("ETag") == "" || rec.Header().Get("ETag") == countdownETag {
		t.Error("recovery.js body or ETag wrong")
	}
	// The hash the pages' integrity attribute and the CSP name is the one of the body served.
	if sum := sha256.Sum256(rec.Body.Bytes()); "sha256-"+base64.StdEncoding.EncodeToString(sum[:]) != recoveryIntegrity {
		t.Errorf("recovery.js served with a hash other than its integrity %s", recoveryIntegrity)
	}

	for _, name := range []string{"", "x.css", "../x", "countdown", "Countdown.js", "static/countdown.js", "style.css/..", "./style.css", "../static/style.css",
		"/style.css", "style.css/", "STYLE.CSS", "..", "%2e%2e/x", "style.css\x00", "static/style.css",
		"recovery", "Recovery.js", "static/recovery.js", "recovery.js/"} {
		if rec := get(name); rec.Code != http.StatusNotFound {
			t.Errorf("%q: status %d, want 404", name, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	ServeStatic(rec, httptest.NewRequest(http.MethodPost, "/.2fa/static/style.css", nil), "style.css")
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
}

// TestNoInlineStylesOrScripts guards the CSP: it would block them anyway,
// silently breaking the page. The only scripts allowed are the embedded
// ones, each by its own tag.
func TestNoInlineStylesOrScripts(t *testing.T) {
	tags := strings.NewReplacer(
		`<script src="{{.Prefix}}static/countdown.js" integrity="{{countdownIntegrity}}" defer></script>`, "",
		`<script src="{{.Prefix}}static/recovery.js" integrity="{{recoveryIntegrity}}" defer></script>`, "",
		`<script src="{{.Prefix}}static/localtime.js" integrity="{{localtimeIntegrity}}" defer></script>`, "",
		`<script src="{{.Prefix}}static/webauthn.js" integrity="{{webauthnIntegrity}}" defer></script>`, "")
	for _, name := range templateNames() {
		b, _ := embeddedTemplates.ReadFile("templates/" + name)
		s := strings.ToLower(tags.Replace(string(b)))
		for _, bad := range []string{"<script", "<style", " style=", " onclick", " onload", " onsubmit", "javascript:"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	css, _ := embeddedStatic.ReadFile("static/style.css")
	for _, bad := range []string{"@import", "url(", "http:", "https:"} {
		if strings.Contains(string(css), bad) {
			t.Errorf("style.css refers to an external resource: %q", bad)
		}
	}
	for _, name := range []string{"countdown.js", "recovery.js"} {
		js, err := embeddedStatic.ReadFile("static/" + name)
		if err != nil || len(js) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
		for _, bad := range []string{"http:", "https:", "//cdn", "import ", "fetch(", "XMLHttpRequest", "innerHTML",
			"eval(", "new Function", "document.write", "localStorage", "sessionStorage", "cookie", "=>", "let ", "const "} {
			if strings.Contains(string(js), bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

// TestTemplateFilesKnown keeps the embedded files and the list of
// overridable names in step.
func TestTemplateFilesKnown(t *testing.T) {
	got := templateNames()
	want := templateFiles()
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("embedded templates %v, known %v", got, want)
	}
}

func TestRenderConcurrent(t *testing.T) {
	r := newRenderer(t, "")
	// Each page rendered alone first: what every goroutine must get too.
	want := map[string]string{}
	for _, lang := range languages {
		for _, name := range pageNames {
			w := httptest.NewRecorder()
			if err := r.Render(w, 200, name, fullPage(lang), true); err != nil {
				t.Fatalf("%s/%s: %v", lang, name, err)
			}
			want[lang+"/"+name] = w.Body.String()
		}
	}
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func(i int) {
			for j := 0; j < 50; j++ {
				name, lang := pageNames[(i+j)%len(pageNames)], languages[j%2]
				w := httptest.NewRecorder()
				if err := r.Render(w, 200, name, fullPage(lang), true); err != nil {
					errs <- fmt.Errorf("%s/%s: %w", lang, name, err)
					return
				}
				if w.Code != 200 || w.Body.String() != want[lang+"/"+name] {
					errs <- fmt.Errorf("%s/%s: status %d, body differs from a lone render", lang, name, w.Code)
					return
				}
			}
			errs <- nil
		}(i)
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// hrefs returns the decoded href of every link in body whose path is path.
func hrefs(t *testing.T, body, path string) []*url.URL {
	t.Helper()
	var found []*url.URL
	for _, m := range regexp.MustCompile(`<a [^>]*href="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		u, err := url.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Errorf("bad href %q: %v", m[1], err)
			continue
		}
		if u.Path == path {
			found = append(found, u)
		}
	}
	return found
}

// form returns the form posting to action, or "".
func form(body, action string) string {
	for _, f := range regexp.MustCompile(`(?s)<form [^>]*>.*?</form>`).FindAllString(body, -1) {
		if strings.Contains(f, ` action="`+action+`"`) {
			return f
		}
	}
	return ""
}

func TestChallengeMethods(t *testing.T) {
	r := newRenderer(t, "")
	base := func(method string) *Page {
		return &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "tok", ReturnTo: "/x", Method: method,
			ShowRemember: true, RememberDays: 30}
	}
	hidden := func(m string) string { return `<input type="hidden" name="method" value="` + m + `">` }
	code := `name="code"`

	// The authenticator app: the code form, nothing to send.
	body := render(t, r, "challenge", base("totp"), false).Body.String()
	verify := form(body, "/.2fa/challenge")
	for _, want := range []string{hidden("totp"), code, `name="remember"`, ">Verify</button>"} {
		if !strings.Contains(verify, want) {
			t.Errorf("totp: verify form lacks %s:\n%s", want, body)
		}
	}
	if !strings.Contains(body, "authenticator app") || form(body, "/.2fa/challenge/send") != "" ||
		strings.Contains(body, "<script") {
		t.Errorf("totp: wrong page:\n%s", body)
	}

	// A code sent by email: where it went, the code form, the resend form.
	for _, c := range []struct {
		method, text string
	}{
		{"email", "We sent a 6-digit code to m***@example.com."},
		{"sms", "We sent a 6-digit code by text message to m***@example.com."},
	} {
		p := base(c.method)
		p.CodeSent, p.SentTo, p.ResendIn, p.Error = true, "m***@example.com", 42, "code_rejected"
		body = render(t, r, "challenge", p, false).Body.String()
		verify = form(body, "/.2fa/challenge")
		if !strings.Contains(body, "<p>"+c.text+"</p>") {
			t.Errorf("%s: no %q:\n%s", c.method, c.text, body)
		}
		for _, want := range []string{hidden(c.method), code, `name="remember"`, ">Verify</button>"} {
			if !strings.Contains(verify, want) {
				t.Errorf("%s: verify form lacks %s:\n%s", c.method, want, body)
			}
		}
		if ei, fi := strings.Index(body, "The code is incorrect or no longer valid"), strings.Index(body, verify); ei < 0 || ei > fi {
			t.Errorf("%s: error not above the form:\n%s", c.method, body)
		}
		resend := form(body, "/.2fa/challenge/send")
		button := regexp.MustCompile(`<button [^>]*>[^<]*</button>`).FindString(resend)
		for _, want := range []string{` disabled`, `data-wait="42"`, `data-ready="Resend code"`,
			"data-template=\"Resend code (available\u00a0in\u00a0%d\u00a0s)\"", ">Resend code (available\u00a0in\u00a042\u00a0s)</button>"} {
			if !strings.Contains(button, want) {
				t.Errorf("%s: resend button %q lacks %s", c.method, button, want)
			}
		}
		if !strings.Contains(resend, hidden(c.method)) || !strings.Contains(resend, "<noscript>") ||
			!strings.Contains(resend, "Reload this page to enable the button.") {
			t.Errorf("%s: resend form:\n%s", c.method, resend)
		}
		if strings.Count(body, "<script") != 1 || !strings.Contains(body, countdownScript) {
			t.Errorf("%s: countdown script missing:\n%s", c.method, body)
		}

		// The wait is over: an ordinary button, no script.
		p.ResendIn = 0
		body = render(t, r, "challenge", p, false).Body.String()
		resend = form(body, "/.2fa/challenge/send")
		if !strings.Contains(resend, `<button type="submit" class="secondary">Resend code</button>`) ||
			strings.Contains(resend, "disabled") || strings.Contains(resend, "noscript") ||
			strings.Contains(body, "<script") {
			t.Errorf("%s: resend now:\n%s", c.method, body)
		}
	}

	// Not sent yet: where it will go and a send button, no code input.
	for method, text := range map[string]string{
		"email": "We will email a code to m***@example.com.",
		"sms":   "We will text a code to &#43;81 *** 5678.", // html/template escapes +
	} {
		p := base(method)
		p.SentTo = "m***@example.com"
		if method == "sms" {
			p.SentTo = "+81 *** 5678"
		}
		body = render(t, r, "challenge", p, false).Body.String()
		send := form(body, "/.2fa/challenge/send")
		if !strings.Contains(body, text) || !strings.Contains(send, hidden(method)) ||
			!strings.Contains(send, `<button type="submit">Send code</button>`) {
			t.Errorf("%s not sent:\n%s", method, body)
		}
		if strings.Contains(body, code) || form(body, "/.2fa/challenge") != "" || strings.Contains(body, "<script") {
			t.Errorf("%s not sent: code form shown:\n%s", method, body)
		}
	}

	// No address on file: say so, nothing to send.
	body = render(t, r, "challenge", base("email"), false).Body.String()
	if !strings.Contains(body, "Your account has no email address to send a code to.") ||
		strings.Contains(body, "<form") {
		t.Errorf("email without address:\n%s", body)
	}
	p := base("email")
	p.Error = "no_email_address"
	body = render(t, r, "challenge", p, false).Body.String()
	if strings.Count(body, "no email address") != 1 || !strings.Contains(body, `role="alert"`) {
		t.Errorf("email without address, as an error: said %d times:\n%s", strings.Count(body, "no email address"), body)
	}
}

func TestChallengeOtherWays(t *testing.T) {
	r := newRenderer(t, "")
	returnTo := "/members/a page?x=1&y=two words"
	p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "tok", ReturnTo: returnTo, Method: "totp", Methods: []MethodOption{
		{Name: "sms", SentTo: "+81 *** 5678", Usable: true},
		{Name: "email", SentTo: "m***@example.com", Usable: true},
		{Name: "totp", Usable: false},
	}}
	body := render(t, r, "challenge", p, false).Body.String()
	if !strings.Contains(body, ">Try another way</h2>") {
		t.Errorf("no heading:\n%s", body)
	}
	links := hrefs(t, body, "/.2fa/challenge")
	if len(links) != 2 {
		t.Fatalf("%d links, want 2 (the usable methods):\n%s", len(links), body)
	}
	for i, want := range []string{"sms", "email"} {
		q := links[i].Query()
		if q.Get("method") != want || q.Get("return_to") != returnTo || len(q) != 2 {
			t.Errorf("link %d: %s, want method=%s and return_to=%q", i, links[i], want, returnTo)
		}
	}
	for _, want := range []string{">Text a code to &#43;81 *** 5678</a>", ">Email a code to m***@example.com</a>",
		`<li class="unavailable">Use your authenticator app<br><span class="status">Not available</span></li>`} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %s:\n%s", want, body)
		}
	}
	if si, ei := strings.Index(body, "Text a code"), strings.Index(body, "Email a code"); si > ei {
		t.Error("methods not in the given order")
	}

	p.Methods = nil
	body = render(t, r, "challenge", p, false).Body.String()
	if strings.Contains(body, "Try another way") {
		t.Errorf("other ways offered without any:\n%s", body)
	}

	// Not allowed here: the notice, and still a way to verify.
	p.NotAllowedHere = true
	for lang, want := range map[string]string{
		"en": "This page needs a kind of verification you have not set up.",
		"ja": "このページでは、まだ設定されていない種類の認証が必要です。",
	} {
		p.Lang = lang
		body = render(t, r, "challenge", p, false).Body.String()
		if !strings.Contains(body, want) || !strings.Contains(body, `name="code"`) {
			t.Errorf("%s: not-allowed-here notice:\n%s", lang, body)
		}
	}
}

func TestEnrolStartMethods(t *testing.T) {
	r := newRenderer(t, "")
	p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/a b&c", Methods: []MethodOption{
		{Name: "sms"}, {Name: "totp"}, {Name: "email"},
	}}
	body := render(t, r, "enrol_start", p, false).Body.String()
	var at []int
	for _, h := range []string{"<h2>Text message (SMS)</h2>", "<h2>Authenticator app</h2>", "<h2>Email</h2>"} {
		at = append(at, strings.Index(body, h))
	}
	if at[0] < 0 || at[0] > at[1] || at[1] > at[2] {
		t.Errorf("options at %v, want in the given order:\n%s", at, body)
	}
	if !strings.Contains(body, "<title>Set up 2-step verification</title>") ||
		!strings.Contains(body, "an authenticator app, an email or a text message") {
		t.Errorf("title or intro:\n%s", body)
	}
	totp := form(body, "/.2fa/enrol")
	if !strings.Contains(totp, ">Set up an authenticator app</button>") {
		t.Errorf("totp form:\n%s", body)
	}
	if risk := strings.Index(body, "SIM swapping"); risk < at[0] || risk > at[1] {
		t.Errorf("SMS risk notice not with the SMS option:\n%s", body)
	}
	for path, label := range map[string]string{"/.2fa/enrol/email": "Set up codes by email", "/.2fa/enrol/sms": "Set up codes by SMS"} {
		links := hrefs(t, body, path)
		if len(links) != 1 || links[0].Query().Get("return_to") != "/a b&c" {
			t.Errorf("%s: links %v", path, links)
		}
		if !regexp.MustCompile(`<a class="button" href="[^"]*">` + regexp.QuoteMeta(label) + `</a>`).MatchString(body) {
			t.Errorf("%s: no button-styled link %q", path, label)
		}
	}
	if len(hrefs(t, body, "/.2fa/methods")) != 0 || form(body, "/.2fa/remind") == "" {
		t.Errorf("first enrolment: back link or no \"later\":\n%s", body)
	}

	// Adding another method.
	p.Enrolled = true
	p.Methods = []MethodOption{{Name: "email"}}
	body = render(t, r, "enrol_start", p, false).Body.String()
	if !strings.Contains(body, "<title>Add a way to verify</title>") || !strings.Contains(body, "<h1>Add a way to verify</h1>") {
		t.Errorf("enrolled: title:\n%s", body)
	}
	back := hrefs(t, body, "/.2fa/methods")
	if len(back) != 1 || back[0].Query().Get("return_to") != "/a b&c" || !strings.Contains(body, "Back to your verification methods") {
		t.Errorf("enrolled: back link %v:\n%s", back, body)
	}
	if form(body, "/.2fa/enrol") != "" || strings.Contains(body, "SIM swapping") || form(body, "/.2fa/remind") != "" {
		t.Errorf("enrolled: options not offered shown, or \"later\":\n%s", body)
	}
	body = render(t, r, "enrol_start", &Page{Lang: "ja", Prefix: "/.2fa/", Enrolled: true}, false).Body.String()
	if !strings.Contains(body, "<h1>認証方法の追加</h1>") {
		t.Errorf("ja enrolled title:\n%s", body)
	}
}

func TestEnrolEmailPage(t *testing.T) {
	r := newRenderer(t, "")
	p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/r", SentTo: "m***@example.com"}
	body := render(t, r, "enrol_email", p, false).Body.String()
	f := form(body, "/.2fa/enrol/email")
	if !strings.Contains(body, "We will send a code to m***@example.com, the email address of your account.") ||
		!strings.Contains(f, ">Send code</button>") || strings.Contains(body, `name="address"`) {
		t.Errorf("with the account's address:\n%s", body)
	}
	if back := hrefs(t, body, "/.2fa/enrol"); len(back) != 1 || back[0].Query().Get("return_to") != "/r" {
		t.Errorf("back link %v", back)
	}

	p.SentTo, p.Address, p.Error = "", "typo@", "email_invalid"
	body = render(t, r, "enrol_email", p, false).Body.String()
	f = form(body, "/.2fa/enrol/email")
	input := regexp.MustCompile(`<input [^>]*name="address"[^>]*>`).FindString(f)
	for _, want := range []string{`id="address"`, `type="email"`, `autocomplete="email"`, `maxlength="254"`, ` required`,
		`value="typo@"`, `aria-invalid="true"`, `aria-describedby="error"`} {
		if !strings.Contains(input, want) {
			t.Errorf("address input %q lacks %s", input, want)
		}
	}
	if !strings.Contains(f, `<label for="address">Email address</label>`) || !strings.Contains(f, ">Send code</button>") {
		t.Errorf("address form:\n%s", f)
	}
	if ei, fi := strings.Index(body, "Enter a valid email address, like name@example.com."), strings.Index(body, f); ei < 0 || ei > fi {
		t.Errorf("error not above the form:\n%s", body)
	}
	p.Error = ""
	body = render(t, r, "enrol_email", p, false).Body.String()
	if strings.Contains(body, "aria-invalid") {
		t.Error("aria-invalid without an error")
	}
}

func TestEnrolSMSPage(t *testing.T) {
	r := newRenderer(t, "")
	p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/r", Region: "JP", Regions: "JP, US",
		Address: "090-1234", Error: "phone_country", ErrorArgs: []any{"JP, US"}}
	body := render(t, r, "enrol_sms", p, false).Body.String()
	f := form(body, "/.2fa/enrol/sms")
	input := regexp.MustCompile(`<input [^>]*name="phone"[^>]*>`).FindString(f)
	for _, want := range []string{`id="phone"`, `type="tel"`, `autocomplete="tel"`, `maxlength="32"`, ` required`,
		`value="090-1234"`, `aria-invalid="true"`, `aria-describedby="phone-hint error"`} {
		if !strings.Contains(input, want) {
			t.Errorf("phone input %q lacks %s", input, want)
		}
	}
	for _, want := range []string{`<label for="phone">Mobile phone number</label>`,
		`id="phone-hint">Numbers without a country code are read as JP numbers. Accepted: JP, US.</p>`, ">Send code</button>"} {
		if !strings.Contains(f, want) {
			t.Errorf("form lacks %s:\n%s", want, f)
		}
	}
	if !strings.Contains(body, "SIM swapping") || !strings.Contains(body, "Numbers from this country cannot be used here. Accepted: JP, US.") {
		t.Errorf("risk notice or error missing:\n%s", body)
	}
	if back := hrefs(t, body, "/.2fa/enrol"); len(back) != 1 || !strings.Contains(body, ">Choose another way</a>") {
		t.Errorf("back link %v", back)
	}
	body = render(t, r, "enrol_sms", &Page{Lang: "ja", Prefix: "/.2fa/", Region: "US", Regions: "US"}, false).Body.String()
	if !strings.Contains(body, "US の番号として扱います") || strings.Contains(body, "aria-invalid") ||
		!strings.Contains(body, `aria-describedby="phone-hint"`) {
		t.Errorf("ja hint:\n%s", body)
	}
}

func TestEnrolCodePage(t *testing.T) {
	r := newRenderer(t, "")
	for _, c := range []struct {
		method, sent, other, otherLabel string
	}{
		{"email", "We sent a 6-digit code to m***@example.com.", "/.2fa/enrol/email", "Use a different email address"},
		{"sms", "We sent a 6-digit code by text message to m***@example.com.", "/.2fa/enrol/sms", "Use a different phone number"},
	} {
		p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/r", Method: c.method, SentTo: "m***@example.com",
			ResendIn: 9, Error: "code_rejected"}
		body := render(t, r, "enrol_code", p, false).Body.String()
		confirm := form(body, "/.2fa/enrol/code")
		if !strings.Contains(body, "<title>Enter the code</title>") || !strings.Contains(body, c.sent) ||
			!strings.Contains(confirm, `autocomplete="one-time-code"`) || !strings.Contains(confirm, ">Confirm</button>") {
			t.Errorf("%s:\n%s", c.method, body)
		}
		if ei, fi := strings.Index(body, "The code is incorrect or no longer valid"), strings.Index(body, confirm); ei < 0 || ei > fi {
			t.Errorf("%s: error not above the form", c.method)
		}
		resend := form(body, "/.2fa/enrol/resend")
		if !strings.Contains(resend, `disabled data-wait="9"`) || !strings.Contains(resend, "(available\u00a0in\u00a09\u00a0s)") ||
			!strings.Contains(body, countdownScript) {
			t.Errorf("%s: resend:\n%s", c.method, body)
		}
		other := hrefs(t, body, c.other)
		if len(other) != 1 || other[0].Query().Get("return_to") != "/r" || !strings.Contains(body, ">"+c.otherLabel+"</a>") {
			t.Errorf("%s: other address link %v:\n%s", c.method, other, body)
		}
		p.ResendIn = 0
		body = render(t, r, "enrol_code", p, false).Body.String()
		if strings.Contains(body, "disabled") || strings.Contains(body, "<script") ||
			!strings.Contains(form(body, "/.2fa/enrol/resend"), ">Resend code</button>") {
			t.Errorf("%s: resend now:\n%s", c.method, body)
		}
	}
}

func TestMethodsPage(t *testing.T) {
	r := newRenderer(t, "")
	p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/back?a=1", CanAdd: true, Methods: []MethodOption{
		{Name: "email", SentTo: "m***@example.com", Default: true, Usable: true, Added: "2024-04-01", LastUsed: "2024-05-02"},
		{Name: "totp", Usable: true, Added: "2024-04-03"},
		{Name: "sms", SentTo: "+81 *** 5678", Usable: false, Added: "2024-04-05"},
	}}
	body := render(t, r, "methods", p, false).Body.String()
	items := regexp.MustCompile(`(?s)<li class="method[^"]*">.*?</li>`).FindAllString(body, -1)
	if len(items) != 3 {
		t.Fatalf("%d methods listed, want 3:\n%s", len(items), body)
	}
	for i, want := range [][]string{
		{"Email", `<span class="badge">Default</span>`, "m***@example.com", "Added 2024-04-01", "Last used 2024-05-02"},
		{"Authenticator app", "Added 2024-04-03", "Not used yet", `action="/.2fa/methods/default"`,
			`<input type="hidden" name="method" value="totp">`, ">Make default</button>"},
		{"Text message (SMS)", "&#43;81 *** 5678", "Not available"},
	} {
		for _, w := range want {
			if !strings.Contains(items[i], w) {
				t.Errorf("method %d lacks %s:\n%s", i, w, items[i])
			}
		}
	}
	for i, item := range items {
		// Every method can be disabled, with the box to tick.
		if !strings.Contains(item, `action="/.2fa/methods/remove"`) || !strings.Contains(item, `name="confirm" value="yes" required`) {
			t.Errorf("method %d has no disable form:\n%s", i, item)
		}
	}
	if strings.Contains(items[0], `action="/.2fa/methods/default"`) || strings.Contains(items[2], `action="/.2fa/methods/default"`) || strings.Count(body, "badge") != 1 {
		t.Errorf("make-default offered for the default or an unusable method, or badges wrong:\n%s", body)
	}
	if strings.Count(body, `action="/.2fa/methods/default"`) != 1 {
		t.Errorf("want exactly one make-default form:\n%s", body)
	}
	add := hrefs(t, body, "/.2fa/enrol")
	if len(add) != 1 || add[0].Query().Get("return_to") != "/back?a=1" || !strings.Contains(body, ">Add a way to verify</a>") {
		t.Errorf("add link %v", add)
	}
	if !strings.Contains(body, `<a href="/back?a=1">Continue</a>`) {
		t.Errorf("no continue link:\n%s", body)
	}
	p.CanAdd = false
	body = render(t, r, "methods", p, false).Body.String()
	if len(hrefs(t, body, "/.2fa/enrol")) != 0 {
		t.Error("add link without CanAdd")
	}
}

// TestOverridesWithoutScripts: a page or layout written before the
// countdown existed still works, just without the script.
func TestOverridesWithoutScripts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "layout.html", `<!doctype html><html lang="{{.Lang}}"><body>{{template "content" .}}</body></html>`)
	r := newRenderer(t, dir)
	p := &Page{Lang: "en", Prefix: "/.2fa/", Method: "sms", SentTo: "x", CodeSent: true, ResendIn: 5}
	body := render(t, r, "challenge", p, false).Body.String()
	if strings.Contains(body, "<script") || !strings.Contains(body, `data-wait="5"`) {
		t.Errorf("old layout:\n%s", body)
	}
}

func TestRecoveryPage(t *testing.T) {
	r := newRenderer(t, "")
	codes := recoveryCodes()
	for _, c := range []struct {
		lang, title, notice, download, copy, print, copied, saved string
	}{
		{"en", "Save your recovery codes", "Your earlier recovery codes no longer work.",
			"Download", "Copy", "Print", "Copied", "I have saved these codes — continue"},
		{"ja", "リカバリーコードを保存してください", "以前のリカバリーコードは使えなくなりました。",
			"ダウンロード", "コピー", "印刷", "コピーしました", "コードを保存したので続ける"},
	} {
		p := &Page{Lang: c.lang, SiteName: "Members", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/members/?a=1",
			RecoveryCodes: codes, RecoveryDownload: recoveryDownload(codes), Notice: "recovery_replaced", RecoveryFile: "example-recovery-codes.txt"}
		rec := render(t, r, "recovery", p, true)
		body := rec.Body.String()
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: codes cacheable", c.lang)
		}
		if !strings.Contains(body, "<title>"+c.title+" – Members</title>") || !strings.Contains(body, "<h1>"+c.title+"</h1>") {
			t.Errorf("%s: title:\n%s", c.lang, body)
		}
		if !strings.Contains(body, `<p class="notice" role="status">`+c.notice+`</p>`) {
			t.Errorf("%s: notice missing:\n%s", c.lang, body)
		}

		list := regexp.MustCompile(`(?s)<ol class="recovery-codes">(.*?)</ol>`).FindStringSubmatch(body)
		if list == nil {
			t.Fatalf("%s: no list of codes:\n%s", c.lang, body)
		}
		var shown []string
		for _, m := range regexp.MustCompile(`<li><code>([^<]*)</code></li>`).FindAllStringSubmatch(list[1], -1) {
			shown = append(shown, m[1])
		}
		if strings.Join(shown, ",") != strings.Join(codes, ",") || len(shown) != 10 {
			t.Errorf("%s: codes shown %v, want %v", c.lang, shown, codes)
		}
		if ni, li := strings.Index(body, c.notice), strings.Index(body, list[0]); ni > li {
			t.Errorf("%s: notice below the codes", c.lang)
		}

		// Download: the codes as a text file, from a data: URL.
		dl := regexp.MustCompile(`<a class="button secondary" href="([^"]*)" download="example-recovery-codes.txt">` +
			regexp.QuoteMeta(c.download) + `</a>`).FindStringSubmatch(body)
		if dl == nil {
			t.Fatalf("%s: no download link:\n%s", c.lang, body)
		}
		const prefix = "data:text/plain;charset=utf-8;base64,"
		href := html.UnescapeString(dl[1])
		text, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(href, prefix))
		if !strings.HasPrefix(href, prefix) || err != nil || string(text) != strings.Join(codes, "\n")+"\n" {
			t.Errorf("%s: download href %q (%v) does not hold the codes", c.lang, href, err)
		}

		// Copy and print need the script: hidden until it shows them.
		for action, want := range map[string][]string{
			"copy":  {`type="button"`, ` hidden`, `data-done="` + c.copied + `"`, ">" + c.copy + "</button>"},
			"print": {`type="button"`, ` hidden`, ">" + c.print + "</button>"},
		} {
			button := regexp.MustCompile(`<button [^>]*data-action="` + action + `"[^>]*>[^<]*</button>`).FindString(body)
			for _, w := range want {
				if !strings.Contains(button, w) {
					t.Errorf("%s: %s button %q lacks %s", c.lang, action, button, w)
				}
			}
		}
		if strings.Count(body, "<script") != 1 || !strings.Contains(body, recoveryScript) {
			t.Errorf("%s: want the recovery script, and only it:\n%s", c.lang, body)
		}
		if m := regexp.MustCompile(`<script [^>]*integrity="([^"]*)"`).FindStringSubmatch(body); m == nil ||
			html.UnescapeString(m[1]) != recoveryIntegrity {
			t.Errorf("%s: script integrity %v, want %s", c.lang, m, recoveryIntegrity)
		}
		if !strings.Contains(body, `<a class="button" href="/members/?a=1">`+c.saved+`</a>`) {
			t.Errorf("%s: no continue link:\n%s", c.lang, body)
		}
		if strings.Contains(body, "<form") {
			t.Errorf("%s: a form on the codes page:\n%s", c.lang, body)
		}
	}

	// Without codes (they are shown once): nothing to download, copy or print, no script.
	body := render(t, r, "recovery", &Page{Lang: "en", Prefix: "/.2fa/"}, false).Body.String()
	for _, bad := range []string{"<ol", "download=", "data-action", "<script", `role="status"`} {
		if strings.Contains(body, bad) {
			t.Errorf("no codes: page contains %q:\n%s", bad, body)
		}
	}
	if !strings.Contains(body, `<a class="button" href="/">I have saved these codes — continue</a>`) {
		t.Errorf("no return_to: continue link not to /:\n%s", body)
	}

	// The printout: the site name, the title and the codes.
	css, _ := embeddedStatic.ReadFile("static/style.css")
	for _, want := range []string{"[hidden] { display: none !important; }", "@media print",
		".recovery > :not(h1):not(.recovery-codes) { display: none !important; }"} {
		if !strings.Contains(string(css), want) {
			t.Errorf("style.css lacks %s", want)
		}
	}
}

func TestChallengeRecovery(t *testing.T) {
	r := newRenderer(t, "")
	for lang, want := range map[string][]string{
		"en": {"Enter one of your recovery codes. Each code works once.", `<label for="code">Recovery code</label>`,
			">Verify</button>", "The verification code is incorrect.", ">Use your authenticator app</a>"},
		"ja": {"リカバリーコードを1つ入力してください。", `<label for="code">リカバリーコード</label>`,
			">認証する</button>", "認証コードが正しくありません。", ">認証アプリを使う</a>"},
	} {
		p := &Page{Lang: lang, Prefix: "/.2fa/", CSRF: "tok", ReturnTo: "/x", Method: "recovery", Error: "code_incorrect",
			ShowRemember: true, RememberDays: 30, RecoveryLeft: 5,
			Methods: []MethodOption{{Name: "totp", Usable: true}, {Name: "email", SentTo: "m***@example.com", Usable: true}}}
		body := render(t, r, "challenge", p, false).Body.String()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: lacks %s:\n%s", lang, w, body)
			}
		}
		f := form(body, "/.2fa/challenge")
		input := regexp.MustCompile(`<input [^>]*name="code"[^>]*>`).FindString(f)
		for _, attr := range []string{`id="code"`, `type="text"`, `autocomplete="off"`, `autocapitalize="none"`,
			`spellcheck="false"`, `maxlength="64"`, ` required`, ` autofocus`, `aria-invalid="true"`, `aria-describedby="error"`} {
			if !strings.Contains(input, attr) {
				t.Errorf("%s: recovery input %q lacks %s", lang, input, attr)
			}
		}
		// Codes have letters: no numeric keyboard, no digits-only pattern.
		for _, bad := range []string{"inputmode", "pattern", "one-time-code"} {
			if strings.Contains(input, bad) {
				t.Errorf("%s: recovery input %q has %s", lang, input, bad)
			}
		}
		if !strings.Contains(f, `<input type="hidden" name="method" value="recovery">`) ||
			!strings.Contains(f, `<input type="hidden" name="csrf" value="tok">`) {
			t.Errorf("%s: form lacks method=recovery or csrf:\n%s", lang, f)
		}
		if strings.Contains(body, `name="remember"`) || strings.Count(body, "<form") != 1 || strings.Contains(body, "<script") {
			t.Errorf("%s: remember checkbox, another form or a script in recovery mode:\n%s", lang, body)
		}
		if ei, fi := strings.Index(body, `role="alert"`), strings.Index(body, f); ei < 0 || ei > fi {
			t.Errorf("%s: error not above the form", lang)
		}
		// The other ways still show; "use a recovery code" does not, it is this page.
		for _, u := range hrefs(t, body, "/.2fa/challenge") {
			if u.Query().Get("method") == "recovery" {
				t.Errorf("%s: recovery mode links to itself: %s", lang, u)
			}
		}
		if len(hrefs(t, body, "/.2fa/challenge")) != 2 {
			t.Errorf("%s: want the two other ways:\n%s", lang, body)
		}
	}
}

func TestChallengeUseRecoveryLink(t *testing.T) {
	r := newRenderer(t, "")
	returnTo := `/members/a page?x=1&y="two" words`
	recoveryLinks := func(body string) []*url.URL {
		var found []*url.URL
		for _, u := range hrefs(t, body, "/.2fa/challenge") {
			if u.Query().Get("method") == "recovery" {
				found = append(found, u)
			}
		}
		return found
	}
	for _, method := range []string{"totp", "email", "sms", ""} {
		for _, left := range []int{0, 1, 10} {
			p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "tok", ReturnTo: returnTo, Method: method,
				SentTo: "m***@example.com", CodeSent: true, RecoveryLeft: left,
				Methods: []MethodOption{{Name: "sms", SentTo: "+81 *** 5678", Usable: true}}}
			body := render(t, r, "challenge", p, false).Body.String()
			links := recoveryLinks(body)
			if want := min(left, 1); len(links) != want {
				t.Errorf("%s, %d left: %d recovery links, want %d:\n%s", method, left, len(links), want, body)
				continue
			}
			if left == 0 {
				if strings.Contains(body, "Use a recovery code") {
					t.Errorf("%s: offered without codes left", method)
				}
				continue
			}
			q := links[0].Query()
			if q.Get("return_to") != returnTo || len(q) != 2 || strings.ContainsAny(links[0].RawQuery, `"<>' `) {
				t.Errorf("%s: link %q does not carry return_to %q safely", method, links[0], returnTo)
			}
			// At the end of the other ways.
			ways := regexp.MustCompile(`(?s)<ul class="ways">(.*?)</ul>`).FindStringSubmatch(body)
			if ways == nil || !strings.HasSuffix(ways[1], ">Use a recovery code</a></li>\n") ||
				strings.Index(ways[1], "Text a code") > strings.Index(ways[1], "Use a recovery code") {
				t.Errorf("%s: recovery link not last among the other ways:\n%s", method, body)
			}
		}
	}

	// No other method, but codes left: the section shows for this link alone.
	p := &Page{Lang: "ja", Prefix: "/.2fa/", ReturnTo: "/r", Method: "totp", RecoveryLeft: 3}
	body := render(t, r, "challenge", p, false).Body.String()
	if len(recoveryLinks(body)) != 1 || !strings.Contains(body, ">リカバリーコードを使う</a>") ||
		!strings.Contains(body, ">別の方法で認証する</h2>") {
		t.Errorf("only recovery codes left:\n%s", body)
	}
	p.RecoveryLeft = 0
	body = render(t, r, "challenge", p, false).Body.String()
	if strings.Contains(body, `class="ways"`) {
		t.Errorf("other ways shown without any:\n%s", body)
	}
}

func TestMethodsRecovery(t *testing.T) {
	r := newRenderer(t, "")
	const warning = `<p class="notice warning">You are running out of recovery codes.`
	for _, c := range []struct {
		has      bool
		left     int
		text     string
		low      bool
		primary  bool // the generate button is the main action
		withNote bool
	}{
		{true, 10, "10 of 10 recovery codes left.", false, false, true},
		{true, 3, "3 of 10 recovery codes left.", false, false, true},
		{true, 2, "2 of 10 recovery codes left.", true, true, true},
		{true, 0, "0 of 10 recovery codes left.", true, true, true},
		{false, 0, "You have no recovery codes.", false, true, false},
	} {
		p := &Page{Lang: "en", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/back", HasRecovery: c.has, RecoveryLeft: c.left,
			Methods: []MethodOption{{Name: "totp", Default: true, Usable: true}}}
		body := render(t, r, "methods", p, false).Body.String()
		where := c.text
		section := regexp.MustCompile(`(?s)<section aria-labelledby="recovery-heading">.*?</section>`).FindString(body)
		if !strings.Contains(section, `<h2 id="recovery-heading">Recovery codes</h2>`) || !strings.Contains(section, "<p>"+c.text+"</p>") {
			t.Errorf("%s: section:\n%s", where, body)
		}
		if strings.Contains(section, warning) != c.low {
			t.Errorf("%s: low warning shown %v, want %v:\n%s", where, !c.low, c.low, section)
		}
		f := form(section, "/.2fa/methods/recovery")
		if !strings.Contains(f, `<input type="hidden" name="csrf" value="t">`) || !strings.Contains(f, `<input type="hidden" name="return_to" value="/back">`) {
			t.Errorf("%s: generate form:\n%s", where, section)
		}
		// The first set is made; a set the member has is replaced, with
		// the warning beside the button.
		label := "Replace my recovery codes"
		if !c.has {
			label = "Make recovery codes"
		}
		button := regexp.MustCompile(`<button [^>]*>` + label + `</button>`).FindString(f)
		if button == "" || strings.Contains(button, `class="secondary"`) == c.primary {
			t.Errorf("%s: generate button %q, want primary %v", where, button, c.primary)
		}
		if note := strings.Contains(f, `<p class="notice warning" id="generate-note">Replacing them stops your current recovery codes from working,`); note != c.withNote ||
			strings.Contains(button, `aria-describedby="generate-note"`) != c.withNote {
			t.Errorf("%s: note shown %v, want %v:\n%s", where, note, c.withNote, f)
		}
		if strings.Contains(body, `role="status"`) {
			t.Errorf("%s: a notice without Notice", where)
		}
	}

	// After a sign-in with a recovery code: how to replace the lost
	// method, at the top, beside any one-off notice.
	p := &Page{Lang: "en", Prefix: "/.2fa/", HasRecovery: true, RecoveryLeft: 4, RecoveredOn: "2026-11-20", Notice: "devices_forgotten"}
	body := render(t, r, "methods", p, false).Body.String()
	notice := `<p class="notice warning" id="recovered">You signed in with a recovery code on 2026-11-20. ` +
		`If you can no longer get codes one way, add another method first; then you can disable the old one.</p>`
	if ni, ii := strings.Index(body, notice), strings.Index(body, "When you verify"); ni < 0 || ni > ii || !strings.Contains(body, "Forgotten:") {
		t.Errorf("notice missing or not at the top:\n%s", body)
	}
	p.RecoveredOn = ""
	if body := render(t, r, "methods", p, false).Body.String(); strings.Contains(body, `id="recovered"`) {
		t.Errorf("recovery notice without a date:\n%s", body)
	}

	for _, c := range []struct {
		p    *Page
		want []string
	}{
		{&Page{HasRecovery: true, RecoveryLeft: 1, RecoveredOn: "2026-11-20"},
			[]string{"<h2 id=\"recovery-heading\">リカバリーコード</h2>", "残り1個です", "リカバリーコードが残り少なくなっています。",
				"今のリカバリーコードはすべて使えなくなります。", ">リカバリーコードを作り直す</button>", "2026-11-20 にリカバリーコードで認証しました。"}},
		{&Page{}, []string{"リカバリーコードはありません。", ">リカバリーコードを作成する</button>"}},
	} {
		c.p.Lang, c.p.Prefix = "ja", "/.2fa/"
		body := render(t, r, "methods", c.p, false).Body.String()
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("ja: lacks %s:\n%s", w, body)
			}
		}
	}
}

// TestRecoveryRenewPage: the step after a sign-in with a recovery code
// asks for a new set by a post, with a way to the settings, and shows no
// codes itself.
func TestRecoveryRenewPage(t *testing.T) {
	r := newRenderer(t, "")
	for _, c := range []struct{ lang, title, button, settings string }{
		{"en", "Replace your recovery codes", "Generate new codes", "Your verification methods"},
		{"ja", "リカバリーコードを再作成してください", "新しいコードを発行する", "登録済みの認証方法"},
	} {
		p := &Page{Lang: c.lang, SiteName: "Members", Prefix: "/.2fa/", CSRF: "t", ReturnTo: "/members/?a=1"}
		rec := render(t, r, "recovery_renew", p, true)
		body := rec.Body.String()
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: cacheable", c.lang)
		}
		if !strings.Contains(body, "<h1>"+c.title+"</h1>") {
			t.Errorf("%s: title:\n%s", c.lang, body)
		}
		f := form(body, "/.2fa/recovery")
		if !strings.Contains(f, `<input type="hidden" name="csrf" value="t">`) ||
			!strings.Contains(f, `<input type="hidden" name="return_to" value="/members/?a=1">`) ||
			!strings.Contains(f, ">"+c.button+"</button>") {
			t.Errorf("%s: renewal form:\n%s", c.lang, body)
		}
		if !strings.Contains(body, `<a href="/.2fa/methods?return_to=%2Fmembers%2F%3Fa%3D1">`+c.settings+`</a>`) {
			t.Errorf("%s: no link to the settings:\n%s", c.lang, body)
		}
		for _, bad := range []string{"<ol", "<code", "<script", "download="} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: renewal step contains %q", c.lang, bad)
			}
		}
	}
}

// TestNoticePartial: the notice is catalog text with escaped arguments, on
// every page that shows one.
func TestNoticePartial(t *testing.T) {
	r := newRenderer(t, "")
	evil := `"><script>alert('x')</script>`
	for _, name := range []string{"recovery", "methods", "challenge"} {
		p := &Page{Lang: "en", Prefix: "/.2fa/", Method: "totp", Notice: "use_email", NoticeArgs: []any{evil}}
		body := render(t, r, name, p, false).Body.String()
		want := `<p class="notice" role="status">Email a code to &#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</p>`
		if !strings.Contains(body, want) || strings.Contains(body, "<script>") {
			t.Errorf("%s: notice not shown escaped:\n%s", name, body)
		}
		p.Notice = ""
		if body := render(t, r, name, p, false).Body.String(); strings.Contains(body, `role="status"`) {
			t.Errorf("%s: notice shown without Notice:\n%s", name, body)
		}
	}
}

// TestScriptsUnderNode loads the embedded scripts into Node with a minimal
// fake document: they must not throw, and recovery.js must show its
// buttons and copy and print through them. Skipped without Node.
func TestScriptsUnderNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	dir := t.TempDir()
	for _, name := range []string{"countdown.js", "recovery.js"} {
		writeFile(t, dir, name, string(staticFiles[name].body))
	}
	writeFile(t, dir, "harness.js", nodeHarness)
	out, err := exec.Command(node, filepath.Join(dir, "harness.js"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ok") {
		t.Errorf("node harness did not finish:\n%s", out)
	}
}

const nodeHarness = `"use strict";
const vm = require("vm");
const fs = require("fs");
const path = require("path");
const dir = process.argv[2];

function check(ok, msg) {
  if (!ok) { console.error("FAIL: " + msg); process.exit(1); }
}

function element(attrs, text) {
  const listeners = {};
  return {
    textContent: text || "",
    hidden: "hidden" in attrs,
    disabled: "disabled" in attrs,
    getAttribute(n) { return n in attrs ? String(attrs[n]) : null; },
    addEventListener(type, fn) { listeners[type] = fn; },
    click() { check(typeof listeners.click === "function", "no click handler"); listeners.click({}); },
  };
}

// run loads a script into a fresh context holding only what a page would.
function run(name, document, window) {
  const timers = [];
  const context = {
    document: document,
    window: window || {},
    setTimeout(fn) { timers.push(fn); return timers.length; },
    clearTimeout() {},
  };
  vm.createContext(context);
  vm.runInContext(fs.readFileSync(path.join(dir, name), "utf8"), context, { filename: name });
  return timers;
}

function emptyDocument(state) {
  const doc = {
    readyState: state,
    querySelector() { return null; },
    querySelectorAll() { return []; },
    addEventListener(type, fn) { doc.ready = fn; },
  };
  return doc;
}

const codes = ["7K3M-Q9TX-4HPA-2WRE", "0123-4567-89AB-CDEF", "GHJK-MNPQ-RSTV-WXYZ"];

function recoveryPage() {
  const list = element({});
  list.getElementsByTagName = function (tag) {
    check(tag === "code", "looked for " + tag);
    return codes.map(function (c) { return element({}, c); });
  };
  const copy = element({ hidden: "", "data-action": "copy", "data-done": "Copied" }, "Copy");
  const print = element({ hidden: "", "data-action": "print" }, "Print");
  const doc = emptyDocument("complete");
  doc.querySelector = function (sel) { return sel === "ol.recovery-codes" ? list : null; };
  doc.querySelectorAll = function (sel) { return sel === "button[data-action]" ? [copy, print] : []; };
  return { doc: doc, list: list, copy: copy, print: print };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

(async function () {
  for (const name of ["countdown.js", "recovery.js"]) {
    run(name, emptyDocument("complete"));
    const doc = emptyDocument("loading");
    run(name, doc);
    check(typeof doc.ready === "function", name + ": does not wait for the document");
    doc.ready();
  }

  // countdown.js: the button counts down.
  const button = element({ disabled: "", "data-wait": "3", "data-template": "Resend (%d)", "data-ready": "Resend" }, "Resend (3)");
  const cdoc = emptyDocument("complete");
  cdoc.querySelectorAll = function () { return [button]; };
  const ctimers = run("countdown.js", cdoc);
  check(button.textContent === "Resend (3)" && button.disabled && ctimers.length === 1, "countdown: " + button.textContent);

  // recovery.js with the Clipboard API.
  let page = recoveryPage();
  let copied = null, printed = 0;
  let win = {
    navigator: { clipboard: { writeText(text) { copied = text; return Promise.resolve(); } } },
    print() { printed++; },
  };
  let timers = run("recovery.js", page.doc, win);
  check(!page.copy.hidden && !page.print.hidden, "buttons still hidden");
  page.copy.click();
  await tick();
  check(copied === codes.join("\n") + "\n", "copied " + JSON.stringify(copied));
  check(page.copy.textContent === "Copied", "copy button says " + page.copy.textContent);
  check(timers.length === 1, "no timer to restore the label");
  timers[0]();
  check(page.copy.textContent === "Copy", "label not restored: " + page.copy.textContent);
  page.print.click();
  check(printed === 1, "print not called");

  // Without the Clipboard API (plain http), or when it refuses: the list
  // is selected and the copy command tried.
  for (const clipboard of [undefined, { writeText() { return Promise.reject(new Error("denied")); } }]) {
    for (const works of [true, false]) {
      page = recoveryPage();
      let selected = null;
      page.doc.createRange = function () { return { selectNodeContents(n) { this.node = n; } }; };
      page.doc.execCommand = function (cmd) {
        check(cmd === "copy", "command " + cmd);
        if (!works) { throw new Error("not allowed"); }
        return true;
      };
      win = {
        navigator: { clipboard: clipboard },
        getSelection() { return { removeAllRanges() {}, addRange(r) { selected = r.node; } }; },
      };
      run("recovery.js", page.doc, win);
      check(!page.copy.hidden && page.print.hidden, "fallback: copy hidden, or print shown without window.print");
      page.copy.click();
      await tick();
      check(selected === page.list, "fallback: list not selected");
      check(page.copy.textContent === (works ? "Copied" : "Copy"), "fallback: button says " + page.copy.textContent);
    }
  }

  // Nothing to select with: no error.
  page = recoveryPage();
  run("recovery.js", page.doc, {});
  page.copy.click();
  check(page.copy.textContent === "Copy", "copied with nothing to copy with");
  console.log("ok");
})().catch(function (e) { console.error(e); process.exit(1); });
`

// The layout names the page in the card's class, so the stylesheet can lay
// out one page differently (the settings page on a desktop) without a
// class in each template.
func TestLayoutNamesThePage(t *testing.T) {
	r := newRenderer(t, "")
	for _, name := range []string{"methods", "challenge"} {
		body := render(t, r, name, &Page{Lang: "en", Prefix: "/.2fa/"}, false).Body.String()
		if want := `<main class="card page-` + name + `">`; !strings.Contains(body, want) {
			t.Errorf("%s: no %s in:\n%s", name, want, body)
		}
	}
	p := &Page{Lang: "en", Prefix: "/.2fa/"}
	render(t, r, "methods", p, false)
	if p.PageName != "" {
		t.Errorf("Render changed the caller's page: PageName %q", p.PageName)
	}
}
