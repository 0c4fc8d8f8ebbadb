package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// The daily figures after a scripted day: enrolments, right and wrong
// codes by app and by email, an email that the mail server refused, a
// lockout and an admin's unlock, read through the admin API and the CLI,
// exactly; then across midnight and a restart.
func TestFiguresAfterSignIns(t *testing.T) {
	// Noon, so the script stays within the day.
	noon := time.Now().UTC().Truncate(24 * time.Hour).Add(12*time.Hour + time.Second)
	s, mail := codesAdminSetup(t, clock.NewFake(noon), "")
	e := start(t, s)
	aliceSecret := scriptedDay(t, &codeEnv{env: e, mail: mail})

	today := noon.Format(time.DateOnly)
	days := getFigures(t, e, "?from="+noon.AddDate(0, 0, -1).Format(time.DateOnly)+"&to="+today)
	if len(days) != 2 {
		t.Fatalf("%d days, want 2", len(days))
	}
	if d := days[0]; d.Seen != -1 || d.Enrolled != -1 || d.Verifications != nil {
		t.Errorf("yesterday, before the gateway ran: %+v", d)
	}
	want := audit.Day{
		Date:          noon.Truncate(24 * time.Hour),
		Seen:          2,
		Enrolled:      2,
		Verifications: map[string]map[string]int64{"totp": {"ok": 1, "wrong": 3}, "email": {"ok": 1, "wrong": 1}},
		Sent:          map[string]map[string]int64{"email": {"sent": 2, "rejected": 1}},
		Lockouts:      map[string]int64{"account": 1},
		Enrolments:    map[string]int64{"totp": 1, "email": 1},
		AdminActions:  map[string]int64{"unlock": 1},
		Recovered:     audit.NewHistogram(audit.RecoveredBounds),
	}
	if got := days[1]; !reflect.DeepEqual(got, want) {
		t.Errorf("today's figures:\n got %+v\nwant %+v", got, want)
	}

	// The CLI's table says the same.
	out, code := twoFactorCLI(t, "figures", "--address", e.admin, "--from", today, "--to", today)
	if code != 0 {
		t.Fatalf("figures: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !reflect.DeepEqual(strings.Fields(lines[1]), []string{today, "2", "2", "2", "4", "2", "1", "1", "1", "0"}) {
		t.Errorf("figures table:\n%s", out)
	}

	// Past midnight, after a restart on the same store: today's counts
	// were kept, and the new day counts afresh.
	e.stop()
	e.clock.Set(noon.Add(12 * time.Hour))
	s.clock = e.clock
	e = start(t, s)
	a3 := e.browser()
	a3.login("alice")
	e.nextStep()
	if r := a3.verify(e.code(aliceSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice after midnight: %d: %s", r.status, r.body)
	}
	days = getFigures(t, e, "?from="+today)
	if len(days) != 2 {
		t.Fatalf("from %s, by default up to today: %d days, want 2", today, len(days))
	}
	if got := days[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("yesterday's figures after the restart:\n got %+v\nwant %+v", got, want)
	}
	if got := days[1].Verifications; !reflect.DeepEqual(got, map[string]map[string]int64{"totp": {"ok": 1}}) {
		t.Errorf("the new day's verifications: %v", got)
	}
}

// Bad ranges are refused, naming the field.
func TestFiguresRefusesBadRanges(t *testing.T) {
	e := start(t, setup{admin: true})
	for query, want := range map[string]string{
		"?from=yesterday":                `from: "yesterday": must be a date, YYYY-MM-DD`,
		"?to=2026-13-01":                 `to: "2026-13-01": must be a date, YYYY-MM-DD`,
		"?from=2026-03-02&to=2026-03-01": "from: 2026-03-02: must not be after to (2026-03-01)",
		"?from=2025-01-01&to=2026-03-01": "from: 2025-01-01 to 2026-03-01 is 425 days; at most 400 at once",
	} {
		resp, err := http.Get("http://" + e.admin + "/two-factor/figures" + query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body.Error != want {
			t.Errorf("%s: %d %q, want 400 saying %q", query, resp.StatusCode, body.Error, want)
		}
	}
	if out, code := twoFactorCLI(t, "figures", "--address", e.admin, "--from", "2026-3-1"); code != 2 || !strings.Contains(out, "from") {
		t.Errorf("CLI with a bad date: exit %d\n%s", code, out)
	}
}

// codesAdminSetup is a gateway with the admin endpoint, an SMTP server on
// loopback (returned) and an SNS endpoint, max_failures 3, lockout 1h,
// extra global lines, and clock clk.
func codesAdminSetup(t *testing.T, clk *clock.Fake, extra string) (setup, *testsmtp.Server) {
	t.Helper()
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	db := filepath.Join(t.TempDir(), "twofactor.db")
	return setup{policy: codePolicy, admin: true, dbPath: db, clock: clk,
		global: fmt.Sprintf("keys %q\n\t\tstore embedded %q\n", testKey, db) +
			senders(mail, testsns.Start(t), "max_failures 3\n\t\tlockout 1h\n\t\t"+extra)}, mail
}

// scriptedDay runs the sign-ins the figures and the weekly report are
// checked against, and returns alice's app secret: alice enrols an app
// and bob email (a code sent); bob signs in by email with a wrong code
// then the right one; the mail server refuses bob's next code; alice
// signs in, then three wrong codes lock her out and an admin unlocks
// her. Both are seen on a protected path.
func scriptedDay(t *testing.T, c *codeEnv) string {
	t.Helper()
	e := c.env
	_, aliceSecret := enrolled(e, "alice") // an app enrolled
	bob := e.browser()
	bob.login("bob")
	c.enrolEmail(bob, "/members/", 1) // a code sent, email enrolled

	// Bob signs in by email in a new browser: a wrong code, then the
	// right one.
	e.clock.Advance(2 * time.Minute)
	b := e.browser()
	b.login("bob")
	if r := b.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("sending bob's code: %d: %s", r.status, r.body)
	}
	_, mailed := c.mailCode(2)
	b.verifyCode("email", wrongCode(mailed), "/members/")
	if r := b.verifyCode("email", mailed, "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("bob's emailed code: %d: %s", r.status, r.body)
	}
	b.get("/members/") // seen on a protected path
	// The mail server refuses the next one.
	c.mail.Fail("reject")
	e.clock.Advance(2 * time.Minute)
	b2 := e.browser()
	b2.login("bob")
	if r := b2.send("email", "/members/"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a refused email: %d: %s", r.status, r.body)
	}
	c.mail.Fail("")

	// Alice: the right code, then three wrong ones in another browser,
	// which lock her out, and an admin unlocks her.
	e.nextStep()
	a := e.browser()
	a.login("alice")
	if r := a.verify(e.code(aliceSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice's code: %d: %s", r.status, r.body)
	}
	a.get("/members/")
	a2 := e.browser()
	a2.login("alice")
	for range 3 {
		a2.verify(wrongCode(e.code(aliceSecret, 0)), "/members/", false)
	}
	if out, code := twoFactorCLI(t, "members", "unlock", "--address", e.admin, "alice", "--reason", "called support"); code != 0 {
		t.Fatalf("unlock: exit %d\n%s", code, out)
	}
	return aliceSecret
}

// getFigures reads GET /two-factor/figures with query.
func getFigures(t *testing.T, e *env, query string) []audit.Day {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + "/two-factor/figures" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET figures%s: %d %s", query, resp.StatusCode, body)
	}
	var res struct {
		Days []audit.Day `json:"days"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("figures: %v: %s", err, body)
	}
	return res.Days
}
