package flow

import (
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/pages"
)

// activityResults are the results an audit event can have.
var activityResults = []string{"success", "failure", "refused", "error", "later", "account_locked", "address_locked"}

// Every event a member's activity can hold has a name on the settings
// page, whatever its result and with or without a method, in every
// language: none is "Other event".
func TestActivityNamesEveryEvent(t *testing.T) {
	events := challenge.ActivityEvents()
	if len(events) < 10 {
		t.Fatalf("ActivityEvents: %v", events)
	}
	for _, ev := range events {
		for _, result := range activityResults {
			for _, method := range []string{"", "totp", "email", "sms", "recovery", "webauthn"} {
				for _, replaced := range []bool{false, true} {
					for _, lang := range []string{"en", "ja"} {
						page := &pages.Page{Lang: lang}
						items := activityItems(page, []challenge.Activity{{Event: ev, Result: result, Method: method, Replaced: replaced}})
						key, args := items[0].What, items[0].WhatArgs
						where := ev + "/" + result + "/" + method
						if key == "activity_other" {
							t.Errorf("%s: no name of its own", where)
							continue
						}
						text := page.T(key, args...)
						if text == key || strings.Contains(text, "%!") || strings.Contains(text, "%s") {
							t.Errorf("%s in %s: %q gives %q", where, lang, key, text)
						}
					}
				}
			}
		}
	}
}

// Only failures that may be someone else's doing are shown as failures:
// a wrong code at sign-in and a lockout, not a refused change of the
// member's own or a mistyped code while setting up.
func TestActivityFailures(t *testing.T) {
	page := &pages.Page{Lang: "en"}
	for _, c := range []struct {
		event, result string
		failure       bool
		text          string
	}{
		{"verify", "failure", true, "Wrong code (Authenticator app)"},
		{"lockout", "account_locked", true, "Locked after wrong codes"},
		{"lockout", "address_locked", true, "Your network address paused after wrong codes"},
		{"verify", "success", false, "Verified with: Authenticator app"},
		{"verify", "error", false, "Verification could not be completed (a fault on our side)"},
		{"method_removed", "refused", false, "Not disabled (your only way to verify): Authenticator app"},
		{"enrol_confirm", "failure", false, "Wrong code while setting up: Authenticator app"},
		{"session_revoked", "error", false, "Sign-out could not be recorded"},
	} {
		items := activityItems(page, []challenge.Activity{{Event: c.event, Result: c.result, Method: "totp"}})
		if got := page.T(items[0].What, items[0].WhatArgs...); items[0].Failure != c.failure || got != c.text {
			t.Errorf("%s/%s: %q, failure %v; want %q, %v", c.event, c.result, got, items[0].Failure, c.text, c.failure)
		}
	}
	// The first set of recovery codes is made, a later one replaces it.
	for _, c := range []struct {
		replaced bool
		lang     string
		want     string
	}{{false, "en", "Recovery codes made"}, {true, "en", "Recovery codes replaced"},
		{false, "ja", "リカバリーコードを作成"}, {true, "ja", "リカバリーコードを再作成"}} {
		page := &pages.Page{Lang: c.lang}
		items := activityItems(page, []challenge.Activity{{Event: "recovery_codes_generated", Result: "success", Replaced: c.replaced}})
		if got := page.T(items[0].What); got != c.want {
			t.Errorf("codes replaced=%v in %s: %q, want %q", c.replaced, c.lang, got, c.want)
		}
	}
}

// The download of recovery codes is named after the site, safely.
func TestRecoveryFileName(t *testing.T) {
	for site, want := range map[string]string{
		"example.com":              "example.com-recovery-codes.txt",
		"Test Members":             "Test-Members-recovery-codes.txt",
		"127.0.0.1":                "127.0.0.1-recovery-codes.txt",
		"../../etc/passwd":         "etc-passwd-recovery-codes.txt",
		`a/b\c:d*e?"f<g>h|i`:       "a-b-c-d-e-f-g-h-i-recovery-codes.txt",
		"会員サイト":                    "会員サイト-recovery-codes.txt",
		"":                         "recovery-codes.txt",
		"...":                      "recovery-codes.txt",
		strings.Repeat("x", 200):   strings.Repeat("x", 60) + "-recovery-codes.txt",
		"Club\x00\r\nName  (beta)": "Club-Name-beta-recovery-codes.txt",
	} {
		if got := recoveryFileName(site); got != want {
			t.Errorf("%q: %q, want %q", site, got, want)
		}
	}
}

// A passkey's kind on the settings page comes from what its authenticator
// reported, a synced passkey first, and names a catalog text in both
// languages; an authenticator that said nothing gets none.
func TestPasskeyKind(t *testing.T) {
	for _, c := range []struct {
		cred challenge.WebAuthnCredential
		want string
	}{
		{challenge.WebAuthnCredential{BackupEligible: true, Transports: []string{"internal", "hybrid"}}, "passkey_kind_synced"},
		{challenge.WebAuthnCredential{Transports: []string{"internal"}}, "passkey_kind_device"},
		{challenge.WebAuthnCredential{Transports: []string{"hybrid"}}, "passkey_kind_phone"},
		{challenge.WebAuthnCredential{Transports: []string{"nfc", "usb"}}, "passkey_kind_key"},
		{challenge.WebAuthnCredential{Transports: []string{"ble"}}, "passkey_kind_key"},
		{challenge.WebAuthnCredential{Transports: []string{"smart-card"}}, ""},
		{challenge.WebAuthnCredential{}, ""},
	} {
		got := passkeyKind(c.cred)
		if got != c.want {
			t.Errorf("passkeyKind(%+v) = %q, want %q", c.cred, got, c.want)
		}
		for _, lang := range []string{"en", "ja"} {
			if got != "" && (&pages.Page{Lang: lang}).T(got) == got {
				t.Errorf("%s: %q has no text", lang, got)
			}
		}
	}
}
