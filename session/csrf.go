package session

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"

	"github.com/caddy-twofactor/twofactor/keyring"
)

// CSRF makes and checks form tokens. The browser holds a random secret in
// the CSRF cookie; each form carries HMAC(key, secret, user). A cross-site
// attacker cannot read the secret, and a secret planted by an attacker (say
// from a sibling subdomain over plain HTTP) is useless because the token is
// also bound to the signed-in member, which differs from the attacker.
type CSRF struct {
	key []byte
}

// NewCSRF returns a CSRF token maker keyed from kr.
func NewCSRF(kr *keyring.Keyring) *CSRF {
	return &CSRF{key: kr.MACKey("csrf")}
}

// NewSecret returns a fresh value for the CSRF cookie.
func NewSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Token returns the form token for the cookie secret and user.
func (c *CSRF) Token(secret, user string) string {
	return base64.RawURLEncoding.EncodeToString(keyring.Sum(c.key, []byte(secret), []byte(user)))
}

// Valid reports, in constant time, whether token matches secret and user.
func (c *CSRF) Valid(secret, user, token string) bool {
	if len(secret) < 43 || len(token) != 43 {
		return false
	}
	// Strict: the token has one spelling, not four that differ only in
	// the unused low bits of its last character.
	got, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil {
		return false
	}
	return hmac.Equal(got, keyring.Sum(c.key, []byte(secret), []byte(user)))
}
