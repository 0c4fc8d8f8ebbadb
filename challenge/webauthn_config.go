package challenge

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"golang.org/x/net/publicsuffix"
)

// WebAuthnConfig sets up passkeys and security keys. WebAuthn is off
// while RPID is empty; the Caddy layer fills RPID and Origins from the
// site's URL, never from a request's Host header.
type WebAuthnConfig struct {
	// RPID is the relying party ID: the site's host name, or a registrable
	// suffix of it (example.com for login.example.com). Credentials are
	// bound to it for good: changing it orphans every one registered.
	RPID string
	// RPName is the name authenticators show beside the member's account.
	// Default RPID.
	RPName string
	// Origins are the origins (scheme://host[:port]) pages may run the
	// ceremonies from: https, or http on localhost or 127.0.0.1 for
	// testing; each host must be RPID or under it. At least one.
	Origins []string
	// UserVerification is "preferred" (a PIN or biometric when the
	// authenticator has one; a security key without one still works) or
	// "required" (refuse any response without it). Default "preferred".
	UserVerification string
	// Attestation is the conveyance asked for: "none", "indirect" or
	// "direct". Default "none". Without a metadata service the AAGUID an
	// authenticator reports is its own claim either way.
	Attestation string
	// AAGUIDs, when set, are the only authenticator models (AAGUIDs, as
	// UUIDs) that may be registered and sign in; an authenticator that
	// reports none (all zeros) is refused too. Advisory: without a
	// metadata service the AAGUID is the authenticator's own claim, which
	// keeps honest members to the models the operator supports but does
	// not stop a forged one. Default: any.
	AAGUIDs []string
	// ChallengeTTL is how long a ceremony's challenge lives between its
	// options and the browser's response. Default 2m; 30s to 10m.
	ChallengeTTL time.Duration
}

// Enabled reports whether WebAuthn is configured.
func (c WebAuthnConfig) Enabled() bool { return c.RPID != "" }

// UV and attestation values.
const (
	UVPreferred         = "preferred"
	UVRequired          = "required"
	AttestationNone     = "none"
	AttestationDirect   = "direct"
	AttestationIndirect = "indirect"
)

func (c *WebAuthnConfig) setDefaults() {
	if c.RPName == "" {
		c.RPName = c.RPID
	}
	if c.UserVerification == "" {
		c.UserVerification = UVPreferred
	}
	if c.Attestation == "" {
		c.Attestation = AttestationNone
	}
	if c.ChallengeTTL == 0 {
		c.ChallengeTTL = 2 * time.Minute
	}
}

// validate reports the first invalid WebAuthn setting, naming it. c has
// its defaults.
func (c WebAuthnConfig) validate() error {
	if c.RPID == "" {
		switch {
		case len(c.Origins) > 0:
			return fmt.Errorf("webauthn_rp_id: required when webauthn_origins are set")
		case len(c.AAGUIDs) > 0:
			return fmt.Errorf("webauthn_rp_id: required when webauthn_aaguids are set")
		}
		return nil
	}
	if err := checkRPID(c.RPID); err != nil {
		return err
	}
	if len(c.Origins) == 0 {
		return fmt.Errorf("webauthn_origins: at least one origin is required when webauthn_rp_id is set")
	}
	for _, o := range c.Origins {
		if err := checkOrigin(o, c.RPID); err != nil {
			return err
		}
	}
	if n := len([]rune(c.RPName)); n > 64 || strings.ContainsFunc(c.RPName, isControl) {
		return fmt.Errorf("webauthn_rp_name %q: must be at most 64 characters, without control characters", c.RPName)
	}
	switch {
	case c.UserVerification != UVPreferred && c.UserVerification != UVRequired:
		return fmt.Errorf("webauthn_user_verification %q: must be %q or %q", c.UserVerification, UVPreferred, UVRequired)
	case c.Attestation != AttestationNone && c.Attestation != AttestationIndirect && c.Attestation != AttestationDirect:
		return fmt.Errorf("webauthn_attestation %q: must be %q, %q or %q", c.Attestation, AttestationNone, AttestationIndirect, AttestationDirect)
	case c.ChallengeTTL < 30*time.Second || c.ChallengeTTL > 10*time.Minute:
		return fmt.Errorf("webauthn_challenge_ttl %s: must be between 30s and 10m", c.ChallengeTTL)
	}
	for _, a := range c.AAGUIDs {
		if _, err := uuid.Parse(a); err != nil || len(a) != 36 {
			return fmt.Errorf("webauthn_aaguids %q: not an AAGUID (a UUID such as cb69481e-8ff7-4039-93ec-0a2729a154a8)", a)
		}
	}
	return nil
}

// localHosts may be served over plain http, for tests and development:
// browsers treat them as secure contexts.
func localHost(host string) bool { return host == "localhost" || host == "127.0.0.1" }

func checkRPID(id string) error {
	if id != strings.ToLower(id) || strings.ContainsAny(id, ":/ ") || strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") {
		return fmt.Errorf("webauthn_rp_id %q: must be a lowercase host name, without scheme, port or path", id)
	}
	if id == "localhost" {
		return nil
	}
	// Browsers and the library refuse an IP address as the ID, 127.0.0.1
	// too (it may still be an origin's host under localhost's rules).
	if net.ParseIP(id) != nil {
		return fmt.Errorf("webauthn_rp_id %q: must be a domain name, not an IP address", id)
	}
	// A public suffix (com, co.uk, github.io) would let every site under
	// it claim the credentials.
	if _, err := publicsuffix.EffectiveTLDPlusOne(id); err != nil {
		return fmt.Errorf("webauthn_rp_id %q: must be a registrable domain, not a public suffix", id)
	}
	return nil
}

func checkOrigin(o, rpID string) error {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("webauthn_origins %q: must be scheme://host[:port], nothing more", o)
	}
	host := u.Hostname()
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && localHost(host):
	default:
		return fmt.Errorf("webauthn_origins %q: must be https (http only on localhost or 127.0.0.1)", o)
	}
	if host != rpID && !strings.HasSuffix(host, "."+rpID) {
		return fmt.Errorf("webauthn_origins %q: host %q must be webauthn_rp_id %q or a name under it", o, host, rpID)
	}
	return nil
}

// isControl reports the characters a name shown to people must not hold:
// controls, line and paragraph separators, and the invisible format
// characters (Unicode category Cf: direction overrides and isolates such
// as U+202E and U+2066–2069, zero-width spaces and joiners U+200B–200F,
// U+FEFF), which make a name read as another ("Phone" that displays as
// "enohP", or two names that look alike). The zero-width joiner of emoji
// sequences is one of them, so such a sequence is refused; a single emoji
// is not. So are the other characters that render as nothing (Hangul
// fillers U+3164 and U+FFA0, the combining grapheme joiner U+034F, the
// Braille blank U+2800).
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r) ||
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || r == 0x2800
}
