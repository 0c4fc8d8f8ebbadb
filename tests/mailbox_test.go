package tests

// The development mailbox, as the demo uses it (Caddyfile.example: "email
// mailbox ./demo-state/mailbox", "sms mailbox ./demo-state/mailbox"): codes are not
// delivered but written to files a developer reads, private to the user
// running Caddy, and Caddy warns about it in its log.

import (
	"encoding/json"
	"fmt"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// mailboxFile is one message the mailbox wrote.
type mailboxFile struct {
	path    string
	headers map[string]string
	body    string
}

// mailboxCode matches a code on a line of its own or at the start of a
// line, as the message templates put it.
var mailboxCode = regexp.MustCompile(`(?m)^\s*([0-9]{6})\b`)

// waitMailbox waits for the n-th file with extension ext (by name, which
// starts with the time it was written) and returns the newest one.
func waitMailbox(t *testing.T, dir, ext string, n int) mailboxFile {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		names, err := filepath.Glob(filepath.Join(dir, "*"+ext))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		if len(names) >= n {
			if len(names) > n {
				t.Fatalf("%d %s files in the mailbox, want %d: %v", len(names), ext, n, names)
			}
			return readMailbox(t, names[len(names)-1])
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s files in the mailbox after 5s, want %d", len(names), ext, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readMailbox(t *testing.T, path string) mailboxFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(b), "\n\n")
	if !ok {
		t.Fatalf("%s: no blank line after the headers: %q", path, b)
	}
	f := mailboxFile{path: path, headers: map[string]string{}, body: body}
	for _, line := range strings.Split(head, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: not a header line %q", path, line)
		}
		f.headers[k] = v
	}
	return f
}

func checkPrivate(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}

func TestMailbox(t *testing.T) {
	// A directory the gateway creates, so its mode is the gateway's doing.
	dir := filepath.Join(t.TempDir(), "mailbox")
	db := filepath.Join(t.TempDir(), "twofactor.db")
	global := fmt.Sprintf(`keys %q
		store embedded %q
		email mailbox %q
		sms mailbox %q
		phone_countries JP US GB`, testKey, db, dir, dir)
	e := start(t, setup{global: global, policy: codePolicy, dbPath: db})
	// Configuring the mailbox writes nothing; the first message makes the
	// directory.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("mailbox directory before any message: %v", err)
	}

	// Alice enrols by email; the code is in an .eml file.
	a := e.browser()
	a.login("alice")
	r := a.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol/code") {
		t.Fatalf("sending the email confirmation: %d %q: %s", r.status, r.location(), r.body)
	}
	mail := waitMailbox(t, dir, ".eml", 1)
	checkPrivate(t, dir, 0o700)
	if mail.headers["To"] != "alice@example.com" || !strings.Contains(mail.headers["Subject"], "Test Members") {
		t.Errorf("the .eml headers: %v", mail.headers)
	}
	m := mailboxCode.FindStringSubmatch(mail.body)
	if m == nil {
		t.Fatalf("no code in the email: %q", mail.body)
	}
	code := m[1]
	checkPrivate(t, mail.path, 0o600)
	r = a.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "code": {code}})
	enrolDone(t, r, "/members/")
	if status, h := a.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "email" {
		t.Fatalf("after enrolling by email: %d, method %q", status, h.Get("X-2fa-Method"))
	}

	// Bob enrols by SMS, with a national number; the code is first in a
	// .txt file addressed to the E.164 number.
	b := e.browser()
	b.login("bob")
	r = b.postPage("/.2fa/enrol/sms", "/.2fa/enrol/sms?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "phone": {"090-1234-5678"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol/code") {
		t.Fatalf("sending the SMS confirmation: %d %q: %s", r.status, r.location(), r.body)
	}
	sms := waitMailbox(t, dir, ".txt", 1)
	if sms.headers["To"] != "+819012345678" || len(sms.headers) != 1 {
		t.Errorf("the .txt headers: %v, want only To: +819012345678", sms.headers)
	}
	m = mailboxCode.FindStringSubmatch(sms.body)
	if m == nil || !strings.HasPrefix(sms.body, m[1]) {
		t.Fatalf("the SMS text does not start with the code: %q", sms.body)
	}
	checkPrivate(t, sms.path, 0o600)
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "code": {m[1]}})
	enrolDone(t, r, "/members/")
	if status, h := b.upstream("/echo/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "sms" {
		t.Fatalf("after enrolling by SMS: %d, method %q", status, h.Get("X-2fa-Method"))
	}

	// Nothing else in the directory: no temporary files left behind.
	// Stopping Caddy waits for the notices still being written.
	e.stop()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The two codes, and the security notices (sent in the background)
	// of the two new methods; never a half-written temporary file.
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
		if !strings.HasSuffix(en.Name(), ".eml") && !strings.HasSuffix(en.Name(), ".txt") {
			t.Errorf("the mailbox holds %s", en.Name())
		}
	}
	if len(entries) < 2 || len(entries) > 4 {
		t.Errorf("the mailbox holds %v, want the two codes and up to two notices", names)
	}

	// Caddy's log says, once per sender, that nothing is delivered, and
	// names each file it wrote.
	log, err := os.ReadFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var inUse int
	written := map[string]bool{}
	for _, line := range strings.Split(string(log), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		msg, _ := entry["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "development mailbox in use"):
			inUse++
			if entry["level"] != "warn" || entry["dir"] != dir {
				t.Errorf("the mailbox warning: %v", entry)
			}
		case strings.HasPrefix(msg, "development mailbox: message not delivered"):
			if entry["level"] != "warn" {
				t.Errorf("the per-message entry is not a warning: %v", entry)
			}
			if f, ok := entry["file"].(string); ok {
				written[f] = true
			}
		}
	}
	if inUse < 1 {
		t.Errorf("no development-mailbox warning in Caddy's log:\n%s", log)
	}
	if !written[mail.path] || !written[sms.path] {
		t.Errorf("the log names the files %v, want %s and %s", written, mail.path, sms.path)
	}
}

// The mailbox has no default directory: Caddy refuses a config without one.
func TestMailboxNeedsDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Cleanup(func() { _ = caddy.Stop() }) // in case a config is wrongly accepted
	for _, tc := range []struct{ name, line string }{
		{"no argument", "email mailbox"},
		{"empty", `sms mailbox ""`},
		{"no argument, with a block", "email mailbox {\n\t\t}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{
				port:    testnet.FreePort(t),
				dbPath:  filepath.Join(t.TempDir(), "twofactor.db"),
				logPath: filepath.Join(t.TempDir(), "caddy.log"),
				siteURL: "http://127.0.0.1:9", // never reached: the config must fail first
				echoURL: "http://127.0.0.1:9",
			}
			global := fmt.Sprintf("keys %q\n\t\tstore embedded %q\n\t\t%s", testKey, e.dbPath, tc.line)
			err := load(e.caddyfile(setup{global: global, policy: codePolicy}))
			if err == nil {
				_ = caddy.Stop()
				t.Fatalf("%s: Caddy accepted a mailbox without a directory", tc.line)
			}
			if !strings.Contains(err.Error(), "director") || !strings.Contains(err.Error(), "mailbox") {
				t.Errorf("%s: the error does not say the mailbox needs a directory: %v", tc.line, err)
			}
		})
	}
}
