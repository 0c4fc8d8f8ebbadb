package twofactor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-twofactor/twofactor/flow"
)

// provisioned provisions and validates rule as a handler without
// passkeys would.
func provisioned(t *testing.T, rule *Rule) error {
	t.Helper()
	app := &App{}
	err := rule.provision(testCaddyContext(t), app, false)
	if err == nil {
		err = rule.validate(app, false)
	}
	return err
}

func skipBlock(ranges ...string) *NetworkPolicy {
	return &NetworkPolicy{Ranges: ranges, SecondFactor: "skip"}
}

func yes() *bool { v := true; return &v }
func no() *bool  { v := false; return &v }

// A block's policy is the rule's with the block's overrides, on a copy:
// nothing a block says reaches the rule or another block.
func TestNetworkProvision(t *testing.T) {
	rule := &Rule{
		Paths: []string{"/staff/*"}, RememberDevice: "30d", RecheckNewNetwork: true, Methods: []string{"totp"},
		EnrolmentGrace: caddy.Duration(14 * 24 * time.Hour),
		Networks: []*NetworkPolicy{
			{Ranges: []string{"192.0.2.0/24", "2001:db8:10::/48"}, SecondFactor: "skip", RememberDevice: "off"},
			{Ranges: []string{"198.51.100.0/24"}, Methods: []string{"totp", "totp"}, Enrolment: "optional"},
			{Ranges: []string{"203.0.113.0/24"}, RememberDevice: "1d", RecheckNewNetwork: no(), Reminder: caddy.Duration(time.Hour)},
			{Ranges: []string{"203.0.114.0/24"}, Enrolment: "required"},
		},
	}
	if err := provisioned(t, rule); err != nil {
		t.Fatal(err)
	}
	base := rule.policy
	if base.Skip || !base.Recheck || base.Remember != 30*24*time.Hour || base.Deadline == nil || base.Reminder != flow.DefaultDeadlineReminder {
		t.Fatalf("rule's own policy %+v", base)
	}
	at := func(ip string) *flow.Policy {
		pol, _ := rule.policyAt(flow.ClientAddr(ip))
		return pol
	}
	office := at("192.0.2.9")
	if !office.Skip || office.Remember != 0 || office.Recheck || office.Deadline != base.Deadline {
		t.Errorf("office block %+v: want skip, nothing remembered (so no recheck), the rule's deadline", office)
	}
	if at("2001:db8:10:ffff::1") != office {
		t.Error("the block's second range has another policy")
	}
	branch := at("198.51.100.1")
	if branch.Skip || !branch.Optional || branch.Deadline != nil || branch.Reminder != defaultReminder || !branch.Recheck {
		t.Errorf("optional block %+v: want optional without the rule's deadline, the optional reminder, the rule's recheck", branch)
	}
	if !slices.Equal(branch.Methods, []string{"totp"}) {
		t.Errorf("methods %q, want totp once", branch.Methods)
	}
	branch.Methods[0] = "changed"
	if rule.policy.Methods[0] != "totp" || office.Methods[0] != "totp" {
		t.Error("a block's methods share their array with the rule's or another block's")
	}
	remote := at("203.0.113.50")
	if remote.Remember != 24*time.Hour || remote.Recheck || remote.Reminder != time.Hour {
		t.Errorf("block with its own remembering %+v: want 1d, no recheck, 1h reminder", remote)
	}
	if required := at("203.0.114.7"); required.Optional || required.Deadline != base.Deadline {
		t.Errorf("required block %+v: want the rule's deadline kept", required)
	}
	if at("192.0.3.1") != &rule.policy {
		t.Error("an address in no block does not get the rule's policy")
	}
	if rule.RememberDevice != "30d" || rule.Networks[1].Methods[1] != "totp" {
		t.Error("provisioning changed the config as written")
	}
}

// The first block with a range holding the client applies; an address
// that cannot be determined matches none, so it never skips.
func TestPolicyAt(t *testing.T) {
	rule := &Rule{Paths: []string{"/m/*"}, Networks: []*NetworkPolicy{
		skipBlock("192.0.2.0/24", "2001:db8::/32"),
		{Ranges: []string{"10.0.0.0/8"}, RememberDevice: "off"},
	}}
	if err := provisioned(t, rule); err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]string{
		"192.0.2.1":          "192.0.2.0/24",
		"192.0.2.255":        "192.0.2.0/24",
		"::ffff:192.0.2.7":   "192.0.2.0/24", // as a trusted proxy may forward it
		"2001:db8:1::5":      "2001:db8::/32",
		"10.9.8.7":           "10.0.0.0/8",
		"192.0.3.1":          "",
		"::1":                "",
		"":                   "", // a unix socket
		"@":                  "",
		"fe80::1%eth0":       "",
		"0.0.0.0":            "",
		"::":                 "",
		"192.0.2.1, 1.2.3.4": "",
		"not-an-address":     "",
	} {
		pol, at := rule.policyAt(flow.ClientAddr(ip))
		got := ""
		if at != nil {
			got = at.text
			if pol != at.policy {
				t.Errorf("%q: policy is not the range's block's", ip)
			}
		} else if pol != &rule.policy || pol.Skip {
			t.Errorf("%q: matched no range but got a policy other than the rule's", ip)
		}
		if got != want {
			t.Errorf("policyAt(%q) = %q, want %q", ip, got, want)
		}
	}
	addr, ok := flow.ClientAddr("10.1.2.3")
	if n := testing.AllocsPerRun(100, func() { rule.policyAt(addr, ok) }); n != 0 {
		t.Errorf("policyAt: %v allocations, want none (it runs on every request)", n)
	}
}

// Every mistake in a networks block is refused with the field that is
// wrong.
func TestNetworkValidate(t *testing.T) {
	for _, c := range []struct {
		name     string
		rule     Rule
		wantErr  string
		shadowed int
	}{
		{name: "host bits", rule: Rule{Networks: []*NetworkPolicy{skipBlock("192.0.2.0/24", "192.0.2.5/24")}},
			wantErr: `networks[0].ranges[1] "192.0.2.5/24": host bits set: write 192.0.2.0/24`},
		{name: "not a range", rule: Rule{Networks: []*NetworkPolicy{skipBlock("192.0.2.0")}},
			wantErr: `networks[0].ranges[0] "192.0.2.0": not a CIDR range`},
		{name: "caddy's shortcut", rule: Rule{Networks: []*NetworkPolicy{skipBlock("private_ranges")}},
			wantErr: `"private_ranges": name the ranges themselves`},
		{name: "mapped range", rule: Rule{Networks: []*NetworkPolicy{skipBlock("::ffff:192.0.2.0/120")}},
			wantErr: "IPv4-mapped range: write its IPv4 form"},
		{name: "no ranges", rule: Rule{Networks: []*NetworkPolicy{{SecondFactor: "skip"}}},
			wantErr: "networks[0].ranges: at least one address range"},
		{name: "nil block", rule: Rule{Networks: []*NetworkPolicy{nil}},
			wantErr: "networks[0].ranges: at least one address range"},
		{name: "sets nothing", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}}}},
			wantErr: "networks[0]: sets nothing"},
		{name: "skip everyone v4", rule: Rule{Networks: []*NetworkPolicy{skipBlock("0.0.0.0/0")}},
			wantErr: "networks[0].ranges[0]: skips the second factor for every address"},
		{name: "skip everyone v6", rule: Rule{Networks: []*NetworkPolicy{skipBlock("192.0.2.0/24", "::/0")}},
			wantErr: "networks[0].ranges[1]: skips the second factor for every address"},
		{name: "bad second_factor", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, SecondFactor: "Skip"}}},
			wantErr: `networks[0].second_factor "Skip": must be skip or required`},
		{name: "bad enrolment", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, Enrolment: "later"}}},
			wantErr: `networks[0].enrolment "later"`},
		{name: "bad remember", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, RememberDevice: "401d"}}},
			wantErr: "networks[0].remember_device 401d: must be between 1m and 400d"},
		{name: "bad reminder", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, Reminder: caddy.Duration(time.Second)}}},
			wantErr: "networks[0].reminder 1s: must be between 1m and 400d"},
		{name: "bad method", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, Methods: []string{"network"}}}},
			wantErr: `networks[0].methods "network": must be totp, webauthn, email or sms`},
		{name: "empty methods", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, Methods: []string{}}}},
			wantErr: "networks[0].methods: at least one"},
		{name: "method without sender", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, Methods: []string{"email"}}}},
			wantErr: "networks[0].methods email: the two_factor app has no email sender"},
		{name: "passkeys not offered", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, Methods: []string{"webauthn"}}}},
			wantErr: "networks[0].methods webauthn: needs webauthn on this handler"},
		{name: "recheck without remembering", rule: Rule{RememberDevice: "off", RecheckNewNetwork: true},
			wantErr: "recheck_new_network: needs remember_device (not off)"},
		{name: "block recheck without remembering", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, RememberDevice: "off", RecheckNewNetwork: yes()}}},
			wantErr: "networks[0].recheck_new_network: needs remember_device (not off)"},
		{name: "block recheck where the rule remembers nothing", rule: Rule{RememberDevice: "off", Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, RecheckNewNetwork: yes()}}},
			wantErr: "networks[0].recheck_new_network: needs remember_device"},
		{name: "contradicting overlap", rule: Rule{Networks: []*NetworkPolicy{skipBlock("10.0.0.0/8"), {Ranges: []string{"192.0.2.0/24", "10.9.0.0/16"}, RememberDevice: "off"}}},
			wantErr: "networks[1].ranges[1] 10.9.0.0/16: overlaps networks[0].ranges[0] 10.0.0.0/8, whose policy differs"},
		{name: "contradicting overlap, wider later", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"10.9.0.0/16"}, RememberDevice: "off"}, skipBlock("10.0.0.0/8")}},
			wantErr: "networks[1].ranges[0] 10.0.0.0/8: overlaps networks[0].ranges[0] 10.9.0.0/16"},
		{name: "too many ranges", rule: Rule{Networks: []*NetworkPolicy{skipBlock(manyRanges(257)...)}},
			wantErr: "networks: 257 address ranges, at most 256"},

		{name: "most ranges", rule: Rule{Networks: []*NetworkPolicy{skipBlock(manyRanges(256)...)}}},
		{name: "agreeing overlap is shadowed", rule: Rule{Networks: []*NetworkPolicy{skipBlock("10.0.0.0/8"), skipBlock("10.9.0.0/16", "192.0.2.0/24")}}, shadowed: 1},
		{name: "disjoint blocks", rule: Rule{Networks: []*NetworkPolicy{skipBlock("10.0.0.0/9"), {Ranges: []string{"10.128.0.0/9"}, RememberDevice: "off"}}}},
		{name: "v4 and v6 never overlap", rule: Rule{Networks: []*NetworkPolicy{skipBlock("0.0.0.0/1"), {Ranges: []string{"::/1"}, RememberDevice: "off"}}}},
		{name: "required everywhere", rule: Rule{Networks: []*NetworkPolicy{{Ranges: []string{"0.0.0.0/0"}, SecondFactor: "required", RememberDevice: "off"}}}},
		{name: "recheck inherited where nothing is remembered", rule: Rule{RecheckNewNetwork: true, Networks: []*NetworkPolicy{{Ranges: []string{"192.0.2.0/24"}, RememberDevice: "off"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rule := c.rule
			rule.Paths = []string{"/m/*"}
			err := provisioned(t, &rule)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := rule.shadowed(); len(got) != c.shadowed {
					t.Errorf("shadowed %q, want %d", got, c.shadowed)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func manyRanges(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}).String() + "/24"
	}
	return out
}

// The handler's pages follow the block of the client's range, so a block
// that remembers nothing hides the choice on the challenge page too.
func TestPolicyForPagesByNetwork(t *testing.T) {
	h := &Handler{Protect: []*Rule{{Paths: []string{"/staff/*"}, Networks: []*NetworkPolicy{{Ranges: []string{"127.0.0.0/24"}, RememberDevice: "off"}}}}}
	for _, rule := range h.Protect {
		if err := provisioned(t, rule); err != nil {
			t.Fatal(err)
		}
	}
	for ip, want := range map[string]time.Duration{"127.0.0.2": 0, "127.0.1.2": defaultRemember, "": defaultRemember} {
		r := requestFrom(t, "/.2fa/challenge", ip)
		pol := h.policyFor(r, "/staff/x")
		if pol == nil || pol.Remember != want {
			t.Errorf("from %q: policy %+v, want remember %v", ip, pol, want)
		}
	}
}

// requestFrom is a request for path whose client address Caddy
// determined as ip.
func requestFrom(t *testing.T, path, ip string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer())
	return r.WithContext(ctx)
}
