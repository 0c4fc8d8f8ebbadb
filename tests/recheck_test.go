package tests

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// recheck_new_network through Caddy: a remembered device used from an
// address range (IPv4 /24, IPv6 /48) the member has never passed the
// second factor from asks for a code once; afterwards the range is known.
// Clients come from other loopback addresses (127.0.0.2, 127.0.1.2, ::1),
// which Caddy sees as the client address.

const recheckPolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		remember_device 30d {
			recheck_new_network
		}
	}
	site_name "Test Members"
`

// passesAs checks that /echo/x reaches the upstream with method.
func passesAs(t *testing.T, b *browser, method, what string) {
	t.Helper()
	s, h := b.upstream("/echo/x")
	if s != http.StatusOK || h.Get("X-2fa-Method") != method {
		t.Fatalf("%s: %d, method %q; want 200 with %q", what, s, h.Get("X-2fa-Method"), method)
	}
}

// askedForCode checks that a page load of /echo/x is sent to the challenge.
func askedForCode(t *testing.T, b *browser, what string) {
	t.Helper()
	r := b.get("/echo/x")
	if r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("%s: %d %q, want the challenge", what, r.status, r.location())
	}
}

// networksSection is the known ranges' section of a settings or admin
// member page.
func networksSection(t *testing.T, r *response) string {
	t.Helper()
	i := strings.Index(r.body, `<h2 id="networks-heading">Known networks</h2>`)
	if r.status != http.StatusOK || i < 0 {
		t.Fatalf("no known networks on the page: %d\n%s", r.status, r.body)
	}
	return r.body[i : i+strings.Index(r.body[i:], "</section>")]
}

// rechecks returns the device_used refusals for a new range in entries.
func rechecks(entries []map[string]any) []map[string]any {
	var out []map[string]any
	for _, a := range entries {
		if a["event"] == "device_used" && a["result"] == "refused" && a["reason"] == "new_network" {
			out = append(out, a)
		}
	}
	return out
}

func TestRecheckNewNetwork(t *testing.T) {
	s := adminPagesSetup(t)
	s.policy = recheckPolicy
	e := start(t, s)
	home := e.browser().from("127.0.0.2")
	home.login("alice")
	secret := home.enrol("/members/")
	home.dropSession()
	if r := home.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther || home.cookie("2fa_device") == nil {
		t.Fatalf("verifying with remember from 127.0.0.2: %d, device %v", r.status, home.cookie("2fa_device"))
	}
	e.nextStep()

	// Same /24: the device passes without a code.
	home.dropSession()
	near := home.from("127.0.0.3")
	passesAs(t, near, "device", "the device from 127.0.0.3")
	if n := len(rechecks(e.audit())); n != 0 {
		t.Fatalf("%d rechecks within the known range", n)
	}

	// Another /24: the session the device began, carried there, and the
	// device itself are asked for a code once, with the reason on the
	// page and in the audit trail.
	away := home.from("127.0.1.2")
	askedForCode(t, away, "the device's session carried to 127.0.1.2")
	got := rechecks(e.audit())
	if len(got) != 1 || got[0]["user"] != "alice" || got[0]["network"] != "127.0.1.0/24" || got[0]["ip"] != "127.0.1.2" ||
		len(fmt.Sprint(got[0]["device"])) != 8 {
		t.Fatalf("recheck audit: %v", got)
	}
	page := away.get("/.2fa/challenge?return_to=%2Fecho%2Fx")
	notice := html.EscapeString("You're signing in from a network you haven't used before.")
	if page.status != http.StatusOK || !strings.Contains(page.body, notice) {
		t.Fatalf("the challenge from 127.0.1.2 does not say why: %d\n%s", page.status, page.body)
	}
	if page := near.get("/.2fa/challenge?return_to=%2Fecho%2Fx"); strings.Contains(page.body, notice) {
		t.Fatal("the challenge from the known range speaks of a new network")
	}
	if r := away.verify(e.code(secret, 0), "/echo/x", false); r.status != http.StatusSeeOther {
		t.Fatalf("the code from 127.0.1.2: %d %s", r.status, r.body)
	}
	e.nextStep()
	passesAs(t, away, "totp", "after the code from 127.0.1.2")

	// Asked once: the device now passes there too.
	away.dropSession()
	passesAs(t, away, "device", "the device from 127.0.1.2 after the code there")
	passesAs(t, near, "device", "the device's session back at 127.0.0.3")
	if n := len(rechecks(e.audit())); n != 1 {
		t.Fatalf("%d rechecks, want 1", n)
	}

	// IPv6 is its /48.
	v6 := home.from("::1")
	v6.dropSession()
	askedForCode(t, v6, "the device from ::1")
	if r := v6.verify(e.code(secret, 0), "/echo/x", false); r.status != http.StatusSeeOther {
		t.Fatalf("the code from ::1: %d", r.status)
	}
	e.nextStep()
	v6.dropSession()
	passesAs(t, v6, "device", "the device from ::1 after the code there")
	got = rechecks(e.audit())
	if len(got) != 2 || got[1]["network"] != "::/48" {
		t.Fatalf("rechecks after ::1: %v", got)
	}
	if v, ok := metricValue(scrape(t, e), "caddy_two_factor_device_rechecks_total", nil); !ok || v != 2 {
		t.Fatalf("device_rechecks_total %v (%v), want 2", v, ok)
	}

	// The member and the admins see the ranges.
	ranges := []string{"127.0.0.0/24", "127.0.1.0/24", "::/48"}
	// The settings page wants a session from a code.
	home.dropSession()
	if r := home.verify(e.code(secret, 0), "/.2fa/methods", false); r.status != http.StatusSeeOther {
		t.Fatalf("the code for the settings: %d", r.status)
	}
	e.nextStep()
	settings := home.get("/.2fa/methods")
	known := networksSection(t, settings)
	for _, want := range ranges {
		if !strings.Contains(known, want) {
			t.Errorf("the settings page lacks %q:\n%s", want, known)
		}
	}
	// The most recent first: 127.0.0.2's, ::1's, then 127.0.1.2's.
	if i, j := strings.Index(known, "::/48"), strings.Index(known, "127.0.1.0/24"); i > j {
		t.Errorf("the settings page lists ::/48 after 127.0.1.0/24")
	}
	admin, _ := enrolled(e, "admin")
	e.nextStep()
	member := networksSection(t, admin.get("/.2fa/admin/member?id=alice"))
	for _, want := range ranges {
		if !strings.Contains(member, want) {
			t.Errorf("the admin member page lacks %q", want)
		}
	}

	// The admin API's member detail, and the CLI that reads it.
	status, body, _ := adminGet(t, e, "/two-factor/members?id=alice")
	var detail struct {
		Networks []struct {
			Range string    `json:"range"`
			Last  time.Time `json:"last"`
		} `json:"networks"`
	}
	if err := json.Unmarshal([]byte(body), &detail); status != http.StatusOK || err != nil || len(detail.Networks) != 3 ||
		detail.Networks[0].Range != "127.0.0.0/24" || detail.Networks[1].Range != "::/48" || detail.Networks[2].Range != "127.0.1.0/24" ||
		!detail.Networks[0].Last.After(detail.Networks[1].Last) {
		t.Fatalf("the admin API's networks: %d %v\n%s", status, err, body)
	}
	out, code := twoFactorCLI(t, "members", "show", "--address", e.admin, "alice")
	if i := strings.Index(out, "NETWORK"); code != 0 || i < 0 || !strings.Contains(out[i:], "127.0.1.0/24") || !strings.Contains(out[i:], "::/48") {
		t.Fatalf("members show alice: exit %d\n%s", code, out)
	}

	// Forgetting the devices forgets the ranges.
	if r := adminAct(admin, "forget-devices", "alice", "shared computer"); r.status != http.StatusSeeOther {
		t.Fatalf("forget devices: %d", r.status)
	}
	member = networksSection(t, admin.get("/.2fa/admin/member?id=alice"))
	for _, want := range ranges {
		if strings.Contains(member, want) {
			t.Errorf("the admin member page still lists %q after forget-devices", want)
		}
	}
	if !strings.Contains(member, "No network recorded yet.") {
		t.Error("the admin member page does not say no range is known")
	}
	if _, body, _ := adminGet(t, e, "/two-factor/members?id=alice"); !strings.Contains(body, `"networks":[]`) {
		t.Errorf("the admin API after forget-devices: %s", body)
	}
}

// On Redis, two instances agree: a range learnt from a code on B lets the
// device pass on A.
func TestRecheckOnRedis(t *testing.T) {
	srv := testredis.Start(t)
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n", testKey, srv.Addr) + senders(mail, sns, "")
	ins := startInstances(t, 2, global, recheckPolicy, membersite.DemoMembers())
	a, b := ins[0], ins[1]
	box := mailbox{t: t, mail: mail}

	// On A from 127.0.0.2: the app, email, and a device remembered.
	home := a.browser().from("127.0.0.2")
	home.login("alice")
	secret := home.enrolApp("/members/")
	home.addEmail(box, 1)
	home.dropSession()
	if r := home.verify(realCode(t, secret, 1), "/members/", true); r.status != http.StatusSeeOther || home.cookie("2fa_device") == nil {
		t.Fatalf("verifying with remember on A: %d", r.status)
	}
	home.dropSession()
	passesAs(t, home.on(b.env).from("127.0.0.2"), "device", "the device on B from the range it was remembered in")

	// On B from 127.0.1.2: asked once, by email.
	away := home.on(b.env).from("127.0.1.2")
	away.dropSession()
	askedForCode(t, away, "the device on B from 127.0.1.2")
	if r := away.send("email", "/echo/x"); r.status != http.StatusSeeOther {
		t.Fatalf("sending on B: %d %s", r.status, r.body)
	}
	if r := away.verifyCode("email", box.code("alice@example.com", 2), "/echo/x"); r.status != http.StatusSeeOther {
		t.Fatalf("the emailed code on B: %d %s", r.status, r.body)
	}
	passesAs(t, away, "email", "B after the code")

	// A learnt the range from B's write: the device passes there, and
	// the session it begins on A goes on from that range.
	onA := home.on(a.env).from("127.0.1.2")
	onA.dropSession()
	passesAs(t, onA, "device", "the device on A from the range B learnt")
	passesAs(t, onA, "device", "the device's session on A")
	if got := append(rechecks(a.audit()), rechecks(b.audit())...); len(got) != 1 || got[0]["network"] != "127.0.1.0/24" {
		t.Fatalf("rechecks over both instances: %v", got)
	}
}

// Through a trusted proxy, a forwarded address counts as the member's
// known range only with trusted_proxies_strict: without it Caddy takes
// the left-most X-Forwarded-For entry, which a client writes itself, so
// a stolen device cookie could claim any range the member knows.
func TestRecheckThroughProxy(t *testing.T) {
	for _, c := range []struct {
		name, options string
		passes        bool
	}{
		{"strict", "servers {\n\t\ttrusted_proxies static 127.0.1.2/32\n\t\ttrusted_proxies_strict\n\t}", true},
		{"not strict", "servers {\n\t\ttrusted_proxies static 127.0.1.2/32\n\t}", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, setup{policy: recheckPolicy, options: c.options})
			home := e.browser().from("127.0.0.2")
			home.login("alice")
			secret := home.enrol("/members/")
			home.dropSession()
			if r := home.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
				t.Fatalf("verifying with remember: %d", r.status)
			}
			e.nextStep()
			home.dropSession()
			proxied := home.from("127.0.1.2")
			proxied.header.Set("X-Forwarded-For", "127.0.0.9")
			if c.passes {
				passesAs(t, proxied, "device", "the device through the proxy, from the known range")
				return
			}
			askedForCode(t, proxied, "the device through a proxy without trusted_proxies_strict")
			if got := rechecks(e.audit()); len(got) != 1 || got[0]["network"] != "unknown" {
				t.Fatalf("recheck audit: %v", got)
			}
		})
	}
}

// A range is known for a path only by a method the path accepts: an
// emailed code from a new range lets the device through where email is
// accepted, and still not where only the app is.
func TestRecheckByAcceptedMethod(t *testing.T) {
	c := startCodesSetup(t, setup{
		extra: `respond /strong/* "strong" 200`,
		policy: `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		remember_device 30d {
			recheck_new_network
		}
	}
	protect /strong/* {
		methods totp
		remember_device 30d {
			recheck_new_network
		}
	}
	site_name "Test Members"
`}, "")
	e, box := c.env, mailbox{t: t, mail: c.mail}
	home := e.browser().from("127.0.0.2")
	home.login("alice")
	secret := home.enrol("/members/")
	home.addEmail(box, 1)
	home.dropSession()
	if r := home.verify(e.code(secret, 0), "/strong/x", true); r.status != http.StatusSeeOther || home.cookie("2fa_device") == nil {
		t.Fatalf("verifying with remember: %d", r.status)
	}
	e.nextStep()
	home.dropSession()
	if r := home.get("/strong/x"); r.status != http.StatusOK {
		t.Fatalf("the device on the app-only path from its range: %d", r.status)
	}

	away := home.from("127.0.1.2")
	away.dropSession()
	if r := away.get("/strong/x"); r.status != http.StatusFound {
		t.Fatalf("the device on the app-only path from a new range: %d, want the challenge", r.status)
	}
	if r := away.send("email", "/echo/x"); r.status != http.StatusSeeOther {
		t.Fatalf("sending: %d %s", r.status, r.body)
	}
	if r := away.verifyCode("email", box.code("alice@example.com", 2), "/echo/x"); r.status != http.StatusSeeOther {
		t.Fatalf("the emailed code: %d %s", r.status, r.body)
	}
	away.dropSession()
	passesAs(t, away, "device", "the device where email is accepted, after an emailed code from the range")
	away.dropSession()
	if r := away.get("/strong/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("the device on the app-only path after only an emailed code from the range: %d %q", r.status, r.location())
	}
	if r := away.verify(e.code(secret, 0), "/strong/x", false); r.status != http.StatusSeeOther {
		t.Fatalf("the app's code: %d", r.status)
	}
	e.nextStep()
	away.dropSession()
	if r := away.get("/strong/x"); r.status != http.StatusOK {
		t.Fatalf("the device on the app-only path after the app from the range: %d", r.status)
	}
}
