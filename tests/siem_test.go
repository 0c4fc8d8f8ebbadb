package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// Shipping the audit log to a SIEM with Caddy's own log outputs: a named
// log with `output net` and `include two_factor.audit` sends each audit
// record as a JSON line to a collector on loopback, the way a local
// Fluent Bit, Vector or syslog agent receives it.

// collector is a log agent's TCP input on loopback: it accepts Caddy's
// net writer and keeps every line it receives.
type collector struct {
	t     testing.TB
	port  int
	ln    net.Listener
	mu    sync.Mutex
	raw   strings.Builder
	lines []string
	conns []net.Conn
	wg    sync.WaitGroup
}

// startCollector listens on port (0: a free one) until the test ends or
// stop.
func startCollector(t testing.TB, port int) *collector {
	t.Helper()
	ln, err := listen(port)
	if err != nil {
		t.Fatalf("collector on port %d: %v", port, err)
	}
	c := &collector{t: t, port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.stop)
	return c
}

func (c *collector) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			sc := bufio.NewScanner(conn)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				c.mu.Lock()
				c.raw.WriteString(sc.Text() + "\n")
				c.lines = append(c.lines, sc.Text())
				c.mu.Unlock()
			}
		}()
	}
}

// stop closes the listener and every connection, like an agent that
// exits, and waits for the readers to finish.
func (c *collector) stop() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// records returns what arrived so far, each line decoded.
func (c *collector) records() []map[string]any {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]map[string]any, 0, len(c.lines))
	for _, l := range c.lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			c.t.Fatalf("the collector received a line that is not JSON: %v: %q", err, l)
		}
		out = append(out, r)
	}
	return out
}

// text is every byte received, as received.
func (c *collector) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw.String()
}

// wait returns the records once at least n have arrived. Caddy writes
// each record before the request that caused it is answered; the
// collector's reader may lag a little behind.
func (c *collector) wait(n int) []map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := c.records()
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the collector has %d records, want %d", len(recs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shipping returns the global options of the README's example: the audit
// logger to a collector over TCP and to a file of its own.
func shipping(port int, netOptions, auditFile string) string {
	return fmt.Sprintf(`log siem {
		output net 127.0.0.1:%d {
			%s
		}
		format json
		include two_factor.audit
	}
	log audit_file {
		output file %q {
			roll_size 100MiB
			roll_keep 10
		}
		format json
		include two_factor.audit
	}`, port, netOptions, auditFile)
}

// jsonLines reads a JSON log file.
func jsonLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v: %q", path, err, l)
		}
		out = append(out, r)
	}
	return out
}

func eventResult(r map[string]any) string { return fmt.Sprintf("%v/%v", r["event"], r["result"]) }

// An enrolment in the app and by email, a wrong code, a right code and a
// lockout: each audit record reaches the collector as one JSON line with
// the same content as the local audit file, with the fields a SIEM keys
// on and without a code, a secret or a full address; nothing but the
// audit logger is shipped.
func TestAuditShippedToCollector(t *testing.T) {
	col := startCollector(t, 0)
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "twofactor.db")
	auditFile := filepath.Join(dir, "audit.log")
	global := fmt.Sprintf("keys %q\n\t\tstore embedded %q\n\t\tmax_failures 3\n", testKey, db) + senders(mail, sns, "")
	e := start(t, setup{global: global, policy: codePolicy, dbPath: db, options: shipping(col.port, "dial_timeout 2s", auditFile)})
	c := &codeEnv{env: e, mail: mail, sns: sns}

	// Enrolment: the app, then email.
	b := e.browser()
	b.login("alice")
	var codes []string
	secret := b.enrolWith("/members/", func(secret string) string {
		code := e.code(secret, 0)
		codes = append(codes, code)
		return code
	})
	e.nextStep()
	c.enrolEmail(b, "/members/", 1)
	_, mailed := c.mailCode(1)
	codes = append(codes, mailed)

	// A sign-in in another browser: a wrong code, then the right one.
	b2 := e.browser()
	b2.login("alice")
	wrong := wrongCode(e.code(secret, 0))
	codes = append(codes, wrong)
	if r := b2.verify(wrong, "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", r.status)
	}
	right := e.code(secret, 0)
	codes = append(codes, right)
	if r := b2.verify(right, "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("right code: %d %s", r.status, r.body)
	}
	e.nextStep()

	// Wrong codes in a third browser until the account is locked.
	b3 := e.browser()
	b3.login("alice")
	locked := false
	for i := 0; i < 3 && !locked; i++ {
		w := wrongCode(e.code(secret, 0))
		codes = append(codes, w)
		r := b3.verify(w, "/members/", false)
		locked = r.status == http.StatusTooManyRequests
	}
	if !locked {
		t.Fatal("three wrong codes did not lock the account")
	}

	local := jsonLines(t, auditFile)
	shipped := col.wait(len(local))
	if len(shipped) != len(local) {
		t.Fatalf("%d records shipped, %d in the audit file", len(shipped), len(local))
	}
	for i := range local {
		if !reflect.DeepEqual(shipped[i], local[i]) {
			t.Errorf("record %d:\nshipped %v\nin file %v", i, shipped[i], local[i])
		}
	}

	// Exactly the scripted events, in order, with the fields a SIEM keys
	// on.
	want := []string{
		"enrol_start/success", "enrol_confirm/success", "new_browser/success", "recovery_codes_generated/success",
		"code_send/success", "enrol_confirm/success",
		"verify/failure", "verify/success", "new_browser/success",
		"verify/failure", "verify/failure", "verify/failure", "lockout/account_locked",
	}
	var got []string
	for _, r := range shipped {
		got = append(got, eventResult(r))
		if r["logger"] != "two_factor.audit" || r["msg"] != r["event"] || r["level"] != "info" {
			t.Errorf("record not from the audit logger as documented: %v", r)
		}
		if r["user"] != "alice" || r["ip"] != "127.0.0.1" || r["user_agent"] == nil || r["ts"] == nil {
			t.Errorf("record without the member, address, browser or time: %v", r)
		}
		switch eventResult(r) {
		case "code_send/success":
			if r["method"] != "email" || r["to"] != "a•••@example.com" {
				t.Errorf("code_send without the method and the masked address: %v", r)
			}
		case "verify/failure":
			if r["method"] != "totp" || r["reason"] != "incorrect" {
				t.Errorf("verify failure without method and reason: %v", r)
			}
		case "lockout/account_locked":
			if r["for"] == nil {
				t.Errorf("lockout without its length: %v", r)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("shipped events %v\nwant %v", got, want)
	}

	// Never a code, a secret, a recovery code or a full destination.
	text := col.text()
	alice := membersite.DemoMembers()[0]
	secrets := append([]string{secret, alice.Email, alice.Phone, strings.TrimPrefix(alice.Phone, "+")}, b.recovery...)
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("the shipped log contains %q", s)
		}
	}
	for _, code := range codes {
		if regexp.MustCompile(`(^|[^0-9])` + code + `([^0-9]|$)`).MatchString(text) {
			t.Errorf("the shipped log contains the code %s", code)
		}
	}

	// Only the audit logger is shipped, while Caddy's other loggers and
	// the plugin's own keep writing to the default log. The Caddyfile
	// adapter excludes an included logger from the default log: the audit
	// records are in the audit file, not in the default log.
	others := map[string]bool{}
	for _, r := range jsonLines(t, e.logPath) {
		name, _ := r["logger"].(string)
		if name == "two_factor.audit" {
			t.Fatalf("an audit record in the default log, which the Caddyfile's include should exclude: %v", r)
		}
		others[name] = true
	}
	if len(others) == 0 {
		t.Fatal("the default log has no other logger's records to compare with")
	}
	for _, r := range shipped {
		if others[r["logger"].(string)] {
			t.Errorf("a record of logger %v shipped", r["logger"])
		}
	}
}

// A collector that goes away does not hold up sign-ins: Caddy's net writer
// finds the connection broken, fails to redial a closed port at once and
// writes the records to Caddy's standard error instead; the audit file
// keeps them. When the collector is back, Caddy redials on the first
// record written ten seconds or more after its last try (real time, not
// the gateway's clock), and shipping resumes; the records in between are
// not shipped.
func TestAuditShippingSurvivesCollectorOutage(t *testing.T) {
	col := startCollector(t, 0)
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	e := start(t, setup{options: shipping(col.port, "dial_timeout 1s\n\t\t\tsoft_start", auditFile)})
	_, secret := enrolled(e, "alice")
	col.wait(len(jsonLines(t, auditFile)))

	col.stop()
	b := e.browser()
	b.login("alice")
	began := time.Now()
	if r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong code with the collector down: %d", r.status)
	}
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in with the collector down: %d %s", r.status, r.body)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("two tries with the collector down took %v", took)
	}
	var during []string
	for _, r := range jsonLines(t, auditFile) {
		during = append(during, eventResult(r))
	}
	if !strings.Contains(strings.Join(during, " "), "verify/failure verify/success") {
		t.Fatalf("the audit file lacks the sign-in made with the collector down: %v", during)
	}

	// The collector is back on the same port. A refused form post is a
	// harmless audit event (csrf_refused) to prompt Caddy's writer.
	back := startCollector(t, col.port)
	deadline := time.Now().Add(20 * time.Second)
	for len(back.records()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Caddy did not reconnect to the collector within 20s")
		}
		if r := b.post("/.2fa/logout", url.Values{"csrf": {"not-the-token"}}); r.status != http.StatusForbidden {
			t.Fatalf("post with a wrong form token: %d", r.status)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, r := range back.wait(1) {
		if eventResult(r) != "csrf_refused/refused" || r["user"] != "alice" {
			t.Errorf("after reconnecting, a record other than the prompts: %v", r)
		}
	}
	t.Logf("shipping resumed %v after the collector stopped", time.Since(began).Round(time.Second))
}
