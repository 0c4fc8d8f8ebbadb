package tests

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A session cookie only works for the member, the member-site session and
// the time it was issued for.
func TestSessionCookieRefusedWhenTamperedExpiredOrForeign(t *testing.T) {
	e := start(t, setup{})
	alice, secret := enrolled(e, "alice")
	if s, _ := alice.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("verified alice: %d", s)
	}
	good := alice.cookie("2fa_session").Value

	for i, bad := range []string{
		good[:len(good)-1], good + "A", "x" + good[1:], strings.Repeat("A", 8000), "", "%%%",
		flip(good, len(good)/2), flip(good, 3),
	} {
		alice.setCookie("2fa_session", bad)
		if s, _ := alice.upstream("/echo/x"); s != http.StatusFound {
			t.Errorf("tampered cookie %d: status %d", i, s)
		}
	}

	// Another (enrolled) member presenting alice's cookie.
	enrolled(e, "bob")
	bob := e.browser()
	bob.login("bob")
	bob.setCookie("2fa_session", good)
	if r := bob.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("alice's cookie accepted for bob: %d %q", r.status, r.location())
	}

	// alice signs in again at the member site: a new first-factor session
	// needs a new second factor.
	alice.setCookie("2fa_session", good)
	if s, _ := alice.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("restored cookie: %d", s)
	}
	alice.login("alice")
	if s, _ := alice.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("old second factor carried over to a new sign-in: %d", s)
	}

	// Idle timeout (30m), enforced by the server whatever the cookie says.
	e.nextStep()
	if r := alice.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	e.clock.Advance(29 * time.Minute)
	if s, _ := alice.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("within idle time: %d", s)
	}
	e.clock.Advance(31 * time.Minute)
	if s, _ := alice.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("after idle timeout: %d", s)
	}

	// Absolute lifetime (12h), however active.
	e.nextStep()
	if r := alice.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	for range 25 { // 25 × 29m > 12h
		e.clock.Advance(29 * time.Minute)
		alice.upstream("/echo/x")
	}
	if s, _ := alice.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("after the absolute lifetime: %d", s)
	}
}

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestRememberedDevice(t *testing.T) {
	e := start(t, setup{})
	b, secret := enrolled(e, "alice")

	// The admin area never offers to remember the device.
	page := b.get("/.2fa/challenge?return_to=%2Fadmin%2F")
	if strings.Contains(page.body, `name="remember"`) {
		t.Fatal("remember checkbox offered for /admin/")
	}
	page = b.get("/.2fa/challenge?return_to=%2Fmembers%2F")
	if !strings.Contains(page.body, `name="remember"`) {
		t.Fatal("remember checkbox missing for /members/")
	}

	b.login("alice")
	if r := b.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify with remember: %d %s", r.status, r.body)
	}
	dev := b.cookie("2fa_device")
	if dev == nil {
		t.Fatal("no remembered-device cookie")
	}

	// A new member-site sign-in on this browser: no code needed.
	b.login("alice")
	_, h := b.upstream("/echo/x")
	if h == nil || h.Get("X-2fa-Method") != "device" || h.Get("X-2fa-User") != "alice" {
		t.Fatalf("remembered device not used: %v", h)
	}
	// ... but not for the admin area.
	if s, _ := b.upstream("/echo-admin/x"); s != http.StatusFound {
		t.Fatalf("remembered device accepted where the route says off: %d", s)
	}

	// Another member on the same browser is still challenged.
	b.login("bob")
	if s, _ := b.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("alice's device let bob in: %d", s)
	}

	// The device cookie in another browser of alice's works (it is the
	// record that counts), and stops working once expired server-side.
	other := e.browser()
	other.login("alice")
	other.setCookie("2fa_device", dev.Value)
	if s, _ := other.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("device cookie: %d", s)
	}
	other.login("alice")
	other.setCookie("2fa_device", dev.Value)
	e.clock.Advance(31 * 24 * time.Hour)
	if s, _ := other.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("device accepted after 30 days: %d", s)
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, https := range []bool{false, true} {
		e := start(t, setup{https: https})
		b := e.browser()
		b.login("alice")
		tok := b.csrf("/.2fa/enrol?return_to=%2Fmembers%2F")
		r := b.post("/.2fa/enrol", map[string][]string{"csrf": {tok}, "return_to": {"/members/"}})
		secret := enrolmentSecret(t, r.body)
		r = b.post("/.2fa/enrol/confirm", map[string][]string{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}})
		if r.status != http.StatusOK || len(recoveryCodes(r.body)) != 10 {
			t.Fatalf("https=%v: confirm %d", https, r.status)
		}
		if len(r.cookies) == 0 {
			t.Fatal("no cookies set")
		}
		for _, c := range r.cookies {
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("https=%v: cookie %s attributes: %+v", https, c.Name, c)
			}
			if https && (!c.Secure || !strings.HasPrefix(c.Name, "__Host-")) {
				t.Errorf("https: cookie %s is not __Host- and Secure", c.Name)
			}
			if len(c.Name)+len(c.Value) > 4096 {
				t.Errorf("cookie %s too large", c.Name)
			}
		}
		if https && r.header.Get("Strict-Transport-Security") == "" {
			// The redirect is not a page; check a page.
			if p := b.get("/.2fa/logout"); p.header.Get("Strict-Transport-Security") == "" {
				t.Error("no HSTS on HTTPS pages")
			}
		}
	}
}

// With the shortest session_idle, a member whose requests come less than
// session_idle apart is never asked again, however long they go on; a
// pause of session_idle (plus at most a quarter of it, the interval at
// which last use is written back) ends the session.
func TestShortIdleSessionStaysWhileActive(t *testing.T) {
	e := start(t, setup{policy: defaultPolicy + "\n\tsession_idle 1m\n"})
	alice, secret := enrolled(e, "alice")
	e.nextStep()
	if r := alice.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	for i := range 20 {
		e.clock.Advance(50 * time.Second)
		if s, _ := alice.upstream("/echo/x"); s != http.StatusOK {
			t.Fatalf("request %d, 50s after the last: %d", i+1, s)
		}
	}
	e.clock.Advance(76 * time.Second)
	if s, _ := alice.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("after 76s idle: %d", s)
	}
}
