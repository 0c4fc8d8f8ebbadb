package tests

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// A member whose record holds no address (an app user; email follows the
// member site's) is told of an admin's action at their next visit, at the
// member site's address, once.
func TestAdminNoticeAtNextVisit(t *testing.T) {
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	dir := t.TempDir()
	global := fmt.Sprintf("keys %q\n\t\tstore embedded %q\n", testKey, dir+"/twofactor.db") + senders(mail, sns, "")
	c := &codeEnv{env: start(t, setup{global: global, policy: codePolicy, dbPath: dir + "/twofactor.db", admin: true}), mail: mail, sns: sns}
	b, secret := enrolled(c.env, "alice")
	adminPost(t, c.env, "/two-factor/members/end-sessions", `{"member": "alice", "reason": "laptop stolen"}`, http.StatusOK)
	sentTo(t, b, "/.2fa/challenge", "page load after end-sessions")
	if r := b.get("/.2fa/challenge?return_to=%2Fmembers%2F"); r.status != http.StatusOK {
		t.Fatalf("challenge page: %d", r.status)
	}
	m := c.notice("alice@example.com", "sessions were ended")
	if !strings.Contains(m.Text, "Test Members") || strings.Contains(m.Text, "127.0.0.1") {
		t.Errorf("notice at the next visit names no site or names the member's own request:\n%s", m.Text)
	}
	c.nextStep()
	b.verify(c.code(secret, 0), "/members/", false)
	if r := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); r.status != http.StatusOK {
		t.Fatalf("settings page: %d", r.status)
	}
	// The notice was taken when sent: later pages send no second copy.
	if n := c.count("alice@example.com", "sessions were ended"); n != 1 {
		t.Fatalf("%d notices after several pages, want 1", n)
	}
}

// adminPost posts body to a route of the admin endpoint and checks the
// status.
func adminPost(t *testing.T, e *env, route, body string, status int) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+e.admin+route, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("POST %s: %d, want %d: %s", route, resp.StatusCode, status, out)
	}
	return string(out)
}
