package twofactor

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// WebAuthn turns on passkeys and security keys for a handler's site. The
// relying party is the handler's site_url, which it requires: its host is
// the relying party ID and its scheme://host[:port] the origin, never a
// request's Host header. Handlers of one two_factor app share one engine,
// so every handler that turns WebAuthn on must name the same host and the
// same settings; their site_urls' origins are all accepted.
type WebAuthn struct {
	// "preferred" asks the authenticator for a PIN or biometric when it
	// has one; "required" refuses any response without one.
	// Default: preferred.
	UserVerification string `json:"user_verification,omitempty"`

	// The attestation asked of authenticators: none, indirect or direct.
	// Default: none.
	Attestation string `json:"attestation,omitempty"`

	// The only authenticator models (AAGUIDs, as UUIDs) that may be
	// registered; an authenticator that reports none is refused too.
	// Default: any.
	AAGUIDs []string `json:"aaguids,omitempty"`

	// How long a ceremony's challenge lives between the options and the
	// browser's answer, 30s to 10m. Default: 2m.
	ChallengeTimeout caddy.Duration `json:"challenge_timeout,omitempty"`
}

// webAuthnConfig is the engine's configuration for this handler: the
// relying party from site_url and the settings with their defaults. The
// handler's Validate has checked site_url.
func (h *Handler) webAuthnConfig() (challenge.WebAuthnConfig, error) {
	if h.SiteURL == "" {
		return challenge.WebAuthnConfig{}, fmt.Errorf("webauthn: needs site_url (the relying party is site_url's host, never the Host header)")
	}
	u, err := url.Parse(h.SiteURL)
	if err != nil || u.Host == "" {
		return challenge.WebAuthnConfig{}, fmt.Errorf("webauthn: site_url %q: not an address such as https://example.com", h.SiteURL)
	}
	w := h.WebAuthn
	c := challenge.WebAuthnConfig{
		RPID:             u.Hostname(),
		RPName:           h.SiteName,
		Origins:          []string{u.Scheme + "://" + u.Host},
		UserVerification: w.UserVerification,
		Attestation:      w.Attestation,
		AAGUIDs:          w.AAGUIDs,
		ChallengeTTL:     time.Duration(w.ChallengeTimeout),
	}
	if c.UserVerification == "" {
		c.UserVerification = challenge.UVPreferred
	}
	if c.Attestation == "" {
		c.Attestation = challenge.AttestationNone
	}
	if c.ChallengeTTL == 0 {
		c.ChallengeTTL = 2 * time.Minute
	}
	if c.RPName == "" {
		c.RPName = c.RPID
	}
	return c, nil
}

// provisionWebAuthn adds this handler's relying party to the app's engine
// configuration (made at Start, after every handler is provisioned),
// refusing a second handler that disagrees with the first.
func (h *Handler) provisionWebAuthn() error {
	if h.WebAuthn == nil {
		return nil
	}
	c, err := h.webAuthnConfig()
	if err != nil {
		return err
	}
	switch {
	case net.ParseIP(c.RPID) != nil:
		// WebAuthn binds credentials to a domain; browsers and the library
		// refuse an IP address.
		return fmt.Errorf("webauthn: site_url %q: its host is the relying party ID, which must be a domain name (localhost for testing), not an IP address", h.SiteURL)
	case c.UserVerification != challenge.UVPreferred && c.UserVerification != challenge.UVRequired:
		return fmt.Errorf("webauthn: user_verification %q: must be preferred or required", c.UserVerification)
	case c.Attestation != challenge.AttestationNone && c.Attestation != challenge.AttestationIndirect && c.Attestation != challenge.AttestationDirect:
		return fmt.Errorf("webauthn: attestation %q: must be none, indirect or direct", c.Attestation)
	case c.ChallengeTTL < 30*time.Second || c.ChallengeTTL > 10*time.Minute:
		return fmt.Errorf("webauthn: challenge_timeout %s: must be between 30s and 10m", c.ChallengeTTL)
	}
	// The rest (the relying party from site_url, the AAGUIDs) as the
	// engine will check it.
	if err := (challenge.Config{WebAuthn: c}).Validate(); err != nil {
		return fmt.Errorf("webauthn: %w", err)
	}
	have := &h.app.cfg.WebAuthn
	if !have.Enabled() {
		*have = c
		return nil
	}
	switch {
	case have.RPID != c.RPID:
		return fmt.Errorf("webauthn: site_url %q: its host %q differs from %q, which another handler of the two_factor app uses for passkeys; handlers that enable webauthn share one relying party ID", h.SiteURL, c.RPID, have.RPID)
	case have.UserVerification != c.UserVerification:
		return fmt.Errorf("webauthn: user_verification %q differs from %q of another handler; handlers that enable webauthn share their settings", c.UserVerification, have.UserVerification)
	case have.Attestation != c.Attestation:
		return fmt.Errorf("webauthn: attestation %q differs from %q of another handler; handlers that enable webauthn share their settings", c.Attestation, have.Attestation)
	case !slices.Equal(have.AAGUIDs, c.AAGUIDs):
		return fmt.Errorf("webauthn: aaguids %q differ from %q of another handler; handlers that enable webauthn share their settings", c.AAGUIDs, have.AAGUIDs)
	case have.ChallengeTTL != c.ChallengeTTL:
		return fmt.Errorf("webauthn: challenge_timeout %s differs from %s of another handler; handlers that enable webauthn share their settings", c.ChallengeTTL, have.ChallengeTTL)
	}
	if !slices.Contains(have.Origins, c.Origins[0]) {
		have.Origins = append(have.Origins, c.Origins[0])
	}
	return nil
}

// unmarshalWebAuthn parses
//
//	webauthn [{
//		user_verification preferred|required
//		attestation none|indirect|direct
//		aaguids <uuid...>
//		challenge_timeout <duration>
//	}]
func (h *Handler) unmarshalWebAuthn(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("webauthn: expected no value, only a block")
	}
	w := &WebAuthn{}
	h.WebAuthn = w
	return eachOption(d, d.Nesting(), "webauthn", nil, func(name string) error {
		switch name {
		case "user_verification":
			return parseString(d, &w.UserVerification)
		case "attestation":
			return parseString(d, &w.Attestation)
		case "aaguids":
			w.AAGUIDs = d.RemainingArgs()
			if len(w.AAGUIDs) == 0 {
				return d.Errf("webauthn: aaguids: expected at least one AAGUID")
			}
			return nil
		case "challenge_timeout":
			return parseDuration(d, &w.ChallengeTimeout)
		}
		return d.Errf("webauthn: unknown option %q", name)
	})
}
