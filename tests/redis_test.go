package tests

import (
	"bytes"
	"context"
	"encoding/base32"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
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
	port := testnet.FreePort(t)
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
	port := testnet.FreePort(t)
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

// RD-12: each reload provisions a new store and cleans up the old one.
// After 50 reloads Redis counts no more connections from the gateway than
// after the first, and no goroutines are left behind.
func TestRedisReloadsLeaveNoConnections(t *testing.T) {
	srv := testredis.Start(t)
	s := setup{global: fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}", testKey, srv.Addr)}
	e := start(t, s)
	alice, _ := enrolled(e, "alice") // connections in use, and a subscription
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	clients := func() int {
		// The test's own connection is not under test: under load it was
		// once reset; ask again on a fresh one.
		var err error
		for range 3 {
			var list string
			if list, err = admin.ClientList(ctx).Result(); err == nil {
				return strings.Count(list, "\n")
			}
		}
		t.Fatal(err)
		return 0
	}
	before, goroutines := clients(), runtime.NumGoroutine()
	for i := range 50 {
		if err := load(e.caddyfile(s)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	alice.afterReload("/echo/x")
	waitFor(t, 10*time.Second, "connections and goroutines back to their count before the reloads", func() bool {
		return clients() <= before+1 && runtime.NumGoroutine() <= goroutines+10
	})
	t.Logf("Redis clients: %d before, %d after 50 reloads; goroutines %d before, %d after",
		before, clients(), goroutines, runtime.NumGoroutine())
}

// Secrets stay sealed in Redis: neither the authenticator secret, nor the
// phone number, nor the recovery codes can be read from what Redis holds.
// A key rotation reads what the old key wrote, and a configuration with
// neither key is refused.
func TestRedisSecretsSealedAndKeyRotation(t *testing.T) {
	srv := testredis.Start(t)
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	const newKey = "rotated-integration-key-abcdef0123456789"
	global := func(keys ...string) string {
		return fmt.Sprintf("keys %s\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n", strings.Join(keys, " "), srv.Addr) + senders(mail, sns, "")
	}
	e := start(t, setup{global: global(strconv.Quote(testKey)), policy: codePolicy})
	c := &codeEnv{env: e, mail: mail, sns: sns}
	alice, secret := enrolled(e, "alice")
	c.enrolSMS(alice, "090-1234-5678", "/members/", 1)

	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	keys, err := admin.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys in Redis: %v %v", keys, err)
	}
	rawSecret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{[]byte(secret), rawSecret, []byte("9012345678"), []byte("90-1234-5678")}
	for _, code := range alice.recovery {
		secrets = append(secrets, []byte(code), []byte(strings.ReplaceAll(code, "-", "")))
	}
	for _, k := range keys {
		v, err := admin.Dump(ctx, k).Bytes() // any type, as stored
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(v, s) {
				t.Fatalf("Redis key %s holds %q in the clear", k, s)
			}
		}
	}

	// The new key first, the old one kept: everything written under the
	// old key still works, sessions included.
	e2 := start(t, setup{global: global(strconv.Quote(newKey), strconv.Quote(testKey)), policy: codePolicy, clock: e.clock})
	if s, _ := alice.on(e2).upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("session from before the rotation: %d", s)
	}
	b := e2.browser()
	b.login("alice")
	if r := b.verify(e2.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("authenticator after the rotation: %d", r.status)
	}
	s := e2.browser()
	s.login("alice")
	if r := s.send("sms", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("SMS to the number sealed under the old key: %d %s", r.status, r.body)
	}
	_, code := c.smsCode(2)
	if r := s.verifyCode("sms", code, "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("SMS code after the rotation: %d", r.status)
	}

	// Keys that cannot read the store: Caddy refuses the configuration.
	err = load(e2.caddyfile(setup{global: global(strconv.Quote("an-unrelated-key-0123456789abcdefghij")), policy: codePolicy}))
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt the data already in the store") {
		t.Fatalf("config with neither key: %v", err)
	}
}

// The gateway configured with the sentinels and a master name finds the
// master through them, and keeps its members' enrolments across a
// failover.
func TestRedisThroughSentinel(t *testing.T) {
	g := testredis.StartSentinel(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tmaster_name %s\n\t\t}",
		testKey, strings.Join(g.Addrs, " "), g.MasterName)
	e := start(t, setup{global: global})
	b, secret := enrolled(e, "alice")
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("after enrolling through Sentinel: %d", s)
	}
	// The enrolment is on the replica before the master goes.
	replica := goredis.NewClient(&goredis.Options{Addr: g.Replica.Addr})
	t.Cleanup(func() { replica.Close() })
	waitFor(t, 5*time.Second, "the enrolment replicated", func() bool {
		n, err := replica.Exists(context.Background(), "2fa:user:{YWxpY2U}").Result()
		return err == nil && n == 1
	})
	g.Master.Stop()
	a := e.browser()
	a.login("alice")
	// Both the gate and the challenge page read the store: until the
	// client has settled on the promoted replica (and its breaker has
	// closed), either may answer 503 for a moment.
	waitFor(t, 30*time.Second, "the challenge served by the promoted replica", func() bool {
		r := a.get("/members/")
		return r.status == http.StatusFound && r.location() == "/.2fa/challenge?return_to=%2Fmembers%2F" &&
			a.get(r.location()).status == http.StatusOK
	})
	if r := a.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify after the failover: %d", r.status)
	}
}
