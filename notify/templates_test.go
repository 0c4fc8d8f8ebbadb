package notify

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCodeEmail(t *testing.T) {
	for _, tc := range []struct {
		lang, purpose string
		htmlLang      string
		subject       string
		says          []string // in both the text and the HTML
	}{
		{"en", "verify", "en", "Your verification code for Example Club",
			[]string{"valid for 5 minutes", "to sign in to Example Club", "Never share this code", "staff will never ask", "change it"}},
		{"en", "enrol", "en", "Confirm your email address for Example Club",
			[]string{"valid for 5 minutes", "add this address", "Never share this code", "change it"}},
		{"ja", "verify", "ja", "【Example Club】確認コード",
			[]string{"5分間", "ログインのため", "誰にも教えないでください", "お尋ねすることはありません", "パスワードを変更してください"}},
		{"ja", "enrol", "ja", "【Example Club】メールアドレスの確認",
			[]string{"5分間", "受け取り先に追加", "誰にも教えないでください", "パスワードを変更してください"}},
		{"ja-JP", "verify", "ja", "【Example Club】確認コード", nil},
		{"fr", "verify", "en", "Your verification code for Example Club", nil},
		{"", "enrol", "en", "Confirm your email address for Example Club", nil},
	} {
		m, err := CodeEmail(tc.lang, CodeData{Site: "Example Club", Code: "482913", TTL: 5 * time.Minute, Purpose: tc.purpose})
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.lang, tc.purpose, err)
		}
		if m.Subject != tc.subject {
			t.Errorf("%s/%s subject = %q, want %q", tc.lang, tc.purpose, m.Subject, tc.subject)
		}
		if m.To != "" {
			t.Errorf("%s/%s: To = %q, want it left empty", tc.lang, tc.purpose, m.To)
		}
		for _, part := range []string{m.Text, m.HTML} {
			if !strings.Contains(part, "482913") {
				t.Errorf("%s/%s: code missing from %q", tc.lang, tc.purpose, part)
			}
			for _, s := range tc.says {
				if !strings.Contains(part, s) {
					t.Errorf("%s/%s: %q missing from %q", tc.lang, tc.purpose, s, part)
				}
			}
			// No links in code messages: they would teach members to follow them.
			for _, link := range []string{"http:", "https:", "href", "www."} {
				if strings.Contains(part, link) {
					t.Errorf("%s/%s: message contains %q", tc.lang, tc.purpose, link)
				}
			}
		}
		if !strings.Contains(m.HTML, `<html lang="`+tc.htmlLang+`">`) {
			t.Errorf("%s/%s: HTML lacks its language", tc.lang, tc.purpose)
		}
	}
}

func TestCodeEmailEscapesHTML(t *testing.T) {
	m, err := CodeEmail("en", CodeData{Site: `<b>Club</b> & "Co"`, Code: "482913", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<b>") || !strings.Contains(m.HTML, "&lt;b&gt;Club&lt;/b&gt; &amp; &#34;Co&#34;") {
		t.Errorf("site name not escaped in HTML:\n%s", m.HTML)
	}
	// Plain text is not HTML: the name appears as given.
	if !strings.Contains(m.Text, `<b>Club</b> & "Co"`) || !strings.Contains(m.Subject, `<b>Club</b>`) {
		t.Errorf("plain text altered the site name:\n%s", m.Text)
	}
	if !strings.Contains(m.Text, "valid for 1 minute.") {
		t.Errorf("singular minute missing:\n%s", m.Text)
	}
}

func TestCodeEmailKeepsSiteOnOneLine(t *testing.T) {
	m, err := CodeEmail("en", CodeData{Site: "Example\r\nBcc: victim@example.com", Code: "482913", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		t.Errorf("subject has a line break: %q", m.Subject)
	}
}

func TestCodeTTLRoundsUp(t *testing.T) {
	for ttl, want := range map[time.Duration]string{
		time.Second:                  "1分間",
		90 * time.Second:             "2分間",
		5 * time.Minute:              "5分間",
		10*time.Minute + time.Second: "11分間",
	} {
		m, err := CodeSMS("ja", CodeData{Site: "Example", Code: "482913", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m.Text, want) {
			t.Errorf("TTL %s: %q lacks %q", ttl, m.Text, want)
		}
	}
}

func TestCodeSMS(t *testing.T) {
	d := CodeData{Site: "Example", Code: "482913", TTL: 5 * time.Minute, Purpose: "verify"}
	for lang, want := range map[string]string{
		"en": "482913 is your Example verification code. Valid for 5 min. Do not share it.",
		"ja": "482913 はExampleの確認コードです（5分間有効）。他人に教えないでください。",
	} {
		m, err := CodeSMS(lang, d)
		if err != nil {
			t.Fatal(err)
		}
		if m.Text != want {
			t.Errorf("%s SMS = %q, want %q", lang, m.Text, want)
		}
		if m.Subject != "" || m.HTML != "" || m.To != "" {
			t.Errorf("%s SMS fills more than the text: %+v", lang, m)
		}
	}
	d.Purpose = "enrol"
	if m, err := CodeSMS("en", d); err != nil || !strings.HasPrefix(m.Text, "482913 ") {
		t.Errorf("enrol SMS = %q, %v; want the code first", m.Text, err)
	}
}

func TestCodeSMSFitsOneJapaneseSegment(t *testing.T) {
	long := "とても長い名前の会員制オンラインコミュニティサイト・東京本部"
	for _, site := range []string{"Example", "会員サイト", long, strings.Repeat("x", 200)} {
		m, err := CodeSMS("ja", CodeData{Site: site, Code: "482913", TTL: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if n := utf8.RuneCountInString(m.Text); n > 70 {
			t.Errorf("site %q: %d characters, over one UCS-2 segment: %q", site, n, m.Text)
		}
		if !strings.HasPrefix(m.Text, "482913 ") {
			t.Errorf("site %q: code not first: %q", site, m.Text)
		}
	}
	m, _ := CodeSMS("ja", CodeData{Site: long, Code: "482913", TTL: 5 * time.Minute})
	if !strings.Contains(m.Text, string([]rune(long)[:19])+"…の確認コード") {
		t.Errorf("long site name not cut to 20 characters: %q", m.Text)
	}
}

func TestCodeMessageErrors(t *testing.T) {
	for _, d := range []CodeData{
		{Site: "Example", Code: "", TTL: time.Minute},
		{Site: "Example", Code: "12 34", TTL: time.Minute},
		{Site: "Example", Code: "123456", TTL: 0},
		{Site: "Example", Code: "123456", TTL: time.Minute, Purpose: "reset"},
	} {
		if _, err := CodeEmail("en", d); err == nil {
			t.Errorf("CodeEmail(%+v) succeeded", d)
		}
		if _, err := CodeSMS("en", d); err == nil {
			t.Errorf("CodeSMS(%+v) succeeded", d)
		}
	}
}
