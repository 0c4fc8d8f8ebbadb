package flow

import "testing"

func TestClientAddr(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // "" for not ok
	}{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8::1", "2001:db8::1"},
		{"", ""},
		{"@", ""},
		{"fe80::1%eth0", ""},
		{"0.0.0.0", ""},
		{"::", ""},
		{"192.0.2.7:80", ""},
		{"not an address", ""},
	} {
		a, ok := ClientAddr(c.in)
		if got := ""; ok {
			got = a.String()
			if got != c.want {
				t.Errorf("ClientAddr(%q) = %s, want %q", c.in, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("ClientAddr(%q) not ok, want %s", c.in, c.want)
		}
	}
}

func TestNetworkOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":         "192.0.2.0/24",
		"::ffff:192.0.2.7":  "192.0.2.0/24",
		"2001:db8:10:20::1": "2001:db8:10::/48",
		"::1":               "::/48",
		"fe80::1%eth0":      "invalid Prefix",
		"":                  "invalid Prefix",
	} {
		if got := NetworkOf(ClientAddr(in)).String(); got != want {
			t.Errorf("NetworkOf(%q) = %s, want %s", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { NetworkOf(ClientAddr("192.0.2.7")) }); n != 0 {
		t.Errorf("%v allocations, want none", n)
	}
}
