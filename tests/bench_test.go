package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
)

// BenchmarkHotPath measures a verified member's request through Caddy's
// whole handler chain (server, routes, two_factor, respond) against the same
// chain without the plugin, and with a trivial handler in its place (what
// any extra handler costs in Caddy's route machinery), in one run; then the
// plugin again with its state in Redis instead of the embedded store. The
// chain is driven in memory, so the numbers are the handlers' own cost, free
// of network noise:
//
//	go test -run '^$' -bench HotPath -benchmem ./tests/
func BenchmarkHotPath(b *testing.B) {
	bare, noop := testnet.FreePort(b), testnet.FreePort(b)
	policy := `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
		cache 10m
	}
	protect /members/* /bench/*
`
	e := start(b, setup{
		extra:  `respond /bench/* "ok" 200`,
		policy: policy,
		sites: fmt.Sprintf("http://127.0.0.1:%d {\n\trespond /bench/* \"ok\" 200\n}\n", bare) +
			fmt.Sprintf("http://127.0.0.1:%d {\n\trequest_header X-Bench 1\n\trespond /bench/* \"ok\" 200\n}\n", noop),
	})
	cookies := verifiedCookies(b, e)
	b.Run("bare", func(b *testing.B) { benchRequest(b, server(b, bare), fmt.Sprintf("127.0.0.1:%d", bare), cookies) })
	b.Run("noop_handler", func(b *testing.B) { benchRequest(b, server(b, noop), fmt.Sprintf("127.0.0.1:%d", noop), cookies) })
	b.Run("two_factor", func(b *testing.B) { benchRequest(b, server(b, e.port), e.host, cookies) })

	// The same with networks blocks: a verified member outside every
	// range (each range compared), then a member let through by a skip
	// (no gateway session).
	withBlocks := func(blocks string) *env {
		return start(b, setup{extra: `respond /bench/* "ok" 200`, policy: strings.TrimSuffix(policy, "\n") + " {\n" + blocks + "\n\t}\n"})
	}
	e = withBlocks(`
		networks 192.0.2.0/24 2001:db8:10::/48 {
			second_factor skip
		}
		networks 198.51.100.0/24 {
			remember_device off
		}
		networks 203.0.113.0/24 10.0.0.0/8 {
			methods totp
		}`)
	cookies = verifiedCookies(b, e)
	b.Run("two_factor_networks", func(b *testing.B) { benchRequest(b, server(b, e.port), e.host, cookies) })
	e = withBlocks(`
		networks 127.0.0.0/8 {
			second_factor skip
		}`)
	cookies = verifiedCookies(b, e)
	member := cookies[:strings.LastIndex(cookies, ";")] // without the gateway's session
	b.Run("network_skip", func(b *testing.B) { benchRequest(b, server(b, e.port), e.host, member) })

	// One Caddy runs per process, so the Redis configuration replaces the
	// one above, after bare Caddy was measured.
	srv := testredis.Start(b)
	e = start(b, setup{
		global: fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tkey_prefix bench:\n\t\t}", testKey, srv.Addr),
		extra:  `respond /bench/* "ok" 200`,
		policy: policy,
	})
	cookies = verifiedCookies(b, e)
	b.Run("two_factor_redis", func(b *testing.B) { benchRequest(b, server(b, e.port), e.host, cookies) })
}

// verifiedCookies enrols a member and returns the browser's Cookie header:
// a tracker's, the member site's session and the gateway's.
func verifiedCookies(b *testing.B, e *env) string {
	b.Helper()
	br, _ := enrolled(e, "alice")
	member := br.cookie("member_session")
	sess := br.cookie("2fa_session")
	if member == nil || sess == nil {
		b.Fatal("no cookies after enrolment")
	}
	// In the order a browser sends them, oldest first: the tracker's from
	// the first visit, then the site's session, then the gateway's.
	return "_ga=GA1.1.123456789.1700000000; " + member.Name + "=" + member.Value + "; " + sess.Name + "=" + sess.Value
}

// server returns the running Caddy's server listening on port.
func server(b *testing.B, port int) *caddyhttp.Server {
	b.Helper()
	httpApp, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	for _, srv := range httpApp.(*caddyhttp.App).Servers {
		for _, l := range srv.Listen {
			if strings.HasSuffix(l, fmt.Sprintf(":%d", port)) {
				return srv
			}
		}
	}
	b.Fatalf("no server on port %d", port)
	return nil
}

func benchRequest(b *testing.B, srv *caddyhttp.Server, host, cookies string) {
	req := httptest.NewRequest(http.MethodGet, "http://"+host+"/bench/page", nil)
	req.RemoteAddr = "127.0.0.1:50000"
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Accept-Language", "ja,en;q=0.8")
	// The gateway removes its own cookies from the request it passes
	// on, so each iteration starts from the browser's header again.
	header := func() { req.Header["Cookie"] = append(req.Header["Cookie"][:0], cookies) }
	header()
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code != http.StatusOK || w.Body.String() != "ok" {
		b.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		header()
		w = httptest.NewRecorder()
		srv.ServeHTTP(w, req)
	}
	if w.Code != http.StatusOK {
		b.Fatalf("last request: status %d", w.Code)
	}
}
