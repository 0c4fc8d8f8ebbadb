package notify

import (
	"strings"
	"testing"
)

func TestNotices(t *testing.T) {
	for kind := range noticeKinds {
		for _, lang := range []string{"en", "ja"} {
			m, err := Notice(lang, NoticeData{
				Site: "Example\nMembers", Kind: kind, When: "2026-11-21 10:00 UTC", IP: "192.0.2.1",
				Browser: "Chrome · Windows", Method: "SMS", Left: 3, SettingsPath: "/.2fa/methods",
			})
			if err != nil {
				t.Fatalf("%s/%s: %v", lang, kind, err)
			}
			if !strings.Contains(m.Subject, "Example Members") || strings.Contains(m.Subject, "\n") {
				t.Errorf("%s/%s: subject %q", lang, kind, m.Subject)
			}
			for _, want := range []string{"192.0.2.1", "Chrome · Windows", "2026-11-21 10:00 UTC", "/.2fa/methods"} {
				if !strings.Contains(m.Text, want) {
					t.Errorf("%s/%s: text lacks %q:\n%s", lang, kind, want, m.Text)
				}
			}
			if lang == "ja" && strings.Contains(m.Text, "If this was not you") {
				t.Errorf("ja/%s: English text:\n%s", kind, m.Text)
			}
		}
	}
	m, _ := Notice("en", NoticeData{Site: "S", Kind: "recovery_used", Left: 2, SettingsURL: "https://example.com/.2fa/methods"})
	if !strings.Contains(m.Text, "Recovery codes left: 2") || !strings.Contains(m.Text, "https://example.com/.2fa/methods") {
		t.Errorf("recovery notice:\n%s", m.Text)
	}
	// A passkey notice says which one, where a member may have several;
	// an admin's removal told later (its name not kept) still reads whole.
	for _, lang := range []string{"en", "ja"} {
		for _, kind := range []string{"passkey_added", "passkey_removed", "admin_passkey_removed"} {
			m, err := Notice(lang, NoticeData{Site: "S", Kind: kind, Name: "Blue YubiKey", SettingsPath: "/.2fa/methods"})
			if err != nil || !strings.Contains(m.Text, "Blue YubiKey") {
				t.Errorf("%s/%s: the passkey's name is missing (%v):\n%s", lang, kind, err, m.Text)
			}
		}
		m, _ := Notice(lang, NoticeData{Site: "S", Kind: "admin_passkey_removed", SettingsPath: "/.2fa/methods"})
		if strings.Contains(m.Text, `""`) || strings.Contains(m.Text, "「」") {
			t.Errorf("%s: an admin's removal without the name shows an empty one:\n%s", lang, m.Text)
		}
	}
	if _, err := Notice("en", NoticeData{Kind: "party"}); err == nil {
		t.Error("unknown kind accepted")
	}
}
