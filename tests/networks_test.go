package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
)

// Policies by network, through Caddy: requests come from other loopback
// addresses (127.0.0.2 and .3 in 127.0.0.0/24, 127.0.1.2 in another
// /24, ::1), as clients in an office and outside it would.

// from returns the browser as it would be on another network: the same
// cookies, its connections made from ip. The URL keeps the site's host,
// so the host matcher and the cookie jar see the same site; for ::1 the
// connection goes to [::1] on the same port.
func (b *browser) from(ip string) *browser {
	b.t.Helper()
	local := net.ParseIP(ip)
	if local == nil {
		b.t.Fatalf("from %q: not an address", ip)
	}
	u, _ := url.Parse(b.e.base)
	target := u.Host
	if local.To4() == nil {
		target = net.JoinHostPort("::1", u.Port())
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 5 * time.Second}
	c := *b
	client := *b.c
	transport := b.c.Transport.(*http.Transport).Clone()
	transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, target)
	}
	client.Transport = transport
	c.c = &client
	return &c
}

// dropSession forgets the gateway's session cookie, as a browser does
// when it is closed: the member site's session and a remembered device
// stay.
func (b *browser) dropSession() {
	u, _ := url.Parse(b.e.base)
	b.jar.SetCookies(u, []*http.Cookie{{Name: "2fa_session", Path: "/", MaxAge: -1}})
}

// ipv6Loopback skips a test that needs ::1 where the machine has none.
func ipv6Loopback(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	l.Close()
}

const networksPolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* /placed/* {
		remember_device 30d
		networks 127.0.0.0/24 {
			second_factor skip
		}
	}
	protect /optional/* {
		enrolment optional
		networks 127.0.0.0/24 {
			second_factor skip
		}
	}
	protect /admin/* {
		remember_device off
	}
	site_name "Test Members"
`

// From a range whose block skips the code, an enrolled member passes
// without one and the upstream is told so; from anywhere else, they are
// asked. The skip makes no session, so the gateway's own pages still ask.
func TestNetworkSkip(t *testing.T) {
	ipv6Loopback(t)
	e := start(t, setup{
		policy: networksPolicy,
		extra:  `respond /placed/* "user={http.auth.two_factor.user} method={http.auth.two_factor.method} enrolled={http.auth.two_factor.enrolled}" 200`,
	})
	verified, _ := enrolled(e, "alice")

	alice := e.browser()
	alice.login("alice")
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		b := alice.from(ip)
		status, h := b.upstream("/echo/x")
		if status != http.StatusOK {
			t.Fatalf("from %s: status %d, want the upstream", ip, status)
		}
		if h.Get("X-2fa-User") != "alice" || h.Get("X-2fa-Method") != "network" || h.Get("X-2fa-Enrolled") != "true" {
			t.Errorf("from %s: upstream headers %v", ip, h)
		}
		if r := b.get("/placed/x"); r.body != "user=alice method=network enrolled=true" {
			t.Errorf("from %s: placeholders %q", ip, r.body)
		}
	}
	if alice.cookie("2fa_session") != nil || alice.cookie("2fa_device") != nil {
		t.Fatal("a network skip set a session or device cookie")
	}
	for _, ip := range []string{"127.0.1.2", "::1"} {
		b := alice.from(ip)
		if r := b.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
			t.Errorf("from %s: %d %q, want the challenge", ip, r.status, r.location())
		}
		if r := b.script("/echo/x"); r.status != http.StatusUnauthorized {
			t.Errorf("from %s, a script: %d, want 401", ip, r.status)
		}
	}

	// No session was made, so pages that trust one still ask for a code.
	office := alice.from("127.0.0.2")
	for _, page := range []string{"/.2fa/methods", "/.2fa/admin/"} {
		r := office.get(page)
		if r.status == http.StatusOK && !strings.Contains(r.body, `name="code"`) {
			t.Errorf("%s from the office without a session: %d, want a code asked for", page, r.status)
		}
	}
	if r := office.get("/admin/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Errorf("a rule without the block, from the office: %d %q, want the challenge", r.status, r.location())
	}

	// A real session keeps its real method, inside the range too.
	if _, h := verified.from("127.0.0.2").upstream("/echo/x"); h.Get("X-2fa-Method") != "totp" {
		t.Errorf("verified member in the office: method %q, want totp", h.Get("X-2fa-Method"))
	}

	// Skipping waives the code, not enrolment.
	bob := e.browser()
	bob.login("bob")
	bobOffice := bob.from("127.0.0.2")
	if r := bobOffice.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Errorf("member without a factor on a required rule, from the office: %d %q, want enrolment", r.status, r.location())
	}
	if r := bobOffice.navigate("/optional/x"); r.status != http.StatusFound || !strings.Contains(r.location(), "/.2fa/remind") {
		t.Errorf("member without a factor on an optional rule, from the office: %d %q, want the reminder", r.status, r.location())
	}
	bobOffice.header.Set("Sec-Fetch-Mode", "cors") // a script: no reminder page
	if _, h := bobOffice.upstream("/optional/x"); h.Get("X-2fa-Method") != "none" || h.Get("X-2fa-Enrolment") != "optional" {
		t.Errorf("member without a factor, from a script: %v", h)
	}

	// Audited once per member-site session, not per request: the four
	// skips above were one session; signing in again at the site is
	// another.
	alice.login("alice")
	for range 3 {
		alice.from("127.0.0.3").get("/echo/x")
	}
	e.stop() // waits for the audit written in the background
	var skips []map[string]any
	for _, ev := range e.audit() {
		if ev["event"] == "network_skip" {
			skips = append(skips, ev)
		}
	}
	if len(skips) != 2 {
		t.Fatalf("%d network_skip events, want 2 (one per member-site session): %v", len(skips), skips)
	}
	for _, ev := range skips {
		if ev["user"] != "alice" || ev["rule"] != "/members/* /echo/* /placed/*" || ev["network"] != "127.0.0.0/24" ||
			ev["result"] != "success" || ev["enrolled"] != true {
			t.Errorf("network_skip event %v", ev)
		}
	}
	// Each session's event carries its first skip's address; the two are
	// written in the background, in either order.
	if ips := []any{skips[0]["ip"], skips[1]["ip"]}; !slices.Contains(ips, "127.0.0.2") || !slices.Contains(ips, "127.0.0.3") {
		t.Errorf("the skips' addresses %v, want 127.0.0.2 (the first session's first) and 127.0.0.3", ips)
	}
}

// A block that remembers nothing (shared terminals) hides the choice and
// refuses remembered devices from its range, while outside it they work.
func TestNetworkRememberOff(t *testing.T) {
	e := start(t, setup{policy: `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		remember_device 30d
		networks 127.0.0.0/24 {
			remember_device off
		}
	}
	site_name "Test Members"
`})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	home := b.from("127.0.1.2")
	if r := home.get("/.2fa/challenge?return_to=/echo/x"); !strings.Contains(r.body, `name="remember"`) {
		t.Fatal("outside the range: the challenge page does not offer to remember the device")
	}
	if r := home.verify(e.code(secret, 0), "/echo/x", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify with remember: %d", r.status)
	}
	e.nextStep()
	device := b.cookie("2fa_device")
	if device == nil {
		t.Fatal("no device cookie after verifying with remember outside the range")
	}
	home.dropSession()
	if _, h := home.upstream("/echo/x"); h.Get("X-2fa-Method") != "device" {
		t.Fatalf("outside the range: the remembered device does not pass (%v)", h)
	}

	// The session that device began, carried into the range: asked.
	office := b.from("127.0.0.2")
	if r := office.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("a remembered session in the range: %d %q, want the challenge", r.status, r.location())
	}
	office.dropSession()
	if r := office.get("/echo/x"); r.status != http.StatusFound {
		t.Fatalf("the remembered device in the range: %d, want the challenge", r.status)
	}
	page := office.get("/.2fa/challenge?return_to=/echo/x")
	if page.status != http.StatusOK || strings.Contains(page.body, `name="remember"`) {
		t.Fatalf("in the range: challenge %d offers to remember the device", page.status)
	}
	r := office.verify(e.code(secret, 0), "/echo/x", true) // remember=1 posted anyway
	if r.status != http.StatusSeeOther {
		t.Fatalf("verify in the range: %d", r.status)
	}
	e.nextStep()
	for _, c := range r.cookies {
		if c.Name == "2fa_device" {
			t.Fatalf("in the range, remember=1 set a device cookie: %v", c)
		}
	}
	if _, h := office.upstream("/echo/x"); h.Get("X-2fa-Method") != "totp" {
		t.Fatalf("after the code in the range: %v", h)
	}

	// Back outside, the device still works.
	home.dropSession()
	if _, h := home.upstream("/echo/x"); h.Get("X-2fa-Method") != "device" {
		t.Fatalf("back outside the range: the device no longer passes (%v)", h)
	}
	if b.cookie("2fa_device").Value != device.Value {
		t.Error("the device cookie changed")
	}
}

// The client address is Caddy's: X-Forwarded-For and its kin count only
// from trusted_proxies. Without trusted_proxies_strict Caddy takes the
// left-most entry, which a client writes itself when the proxy appends to
// the header, so there no block applies, and the operator is told.
func TestNetworkForwardedFor(t *testing.T) {
	strict := "servers {\n\t\ttrusted_proxies static 127.0.1.2/32\n\t\ttrusted_proxies_strict\n\t}"
	loose := "servers {\n\t\ttrusted_proxies static 127.0.1.2/32\n\t}"
	for _, c := range []struct {
		name, options, from, forwarded string
		skip                           bool
	}{
		{"no trusted proxy", "", "127.0.1.2", "127.0.0.2", false},
		{"trusted proxy, strict", strict, "127.0.1.2", "127.0.0.2", true},
		{"untrusted peer, strict", strict, "127.0.1.3", "127.0.0.2", false},
		{"client appended to, strict", strict, "127.0.1.2", "127.0.0.2, 127.0.1.9", false},
		{"client appended to, not strict", loose, "127.0.1.2", "127.0.0.2, 127.0.1.9", false},
		{"trusted proxy, not strict", loose, "127.0.1.2", "127.0.0.2", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, setup{policy: networksPolicy, options: c.options})
			enrolled(e, "alice")
			b := e.browser()
			b.login("alice")
			b = b.from(c.from)
			b.header.Set("X-Forwarded-For", c.forwarded)
			if !c.skip {
				b.header.Set("X-Real-IP", "127.0.0.2")
				b.header.Set("Forwarded", "for=127.0.0.2")
			}
			for range 2 {
				r := b.get("/echo/x")
				if skipped := r.status == http.StatusOK; skipped != c.skip {
					t.Fatalf("from %s with X-Forwarded-For %q: %d %q, skipped %v, want %v", c.from, c.forwarded, r.status, r.location(), skipped, c.skip)
				}
			}
			log, err := os.ReadFile(e.logPath)
			if err != nil {
				t.Fatal(err)
			}
			warned := strings.Count(string(log), "set trusted_proxies_strict in the servers global option")
			if want := map[bool]int{true: 1, false: 0}[c.options == loose]; warned != want {
				t.Errorf("the warning about a proxy without trusted_proxies_strict was logged %d times, want %d", warned, want)
			}
		})
	}
}

// A request over a unix socket has no client address: it never skips,
// even where every loopback address would.
func TestNetworkNoAddress(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "gw.sock")
	e := start(t, setup{policy: networksPolicy, sites: `
http://gw.test {
	bind unix/` + sock + `
	two_factor {
		identity endpoint {SITE}/api/me {
			session_cookie member_session
		}
		protect /echo/* {
			networks 127.0.0.0/8 ::1/128 {
				second_factor skip
			}
		}
		site_name "Test Members"
	}
	reverse_proxy {ECHO}
}
`})
	enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	client := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, _ := http.NewRequest(http.MethodGet, "http://gw.test/echo/x", nil)
	req.Header.Set("Cookie", "member_session="+b.cookie("member_session").Value)
	req.Header.Set("X-Forwarded-For", "127.0.0.2")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/.2fa/challenge") {
		t.Fatalf("over a unix socket: %d %q, want the challenge", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// A reload without the block takes the skip away at once.
func TestNetworksReload(t *testing.T) {
	e := start(t, setup{policy: networksPolicy})
	enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	office := b.from("127.0.0.2")
	if r := office.get("/echo/x"); r.status != http.StatusOK {
		t.Fatalf("before the reload: %d", r.status)
	}
	if err := load(e.caddyfile(setup{})); err != nil {
		t.Fatal(err)
	}
	office.afterReload("/public/x")
	if r := office.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("after a reload without the block: %d %q, want the challenge", r.status, r.location())
	}
}

// Two gateways sharing Redis agree: both skip from the range, and the
// member-site session's skip is audited once between them.
func TestNetworksOnRedis(t *testing.T) {
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n", testKey, srv.Addr)
	ins := startInstances(t, 2, global, networksPolicy, membersite.DemoMembers())
	a, b := ins[0], ins[1]
	enrolling := a.browser()
	enrolling.login("alice")
	enrolling.enrolApp("/members/")

	alice := a.browser()
	alice.login("alice")
	for i, in := range []*instance{a, b, a, b} {
		if _, h := alice.on(in.env).from("127.0.0.2").upstream("/echo/x"); h.Get("X-2fa-Method") != "network" {
			t.Fatalf("request %d, on instance %d, from the range: %v", i, i%2, h)
		}
		if r := alice.on(in.env).from("127.0.1.2").get("/echo/x"); r.status != http.StatusFound {
			t.Fatalf("request %d, on instance %d, outside the range: %d", i, i%2, r.status)
		}
	}
	skips := 0
	for _, in := range ins {
		in.stop() // waits for the audit written in the background
		for _, ev := range in.audit() {
			if ev["event"] == "network_skip" {
				skips++
			}
		}
	}
	if skips != 1 {
		t.Fatalf("%d network_skip events over both instances, want 1 for the member-site session", skips)
	}
}
