package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/pages"
)

// Enrolment deadlines through a real Caddy: a grace period from the
// gateway's first sight of a member, and a date for everyone. Before the
// deadline a member without a second factor passes with a countdown
// reminder and the upstream is told "grace"; after it they must enrol.

// deadlinePolicy protects /echo/* with a grace period and /public/* from a
// date; /members/* stays required at once, for the admins.
const deadlinePolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo-admin/* {
	}
	protect /echo/* {
		enrolment required grace 14d
	}
	protect /public/* {
		enrolment required from 2027-01-15
	}
	site_name "Test Members"
`

// navigate fetches path as a browser loading a page does.
func (b *browser) navigate(path string) *response {
	b.t.Helper()
	b.header.Set("Sec-Fetch-Mode", "navigate")
	defer b.header.Del("Sec-Fetch-Mode")
	return b.get(path)
}

// script fetches path as a page's script does.
func (b *browser) script(path string) *response {
	b.t.Helper()
	b.header.Set("Sec-Fetch-Mode", "cors")
	defer b.header.Del("Sec-Fetch-Mode")
	return b.get(path)
}

// wantRemind checks that path sends the browser to the reminder, and
// returns the reminder page.
func wantRemind(t *testing.T, b *browser, path string) *response {
	t.Helper()
	r := b.navigate(path)
	if r.status != http.StatusFound || r.location() != "/.2fa/remind?return_to="+url.QueryEscape(path) {
		t.Fatalf("GET %s: %d %q, want the reminder", path, r.status, r.location())
	}
	page := b.get(r.location())
	if page.status != http.StatusOK {
		t.Fatalf("the reminder: %d %s", page.status, page.body)
	}
	return page
}

// wantGrace checks that path passes with the upstream told the member is
// in grace until deadline.
func wantGrace(t *testing.T, b *browser, path string, deadline time.Time) {
	t.Helper()
	status, h := b.upstream(path)
	if status != http.StatusOK {
		t.Fatalf("GET %s in grace: %d", path, status)
	}
	want := map[string]string{"X-2fa-Enrolled": "false", "X-2fa-Method": "none", "X-2fa-Enrolment": "grace",
		"X-2fa-Enrolment-Deadline": deadline.UTC().Format(time.RFC3339)}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
}

// wantHeldBack checks that path, past the deadline, sends a page load to
// enrolment and refuses a script with 401.
func wantHeldBack(t *testing.T, b *browser, path string) {
	t.Helper()
	if r := b.navigate(path); r.status != http.StatusFound || r.location() != "/.2fa/enrol?return_to="+url.QueryEscape(path) {
		t.Fatalf("GET %s past the deadline: %d %q, want enrolment", path, r.status, r.location())
	}
	if r := b.script(path); r.status != http.StatusUnauthorized {
		t.Fatalf("a script's GET %s past the deadline: %d", path, r.status)
	}
}

func countAudit(e *env, event, user string) int {
	n := 0
	for _, a := range e.audit() {
		if a["event"] == event && a["user"] == user {
			n++
		}
	}
	return n
}

// The grace form: counted from the first sight, with a daily reminder
// that counts down (en and ja), a snooze, and enrolment required after.
// The start survives a restart and is never started again.
func TestEnrolmentGraceThroughCaddy(t *testing.T) {
	e := start(t, setup{policy: deadlinePolicy})
	b := e.browser()
	b.login("bob")
	first := e.clock.Now().Truncate(time.Second)
	deadline := first.Add(14 * 24 * time.Hour)
	day := func(t time.Time) string {
		return fmt.Sprintf("%d %s %d", t.UTC().Day(), t.UTC().Month(), t.UTC().Year())
	}

	page := wantRemind(t, b, "/echo/x")
	if want := fmt.Sprintf("Two-step verification becomes required in 14 days (on %s).", day(deadline)); !strings.Contains(page.body, want) {
		t.Fatalf("the reminder lacks %q:\n%s", want, page.body)
	}
	// The reminder started its interval: the member passes, in grace.
	wantGrace(t, b, "/echo/x", deadline)
	if n := countAudit(e, "enrolment_grace_started", "bob"); n != 1 {
		t.Fatalf("enrolment_grace_started logged %d times", n)
	}

	// Restart on the same store: the start stays.
	e.stop()
	e = start(t, setup{policy: deadlinePolicy, dbPath: e.dbPath, clock: e.clock})
	b.e = e // the same browser, its cookies kept
	b.login("bob")
	wantGrace(t, b, "/echo/x", deadline)

	// Nine days on and a half: five days left, rounded up, daily reminders.
	e.clock.Advance(9*24*time.Hour + 12*time.Hour)
	b.lang = "ja"
	page = wantRemind(t, b, "/echo/x")
	jaDay := fmt.Sprintf("%d年%d月%d日", deadline.UTC().Year(), int(deadline.UTC().Month()), deadline.UTC().Day())
	if want := "あと5日で2段階認証が必須になります（" + jaDay + "）"; !strings.Contains(page.body, want) {
		t.Fatalf("the reminder in ja lacks %q:\n%s", want, page.body)
	}
	b.lang = "en"
	// "Later" puts it off for a day.
	tok := inputValue(page.body, "csrf")
	if r := b.post("/.2fa/remind", url.Values{"csrf": {tok}, "return_to": {"/echo/x"}}); r.status != http.StatusSeeOther || r.location() != "/echo/x" {
		t.Fatalf("later: %d %q", r.status, r.location())
	}
	wantGrace(t, b, "/echo/x", deadline)
	e.clock.Advance(23 * time.Hour)
	wantGrace(t, b, "/echo/x", deadline)

	// The last day.
	e.clock.Advance(deadline.Add(-10 * time.Hour).Sub(e.clock.Now()))
	page = wantRemind(t, b, "/echo/x")
	if want := fmt.Sprintf("Two-step verification becomes required today (%s, %s UTC).", day(deadline), deadline.UTC().Format("15:04")); !strings.Contains(page.body, want) {
		t.Fatalf("the reminder on the last day lacks %q:\n%s", want, page.body)
	}

	// Past the deadline: enrol, as on a required rule.
	e.clock.Advance(10 * time.Hour)
	wantHeldBack(t, b, "/echo/x")
	wantHeldBack(t, b, "/echo/y")
	enrol := b.get("/.2fa/enrol?return_to=%2Fecho%2Fx")
	if want := fmt.Sprintf("Two-step verification has been required on this site since %s.", day(deadline)); !strings.Contains(enrol.body, want) ||
		strings.Contains(enrol.body, ">Later<") {
		t.Fatalf("the enrolment page lacks %q, or offers later:\n%s", want, enrol.body)
	}
	if n := countAudit(e, "enrolment_deadline_passed", "bob"); n != 1 {
		t.Fatalf("enrolment_deadline_passed logged %d times", n)
	}
	if n := countAudit(e, "enrolment_grace_started", "bob"); n != 0 {
		t.Fatalf("the grace started again after the restart (%d)", n)
	}
	// Enrolled: the verified path, with none of the enrolment headers.
	b.enrol("/echo/x")
	status, h := b.upstream("/echo/x")
	if status != http.StatusOK || h.Get("X-2fa-Enrolled") != "true" || h.Get("X-2fa-Enrolment") != "" || h.Get("X-2fa-Enrolment-Deadline") != "" {
		t.Fatalf("enrolled: %d %v", status, h)
	}

	// A member first seen now has a grace of their own.
	alice := e.browser()
	alice.login("alice")
	wantRemind(t, alice, "/echo/x")
	wantGrace(t, alice, "/echo/x", e.clock.Now().Truncate(time.Second).Add(14*24*time.Hour))
}

// The date form: the same for everyone, "5 days (on 15 January 2027)",
// and held back from 00:00 UTC that day.
func TestEnrolmentFromDateThroughCaddy(t *testing.T) {
	e := start(t, setup{policy: deadlinePolicy, clock: clock.NewFake(time.Date(2027, 1, 10, 12, 0, 1, 0, time.UTC))})
	b := e.browser()
	b.login("bob")
	page := wantRemind(t, b, "/public/x")
	if want := "Two-step verification becomes required in 5 days (on 15 January 2027)."; !strings.Contains(page.body, want) {
		t.Fatalf("the reminder lacks %q:\n%s", want, page.body)
	}
	deadline := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
	wantGrace(t, b, "/public/x", deadline)
	b.lang = "ja"
	e.clock.Advance(4 * 24 * time.Hour) // 2027-01-14 12:00: the last day
	page = wantRemind(t, b, "/public/x")
	if want := "本日（2027年1月15日 00:00 UTC）から2段階認証が必須になります。"; !strings.Contains(page.body, want) {
		t.Fatalf("the last day's reminder lacks %q:\n%s", want, page.body)
	}
	e.clock.Advance(12 * time.Hour) // 00:00:01 UTC on the day
	wantHeldBack(t, b, "/public/x")
	if r := b.get("/.2fa/enrol?return_to=%2Fpublic%2Fx"); !strings.Contains(r.body, "2027年1月15日から、このサイトでは2段階認証が必須になりました。") {
		t.Fatalf("the enrolment page in ja:\n%s", r.body)
	}
	// Nothing was stored for the date: no grace started.
	if n := countAudit(e, "enrolment_grace_started", "bob"); n != 0 {
		t.Fatalf("enrolment_grace_started for a date: %d", n)
	}
	if n := countAudit(e, "enrolment_deadline_passed", "bob"); n != 1 {
		t.Fatalf("enrolment_deadline_passed logged %d times", n)
	}
}

// The client cannot say which enrolment state applies: its copies of the
// headers, in any case or with underscores, never reach the upstream.
func TestEnrolmentHeadersSpoofed(t *testing.T) {
	e := start(t, setup{policy: deadlinePolicy})
	b := e.browser()
	b.login("bob")
	wantRemind(t, b, "/echo/x")
	for _, name := range []string{"X-2fa-Enrolment", "x-2FA-enrolment", "X_2fa_Enrolment", "X-2fa-Enrolment-Deadline", "X_2FA_ENROLMENT_DEADLINE"} {
		b.header[name] = []string{"required", "2000-01-01T00:00:00Z"}
	}
	wantGrace(t, b, "/echo/x", e.clock.Now().Truncate(time.Second).Add(14*24*time.Hour))
	status, h := b.upstream("/echo/x")
	for name := range h {
		if strings.Contains(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-2fa-enrolment") &&
			name != "X-2fa-Enrolment" && name != "X-2fa-Enrolment-Deadline" {
			t.Errorf("a client's %s reached the upstream: %d", name, status)
		}
	}
	// Enrolled, the upstream gets none of them.
	b.enrol("/echo/x")
	if status, h := b.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Enrolment") != "" || h.Get("X-2fa-Enrolment-Deadline") != "" {
		t.Fatalf("enrolled with spoofed headers: %d %v", status, h)
	}
}

// Placeholders for later handlers follow the headers: the state and the
// deadline for a member in grace, empty for an enrolled one and where
// nobody passed.
func TestEnrolmentPlaceholders(t *testing.T) {
	e := start(t, setup{policy: deadlinePolicy + "\tprotect /placed/* {\n\t\tenrolment required grace 14d\n\t}\n",
		extra: `respond /placed* "[{http.auth.two_factor.enrolment}|{http.auth.two_factor.enrolment_deadline}]" 200`})
	b := e.browser()
	if r := b.get("/placed-open"); r.body != "[|]" {
		t.Fatalf("nobody passed: %q", r.body)
	}
	b.login("bob")
	b.header.Set("Sec-Fetch-Mode", "cors") // no reminder page for a script
	deadline := e.clock.Now().Truncate(time.Second).Add(14 * 24 * time.Hour).UTC().Format(time.RFC3339)
	if r := b.get("/placed/x"); r.status != http.StatusOK || r.body != "[grace|"+deadline+"]" {
		t.Fatalf("placeholders in grace: %d %q", r.status, r.body)
	}
	b.header.Del("Sec-Fetch-Mode")
	b.enrol("/placed/x")
	if r := b.get("/placed/x"); r.status != http.StatusOK || r.body != "[|]" {
		t.Fatalf("placeholders when enrolled: %d %q", r.status, r.body)
	}
}

// Two gateway processes on one Redis see a member for the first time at
// the same moment: they agree on one start, and a later visit to either
// reads it.
func TestEnrolmentGraceOnRedisInstances(t *testing.T) {
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n", testKey, srv.Addr)
	ins := startInstances(t, 2, global, deadlinePolicy, membersite.DemoMembers())
	bob := ins[0].browser()
	bob.login("bob")
	bob.header.Set("Sec-Fetch-Mode", "cors") // no reminder: straight to the upstream
	deadlines := make([]string, 2)
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := doUpstream(bob.on(in.env), "/echo/x")
			if err != nil {
				t.Error(err)
				return
			}
			deadlines[i] = resp
		}()
	}
	wg.Wait()
	if deadlines[0] == "" || deadlines[0] != deadlines[1] {
		t.Fatalf("the instances disagree on the deadline: %q", deadlines)
	}
	time.Sleep(1100 * time.Millisecond) // a second later, in real time
	for _, in := range ins {
		if got, err := doUpstream(bob.on(in.env), "/echo/x"); err != nil || got != deadlines[0] {
			t.Fatalf("a later visit: %q, %v; want %q", got, err, deadlines[0])
		}
	}
	starts := 0
	for _, in := range ins {
		starts += countAudit(in.env, "enrolment_grace_started", "bob")
	}
	if starts != 1 {
		t.Fatalf("enrolment_grace_started logged %d times across the instances", starts)
	}
}

// doUpstream fetches an echo path without failing the test from another
// goroutine, and returns the deadline the upstream was told.
func doUpstream(b *browser, path string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, b.e.base+path, nil)
	if err != nil {
		return "", err
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got struct {
		Headers http.Header `json:"headers"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Headers.Get("X-2fa-Enrolment") != "grace" {
		return "", fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return got.Headers.Get("X-2fa-Enrolment-Deadline"), nil
}

// The admin pages, the admin API and the CLI show a member's deadline:
// "required from" before it, "required now, since" after.
func TestAdminShowsEnrolmentDeadline(t *testing.T) {
	s := adminPagesSetup(t)
	s.policy = deadlinePolicy
	e := start(t, s)
	admin, adminSecret := enrolled(e, "admin")
	bob := e.browser()
	bob.login("bob")
	wantRemind(t, bob, "/echo/x")
	deadline := e.clock.Now().Truncate(time.Second).Add(14 * 24 * time.Hour).UTC()
	date := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC)
	earliest := deadline
	if date.Before(earliest) {
		earliest = date
	}

	r := admin.get("/.2fa/admin/members")
	if want := "required from " + pages.KeepTogether(earliest.Format("2006-01-02")); r.status != http.StatusOK || !strings.Contains(r.body, want) {
		t.Fatalf("the member list lacks %q: %d\n%s", want, r.status, r.body)
	}
	r = admin.get("/.2fa/admin/member?id=bob")
	// Dates keep together on the page: non-breaking hyphens and spaces.
	for _, want := range []string{"required from " + pages.KeepTogether(deadline.Format("2006-01-02 15:04 UTC")) + "</span> <code>/echo/*</code>",
		"required from " + pages.KeepTogether("2027-01-15 00:00 UTC") + "</span> <code>/public/*</code>"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the member page lacks %q", want)
		}
	}
	if strings.Contains(admin.get("/.2fa/admin/member?id=admin").body, "required from") {
		t.Error("an enrolled member is shown a deadline")
	}

	resp, err := http.Get("http://" + e.admin + "/two-factor/members?id=bob")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		EnrolmentDeadline *time.Time `json:"enrolment_deadline"`
		Deadlines         []struct {
			Paths        []string   `json:"paths"`
			At           time.Time  `json:"at"`
			Passed       bool       `json:"passed"`
			GraceStarted *time.Time `json:"grace_started"`
		} `json:"deadlines"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.EnrolmentDeadline == nil || !d.EnrolmentDeadline.Equal(earliest) || len(d.Deadlines) != 2 {
		t.Fatalf("the API's member: %v %+v", err, d)
	}

	// Past the grace: required now.
	e.clock.Advance(15 * 24 * time.Hour)
	wantHeldBack(t, bob, "/echo/x")
	e.nextStep()
	if r := admin.verify(e.code(adminSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("the admin's code after two weeks: %d", r.status)
	}
	if r := admin.get("/.2fa/admin/member?id=bob"); !strings.Contains(r.body, "required now, since "+pages.KeepTogether(deadline.Format("2006-01-02 15:04 UTC"))) {
		t.Errorf("the member page past the deadline:\n%s", r.body)
	}
	out, code := twoFactorCLI(t, "members", "show", "--address", e.admin, "bob")
	if code != 0 || !strings.Contains(out, "Required:      now (since "+deadline.Format("2006-01-02")+") (/echo/*)") {
		t.Fatalf("members show bob: exit %d\n%s", code, out)
	}
	out, code = twoFactorCLI(t, "members", "list", "--address", e.admin, "--not-enrolled")
	if code != 0 || !strings.Contains(out, "REQUIRED") || !strings.Contains(out, "now (since "+earliest.Format("2006-01-02")+")") {
		t.Fatalf("members list --not-enrolled: exit %d\n%s", code, out)
	}
}

// Bad deadlines are refused through the Caddyfile and through JSON,
// naming the field.
func TestEnrolmentDeadlineConfigRefused(t *testing.T) {
	e := &env{t: t, port: testnet.FreePort(t), siteURL: "http://127.0.0.1:1", echoURL: "http://127.0.0.1:2",
		dbPath: filepath.Join(t.TempDir(), "db"), logPath: filepath.Join(t.TempDir(), "log")}
	rule := func(lines string) setup {
		return setup{policy: "identity header {http.auth.user.id}\n\tprotect /x/* {\n\t\t" + lines + "\n\t}"}
	}
	for _, tc := range []struct {
		name   string
		setup  setup
		expect string
	}{
		{"grace too short", rule("enrolment required grace 30m"), "protect[0]: enrolment_grace 30m0s: must be between 1h and 400d"},
		{"grace too long", rule("enrolment required grace 401d"), "enrolment_grace 9624h0m0s: must be between 1h and 400d"},
		{"grace not a duration", rule("enrolment required grace soon"), `enrolment required grace: bad duration "soon"`},
		{"grace on optional", rule("enrolment optional grace 14d"), "a deadline needs enrolment required"},
		{"from not a date", rule("enrolment required from 15.01.2027"), `enrolment_from "15.01.2027": must be a date, like 2027-01-15 (00:00 UTC), or an RFC 3339 time with its zone`},
		{"from without a zone", rule("enrolment required from 2027-01-15T09:00:00"), `enrolment_from "2027-01-15T09:00:00"`},
		{"unknown deadline", rule("enrolment required after 14d"), "enrolment required after: expected grace <duration> or from <date>"},
		{"too many deadline patterns", setup{policy: "identity header {http.auth.user.id}\n\tprotect /x/* {\n\t\tenrolment required grace 14d\n\t}\n\tprotect " +
			manyPatterns(32) + " {\n\t\tenrolment required from 2027-01-15\n\t}"},
			"protect[1]: paths: the rules with enrolment deadlines have 33 path patterns between them, at most 32"},
	} {
		err := load(e.caddyfile(tc.setup))
		if err == nil || !strings.Contains(err.Error(), tc.expect) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.expect)
		}
	}
	// JSON, as the admin API's /load takes it.
	adapted, err := adapt(e.caddyfile(rule("enrolment required grace 14d")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, expect string }{
		{`"enrolment_grace":1209600000000000`, `"enrolment_grace":1209600000000000,"enrolment_from":"2027-01-15"`, "enrolment_grace, enrolment_from: give one or the other, not both"},
		{`"enrolment_grace":1209600000000000`, `"enrolment_from":"next year"`, `enrolment_from "next year"`},
		{`"enrolment":"required"`, `"enrolment":"optional"`, "enrolment_grace: needs enrolment required"},
		{`"enrolment_grace":1209600000000000`, `"enrolment_grace":60000000000`, "enrolment_grace 1m0s: must be between 1h and 400d"},
	} {
		cfg := strings.Replace(string(adapted), tc.from, tc.to, 1)
		if cfg == string(adapted) {
			t.Fatalf("%s not in the adapted config:\n%s", tc.from, adapted)
		}
		if err := caddy.Load([]byte(cfg), true); err == nil || !strings.Contains(err.Error(), tc.expect) {
			t.Errorf("JSON %s: got %v, want an error containing %q", tc.to, err, tc.expect)
		}
	}
	_ = caddy.Stop()
}

// manyPatterns is n distinct path patterns, space-separated.
func manyPatterns(n int) string {
	var ps []string
	for i := range n {
		ps = append(ps, fmt.Sprintf("/area%02d/*", i))
	}
	return strings.Join(ps, " ")
}
