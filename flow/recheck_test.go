package flow

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// The challenge says why it asks when the browser holds the member's
// remembered device and the request comes from a range they have not
// passed from, on a path that rechecks; not otherwise.
func TestRecheckNotice(t *testing.T) {
	fx := newFixture(t)
	known := netip.MustParsePrefix("192.0.2.0/24")
	if _, err := fx.b.Engine.SeenBrowser(context.Background(), challenge.Actor{User: "alice", Network: known}, "token"); err != nil {
		t.Fatal(err)
	}
	device := fx.b.Jar.Codec().EncodeDevice(&session.Device{User: "alice", ID: session.NewID(),
		Expires: fx.clock.Now().Add(time.Hour).Unix()})
	notice := html.EscapeString((&pages.Page{Lang: "en"}).T("recheck_new_network"))
	if notice == "" || notice == "recheck_new_network" {
		t.Fatalf("no English text for the notice: %q", notice)
	}
	for _, c := range []struct {
		name    string
		from    string
		device  bool
		recheck bool
		want    bool
	}{
		{"new range", "198.51.100.7", true, true, true},
		{"new IPv6 range", "[2001:db8:1::7]", true, true, true},
		{"known range", "192.0.2.200", true, true, false},
		{"no device", "198.51.100.7", false, true, false},
		{"no recheck", "198.51.100.7", true, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol := *fx.policy
			pol.Recheck = c.recheck
			fx.policy = &pol
			r := httptest.NewRequest(http.MethodGet, "http://club.example/.2fa/challenge?return_to=%2Fmembers%2F", nil)
			r.RemoteAddr = c.from + ":4321"
			r.Header.Set(userHeader, "alice")
			cookies := []string{session.CSRFCookie + "=csrf"}
			if c.device {
				cookies = append(cookies, session.DeviceCookie+"="+device)
			}
			r.Header.Set("Cookie", strings.Join(cookies, "; "))
			w := httptest.NewRecorder()
			if err := fx.f.Serve(w, r); err != nil {
				t.Fatal(err)
			}
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if got := strings.Contains(w.Body.String(), notice); got != c.want {
				t.Fatalf("notice shown: %v, want %v", got, c.want)
			}
		})
	}
}

// Ranges are recorded only where some rule rechecks (privacy), and an
// address that cannot be determined is no range.
func TestRecordedNetwork(t *testing.T) {
	fx := newFixture(t)
	r := httptest.NewRequest(http.MethodGet, "http://club.example/", nil)
	r.RemoteAddr = "[::ffff:198.51.100.7]:4321"
	if p := fx.f.recordedNetwork(r); p.IsValid() {
		t.Fatalf("recorded %s without RecordNetworks", p)
	}
	fx.f.cfg.RecordNetworks = true
	if p := fx.f.recordedNetwork(r); p != netip.MustParsePrefix("198.51.100.0/24") {
		t.Fatalf("recorded %s", p)
	}
	r.RemoteAddr = "@"
	if p := fx.f.recordedNetwork(r); p.IsValid() {
		t.Fatalf("recorded %s for a unix socket", p)
	}
	u := &challenge.User{Networks: map[string]int64{"198.51.100.0/24": 1}}
	if fx.f.NetworkKnown(r, u) {
		t.Fatal("an undetermined address is known")
	}
	r.RemoteAddr = "198.51.100.250:1"
	if !fx.f.NetworkKnown(r, u) {
		t.Fatal("an address in a known range is not known")
	}
	// The handler asks on sessions begun from a device: no allocation.
	if n := testing.AllocsPerRun(100, func() { fx.f.NetworkKnown(r, u) }); n != 0 {
		t.Fatalf("NetworkKnown allocates %v times", n)
	}
}
