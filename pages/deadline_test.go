package pages

import (
	"strings"
	"testing"
	"time"
)

// The reminder counts down to an enrolment deadline, in whole days and on
// its last day; the enrolment page says since when it is required.
func TestDeadlineTexts(t *testing.T) {
	r := newRenderer(t, "")
	at := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		page string
		p    Page
		want []string
		not  []string
	}{
		{"remind", Page{Lang: "en", DeadlineDays: 5, Deadline: at},
			[]string{"Two-step verification becomes required in 5 days (on 15 January 2027)."}, []string{"today"}},
		{"remind", Page{Lang: "ja", DeadlineDays: 5, Deadline: at},
			[]string{"あと5日で2段階認証が必須になります（2027年1月15日）。"}, []string{"本日"}},
		{"remind", Page{Lang: "en", DeadlineDays: 1, Deadline: at.Add(9 * time.Hour)},
			[]string{"Two-step verification becomes required today (15 January 2027, 09:00 UTC)."}, []string{"in 1 days"}},
		{"remind", Page{Lang: "ja", DeadlineDays: 1, Deadline: at},
			[]string{"本日（2027年1月15日 00:00 UTC）から2段階認証が必須になります。"}, nil},
		{"remind", Page{Lang: "en"}, nil, []string{"becomes required"}},
		{"enrol_start", Page{Lang: "en", Required: true, DeadlinePassed: true, Deadline: at},
			[]string{"Two-step verification has been required on this site since 15 January 2027."}, []string{"requires 2-step verification before"}},
		{"enrol_start", Page{Lang: "ja", Required: true, DeadlinePassed: true, Deadline: at},
			[]string{"2027年1月15日から、このサイトでは2段階認証が必須になりました。"}, nil},
		{"enrol_start", Page{Lang: "en", Required: true}, []string{"requires 2-step verification before"}, []string{"has been required"}},
	} {
		tc.p.Prefix = "/.2fa/"
		body := render(t, r, tc.page, &tc.p, false).Body.String()
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s (%s, %d days): lacks %q:\n%s", tc.page, tc.p.Lang, tc.p.DeadlineDays, w, body)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(body, n) {
				t.Errorf("%s (%s, %d days): has %q", tc.page, tc.p.Lang, tc.p.DeadlineDays, n)
			}
		}
	}
}

// The admin pages show a member's deadline: "required from" before it,
// "required now, since" after, in both languages.
func TestAdminDeadlines(t *testing.T) {
	r := newRenderer(t, "")
	for lang, want := range map[string][]string{
		// Dates keep together on the page: non-breaking hyphens and spaces.
		"en": {"required from " + KeepTogether("2027-01-15"), "required now, since " + KeepTogether("2026-11-01"),
			"required from " + KeepTogether("2027-01-15 00:00 UTC") + "</span> <code>/members/* /echo/*</code>"},
		"ja": {KeepTogether("2027-01-15") + "から必須", KeepTogether("2026-11-01") + "から必須（期限切れ）"},
	} {
		a := adminPage()
		a.Members = []AdminMember{{ID: "bob", Deadline: "2027-01-15"}, {ID: "carol", Deadline: "2026-11-01", DeadlinePassed: true}}
		a.Member.Enrolled = false
		a.Member.Deadlines = []AdminDeadline{{Paths: "/members/* /echo/*", At: "2027-01-15 00:00 UTC"}, {Paths: "/shop/*", At: "2026-11-01 00:00 UTC", Passed: true}}
		body := render(t, r, "admin_members", &Page{Lang: lang, Prefix: "/.2fa/", Admin: a}, false).Body.String() +
			render(t, r, "admin_member", &Page{Lang: lang, Prefix: "/.2fa/", Admin: a}, false).Body.String()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: the admin pages lack %q", lang, w)
			}
		}
	}
}

func TestLongDate(t *testing.T) {
	at := time.Date(2027, 12, 3, 23, 0, 0, 0, time.FixedZone("JST", 9*3600)) // 14:00 UTC
	if got := (&Page{Lang: "en"}).LongDate(at); got != "3 December 2027" {
		t.Errorf("en: %q", got)
	}
	if got := (&Page{Lang: "ja"}).LongDate(at); got != "2027年12月3日" {
		t.Errorf("ja: %q", got)
	}
	if got := (&Page{Lang: "en"}).LongDate(time.Time{}); got != "–" {
		t.Errorf("zero: %q", got)
	}
}
