package tests

import (
	"net/http"
	"strings"
	"testing"
)

// A member whose record holds no address (an app user; email follows the
// member site's) is told of an admin's action at their next visit, at the
// member site's address, once, and only once past the second factor:
// whoever holds the password alone must not take it.
func TestAdminNoticeAtNextVisit(t *testing.T) {
	c := startCodesSetup(t, setup{policy: codePolicy, admin: true}, "")
	b, secret := enrolled(c.env, "alice")
	if status, msg := adminPost(t, c.env, "/two-factor/members/end-sessions", `{"member": "alice", "reason": "laptop stolen"}`); status != http.StatusOK {
		t.Fatalf("end-sessions: %d %s", status, msg)
	}
	sentTo(t, b, "/.2fa/challenge", "page load after end-sessions")
	if r := b.get("/.2fa/challenge?return_to=%2Fmembers%2F"); r.status != http.StatusOK {
		t.Fatalf("challenge page: %d", r.status)
	}
	c.nextStep()
	b.verify(c.code(secret, 0), "/members/", false)
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("members page: %d", r.status)
	}
	m := c.notice("alice@example.com", "sessions were ended")
	if !strings.Contains(m.Text, "Test Members") || strings.Contains(m.Text, "127.0.0.1") {
		t.Errorf("notice at the next visit names no site or names the member's own request:\n%s", m.Text)
	}
	if r := b.get("/.2fa/methods?return_to=%2Fmembers%2F"); r.status != http.StatusOK {
		t.Fatalf("settings page: %d", r.status)
	}
	// The notice was taken when sent: later pages send no second copy.
	if n := c.count("alice@example.com", "sessions were ended"); n != 1 {
		t.Fatalf("%d notices after several pages, want 1", n)
	}
}

// A reset request ends no session, so a member who keeps browsing never
// loads one of the gateway's pages: the protected path itself tells them,
// at the member site's address, before anyone approves it.
func TestResetRequestToldOnProtectedPath(t *testing.T) {
	c := startCodesSetup(t, setup{policy: codePolicy, admin: true}, "reset_approval 1h")
	b, _ := enrolled(c.env, "alice")
	if status, msg := adminPost(t, c.env, "/two-factor/members/reset", `{"member": "alice", "reason": "caller says phone lost"}`); status != http.StatusAccepted {
		t.Fatalf("reset request: %d %s", status, msg)
	}
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("protected page while the reset waits for approval: %d", r.status)
	}
	m := c.notice("alice@example.com", "asked to reset")
	if !strings.Contains(m.Text, "withdraw") {
		t.Errorf("request notice:\n%s", m.Text)
	}
	b.get("/members/")
	if n := c.count("alice@example.com", "asked to reset"); n != 1 {
		t.Fatalf("%d request notices after two pages, want 1", n)
	}
}
