package challenge

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// The ranges a member passed the second factor from are bounded, the
// longest unused going first, listed newest first, and looked up without
// allocating (the handler asks on sessions begun from a device).
func TestKnownNetworks(t *testing.T) {
	u := &User{}
	start := time.Unix(1_700_000_000, 0)
	seeNetwork(u, netip.Prefix{}, MethodTOTP, start)
	if u.Networks != nil {
		t.Fatalf("the zero prefix was recorded: %v", u.Networks)
	}
	ranges := make([]netip.Prefix, 25)
	for i := range ranges {
		ranges[i] = netip.MustParsePrefix(fmt.Sprintf("192.0.%d.0/24", i))
		seeNetwork(u, ranges[i], MethodTOTP, start.Add(time.Duration(i)*time.Hour))
		if i == 10 {
			// Passing again from the first range keeps it among the
			// recent ones.
			seeNetwork(u, ranges[0], MethodEmail, start.Add(10*time.Hour+time.Minute))
		}
	}
	if len(u.Networks) != maxNetworks {
		t.Fatalf("%d ranges kept, want %d", len(u.Networks), maxNetworks)
	}
	for i, p := range ranges {
		// Dropped: 1..5, the longest unused once 0 was seen again.
		want := i == 0 || i > 5
		if got := u.KnownNetwork(p, nil); got != want {
			t.Errorf("KnownNetwork(%s) = %v, want %v", p, got, want)
		}
	}
	if u.KnownNetwork(netip.Prefix{}, nil) {
		t.Error("the zero prefix is known")
	}
	if u.KnownNetwork(netip.MustParsePrefix("192.0.24.0/23"), nil) {
		t.Error("a wider prefix over a known range is known")
	}
	list := u.KnownNetworks()
	if len(list) != maxNetworks || list[0].Range != "192.0.24.0/24" || !list[0].Last.Equal(start.Add(24*time.Hour)) {
		t.Fatalf("newest first: %+v", list[:2])
	}
	if !slices.IsSortedFunc(list, func(x, y KnownNetwork) int { return y.Last.Compare(x.Last) }) {
		t.Fatalf("not newest first: %+v", list)
	}
	if last := list[len(list)-1]; last.Range != "192.0.6.0/24" {
		t.Fatalf("oldest kept: %+v", last)
	}

	// The methods passed by are kept: range 0 by the app, then email.
	if !slices.Equal(u.Networks["192.0.0.0/24"].Methods, []string{MethodTOTP, MethodEmail}) {
		t.Fatalf("range 0's methods: %+v", u.Networks["192.0.0.0/24"])
	}
	appOnly := func(m string) bool { return m == MethodTOTP }
	passkeyOnly := func(m string) bool { return m == MethodWebAuthn }
	if !u.KnownNetwork(ranges[0], appOnly) || u.KnownNetwork(ranges[0], passkeyOnly) {
		t.Error("a range is known where no method it was passed by is accepted, or unknown where one is")
	}

	v6 := netip.MustParsePrefix("2001:db8:10::/48")
	seeNetwork(u, v6, MethodTOTP, start.Add(30*time.Hour))
	if !u.KnownNetwork(v6, nil) || u.KnownNetworks()[0].Range != "2001:db8:10::/48" {
		t.Fatalf("IPv6 range: %v", u.KnownNetworks()[0])
	}
	for _, p := range []netip.Prefix{v6, ranges[20], ranges[3], netip.MustParsePrefix("2001:db8:ffff:ffff:ffff:ffff:ffff:0/112")} {
		if n := testing.AllocsPerRun(100, func() { u.KnownNetwork(p, appOnly) }); n != 0 {
			t.Errorf("KnownNetwork(%s) allocates %v times", p, n)
		}
	}
}

// A verification given the range (Actor.Network) records it in its own
// write of the member's record: by every method, the store sees exactly
// the calls of the same verification without a range, one swap of the
// record among them, and another instance learns the range at once.
func TestVerifyRecordsNetwork(t *testing.T) {
	key := testwebauthn.New(waOrigin)
	r := newFaultRig(t)
	r.cfg = waConfig()
	r.reset(t)
	secret := r.enrolApp()
	r.enrolEmail()
	codes := r.generate()
	opts, err := r.e.BeginRegistration(ctx, faultAlice, flowToken("add"), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	body, err := key.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.e.FinishRegistration(ctx, faultAlice, flowToken("add"), "Key", body); err != nil {
		t.Fatal(err)
	}
	other := r.engine(r.fs.Store)
	followAll(t, other)
	if _, err := other.State(ctx, "alice"); err != nil { // cached from here on
		t.Fatal(err)
	}

	recovery := 0
	methods := []struct {
		name   string
		verify func(a Actor) error
	}{
		{"totp", func(a Actor) error {
			r.wait(30 * time.Second)
			_, err := r.e.VerifyTOTP(ctx, a, r.totp(secret))
			return err
		}},
		{"email", func(a Actor) error {
			r.wait(r.e.cfg.ResendCooldown)
			code := r.sendCode(PurposeVerify, "later")
			r.fs.arm(0, false) // the sending is not the verification
			_, _, err := r.e.VerifyCode(ctx, a, "later", code)
			return err
		}},
		{"webauthn", func(a Actor) error {
			opts, err := r.e.BeginLogin(ctx, a, flowToken("login"))
			if err != nil {
				return err
			}
			answer, err := key.Get(opts)
			if err != nil {
				return err
			}
			r.fs.arm(0, false)
			_, _, err = r.e.FinishLogin(ctx, a, flowToken("login"), answer)
			return err
		}},
		{"recovery", func(a Actor) error {
			recovery++
			_, err := r.e.UseRecoveryCode(ctx, a, codes[recovery-1])
			return err
		}},
	}
	for i, m := range methods {
		t.Run(m.name, func(t *testing.T) {
			calls := func(a Actor) []string {
				t.Helper()
				r.fs.arm(0, false)
				if err := m.verify(a); err != nil {
					t.Fatalf("verify: %v", err)
				}
				return r.fs.disarm()
			}
			plain := calls(faultAlice)
			a := faultAlice
			a.Network = netip.MustParsePrefix(fmt.Sprintf("198.51.%d.0/24", i))
			with := calls(a)
			if !slices.Equal(timeless(plain), timeless(with)) {
				t.Fatalf("recording the range changed the store calls:\nwithout: %q\nwith:    %q", plain, with)
			}
			if n := countCalls(with, callWriteUser); n != 1 {
				t.Fatalf("%d swaps of the record, want 1: %q", n, with)
			}
			only := func(method string) bool { return method == m.name }
			if u, _ := r.record(); !u.KnownNetwork(a.Network, only) || u.KnownNetwork(a.Network, func(string) bool { return false }) {
				t.Fatalf("the record does not hold %s passed by %s: %v", a.Network, m.name, u.Networks)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				seen, err := other.State(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				if seen.KnownNetwork(a.Network, nil) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the other instance does not know %s after 5s", a.Network)
				}
				time.Sleep(time.Millisecond) // the change notice arrives on another goroutine
			}
		})
	}
}

// timeless drops the time window from counter keys
// ("ipok:192.0.2.1:1888888"), which moves on between two verifications.
func timeless(calls []string) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = strings.TrimRight(c, "0123456789")
	}
	return out
}

func countCalls(calls []string, call string) int {
	n := 0
	for _, c := range calls {
		if c == call {
			n++
		}
	}
	return n
}

// SeenBrowser (after enrolment, where no verification wrote) records the
// actor's range in its own write.
func TestSeenBrowserRecordsNetwork(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	p := netip.MustParsePrefix("2001:db8:10::/48")
	if _, err := f.e.SeenBrowser(ctx, Actor{User: "alice", Network: p}, "token", MethodTOTP); err != nil {
		t.Fatal(err)
	}
	if u := f.record("alice"); !u.KnownNetwork(p, nil) || len(u.Networks) != 1 {
		t.Fatalf("after SeenBrowser: %v", u.Networks)
	}
	if _, err := f.e.SeenBrowser(ctx, Actor{User: "alice"}, "token", MethodTOTP); err != nil {
		t.Fatal(err)
	}
	if u := f.record("alice"); len(u.Networks) != 1 {
		t.Fatalf("no range recorded something: %v", u.Networks)
	}
}

// With recheck, a remembered device used from a range the member never
// passed from is refused (reason new_network) and left as it was; a
// verification from there makes the range known, and the device passes.
func TestUseDeviceForRecheck(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	home := netip.MustParsePrefix("192.0.2.0/24")
	away := netip.MustParsePrefix("198.51.100.0/24")
	a := Actor{User: "alice", IP: "192.0.2.1", Network: home}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	id := [16]byte{7}
	if _, err := f.e.RememberDevice(ctx, a, id, 30*24*time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	device := func() Device {
		t.Helper()
		devices, err := f.e.Devices(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devices {
			if d.ID == "07000000000000000000000000000000" {
				return d
			}
		}
		t.Fatal("the device is gone")
		return Device{}
	}
	use := func(n netip.Prefix, recheck bool) error {
		t.Helper()
		f.clk.Advance(time.Minute)
		_, _, err := f.e.UseDeviceFor(ctx, Actor{User: "alice", IP: "203.0.113.9", Network: n}, id, 30*24*time.Hour, nil, recheck)
		return err
	}
	if err := use(home, true); err != nil {
		t.Fatalf("from a known range: %v", err)
	}
	before := device()
	for _, c := range []struct {
		name    string
		network netip.Prefix
		field   string
	}{
		{"new range", away, "198.51.100.0/24"},
		{"no address", netip.Prefix{}, "unknown"},
	} {
		if err := use(c.network, true); !errors.Is(err, ErrDeviceUnknown) {
			t.Fatalf("%s: %v, want ErrDeviceUnknown", c.name, err)
		}
		refused := f.audit.FilterMessage("device_used").FilterField(zap.String("reason", "new_network")).All()
		if len(refused) == 0 {
			t.Fatalf("%s: no device_used refusal with reason new_network", c.name)
		}
		m := refused[len(refused)-1].ContextMap()
		if m["result"] != "refused" || m["network"] != c.field || m["device"] != "07000000" || m["user"] != "alice" {
			t.Fatalf("%s: audit %v", c.name, m)
		}
		if d := device(); !d.LastUsed.Equal(before.LastUsed) {
			t.Fatalf("%s: the refused device was marked used: %v, was %v", c.name, d.LastUsed, before.LastUsed)
		}
	}
	if got := f.count("device_used", "reason", "new_network"); got != 2 {
		t.Fatalf("%d new_network refusals, want 2", got)
	}
	if err := use(away, false); err != nil {
		t.Fatalf("without recheck, from a new range: %v", err)
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", Network: away}, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	if err := use(away, true); err != nil {
		t.Fatalf("from the range after a code there: %v", err)
	}
	if err := use(netip.Prefix{}, true); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("with no address after codes elsewhere: %v", err)
	}
}

// An admin's reset and forget-devices, and the member's forget-all, clear
// the known ranges; the admin's member detail lists them before.
func TestResetClearsNetworks(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	nets := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/48")}
	known := func() {
		t.Helper()
		for _, n := range nets {
			f.clk.Advance(30 * time.Second)
			if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", Network: n}, f.code(secret, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if u := f.record("alice"); len(u.Networks) != 2 {
			t.Fatalf("ranges before: %v", u.Networks)
		}
	}
	cleared := func(what string) {
		t.Helper()
		if u := f.record("alice"); u.Networks != nil {
			t.Fatalf("after %s: %v", what, u.Networks)
		}
		d, err := f.e.Member(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if d.Networks == nil || len(d.Networks) != 0 {
			t.Fatalf("member detail after %s: %#v", what, d.Networks)
		}
	}

	known()
	d, err := f.e.Member(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Networks) != 2 || d.Networks[0].Range != "2001:db8::/48" || d.Networks[1].Range != "192.0.2.0/24" {
		t.Fatalf("member detail: %+v", d.Networks)
	}
	if _, err := f.e.ForgetDevices(ctx, "admin endpoint", "alice", "shared computer"); err != nil {
		t.Fatal(err)
	}
	cleared("forget devices")

	known()
	id := [16]byte{3}
	if _, err := f.e.RememberDevice(ctx, Actor{User: "alice"}, id, time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	if err := f.e.ForgetAllDevices(ctx, Actor{User: "alice"}); err != nil {
		t.Fatal(err)
	}
	cleared("the member's forget-all")
	if u := f.record("alice"); u.DeviceListed(id) {
		t.Fatal("forget-all left the device")
	}

	known()
	if _, err := f.e.Reset(ctx, "admin endpoint", "alice", "lost phone, ID checked"); err != nil {
		t.Fatal(err)
	}
	cleared("reset")
}
