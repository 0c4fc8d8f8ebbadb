package twofactor

import (
	"errors"
	"fmt"
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
	policies := make([]flow.Policy, len(rule.Networks))
	for i, n := range rule.Networks {
		field := fmt.Sprintf("networks[%d]", i)
		if n == nil || len(n.Ranges) == 0 {
			return fmt.Errorf("%s.ranges: at least one address range (CIDR) is required", field)
		}
		pol, err := rule.overridden(n)
		if err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		policies[i] = pol
		for j, text := range n.Ranges {
			p, err := parseRange(text)
			if err != nil {
				return fmt.Errorf("%s.ranges[%d] %q: %w", field, j, text, err)
			}
			rule.nets = append(rule.nets, netMatch{prefix: p, text: p.String(), block: i, index: j, policy: &policies[i]})
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
		pol := rule.blockPolicy(i)
		if r := pol.Reminder; r < time.Minute || r > maxRemember {
			return fmt.Errorf("%s.reminder %s: must be between 1m and 400d", field, r)
		}
		if n.RecheckNewNetwork != nil && *n.RecheckNewNetwork && pol.Remember == 0 {
			return fmt.Errorf("%s.recheck_new_network: needs remember_device (not off), whose devices it rechecks", field)
		}
	}
	for i, a := range rule.nets {
		if a.policy.Skip && a.prefix.Bits() == 0 {
			return fmt.Errorf("%s: skips the second factor for every address; remove the rule's paths instead", a.field())
		}
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

// blockPolicy is the policy of networks block i.
func (rule *Rule) blockPolicy(i int) *flow.Policy {
	for k := range rule.nets {
		if rule.nets[k].block == i {
			return rule.nets[k].policy
		}
	}
	return &rule.policy
}

// samePolicy reports whether two policies treat every request alike.
func samePolicy(a, b *flow.Policy) bool {
	return a.Optional == b.Optional && a.Reminder == b.Reminder && a.Deadline == b.Deadline &&
		a.Remember == b.Remember && a.NoRecovery == b.NoRecovery && a.Skip == b.Skip &&
		a.Recheck == b.Recheck && slices.Equal(a.Methods, b.Methods)
}

// skips reports whether some block of the rule skips the code.
func (rule *Rule) skips() bool {
	for _, n := range rule.nets {
		if n.policy.Skip {
			return true
		}
	}
	return false
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

// policyFor is the rule's policy for the request's client.
func (rule *Rule) policyFor(r *http.Request) (*flow.Policy, *netMatch) {
	if len(rule.nets) == 0 {
		return &rule.policy, nil
	}
	return rule.policyAt(flow.ClientAddr(clientIP(r)))
}

// warnLooseProxy says once, on a skip, when the client address came
// through a trusted proxy on a server without trusted_proxies_strict:
// Caddy then takes the left-most X-Forwarded-For entry, which the client
// writes itself whenever the proxy appends to the header.
func (h *Handler) warnLooseProxy(r *http.Request) {
	if h.looseProxyWarned.Load() {
		return
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return
	}
	if srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); srv == nil || srv.TrustedProxiesStrict > 0 {
		return
	}
	if h.looseProxyWarned.CompareAndSwap(false, true) {
		h.logger.Warn("a networks block skipped the code for an address a trusted proxy forwarded, on a server without trusted_proxies_strict: "+
			"Caddy took the left-most X-Forwarded-For entry, which a client can write when the proxy appends to the header; "+
			"set trusted_proxies_strict in the servers global option", zap.String("client_ip", clientIP(r)))
	}
}
