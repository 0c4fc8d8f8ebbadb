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
	if _, err := Notice("en", NoticeData{Kind: "party"}); err == nil {
		t.Error("unknown kind accepted")
	}
}
