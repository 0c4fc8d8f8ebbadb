package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	storeredis "github.com/caddy-twofactor/twofactor/store/redis"
)

// Redis reached across hosts: TLS verified against a given CA, and an ACL
// user with only the rights the gateway needs, its password taken from
// the environment. The default user is off, so nothing unauthenticated
// gets in.

const redisTLSPassword = "gateway-secret-0123456789"

// gatewayACL is the least the gateway needs: its keys and notice channels
// under the default prefix; the store's commands (its scripts run GET,
// SET, DEL, INCR and PEXPIRE with the caller's rights); the users index
// (ZADD, ZRANGEBYLEX) and the scan that fills it at start (SCAN); notices,
// and PING for a quiet subscription's liveness check; the append-only logs
// (XADD, XRANGE, XREVRANGE, XTRIM). HELLO and AUTH need no right.
//
// CONFIG GET is left out on purpose: Redis cannot allow it for one
// parameter, and it would show secrets such as masterauth. The gateway
// only notes that it cannot read maxmemory-policy.
var gatewayACL = []string{
	"reset", "on", ">" + redisTLSPassword, "~2fa:*", "&2fa:*", "-@all",
	"+get", "+set", "+del", "+incr", "+pexpire", "+eval", "+evalsha",
	"+zadd", "+zrem", "+zrangebylex", "+zlexcount", "+zcard", "+scan", "+publish", "+subscribe", "+ping",
	"+xadd", "+xrange", "+xrevrange", "+xtrim",
}

// clientSetInfo is sent by go-redis on every connection. Redis before 7.2
// does not know it (the client ignores the error); later ones would deny
// it and fill the ACL log.
var clientSetInfo = []string{"gateway", "+client|setinfo"}

// tlsRedis is a TLS-only redis-server with users gateway (gatewayACL) and
// admin (everything, for the test's own checks), the default user off.
type tlsRedis struct {
	srv    *testredis.Server
	caFile string
	roots  *x509.CertPool
	admin  *redis.Client
}

func startTLSRedis(t *testing.T) *tlsRedis {
	t.Helper()
	srv, caFile := testredis.StartTLS(t)
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &tlsRedis{srv: srv, caFile: caFile, roots: x509.NewCertPool()}
	r.roots.AppendCertsFromPEM(pemData)
	ctx := context.Background()
	boot := r.client("", "")
	defer boot.Close()
	for _, acl := range [][]string{
		{"admin", "on", ">admin-secret", "allkeys", "allchannels", "+@all"},
		append([]string{"gateway"}, gatewayACL...),
		clientSetInfo,
		{"default", "off"},
	} {
		args := append([]any{"acl", "setuser"}, strs(acl)...)
		err := boot.Do(ctx, args...).Err()
		if err != nil && acl[1] == clientSetInfo[1] && strings.Contains(err.Error(), "Unknown command") {
			continue
		}
		if err != nil {
			t.Fatalf("ACL SETUSER %v: %v", acl, err)
		}
	}
	r.admin = r.client("admin", "admin-secret")
	t.Cleanup(func() { r.admin.Close() })
	return r
}

// client connects over TLS, trusting the server's CA, with no retries so
// a refusal shows at once.
func (r *tlsRedis) client(user, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: r.srv.Addr, Username: user, Password: password, MaxRetries: -1,
		TLSConfig: &tls.Config{RootCAs: r.roots, MinVersion: tls.VersionTLS12},
	})
}

// global is the gateway's global configuration for this Redis.
func (r *tlsRedis) global(caFile string) string {
	return fmt.Sprintf(`keys %q
		store redis {
			address %s
			username gateway
			password {env.TEST_REDIS_PASSWORD}
			tls
			ca_file %q
			timeout 500ms
		}`, testKey, r.srv.Addr, caFile)
}

// gatewayKeys returns the keys the gateway wrote.
func (r *tlsRedis) gatewayKeys(t *testing.T) []string {
	t.Helper()
	keys, err := r.admin.Keys(context.Background(), "2fa:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// aclLog returns the server's record of denied commands and failed
// logins, but for the gateway's CONFIG GET (see gatewayACL).
func (r *tlsRedis) aclLog(t *testing.T) []string {
	t.Helper()
	entries, err := r.admin.ACLLog(context.Background(), 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Reason == "command" && e.Object == "config|get" && e.Username == "gateway" {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s by %s", e.Reason, e.Object, e.Username))
	}
	return out
}

func strs(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// failsClosed checks that a member gets 503 on protected paths and the
// gateway's pages, never the upstream or a challenge.
func failsClosed(t *testing.T, e *env, user string) {
	t.Helper()
	b := e.browser()
	b.login(user)
	for _, path := range []string{"/members/", "/echo/x", "/.2fa/challenge?return_to=%2Fmembers%2F"} {
		r := b.get(path)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("%s: %d %q, want 503", path, r.status, r.location())
		}
	}
}

func caddyLog(t *testing.T, e *env) string {
	t.Helper()
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Enrolment and verification work over TLS as the restricted ACL user,
// the password coming from a placeholder, and no command is denied.
func TestRedisTLSWithACLUser(t *testing.T) {
	r := startTLSRedis(t)
	t.Setenv("TEST_REDIS_PASSWORD", redisTLSPassword)
	e := start(t, setup{global: r.global(r.caFile)})
	b, secret := enrolled(e, "alice")
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("after enrolment: %d", s)
	}
	a := e.browser()
	a.login("alice")
	if r := a.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	if s, _ := a.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("after verifying: %d", s)
	}

	if len(r.gatewayKeys(t)) == 0 {
		t.Fatal("no keys under 2fa: in Redis: the gateway did not use it")
	}
	clients, err := r.admin.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(clients, "user=gateway") {
		t.Fatalf("no connection of the gateway user:\n%s", clients)
	}
	// A connection just accepted counts as the default user's until its
	// HELLO or AUTH: only one that ran anything else would be wrong.
	for _, line := range strings.Split(clients, "\n") {
		if strings.Contains(line, "user=default") && !strings.Contains(line, "cmd=NULL") &&
			!strings.Contains(line, "cmd=hello") && !strings.Contains(line, "cmd=auth") {
			t.Fatalf("a connection ran commands as the default user:\n%s", clients)
		}
	}
	if log := r.aclLog(t); len(log) != 0 {
		t.Fatalf("the ACL user lacks rights the gateway used: %v", log)
	}
}

// A wrong password: Caddy loads, every protected path answers 503, and
// what alice enrolled cannot be read without the right credentials.
func TestRedisTLSWrongPassword(t *testing.T) {
	r := startTLSRedis(t)
	t.Setenv("TEST_REDIS_PASSWORD", redisTLSPassword)
	e := start(t, setup{global: r.global(r.caFile)})
	enrolled(e, "alice")

	t.Setenv("TEST_REDIS_PASSWORD", "wrong")
	e2 := start(t, setup{global: r.global(r.caFile), clock: e.clock})
	failsClosed(t, e2, "alice")
	if log := caddyLog(t, e2); !strings.Contains(log, "WRONGPASS") {
		t.Fatalf("Caddy's log does not say why Redis refused:\n%s", log)
	}

	keys := r.gatewayKeys(t)
	if len(keys) == 0 {
		t.Fatal("alice's enrolment is not in Redis")
	}
	ctx := context.Background()
	for _, cred := range []struct{ user, password, want string }{
		{"", "", "NOAUTH"},
		{"gateway", "wrong", "WRONGPASS"},
		{"default", "any", "WRONGPASS"}, // off

	} {
		c := r.client(cred.user, cred.password)
		for _, k := range keys {
			if err := c.Get(ctx, k).Err(); err == nil || !strings.Contains(err.Error(), cred.want) {
				t.Errorf("GET %s as %q with %q: %v, want %s", k, cred.user, cred.password, err, cred.want)
			}
		}
		c.Close()
	}
}

// A CA that did not sign the server's certificate: the connection is
// refused before the password is sent, never made in plain text, and
// protected paths answer 503.
func TestRedisTLSUntrustedCA(t *testing.T) {
	r := startTLSRedis(t)
	t.Setenv("TEST_REDIS_PASSWORD", redisTLSPassword)
	e := start(t, setup{global: r.global(testredis.OtherCA(t))})
	failsClosed(t, e, "alice")
	if log := caddyLog(t, e); !strings.Contains(log, "certificate signed by unknown authority") {
		t.Fatalf("Caddy's log does not say the certificate was refused:\n%s", log)
	}
	// Nothing reached Redis: no login, failed or not, and no key.
	if log := r.aclLog(t); len(log) != 0 {
		t.Fatalf("the gateway reached Redis: %v", log)
	}
	clients, err := r.admin.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(clients, "user=gateway") {
		t.Fatalf("the gateway holds a connection:\n%s", clients)
	}
	if keys := r.gatewayKeys(t); len(keys) != 0 {
		t.Fatalf("keys written: %v", keys)
	}
}

// The store's append-only logs work as the restricted ACL user, every
// operation in both directions, and no command is denied; a user without
// the stream rights is told which it lacks.
func TestRedisACLLogs(t *testing.T) {
	r := startTLSRedis(t)
	ctx := t.Context()
	client := r.client("gateway", redisTLSPassword)
	t.Cleanup(func() { client.Close() })
	s := storeredis.New(client, "2fa:")
	// One append alone (XADD) and a batch (MULTI, XADD, EXEC).
	appended, err := s.LogAppend(ctx, "audit", []byte("a"))
	if err != nil {
		t.Fatalf("LogAppend as the gateway user: %v", err)
	}
	more, err := s.LogAppend(ctx, "audit", []byte("b"), []byte("c"))
	if err != nil {
		t.Fatalf("LogAppend of a batch as the gateway user: %v", err)
	}
	appended = append(appended, more...)
	for _, newest := range []bool{false, true} {
		got, err := s.LogRange(ctx, "audit", appended[0].ID, appended[2].ID, 10, newest)
		if err != nil || len(got) != 2 {
			t.Fatalf("LogRange (newest first %v) as the gateway user = %d entries, %v; want 2", newest, len(got), err)
		}
	}
	if n, err := s.LogTrim(ctx, "audit", appended[2].Time.Add(time.Millisecond)); err != nil || n != 3 {
		t.Fatalf("LogTrim as the gateway user = %d, %v; want 3", n, err)
	}
	if log := r.aclLog(t); len(log) != 0 {
		t.Fatalf("the ACL user lacks rights the logs use: %v", log)
	}

	var noLog []string
	for _, rule := range gatewayACL {
		if !strings.HasPrefix(rule, "+x") && !strings.HasPrefix(rule, ">") {
			noLog = append(noLog, rule)
		}
	}
	noLog = append(noLog, ">no-log-secret-0123456789")
	if err := r.admin.Do(ctx, append([]any{"acl", "setuser", "nolog"}, strs(noLog)...)...).Err(); err != nil {
		t.Fatal(err)
	}
	limited := r.client("nolog", "no-log-secret-0123456789")
	t.Cleanup(func() { limited.Close() })
	_, err = storeredis.New(limited, "2fa:").LogAppend(ctx, "audit", []byte("d"))
	if err == nil || !strings.Contains(err.Error(), "+xadd, +xrange, +xrevrange and +xtrim") {
		t.Fatalf("LogAppend without the stream rights = %v, want an error naming them", err)
	}
}
