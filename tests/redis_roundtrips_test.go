package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// A sign-in through Caddy costs at most maxSignInTrips round trips to
// Redis (issue 16), by every method, on one server and on a Cluster.
// The store is the plugin's Redis store on a client this test builds, so
// it can watch it (testredis.RoundTrips): a third party's store module,
// as the app loads any in two_factor.stores.

func init() { caddy.RegisterModule(countedRedis{}) }

// storeTrips counts the round trips of every countedRedis store opened.
var storeTrips testredis.RoundTrips

// countedRedis is the Redis store on a watched client: one address for a
// standalone server, several for a Cluster.
type countedRedis struct {
	Addresses []string `json:"addresses"`
}

func (countedRedis) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "two_factor.stores.counted_redis", New: func() caddy.Module { return new(countedRedis) }}
}

func (s *countedRedis) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	s.Addresses = d.RemainingArgs()
	return nil
}

func (s *countedRedis) OpenStore(ctx context.Context) (store.Store, error) {
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: s.Addresses})
	storeTrips.Watch(c)
	go func() { <-ctx.Done(); c.Close() }()
	return redis.New(c, "2fa:"), nil
}

// maxSignInTrips is the budget of one sign-in request.
const maxSignInTrips = 4

// background are the keys of work done after the request, apart from it:
// the durable audit trail's appends (the audit writer batches them), and
// the member list's last-seen marks (the seen writer batches them).
var background = []string{"\x00log:", "seen:", "\x00index:last_seen"}

func TestSignInRoundTrips(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		signInTrips(t, testredis.Start(t).Addr)
	})
	t.Run("cluster", func(t *testing.T) {
		signInTrips(t, testredis.StartCluster(t)...)
	})
}

func signInTrips(t *testing.T, addrs ...string) {
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	c := &codeEnv{env: start(t, setup{
		global: fmt.Sprintf("keys %q\n\t\tstore counted_redis %s\n", testKey, strings.Join(addrs, " ")) + senders(mail, sns, ""),
		policy: passkeyIn(codePolicy),
	}), mail: mail, sns: sns}
	key := testwebauthn.New(c.origin())
	b := c.browser()
	b.login("alice")
	secret := b.enrol("/members/")
	codes := b.recovery
	c.enrolEmail(b, "/members/", 1)
	b.registerPasskey(key, "/members/", "Key")
	mails := 1

	// measure signs alice in from a browser she has used before (prepare,
	// uncounted, readies the request) and returns the request's trips.
	browsers := map[string]*browser{}
	measure := func(method string, round int, prepare func(b *browser) func() *response, want int) {
		t.Helper()
		name := fmt.Sprintf("%s (%d)", method, round)
		nb := browsers[method]
		if nb == nil {
			nb = c.browser()
			browsers[method] = nb
		}
		nb.jar.SetCookies(&url.URL{Scheme: "http", Host: c.host}, []*http.Cookie{{Name: "2fa_session", Value: "", MaxAge: -1, Path: "/"}})
		nb.login("alice")
		c.nextStep()
		c.nextStep()
		send := prepare(nb)
		storeTrips.Take()
		r := send()
		steps, sent := storeTrips.Take()
		if r.status != want {
			t.Fatalf("%s: status %d, want %d: %s", name, r.status, want, r.body)
		}
		all := sent
		steps, sent = testredis.Without(steps, background...), testredis.Without(sent, background...)
		for _, tr := range all {
			if !slices.ContainsFunc(sent, func(s testredis.Trip) bool { return s.String() == tr.String() }) {
				t.Logf("%s: background work left out: %s", name, strings.ReplaceAll(tr.String(), "\x00", `\0`))
			}
		}
		lines := ""
		for _, tr := range sent {
			lines += "\n\t" + strings.ReplaceAll(tr.String(), "\x00", `\0`)
		}
		t.Logf("%s: %d round trips, %d pipelines or commands to the servers:%s", name, len(steps), len(sent), lines)
		if len(steps) > maxSignInTrips || testredis.MostPerServer(sent) > len(steps) {
			t.Errorf("%s: %d round trips, at most %d to one server; want at most %d", name, len(steps), testredis.MostPerServer(sent), maxSignInTrips)
		}
	}
	for round := range 2 { // the first time, each browser is new to the member
		measure("app", round, func(b *browser) func() *response {
			tok := b.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
			return func() *response {
				return b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {c.code(secret, 0)}})
			}
		}, http.StatusSeeOther)
		measure("email code", round, func(b *browser) func() *response {
			c.clock.Advance(2 * time.Minute) // past the resend wait
			if r := b.send("email", "/members/"); r.status != http.StatusSeeOther {
				t.Fatalf("sending a code: %d %s", r.status, r.body)
			}
			mails++
			_, code := c.mailCode(mails)
			tok := b.csrf("/.2fa/challenge?method=email&return_to=%2Fmembers%2F")
			return func() *response {
				return b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"email"}, "code": {code}})
			}
		}, http.StatusSeeOther)
		measure("recovery code", round, func(b *browser) func() *response {
			tok := b.csrf("/.2fa/challenge?method=recovery&return_to=%2Fmembers%2F")
			return func() *response {
				return b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"recovery"}, "code": {codes[round]}})
			}
		}, http.StatusSeeOther)
		measure("passkey", round, func(b *browser) func() *response {
			options, tok := b.passkeyBegin("/members/")
			assertion, err := key.Get(options)
			if err != nil {
				t.Fatal(err)
			}
			return func() *response {
				return b.postJSON("/.2fa/webauthn/login/finish?return_to=%2Fmembers%2F", tok, assertion)
			}
		}, http.StatusOK)
	}
}
