package notify

import (
	"math"
	"strings"
	"testing"
)

func TestReportRefusesUnknownLanguage(t *testing.T) {
	if _, err := Report("fr", ReportData{}); err == nil || !strings.Contains(err.Error(), `report language "fr": must be en or ja`) {
		t.Errorf("Report(fr): %v", err)
	}
}

// A week without figures reads as such: no counts are "-", no channel or
// method is listed, nothing is flagged, and the site name stays on one
// line.
func TestReportOfAnEmptyWeek(t *testing.T) {
	d := ReportData{Site: "Example\r\nBcc: x@example.com", From: "2026-11-30", To: "2026-12-06", Seen: -1, Enrolled: -1,
		PrevSeen: -1, PrevEnrolled: -1, RecoveredMedian: math.NaN(), RecoveredP90: math.NaN(), PrevRecoveredMedian: math.NaN(),
		Threshold: 0.05}
	for _, lang := range ReportLanguages {
		msg, err := Report(lang, d)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(msg.Subject, "\r\n") || !strings.Contains(msg.Subject, "[Example Bcc: x@example.com]") {
			t.Errorf("%s: subject %q", lang, msg.Subject)
		}
		for _, bad := range []string{"ABOVE", "超", "NaN", "<no value>"} {
			if strings.Contains(msg.Text, bad) {
				t.Errorf("%s: %q in an empty week's report:\n%s", lang, bad, msg.Text)
			}
		}
	}
	msg, _ := Report("en", d)
	for _, want := range []string{"Members seen:      -\n", "Enrolled:          - (the week before: -)", "Verifications, passed and failed\n  none", "Median:           - (the week before: -)"} {
		if !strings.Contains(msg.Text, want) {
			t.Errorf("empty week lacks %q:\n%s", want, msg.Text)
		}
	}
}

// A quantile above the longest time counted apart reads as more than
// it, never as that time itself.
func TestReportRecoveryAboveTheLastBound(t *testing.T) {
	d := ReportData{From: "2026-11-30", To: "2026-12-06", RecoveredCount: 3, RecoveredMedian: 600,
		RecoveredP90: math.Inf(1), PrevRecoveredMedian: math.NaN(), RecoveredBound: 7 * 86400, Threshold: 0.05}
	for lang, want := range map[string]string{"en": "90th percentile:  more than 7.0 days", "ja": "90パーセンタイル：7.0日より長い"} {
		msg, err := Report(lang, d)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(msg.Text, want) || strings.Contains(msg.Text, "Inf") {
			t.Errorf("%s: want %q in:\n%s", lang, want, msg.Text)
		}
	}
}
