package notify

import (
	"fmt"
	"math"
	"strings"
	ttemplate "text/template"
	"time"
)

// ReportData fills the weekly report to admins: the site's figures for a
// week, with the week before's beside them. The caller adds the figures
// up; the templates only lay them out.
type ReportData struct {
	Site     string
	From, To string // the week's first and last day, YYYY-MM-DD (UTC)

	// Seen and Enrolled are the member counts at the week's last
	// snapshot, and the week before's; -1 where none was taken.
	Seen, Enrolled         int64
	PrevSeen, PrevEnrolled int64

	Methods  []ReportMethod  // verifications by method, in a fixed order
	Channels []ReportChannel // codes sent by channel

	Lockouts, PrevLockouts         int64
	Resets, PrevResets             int64 // admins' resets that took effect
	AdminActions, PrevAdminActions int64
	PendingResets                  int // reset requests waiting for approval now

	// RecoveredCount members got back in after a lockout or a recovery
	// code; RecoveredMedian and RecoveredP90 are in seconds (NaN when
	// RecoveredCount is 0; +Inf when above RecoveredBound, the longest
	// time counted apart, which is then written as "more than" it).
	RecoveredCount                int64
	RecoveredMedian, RecoveredP90 float64
	PrevRecoveredMedian           float64
	RecoveredBound                float64
	Threshold                     float64 // non-delivery rate above which a channel is flagged, 0 to 1
}

// ReportMethod is one method's verifications in the week.
type ReportMethod struct {
	Method                   string
	Verified, Failed         int64
	PrevVerified, PrevFailed int64
}

// ReportChannel is one channel's codes in the week.
type ReportChannel struct {
	Channel                    string
	Sent, NotDelivered         int64
	PrevSent, PrevNotDelivered int64
}

// Rate is the channel's non-delivery rate, 0 to 1: codes not delivered
// out of those tried.
func (c ReportChannel) Rate() float64 { return rate(c.NotDelivered, c.Sent) }

// PrevRate is the week before's.
func (c ReportChannel) PrevRate() float64 { return rate(c.PrevNotDelivered, c.PrevSent) }

func rate(failed, sent int64) float64 {
	if failed+sent == 0 {
		return 0
	}
	return float64(failed) / float64(failed+sent)
}

// Coverage is enrolled members out of those seen, 0 to 1, or NaN without
// counts.
func (d ReportData) Coverage() float64 { return coverage(d.Seen, d.Enrolled) }

// PrevCoverage is the week before's.
func (d ReportData) PrevCoverage() float64 { return coverage(d.PrevSeen, d.PrevEnrolled) }

func coverage(seen, enrolled int64) float64 {
	if seen <= 0 || enrolled < 0 {
		return math.NaN()
	}
	return min(float64(enrolled)/float64(seen), 1)
}

// Flagged lists the channels whose non-delivery rate is above Threshold.
func (d ReportData) Flagged() []ReportChannel {
	var out []ReportChannel
	for _, c := range d.Channels {
		if c.Rate() > d.Threshold {
			out = append(out, c)
		}
	}
	return out
}

var reportFuncs = ttemplate.FuncMap{
	// delta is " (+n)", " (-n)" or " (±0)"; "" when either week has no
	// count.
	"delta": func(now, before int64) string {
		switch {
		case before < 0 || now < 0:
			return ""
		case now > before:
			return fmt.Sprintf(" (+%d)", now-before)
		case now < before:
			return fmt.Sprintf(" (%d)", now-before)
		}
		return " (±0)"
	},
	"pct": func(v float64) string {
		if math.IsNaN(v) {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", v*100)
	},
	"count": func(n int64) string {
		if n < 0 {
			return "-"
		}
		return fmt.Sprint(n)
	},
	"dur": reportDuration,
}

var reportTemplates = map[string]*ttemplate.Template{
	"en": ttemplate.Must(ttemplate.New("en").Funcs(reportFuncs).Option("missingkey=error").ParseFS(templateFiles, "templates/report_en.txt")),
	"ja": ttemplate.Must(ttemplate.New("ja").Funcs(reportFuncs).Option("missingkey=error").ParseFS(templateFiles, "templates/report_ja.txt")),
}

// ReportLanguages are the languages Report writes.
var ReportLanguages = []string{"en", "ja"}

// Report renders the weekly report in lang ("en" or "ja"). To is left
// empty.
func Report(lang string, d ReportData) (Message, error) {
	t, ok := reportTemplates[lang]
	if !ok {
		return Message{}, fmt.Errorf("notify: report language %q: must be en or ja", lang)
	}
	d.Site = cleanSite(d.Site)
	v := struct {
		ReportData
		Lang string
	}{d, lang}
	var subject, text strings.Builder
	if err := t.ExecuteTemplate(&subject, "report_subject", v); err != nil {
		return Message{}, err
	}
	if err := t.ExecuteTemplate(&text, "report_text", v); err != nil {
		return Message{}, err
	}
	return Message{Subject: strings.TrimSpace(subject.String()), Text: strings.TrimSpace(text.String()) + "\n"}, nil
}

// reportDuration writes seconds s rounded to minutes, hours or days;
// +Inf as more than bound.
func reportDuration(lang string, s, bound float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case math.IsInf(s, 1):
		if bound <= 0 || math.IsInf(bound, 0) {
			return "-"
		}
		more := map[string]string{"en": "more than %s", "ja": "%sより長い"}[lang]
		return fmt.Sprintf(more, reportDuration(lang, bound, 0))
	}
	d := time.Duration(s * float64(time.Second))
	units := map[string][3]string{"en": {"%d min", "%.1f h", "%.1f days"}, "ja": {"%d分", "%.1f時間", "%.1f日"}}[lang]
	switch {
	case d < time.Hour:
		return fmt.Sprintf(units[0], int(math.Round(d.Minutes())))
	case d < 48*time.Hour:
		return fmt.Sprintf(units[1], d.Hours())
	}
	return fmt.Sprintf(units[2], d.Hours()/24)
}
