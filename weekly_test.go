package twofactor

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

func weeklyOptions(day string, hour int) *WeeklyReport {
	r := &WeeklyReport{To: []string{"admins@example.com"}, Day: day, Hour: &hour}
	r.provision()
	return r
}

func TestWeeklyReportSlot(t *testing.T) {
	// 2026-12-07 is a Monday.
	at := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		day  string
		hour int
		now  string
		want string
	}{
		{"monday", 8, "2026-12-07 08:00", "2026-12-07 08:00"},
		{"monday", 8, "2026-12-07 07:59", "2026-11-30 08:00"},
		{"monday", 8, "2026-12-13 23:59", "2026-12-07 08:00"},
		{"sunday", 0, "2026-12-07 08:00", "2026-12-06 00:00"},
		{"friday", 23, "2026-12-07 08:00", "2026-12-04 23:00"},
		{"Tuesday", 8, "2026-12-08 09:00", "2026-12-08 08:00"},
	} {
		if got := weeklyOptions(c.day, c.hour).slot(at(c.now)); !got.Equal(at(c.want)) {
			t.Errorf("%s %d at %s: slot %s, want %s", c.day, c.hour, c.now, got, c.want)
		}
	}
}

func TestWeeklyReportValidate(t *testing.T) {
	hour := func(h int) *int { return &h }
	rate := func(r float64) *float64 { return &r }
	for _, c := range []struct {
		r     WeeklyReport
		email bool
		want  string
	}{
		{WeeklyReport{To: []string{"a@example.com"}}, false, "weekly_report.to: the report is sent by email: configure the email sender"},
		{WeeklyReport{To: []string{"not an address"}}, true, `weekly_report.to[0] "not an address": not an email address`},
		{WeeklyReport{Day: "someday"}, true, `weekly_report.day "someday": must be a day of the week`},
		{WeeklyReport{Hour: hour(24)}, true, "weekly_report.hour 24: must be 0 to 23"},
		{WeeklyReport{Hour: hour(-1)}, true, "weekly_report.hour -1: must be 0 to 23"},
		{WeeklyReport{NonDeliveryThreshold: rate(1.5)}, true, "weekly_report.non_delivery_threshold 1.5: must be 0 to 1"},
		{WeeklyReport{NonDeliveryThreshold: rate(math.NaN())}, true, "weekly_report.non_delivery_threshold NaN: must be 0 to 1"},
		{WeeklyReport{Lang: "fr"}, true, `weekly_report.lang "fr": must be en or ja`},
	} {
		c.r.provision()
		if err := c.r.validate(c.email); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.r, err, c.want)
		}
	}
	ok := WeeklyReport{To: []string{"a@example.com"}, Day: "Sunday", Hour: hour(0), NonDeliveryThreshold: rate(0), Lang: "ja"}
	ok.provision()
	if err := ok.validate(true); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
	var off *WeeklyReport
	if off.on() || (&WeeklyReport{}).on() {
		t.Error("a report without to is on")
	}
}

func TestParseWeeklyReport(t *testing.T) {
	if _, _, err := parseGlobal(t, "two_factor {\nweekly_report now {\n}\n}"); err == nil || !strings.Contains(err.Error(), "wrong argument count") {
		t.Errorf("an argument after weekly_report: %v", err)
	}
	app, _, err := parseGlobal(t, `two_factor {
		weekly_report {
			to security@example.com ops@example.com
			to cto@example.com
			day friday
			hour 17
			non_delivery_threshold 0.1
			lang ja
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	r := app.WeeklyReport
	if r == nil || strings.Join(r.To, " ") != "security@example.com ops@example.com cto@example.com" || r.Day != "friday" ||
		*r.Hour != 17 || *r.NonDeliveryThreshold != 0.1 || r.Lang != "ja" {
		t.Fatalf("parsed %+v", r)
	}
	for body, want := range map[string]string{
		"to":                          "to: at least one address is required",
		"hour eight":                  `hour: bad number "eight"`,
		"non_delivery_threshold high": `non_delivery_threshold: bad number "high"`,
		"day monday tuesday":          "day: expected one value",
		"every week":                  `weekly_report: unknown option "every"`,
		"day monday\nday friday":      "weekly_report: day given twice",
	} {
		input := "two_factor {\nweekly_report {\n" + body + "\n}\n}"
		if _, _, err := parseGlobal(t, input); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", input, err, want)
		}
	}
}

// reportFixture is an embedded store, an SMTP server on loopback and a
// sender to it.
func reportFixture(t *testing.T) (*embedded.Store, *testsmtp.Server, notify.Sender) {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "weekly.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mail := testsmtp.Start(t, testsmtp.Options{})
	sender, err := notify.NewSMTP(notify.SMTPConfig{Host: mail.Host(), Port: mail.Port(), TLS: "none",
		From: "Reports <reports@example.com>", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return st, mail, sender
}

// Two instances reach the hour at once: one sends the report, to every
// recipient, over SMTP; neither sends it again that week.
func TestWeeklyReportOncePerWeek(t *testing.T) {
	st, mail, sender := reportFixture(t)
	opts := weeklyOptions("monday", 8)
	opts.To = []string{"security@example.com", "ops@example.com"}
	var reads sync.Map
	newReporter := func(instance string) *reporter {
		return &reporter{opts: opts, st: st, sender: sender, instance: instance, logger: zap.NewNop(),
			site:    func() string { return "Example Club" },
			pending: func(context.Context) (int, error) { return 1, nil },
			figures: func(ctx context.Context, from, to time.Time) ([]audit.Day, error) {
				reads.Store(instance, from.Format(time.DateOnly)+" "+to.Format(time.DateOnly))
				return audit.Days(ctx, st, from, to)
			}}
	}
	a, b := newReporter("a"), newReporter("b")
	monday8 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, r := range []*reporter{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r.due(t.Context(), monday8)
		}()
	}
	close(start)
	wg.Wait()
	msgs := mail.Wait(t, 2, 5*time.Second)
	a.due(t.Context(), monday8.Add(time.Hour))
	b.due(t.Context(), monday8.Add(2*time.Hour))
	if n := len(mail.Messages()); n != 2 {
		t.Fatalf("%d messages, want one report to each of 2 recipients", n)
	}
	to := map[string]bool{}
	for _, m := range msgs {
		to[strings.Join(m.To, ",")] = true
		if !strings.Contains(m.Subject, "[Example Club] 2-step verification: week of 2026-11-30") ||
			!strings.Contains(m.Text, "2026-11-30 to 2026-12-06") || !strings.Contains(m.Text, "Resets pending approval:  1") {
			t.Errorf("report: %s\n%s", m.Subject, m.Text)
		}
	}
	if !to["security@example.com"] || !to["ops@example.com"] {
		t.Errorf("sent to %v", to)
	}
	n := 0
	reads.Range(func(_, v any) bool {
		n++
		if v != "2026-11-23 2026-12-06" {
			t.Errorf("read figures of %v, want the two weeks before", v)
		}
		return true
	})
	if n != 1 {
		t.Errorf("%d instances composed the report, want 1", n)
	}
	// The next week's goes out at its hour, and a report more than a
	// day late is not sent.
	a.due(t.Context(), monday8.AddDate(0, 0, 7))
	mail.Wait(t, 4, 5*time.Second)
	b.due(t.Context(), monday8.AddDate(0, 0, 15).Add(time.Hour))
	if n := len(mail.Messages()); n != 4 {
		t.Errorf("%d messages after a late week, want 4", n)
	}
}

// A failed send releases the week's marker, so the report is tried again
// (by this instance after reportRetry, or by another), and is sent once
// the server takes it.
func TestWeeklyReportRetries(t *testing.T) {
	st, mail, sender := reportFixture(t)
	r := &reporter{opts: weeklyOptions("monday", 8), st: st, sender: sender, instance: "a", logger: zap.NewNop(),
		site: func() string { return "Example" }, pending: func(context.Context) (int, error) { return 0, nil },
		figures: func(ctx context.Context, from, to time.Time) ([]audit.Day, error) {
			return audit.Days(ctx, st, from, to)
		}}
	monday8 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	mail.Fail("reject")
	r.due(t.Context(), monday8)
	if _, err := st.Get(t.Context(), reportMarker(monday8)); err == nil {
		t.Fatal("the week's marker is kept after a failed send")
	}
	mail.Fail("")
	r.due(t.Context(), monday8.Add(time.Minute))
	if n := len(mail.Messages()); n != 0 {
		t.Fatalf("tried again within reportRetry: %d messages", n)
	}
	r.due(t.Context(), monday8.Add(reportRetry))
	mail.Wait(t, 1, 5*time.Second)
}

// The report adds up each week's days, members from the week's last
// count, and flags a channel above the threshold.
func TestReportData(t *testing.T) {
	day := func(date string, seen, enrolled int64, edit func(*audit.Day)) audit.Day {
		dt, _ := time.Parse(time.DateOnly, date)
		d := audit.Day{Date: dt, Seen: seen, Enrolled: enrolled, Recovered: audit.NewHistogram(audit.RecoveredBounds)}
		if edit != nil {
			edit(&d)
		}
		return d
	}
	var prev, week []audit.Day
	for i := range 7 {
		prev = append(prev, day(time.Date(2026, 11, 23+i, 0, 0, 0, 0, time.UTC).Format(time.DateOnly), -1, -1, nil))
		week = append(week, day(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).Format(time.DateOnly), -1, -1, nil))
	}
	prev[6] = day("2026-11-29", 8, 4, func(d *audit.Day) {
		d.Verifications = map[string]map[string]int64{"totp": {"ok": 5, "wrong": 1}}
		d.Sent = map[string]map[string]int64{"sms": {"sent": 10}}
		d.Lockouts = map[string]int64{"account": 2}
	})
	week[2] = day("2026-12-02", 9, 5, func(d *audit.Day) {
		d.Verifications = map[string]map[string]int64{"totp": {"ok": 3, "wrong": 2, "locked": 1}, "email": {"ok": 1}}
		d.Sent = map[string]map[string]int64{"sms": {"sent": 9, "timeout": 1, "limited": 4}, "email": {"sent": 20}}
		d.AdminActions = map[string]int64{"reset": 1, "unlock": 2}
		d.Recovered.Observe(100)
		d.Recovered.Observe(200)
	})
	week[5] = day("2026-12-05", 10, 6, nil)
	d := reportData(prev, week, 0.05)
	d.Site = "Example"
	if d.Seen != 10 || d.Enrolled != 6 || d.PrevSeen != 8 || d.From != "2026-11-30" || d.To != "2026-12-06" {
		t.Errorf("members or dates: %+v", d)
	}
	msg, err := notify.Report("en", d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Members seen:      10 (+2)",
		"Members enrolled:  6 (+2)",
		"Enrolled:          60.0% (the week before: 50.0%)",
		"totp      passed 3 (-2), failed 3 (+2)",
		"email     passed 1 (+1), failed 0 (±0)",
		"email     sent 20 (+20), not delivered 0 (±0): 0.0%",
		"sms       sent 9 (-1), not delivered 1 (+1): 10.0% (the week before: 0.0%)  ABOVE 5.0%",
		"Lockouts begun:           0 (-2)",
		"Resets by admins:         1 (+1)",
		"Admins' actions:          3 (+3)",
		"Members back in:  2",
		"Median:           3 min (the week before: -)",
	} {
		if !strings.Contains(msg.Text, want) {
			t.Errorf("report lacks %q:\n%s", want, msg.Text)
		}
	}
	if !strings.Contains(msg.Subject, "(codes not delivered above 5.0%)") {
		t.Errorf("subject %q does not flag the channel", msg.Subject)
	}
	ja, err := notify.Report("ja", d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"設定率：            60.0%（前週：50.0%）", "sms       送信 9 (-1)、未達 1 (+1)：10.0%（前週：0.0%）  5.0%超", "中央値：          3分（前週：-）"} {
		if !strings.Contains(ja.Text, want) {
			t.Errorf("ja report lacks %q:\n%s", want, ja.Text)
		}
	}
}
