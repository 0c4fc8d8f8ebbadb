package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
)

// The gateway on a real redis-server: enrolment, verification and the
// one-time rules work the same as on the embedded store, and survive a
// Caddy restart because the state is in Redis.
func TestRedisStore(t *testing.T) {
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tkey_prefix test:\n\t\t}", testKey, srv.Addr)
	e := start(t, setup{global: global})
	b, secret := enrolled(e, "alice")
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("after enrolment: %d", s)
	}

	// Another Caddy config on the same Redis sees the enrolment.
	e2 := start(t, setup{global: global, clock: e.clock})
	a := e2.browser()
	a.login("alice")
	if r := a.get("/members/"); r.status != http.StatusFound || r.location() != "/.2fa/challenge?return_to=%2Fmembers%2F" {
		t.Fatalf("second instance: %d %q", r.status, r.location())
	}
	code := e2.code(secret, 0)
	if r := a.verify(code, "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify on the second instance: %d", r.status)
	}
	// The same code again is a replay, wherever it is tried.
	other := e2.browser()
	other.login("alice")
	if r := other.verify(code, "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("replayed code: %d", r.status)
	}
}

// Redis down when Caddy starts: Caddy loads anyway, protected paths and
// the gateway's pages answer 503 (fail closed), and everything works again
// by itself once Redis is up, without a restart.
func TestRedisDownAtStart(t *testing.T) {
	port := testredis.FreePort(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 500ms\n\t\t}", testKey, port)
	e := start(t, setup{global: global})
	b := e.browser()
	b.login("alice")
	for _, path := range []string{"/members/", "/.2fa/challenge?return_to=%2Fmembers%2F"} {
		r := b.get(path)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "temporarily unavailable") {
			t.Fatalf("%s with Redis down: %d: %s", path, r.status, r.body)
		}
	}
	// Unprotected paths are not the gateway's business.
	if r := b.get("/members/public/x"); r.status == http.StatusServiceUnavailable {
		t.Fatalf("unprotected path with Redis down: %d", r.status)
	}

	testredis.StartAt(t, port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := b.get("/members/")
		if r.status == http.StatusFound && strings.HasPrefix(r.location(), "/.2fa/enrol") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after Redis came up", r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.enrol("/members/")
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("after recovery: %d", s)
	}
}

// Redis killed mid-run and restarted with its append-only file: the
// gateway fails closed while it is gone, recovers by itself, and no
// enrolment is lost. (Run Redis with appendonly yes and appendfsync
// everysec or always; see the README.)
func TestRedisCrashKeepsEnrolments(t *testing.T) {
	port := testredis.FreePort(t)
	dir := t.TempDir()
	aof := []string{"--appendonly", "yes", "--appendfsync", "always"}
	srv := testredis.StartIn(t, port, dir, aof...)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 500ms\n\t\t}", testKey, port)
	e := start(t, setup{global: global})
	b, secret := enrolled(e, "alice")

	srv.Stop() // SIGKILL: no shutdown save
	a := e.browser()
	a.login("alice")
	if r := a.get("/members/"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("with Redis gone: %d %q", r.status, r.location())
	}
	// A verification attempt while Redis is gone changes nothing.
	if r := a.get("/.2fa/challenge?return_to=%2Fmembers%2F"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("challenge page with Redis gone: %d", r.status)
	}

	testredis.StartIn(t, port, dir, aof...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := a.get("/members/")
		if r.status == http.StatusFound {
			if r.location() != "/.2fa/challenge?return_to=%2Fmembers%2F" {
				t.Fatalf("after the restart alice is sent to %q: the enrolment was lost", r.location())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after Redis came back", r.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.nextStep()
	if r := a.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify after the restart: %d", r.status)
	}
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("the session from before the crash: %d", s)
	}
}
