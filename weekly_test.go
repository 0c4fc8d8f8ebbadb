package twofactor

import (
	"context"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
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

// testReporter is instance's reporter on st, sending through sender,
// with a state of its own.
func testReporter(st store.Store, opts *WeeklyReport, sender notify.Sender, instance string, logger *zap.Logger) *reporter {
	return &reporter{opts: opts, st: st, sender: sender, instance: instance, logger: logger, state: new(reportState),
		site:    func() string { return "Example Club" },
		pending: func(context.Context) (int, error) { return 1, nil },
		figures: func(ctx context.Context, from, to time.Time) ([]audit.Day, error) {
			days, _, err := audit.Days(ctx, st, from, to)
			return days, err
		}}
}

// countingSender is a sender that counts the sends it passes on, by
// recipient.
type countingSender struct {
	notify.Sender
	mu    sync.Mutex
	tries map[string]int
}

func (c *countingSender) Send(ctx context.Context, m notify.Message) error {
	c.mu.Lock()
	c.tries[m.To]++
	c.mu.Unlock()
	return c.Sender.Send(ctx, m)
}

func (c *countingSender) count() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.tries)
}

// Two instances reach the hour at once: one sends the report, to every
// recipient, over SMTP; neither sends it again that week.
func TestWeeklyReportOncePerWeek(t *testing.T) {
	st, mail, sender := reportFixture(t)
	opts := weeklyOptions("monday", 8)
	opts.To = []string{"security@example.com", "ops@example.com"}
	var reads sync.Map
	newReporter := func(instance string) *reporter {
		r := testReporter(st, opts, sender, instance, zap.NewNop())
		read := r.figures
		r.figures = func(ctx context.Context, from, to time.Time) ([]audit.Day, error) {
			reads.Store(instance, from.Format(time.DateOnly)+" "+to.Format(time.DateOnly))
			return read(ctx, from, to)
		}
		return r
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

// A failed send is tried again by the instance holding the week, not
// before reportRetry, and the report goes out once the server takes it.
func TestWeeklyReportRetries(t *testing.T) {
	st, mail, sender := reportFixture(t)
	clk := clock.NewFake(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	a := testReporter(st, weeklyOptions("monday", 8), sender, "a", zap.NewNop())
	b := testReporter(st, weeklyOptions("monday", 8), sender, "b", zap.NewNop())
	mail.Fail("reject")
	a.due(t.Context(), clk.Now())
	marker, err := st.Get(t.Context(), reportMarker(clk.Now()))
	if err != nil || !strings.HasPrefix(string(marker), "a ") || len(marker) < len("a ")+16 {
		t.Fatalf("the week's marker after a failed send: %q, %v; want a's, with a nonce", marker, err)
	}
	mail.Fail("")
	b.due(t.Context(), clk.Now()) // a holds the week
	a.due(t.Context(), clk.Now().Add(reportRetry-time.Second))
	if n := len(mail.Messages()); n != 0 {
		t.Fatalf("sent by the other instance or within reportRetry: %d messages", n)
	}
	sentOnRetry(t, clk, mail, a, b)
}

// sentOnRetry checks that a, holding the week, sends the report
// reportRetry after now, and that neither a nor b sends it again.
func sentOnRetry(t *testing.T, clk *clock.Fake, mail *testsmtp.Server, a, b *reporter) {
	t.Helper()
	clk.Advance(reportRetry)
	a.due(t.Context(), clk.Now())
	mail.Wait(t, 1, 5*time.Second)
	clk.Advance(reportRetry)
	a.due(t.Context(), clk.Now())
	b.due(t.Context(), clk.Now())
	if n := len(mail.Messages()); n != 1 {
		t.Errorf("%d messages after the report went out, want the one report", n)
	}
}

// A send that fails every time is tried maxReportAttempts times, then
// given up for the week with an error in the log, and no instance tries
// again that week; the next week's report is tried afresh.
func TestWeeklyReportGivesUp(t *testing.T) {
	st, mail, sender := reportFixture(t)
	counted := &countingSender{Sender: sender, tries: map[string]int{}}
	core, logs := observer.New(zap.InfoLevel)
	monday8 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(monday8)
	opts := weeklyOptions("monday", 8)
	a := testReporter(st, opts, counted, "a", zap.New(core))
	b := testReporter(st, opts, counted, "b", zap.NewNop())
	mail.Fail("reject")
	for clk.Now().Before(monday8.Add(reportGrace)) {
		a.due(t.Context(), clk.Now())
		b.due(t.Context(), clk.Now())
		clk.Advance(time.Minute)
	}
	if got := counted.count()["admins@example.com"]; got != maxReportAttempts {
		t.Errorf("%d attempts in the day after the hour, want %d", got, maxReportAttempts)
	}
	retrying := logs.FilterMessage("weekly report: not sent to every recipient; trying again later").All()
	gaveUp := logs.FilterMessage("weekly report: not sent to every recipient; given up for the week").All()
	if len(retrying) != maxReportAttempts-1 || len(gaveUp) != 1 {
		t.Fatalf("logged %d retries and %d give-ups, want %d and 1: %v", len(retrying), len(gaveUp), maxReportAttempts-1, logs.All())
	}
	if f := gaveUp[0].ContextMap(); gaveUp[0].Level != zap.ErrorLevel || f["attempt"] != int64(maxReportAttempts) ||
		f["week"] != "2026-11-30" || !strings.Contains(fmt.Sprint(f["error"]), "to admins@example.com") {
		t.Errorf("give-up logged as %v %v", gaveUp[0].Level, f)
	}
	if len(mail.Messages()) != 0 {
		t.Errorf("%d messages through a server that refuses them", len(mail.Messages()))
	}

	// The next week is tried again, and sent.
	mail.Fail("")
	a.due(t.Context(), monday8.AddDate(0, 0, 7))
	mail.Wait(t, 1, 5*time.Second)
	if got := counted.count()["admins@example.com"]; got != maxReportAttempts+1 {
		t.Errorf("%d sends after the next week's, want %d", got, maxReportAttempts+1)
	}
}

// A recipient the report reached is not sent it again when another was
// not reached and the report is tried again; that one gets it when the
// server takes it.
func TestWeeklyReportRetriesOnlyMissedRecipients(t *testing.T) {
	st, mail, sender := reportFixture(t)
	counted := &countingSender{Sender: sender, tries: map[string]int{}}
	clk := clock.NewFake(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	opts := weeklyOptions("monday", 8)
	opts.To = []string{"security@example.com", "ops@example.com"}
	r := testReporter(st, opts, counted, "a", zap.NewNop())
	mail.Reject("ops@example.com")
	r.due(t.Context(), clk.Now())
	mail.Wait(t, 1, 5*time.Second)
	clk.Advance(reportRetry)
	r.due(t.Context(), clk.Now())
	mail.Reject()
	clk.Advance(reportRetry)
	r.due(t.Context(), clk.Now())
	msgs := mail.Wait(t, 2, 5*time.Second)
	clk.Advance(reportRetry)
	r.due(t.Context(), clk.Now())
	if got, want := counted.count(), map[string]int{"security@example.com": 1, "ops@example.com": 3}; !maps.Equal(got, want) {
		t.Errorf("sends by recipient %v, want %v", got, want)
	}
	var to []string
	for _, m := range mail.Messages() {
		to = append(to, strings.Join(m.To, ","))
	}
	if len(msgs) != 2 || strings.Join(to, " ") != "security@example.com ops@example.com" {
		t.Errorf("delivered to %q, want each recipient once", to)
	}
}

// The swap taking the week's marker runs on Redis but its reply is lost:
// the instance does not know it holds the week. Reading the marker back
// when it can, it finds its own nonce and sends the report; the other
// instance, finding the marker taken, does not.
func TestWeeklyReportMarkerReplyLost(t *testing.T) {
	srv := testredis.Start(t)
	proxy := testredis.StartProxy(t, srv.Addr)
	newStore := func(addr string) store.Store {
		client := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
			ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { client.Close() })
		return redis.New(client, "weekly:")
	}
	_, mail, sender := reportFixture(t)
	clk := clock.NewFake(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	opts := weeklyOptions("monday", 8)
	viaProxy, direct := newStore(proxy.Addr), newStore(srv.Addr)
	a := testReporter(viaProxy, opts, sender, "a", zap.NewNop())
	b := testReporter(direct, opts, sender, "b", zap.NewNop())

	// A connection made, and the swap's script loaded, before: a new
	// connection's handshake, or the script's loading, would time out
	// before the swap runs.
	if _, err := viaProxy.CompareAndSwap(t.Context(), "warm", nil, []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	proxy.DropReplies()
	a.due(t.Context(), clk.Now()) // the swap runs, then reading back times out too
	marker, err := direct.Get(t.Context(), reportMarker(clk.Now()))
	if err != nil || !strings.HasPrefix(string(marker), "a ") {
		t.Fatalf("the week's marker: %q, %v; want a's", marker, err)
	}
	proxy.Resume()
	b.due(t.Context(), clk.Now())
	if n := len(mail.Messages()); n != 0 {
		t.Fatalf("%d messages from the instance that found the marker taken", n)
	}
	sentOnRetry(t, clk, mail, a, b)
}

// Reporters of one instance and store in this process share their state:
// the reporter a config reload makes knows the week the old one took.
func TestWeeklyReportStateAcrossReloads(t *testing.T) {
	if sharedReportState("store-1", "a") != sharedReportState("store-1", "a") {
		t.Error("two reporters of one instance and store have their own states")
	}
	if sharedReportState("store-1", "a") == sharedReportState("store-2", "a") ||
		sharedReportState("store-1", "a") == sharedReportState("store-1", "b") ||
		sharedReportState("", "a") == sharedReportState("", "a") {
		t.Error("reporters of different stores, instances or an unknown store share a state")
	}
	st, mail, sender := reportFixture(t)
	clk := clock.NewFake(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	old := testReporter(st, weeklyOptions("monday", 8), sender, "a", zap.NewNop())
	old.state = sharedReportState(t.Name(), "a")
	mail.Fail("reject")
	old.due(t.Context(), clk.Now())
	mail.Fail("")
	reloaded := testReporter(st, weeklyOptions("monday", 8), sender, "a", zap.NewNop())
	reloaded.state = sharedReportState(t.Name(), "a")
	clk.Advance(reportRetry)
	reloaded.due(t.Context(), clk.Now())
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
