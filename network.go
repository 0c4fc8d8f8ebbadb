package twofactor

import (
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/flow"
)

// Policies by network: a rule's networks blocks override its policy for
// requests from their address ranges. The address is Caddy's client IP
// (trusted_proxies decides whether X-Forwarded-For counts); the gateway
// never reads a forwarding header itself.

// NetworkPolicy overrides its rule's policy for requests from some
// client address ranges. Each field left out is the rule's.
type NetworkPolicy struct {
	// Client address ranges, in CIDR notation without host bits
	// (192.0.2.0/24, 2001:db8:10::/48). A client with an IPv4-mapped
	// IPv6 address is matched by its IPv4 form. At most 256 ranges over a
	// rule's blocks. Required.
	Ranges []string `json:"ranges,omitempty"`

	// "skip": members with a second factor pass without a code from these
	// ranges; the upstream is told X-2fa-Method: network. It makes no
	// second-factor session, so the gateway's settings and admin pages
	// still ask for a code, and members without a second factor are held
	// to enrolment as before (a block may make it optional). "required":
	// a code is asked for as the rule asks. Default: required.
	SecondFactor string `json:"second_factor,omitempty"`

	// The rule's remember_device for these ranges: 1m to 400d, or "off"
	// to hide the choice and refuse remembered devices from here (shared
	// terminals). Default: the rule's.
	RememberDevice string `json:"remember_device,omitempty"`

	// The rule's recheck_new_network for these ranges. Default: the
	// rule's.
	RecheckNewNetwork *bool `json:"recheck_new_network,omitempty"`

	// The rule's methods for these ranges. Default: the rule's.
	Methods []string `json:"methods,omitempty"`

	// "required" or "optional": the rule's enrolment for these ranges.
	// Where it is required the rule's deadline (enrolment_grace,
	// enrolment_from) still applies; a block cannot set its own.
	// Default: the rule's.
	Enrolment string `json:"enrolment,omitempty"`

	// The rule's reminder for these ranges, 1m to 400d. Default: the
	// rule's.
	Reminder caddy.Duration `json:"reminder,omitempty"`
}

const (
	secondFactorSkip     = "skip"
	secondFactorRequired = "required"
	// maxNetworkRanges bounds the ranges a request is compared with, one
	// by one, on the hot path.
	maxNetworkRanges = 256
)

// netMatch is one range of a rule's networks blocks, in config order.
type netMatch struct {
	prefix netip.Prefix
	text   string       // prefix.String(), for the audit trail
	block  int          // index in Networks
	index  int          // index in the block's Ranges
	policy *flow.Policy // the block's, shared by its ranges
}

// provisionNetworks parses the rule's networks blocks into one policy
// each, a copy of the rule's with the block's overrides.
func (rule *Rule) provisionNetworks() error {
	rule.nets = nil
	rule.blocks = make([]flow.Policy, len(rule.Networks))
	for i, n := range rule.Networks {
		field := fmt.Sprintf("networks[%d]", i)
		if n == nil || len(n.Ranges) == 0 {
			return fmt.Errorf("%s.ranges: at least one address range (CIDR) is required", field)
		}
		pol, err := rule.overridden(n)
		if err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		rule.blocks[i] = pol
		for j, text := range n.Ranges {
			p, err := parseRange(text)
			if err != nil {
				return fmt.Errorf("%s.ranges[%d] %q: %w", field, j, text, err)
			}
			rule.nets = append(rule.nets, netMatch{prefix: p, text: p.String(), block: i, index: j, policy: &rule.blocks[i]})
		}
	}
	return nil
}

// overridden is the rule's policy with block n's overrides.
func (rule *Rule) overridden(n *NetworkPolicy) (flow.Policy, error) {
	pol := rule.policy
	pol.Skip = n.SecondFactor == secondFactorSkip
	if n.RememberDevice != "" {
		d, err := parseRemember(n.RememberDevice)
		if err != nil {
			return pol, err
		}
		pol.Remember = d
	}
	switch n.Enrolment {
	case enrolmentOptional:
		pol.Optional, pol.Deadline = true, nil
	case enrolmentRequired:
		pol.Optional = false
	}
	if n.Reminder != 0 {
		pol.Reminder = time.Duration(n.Reminder)
	} else if rule.Reminder == 0 && n.Enrolment == enrolmentOptional {
		pol.Reminder = defaultReminder // the rule's default was a deadline's
	}
	if n.Methods != nil {
		// A slice of its own: the rule's is shared with every block.
		pol.Methods = distinct(n.Methods)
	} else {
		pol.Methods = slices.Clone(rule.policy.Methods)
	}
	recheck := rule.RecheckNewNetwork
	if n.RecheckNewNetwork != nil {
		recheck = *n.RecheckNewNetwork
	}
	pol.Recheck = recheck && pol.Remember > 0
	return pol, nil
}

// parseRange reads one CIDR range of a networks block. Unlike
// trusted_networks, host bits are refused rather than masked: a range
// that decides who may skip the code must say what it means.
func parseRange(text string) (netip.Prefix, error) {
	if text == "private_ranges" {
		return netip.Prefix{}, errors.New("name the ranges themselves: private ranges say nothing about who the client is")
	}
	p, err := netip.ParsePrefix(text)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR range, like 192.0.2.0/24 or 2001:db8:10::/48 (%v)", err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("an IPv4-mapped range: write its IPv4 form (clients are matched by theirs)")
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set: write %s", m)
	}
	return p, nil
}

// validateNetworks checks the networks blocks against each other and the
// rule.
func (rule *Rule) validateNetworks(app *App, webAuthn bool) error {
	if len(rule.nets) > maxNetworkRanges {
		return fmt.Errorf("networks: %d address ranges, at most %d", len(rule.nets), maxNetworkRanges)
	}
	for i, n := range rule.Networks {
		field := fmt.Sprintf("networks[%d]", i)
		if n.SecondFactor == "" && n.RememberDevice == "" && n.RecheckNewNetwork == nil && n.Methods == nil &&
			n.Enrolment == "" && n.Reminder == 0 {
			return fmt.Errorf("%s: sets nothing; give second_factor, remember_device, recheck_new_network, methods, enrolment or reminder", field)
		}
		switch n.SecondFactor {
		case "", secondFactorRequired, secondFactorSkip:
		default:
			return fmt.Errorf("%s.second_factor %q: must be skip or required", field, n.SecondFactor)
		}
		switch n.Enrolment {
		case "", enrolmentRequired, enrolmentOptional:
		default:
			return fmt.Errorf("%s.enrolment %q: must be required or optional (a deadline is the rule's)", field, n.Enrolment)
		}
		if n.Methods != nil && len(n.Methods) == 0 {
			return fmt.Errorf("%s.methods: at least one of totp, webauthn, email, sms", field)
		}
		if err := validateMethods(field+".methods", n.Methods, app, webAuthn); err != nil {
			return err
		}
		pol := &rule.blocks[i]
		if r := pol.Reminder; r < time.Minute || r > maxRemember {
			return fmt.Errorf("%s.reminder %s: must be between 1m and 400d", field, r)
		}
		if n.RecheckNewNetwork != nil && *n.RecheckNewNetwork && pol.Remember == 0 {
			return fmt.Errorf("%s.recheck_new_network: needs remember_device (not off), whose devices it rechecks", field)
		}
	}
	if family := rule.skipsEveryone(); family != "" {
		return fmt.Errorf("networks: the ranges with second_factor skip hold every %s address: that is no second factor at all; remove the rule instead", family)
	}
	for i, a := range rule.nets {
		for _, b := range rule.nets[:i] {
			if b.block == a.block || !a.prefix.Overlaps(b.prefix) || samePolicy(a.policy, b.policy) {
				continue
			}
			// Ranges are either nested or apart, so the later one is
			// partly or wholly decided by the earlier: say which and
			// let the operator list ranges that do not overlap.
			return fmt.Errorf("%s %s: overlaps %s %s, whose policy differs; ranges that overlap must agree (list the ranges around the exception instead)",
				a.field(), a.text, b.field(), b.text)
		}
	}
	return nil
}

// skipsEveryone names the address family ("IPv4", "IPv6") whose every
// address the skip ranges hold together (a /0, or 0.0.0.0/1 with
// 128.0.0.0/1), or "" for none.
func (rule *Rule) skipsEveryone() string {
	for _, family := range []struct {
		name string
		bits int
	}{{"IPv4", 32}, {"IPv6", 128}} {
		held := new(big.Int)
		for i, a := range rule.nets {
			if !a.policy.Skip || a.prefix.Addr().BitLen() != family.bits || rule.heldEarlier(i) {
				continue
			}
			held.Add(held, new(big.Int).Lsh(big.NewInt(1), uint(family.bits-a.prefix.Bits())))
		}
		if held.Cmp(new(big.Int).Lsh(big.NewInt(1), uint(family.bits))) >= 0 {
			return family.name
		}
	}
	return ""
}

// heldEarlier reports whether another skip range holds range i (the first
// of equal ones counts), so that skipsEveryone counts each address once.
func (rule *Rule) heldEarlier(i int) bool {
	a := rule.nets[i].prefix
	for j, b := range rule.nets {
		if j == i || !b.policy.Skip || !b.prefix.Overlaps(a) || b.prefix.Bits() > a.Bits() {
			continue
		}
		if b.prefix.Bits() < a.Bits() || j < i {
			return true
		}
	}
	return false
}

// specialRanges hold addresses that do not locate a client: whatever
// reaches Caddy from the host itself, a link, a carrier's NAT or a
// translator between IPv6 and IPv4.
var specialRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback: the host itself, a sidecar, Caddy proxying to itself"},
	{netip.MustParsePrefix("::1/128"), "loopback: the host itself, a sidecar, Caddy proxying to itself"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT, shared by a carrier's customers"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64: every IPv4 client behind a translator"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64: every IPv4 client behind a translator"},
	{netip.MustParsePrefix("2002::/16"), "6to4 relays"},
	{netip.MustParsePrefix("2001::/32"), "Teredo relays"},
}

// riskySkips lists, for a warning, the skip ranges that are very wide
// (more than a /8 of IPv4 or a /32 of IPv6) or hold addresses that do not
// locate a client.
func (rule *Rule) riskySkips() []string {
	var out []string
	for _, a := range rule.nets {
		if !a.policy.Skip {
			continue
		}
		if wide := map[int]int{32: 8, 128: 32}[a.prefix.Addr().BitLen()]; a.prefix.Bits() < wide {
			out = append(out, fmt.Sprintf("%s %s is wider than a /%d", a.field(), a.text, wide))
		}
		for _, sp := range specialRanges {
			if sp.prefix.Overlaps(a.prefix) {
				out = append(out, fmt.Sprintf("%s %s holds %s addresses (%s)", a.field(), a.text, sp.prefix, sp.what))
			}
		}
	}
	return out
}

// shadowed lists the ranges that never apply because an earlier block's
// range holds them (with the same policy, or validate would refuse it).
func (rule *Rule) shadowed() []string {
	var out []string
	for i, a := range rule.nets {
		for _, b := range rule.nets[:i] {
			if b.block != a.block && b.prefix.Bits() <= a.prefix.Bits() && b.prefix.Overlaps(a.prefix) {
				out = append(out, fmt.Sprintf("%s %s is inside %s %s", a.field(), a.text, b.field(), b.text))
				break
			}
		}
	}
	return out
}

// field names the range in errors, as in the JSON config.
func (m *netMatch) field() string {
	return fmt.Sprintf("networks[%d].ranges[%d]", m.block, m.index)
}

// samePolicy reports whether two policies treat every request alike.
func samePolicy(a, b *flow.Policy) bool {
	return a.Optional == b.Optional && a.Reminder == b.Reminder && a.Deadline == b.Deadline &&
		a.Remember == b.Remember && a.NoRecovery == b.NoRecovery && a.Skip == b.Skip &&
		a.Recheck == b.Recheck && slices.Equal(a.Methods, b.Methods)
}

// skips reports whether some block of the rule skips the code.
func (rule *Rule) skips() bool {
	return slices.ContainsFunc(rule.blocks, func(p flow.Policy) bool { return p.Skip })
}

// policyAt is the rule's policy for a client at addr: the first block
// with a range holding it, else the rule's own. An address that could
// not be determined (!ok) matches no block, so it never skips the code.
func (rule *Rule) policyAt(addr netip.Addr, ok bool) (*flow.Policy, *netMatch) {
	if ok {
		for i := range rule.nets {
			if rule.nets[i].prefix.Contains(addr) {
				return rule.nets[i].policy, &rule.nets[i]
			}
		}
	}
	return &rule.policy, nil
}

// policyOf is rule's policy for the request's client.
func (h *Handler) policyOf(rule *Rule, r *http.Request) (*flow.Policy, *netMatch) {
	if len(rule.nets) == 0 {
		return &rule.policy, nil
	}
	return rule.policyAt(h.clientAddr(r))
}

// clientAddr is the client's address for policies by network: Caddy's
// client IP, unless Caddy took it from a forwarding header on a server
// without trusted_proxies_strict. There Caddy takes the header's
// left-most entry, which the client writes itself whenever the proxy
// appends to the header, so the address is not determined (!ok): no
// block applies and no range is known. The operator is told once.
func (h *Handler) clientAddr(r *http.Request) (netip.Addr, bool) {
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); srv == nil || srv.TrustedProxiesStrict == 0 {
			h.warnLooseProxy(r)
			return netip.Addr{}, false
		}
	}
	return flow.ClientAddr(clientIP(r))
}

// warnLooseProxy says once why addresses through a trusted proxy are not
// used for policies by network.
func (h *Handler) warnLooseProxy(r *http.Request) {
	if h.looseProxyWarned == nil || !h.looseProxyWarned.CompareAndSwap(false, true) {
		return
	}
	h.logger.Warn("networks blocks do not apply to requests through a trusted proxy on a server without trusted_proxies_strict: "+
		"Caddy takes the left-most X-Forwarded-For entry there, which a client can write when the proxy appends to the header; "+
		"set trusted_proxies_strict in the servers global option", zap.String("client_ip", clientIP(r)))
}
