package tests

import (
	"fmt"
	"net/http"
	"testing"

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
