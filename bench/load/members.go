package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
)

// population names the load test's members: member i is <prefix><i>,
// with the mailbox <id>@<domain> and an app key derived from the seed
// secret and the ID, so the tool computes every member's codes without
// keeping a million keys.
type population struct {
	n      int
	prefix string
	domain string
	secret []byte
}

func (p *population) id(i int) string { return fmt.Sprintf("%s%07d", p.prefix, i) }

func (p *population) email(i int) string { return p.id(i) + "@" + p.domain }

// appKey is member i's authenticator key: 20 bytes, as the gateway makes.
func (p *population) appKey(i int) []byte {
	m := hmac.New(sha256.New, p.secret)
	m.Write([]byte("load test app key\x00" + p.id(i)))
	return m.Sum(nil)[:20]
}

// appKeyBase32 is appKey as authenticator apps take it.
func (p *population) appKeyBase32(i int) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(p.appKey(i))
}

// fingerprint tells populations apart in the store's seed marker: a run
// with another prefix, domain or seed secret must not take the members
// there for its own.
func (p *population) fingerprint() string {
	m := hmac.New(sha256.New, p.secret)
	m.Write([]byte("load test population\x00" + p.prefix + "\x00" + p.domain))
	return fmt.Sprintf("%x", m.Sum(nil)[:8])
}
