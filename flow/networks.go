package flow

import "net/netip"

// MethodNetwork is the X-2fa-Method of a request that passed without a
// code because it came from a range whose policy skips the second
// factor. It is never a session's method: no Policy lists it.
const MethodNetwork = "network"

// ClientAddr parses the client address the Caddy layer trusts. An
// address that cannot be determined (empty, a unix socket, zoned or
// unspecified) is not ok, and so matches no network: it never skips the
// code and is never a known range. IPv4-mapped IPv6 addresses are
// unmapped, so 192.0.2.7 is the same client however it arrived.
func ClientAddr(ip string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// NetworkOf is the range a remembered device is rechecked by: the /24 of
// an IPv4 address, the /48 of an IPv6 one (privacy addresses rotate
// within a /64, and a site is usually given a /48). The zero Prefix when
// the address is not ok.
func NetworkOf(a netip.Addr, ok bool) netip.Prefix {
	if !ok {
		return netip.Prefix{}
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}
