package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
)

// The weekly report, end to end: a week of sign-ins (scriptedDay: an app
// and email enrolled, right and wrong codes, a refused email, a lockout,
// an unlock), then the clock
// reaches Monday 08:00 UTC and exactly one report reaches the admins'
// address over SMTP, with the week's figures beside the week before's.
func TestWeeklyReportEndToEnd(t *testing.T) {
	// Tuesday 2026-12-01 10:00: more than a day after the last Monday
	// 08:00, so no report is due at start.
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC))
	s, mail := codesAdminSetup(t, clk, "weekly_report {\n\t\t\tto security@example.com\n\t\t}")
	e := start(t, s)
	scriptedDay(t, &codeEnv{env: e, mail: mail})
	// The member counts are noted, as every few minutes.
	getFigures(t, e, "")

	clk.Set(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	var report testsmtp.Message
	deadline := time.Now().Add(10 * time.Second)
	for report.Subject == "" {
		for _, m := range mail.Messages() {
			if strings.Contains(m.Subject, "week of") {
				report = m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no weekly report; mail: %d messages", len(mail.Messages()))
		}
		time.Sleep(20 * time.Millisecond) // the figures loop ticks every second
	}
	if strings.Join(report.To, ",") != "security@example.com" || report.Subject != "[Test Members] 2-step verification: week of 2026-11-30 (codes not delivered above 5.0%)" {
		t.Errorf("report to %v: %q", report.To, report.Subject)
	}
	for _, want := range []string{
		"2026-11-30 to 2026-12-06 (UTC)",
		"Members seen:      2",
		"Members enrolled:  2",
		"Enrolled:          100.0% (the week before: -)",
		"totp      passed 1 (+1), failed 3 (+3)",
		"email     passed 1 (+1), failed 1 (+1)",
		"email     sent 2 (+2), not delivered 1 (+1): 33.3% (the week before: 0.0%)  ABOVE 5.0%",
		"Lockouts begun:           1 (+1)",
		"Resets by admins:         0 (±0)",
		"Admins' actions:          1 (+1)",
		"Resets pending approval:  0",
		"Members back in:  0",
	} {
		if !strings.Contains(report.Text, want) {
			t.Errorf("report lacks %q:\n%s", want, report.Text)
		}
	}
	// Within the week, it is not sent again: the week's marker in the
	// store, which TestWeeklyReportOncePerWeek (package twofactor) races
	// two instances for, and this instance's note of it.
	reports := 0
	for _, m := range mail.Messages() {
		if strings.Contains(m.Subject, "week of") {
			reports++
		}
	}
	if reports != 1 {
		t.Errorf("%d reports, want 1", reports)
	}
}
