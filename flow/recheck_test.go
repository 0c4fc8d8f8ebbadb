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

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

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
	if _, err := fx.b.Engine.SeenBrowser(context.Background(), challenge.Actor{User: "alice", Network: known}, "token", challenge.MethodTOTP); err != nil {
		t.Fatal(err)
	}
	id := session.NewID()
	expires, err := fx.b.Engine.RememberDevice(context.Background(), challenge.Actor{User: "alice"}, id, time.Hour, challenge.MethodTOTP)
	if err != nil {
		t.Fatal(err)
	}
	device := fx.b.Jar.Codec().EncodeDevice(&session.Device{User: "alice", ID: id, Expires: expires.Unix()})
	// A cookie whose device is no longer on record (forgotten, or ended
	// by a recovery code) says nothing of the ranges the member knows.
	gone := fx.b.Jar.Codec().EncodeDevice(&session.Device{User: "alice", ID: session.NewID(), Expires: expires.Unix()})
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
		{"device not on record", "198.51.100.7", true, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol := *fx.policy
			pol.Recheck = c.recheck
			fx.policy = &pol
			r := httptest.NewRequest(http.MethodGet, "http://club.example/.2fa/challenge?return_to=%2Fmembers%2F", nil)
			r.RemoteAddr = c.from + ":4321"
			r.Header.Set(userHeader, "alice")
			cookies := []string{session.CSRFCookie + "=csrf"}
			if c.device && c.name == "device not on record" {
				cookies = append(cookies, session.DeviceCookie+"="+gone)
			} else if c.device {
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
	u := &challenge.User{Networks: map[string]challenge.NetworkPass{"198.51.100.0/24": {Last: 1, Methods: []string{challenge.MethodEmail}}}}
	pol := &Policy{Methods: []string{challenge.MethodTOTP, challenge.MethodEmail}}
	if fx.f.NetworkKnown(r, u, pol) {
		t.Fatal("an undetermined address is known")
	}
	r.RemoteAddr = "198.51.100.250:1"
	if !fx.f.NetworkKnown(r, u, pol) {
		t.Fatal("an address in a known range is not known")
	}
	// Passed from the range by email: not known where only the app is.
	if fx.f.NetworkKnown(r, u, &Policy{Methods: []string{challenge.MethodTOTP}}) {
		t.Fatal("a range passed by email is known where only the app is accepted")
	}
	// The handler asks on sessions begun from a device: no allocation.
	if n := testing.AllocsPerRun(100, func() { fx.f.NetworkKnown(r, u, pol) }); n != 0 {
		t.Fatalf("NetworkKnown allocates %v times", n)
	}
}

// A remembered device on a path that rechecks: from a known range it
// starts a session; from a new range, or with no address at all, it is
// refused (audited, reason new_network) and the missing address is
// logged at most once an hour.
func TestUseRememberedDeviceRechecks(t *testing.T) {
	fx := newFixture(t)
	core, logs := observer.New(zap.WarnLevel)
	fx.f.logger = zap.New(core)
	ctx := context.Background()
	known := netip.MustParsePrefix("192.0.2.0/24")
	if _, err := fx.b.Engine.SeenBrowser(ctx, challenge.Actor{User: "alice", Network: known}, "token", challenge.MethodTOTP); err != nil {
		t.Fatal(err)
	}
	id := session.NewID()
	expires, err := fx.b.Engine.RememberDevice(ctx, challenge.Actor{User: "alice"}, id, 24*time.Hour, challenge.MethodTOTP)
	if err != nil {
		t.Fatal(err)
	}
	device := fx.b.Jar.Codec().EncodeDevice(&session.Device{User: "alice", ID: id, Expires: expires.Unix()})
	pol := *fx.policy
	pol.Recheck = true
	use := func(from string) bool {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "http://club.example/members/", nil)
		r.RemoteAddr = from
		r.Header.Set("Cookie", session.DeviceCookie+"="+device)
		ok, err := fx.f.UseRememberedDevice(httptest.NewRecorder(), r, fx.b, &Identity{ID: "alice"}, &pol, fx.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !use("192.0.2.9:1") {
		t.Fatal("refused from a known range")
	}
	fx.audited("device_used")
	// Each refusal of a device from a range is audited once an hour, not
	// on every request.
	for _, c := range []struct {
		from, network string
		audited       bool
	}{
		{"198.51.100.9:1", "198.51.100.0/24", true},
		{"198.51.100.10:1", "198.51.100.0/24", false},
		{"@", "unknown", true},
		{"@", "unknown", false},
	} {
		if use(c.from) {
			t.Fatalf("passed from %s", c.from)
		}
		got := fx.audited("device_used")
		if !c.audited {
			if len(got) != 0 {
				t.Fatalf("from %s again within the hour: audited again %v", c.from, got)
			}
			continue
		}
		if len(got) != 1 || got[0]["result"] != "refused" || got[0]["reason"] != "new_network" || got[0]["network"] != c.network {
			t.Fatalf("from %s: %v", c.from, got)
		}
	}
	noAddress := func() int { return logs.FilterMessageSnippet("recheck_new_network found no client address").Len() }
	if n := noAddress(); n != 1 {
		t.Fatalf("%d log lines about the missing address, want 1", n)
	}
	fx.clock.Advance(time.Hour)
	use("@")
	if n := noAddress(); n != 2 {
		t.Fatalf("%d log lines an hour later, want 2", n)
	}
	pol.Recheck = false
	if !use("198.51.100.9:1") {
		t.Fatal("refused from a new range where the path does not recheck")
	}
}
