package pages

import (
	"strings"
	"testing"
	"time"
)

// Waits read with the right unit and plural in both languages, and never
// promise less time than there is.
func TestWaitWords(t *testing.T) {
	for _, c := range []struct {
		wait   time.Duration
		en, ja string
	}{
		{0, "1 second", "1秒"},
		{300 * time.Millisecond, "1 second", "1秒"},
		{time.Second, "1 second", "1秒"},
		{1001 * time.Millisecond, "2 seconds", "2秒"},
		{20 * time.Second, "20 seconds", "20秒"},
		{59 * time.Second, "59 seconds", "59秒"},
		{59*time.Second + time.Millisecond, "1 minute", "1分"},
		{time.Minute, "1 minute", "1分"},
		{61 * time.Second, "2 minutes", "2分"},
		{15 * time.Minute, "15 minutes", "15分"},
		{59 * time.Minute, "59 minutes", "59分"},
		{59*time.Minute + time.Second, "1 hour", "1時間"},
		{time.Hour, "1 hour", "1時間"},
		{time.Hour + time.Minute, "1 hour 1 minute", "1時間1分"},
		{90 * time.Minute, "1 hour 30 minutes", "1時間30分"},
		{4 * time.Hour, "4 hours", "4時間"},
		{168 * time.Hour, "168 hours", "168時間"},
	} {
		for lang, want := range map[string]string{"en": c.en, "ja": c.ja, "fr": c.en} {
			if got := Wait(c.wait).format(lang); got != want {
				t.Errorf("Wait(%s) in %s = %q, want %q", c.wait, lang, got, want)
			}
		}
	}
}

// Every message that takes a wait says it in the page's language.
func TestWaitInMessages(t *testing.T) {
	for _, c := range []struct{ lang, key, want string }{
		{"en", "locked", "Too many incorrect codes. Try again in 20 seconds."},
		{"en", "too_many_codes", "Too many codes were requested. Try again in 1 minute."},
		{"en", "resend_wait", "Wait 1 second before requesting another code."},
		{"ja", "locked", "認証コードの誤りが続いたため、一時的に入力できなくなっています。20秒後にもう一度お試しください。"},
		{"ja", "too_many_attempts", "操作の回数が上限に達しました。1分後にもう一度お試しください。"},
	} {
		var w Wait
		switch c.key {
		case "locked":
			w = Wait(20 * time.Second)
		case "resend_wait":
			w = Wait(time.Second)
		default:
			w = Wait(time.Minute)
		}
		if got := (&Page{Lang: c.lang}).T(c.key, w); got != c.want {
			t.Errorf("%s %s = %q, want %q", c.lang, c.key, got, c.want)
		}
	}
}

// A time stamp given to a message keeps together on a narrow screen: its
// spaces become no-break spaces, its hyphens non-breaking ones. Other values, and stamps inside a longer
// value, are left as they are.
func TestStampsKeepTogether(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"2026-12-05 07:46 UTC", "2026\u201112\u201105\u00a007:46\u00a0UTC"},
		{"2026-12-05 07:46", "2026\u201112\u201105\u00a007:46"},
		{"2026-12-05 07:46:09", "2026\u201112\u201105\u00a007:46:09"},
		{"2026-12-05", "2026\u201112\u201105"},
		{"2026-12-05T07:46:09Z", "2026\u201112\u201105T07:46:09Z"},
		{"2026-12-05T07:46:09.123Z", "2026\u201112\u201105T07:46:09.123Z"},
		{"a-b", "a-b"},
		{"192.0.2.1", "192.0.2.1"},
		{"+81 •• •••• 5678", "+81 •• •••• 5678"},
		{"on 2026-12-05 07:46 UTC", "on 2026-12-05 07:46 UTC"},
		{"2026-12-05 07:46 UTC ", "2026-12-05 07:46 UTC "},
	} {
		if got := keepTogether(c.in); got != c.want {
			t.Errorf("keepTogether(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	p := &Page{Lang: "en"}
	if got, want := p.T("admin_pending_detail", "2026-12-05 07:46 UTC"), "the request lapses at 2026\u201112\u201105\u00a007:46\u00a0UTC."; !strings.HasSuffix(got, want) {
		t.Errorf("the message reads %q, want it to end %q", got, want)
	}
	if got := p.T("resend_in", 59); got != "Resend code (available\u00a0in\u00a059\u00a0s)" {
		t.Errorf("the countdown reads %q", got)
	}
}
