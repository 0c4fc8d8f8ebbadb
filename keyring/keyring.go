// Package keyring turns the operator's master keys into purpose-specific
// keys: AES-256-GCM sealers for secrets at rest and for cookies, and HMAC
// keys for tokens. The first master key seals and signs; every configured key
// opens, so an operator can rotate by putting a new key first and keeping the
// old one until data written under it has been rewritten or has expired.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// MinKeyLength is the shortest master key accepted, in bytes.
const MinKeyLength = 32

// ErrOpen is returned when sealed data cannot be opened by any configured
// key: it was tampered with, bound to other data, or sealed under a key that
// is no longer configured.
var ErrOpen = errors.New("keyring: cannot open sealed data")

const (
	formatVersion = 1
	idLen         = 4
	nonceLen      = 12
	// Overhead is how many bytes Seal adds to the plaintext.
	Overhead = 1 + idLen + nonceLen + 16
)

// Keyring holds the master keys, newest first.
type Keyring struct {
	masters []master
}

type master struct {
	id     [idLen]byte
	secret []byte
}

// New builds a keyring from master keys, the first of which is current.
func New(secrets ...[]byte) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("keyring: no key configured")
	}
	kr := &Keyring{}
	seen := map[[idLen]byte]bool{}
	for i, s := range secrets {
		if len(s) < MinKeyLength {
			return nil, fmt.Errorf("keyring: key %d is %d bytes; at least %d are required", i, len(s), MinKeyLength)
		}
		sum := sha256.Sum256(append([]byte("caddy-twofactor key id\x00"), s...))
		var m master
		copy(m.id[:], sum[:idLen])
		if seen[m.id] {
			return nil, fmt.Errorf("keyring: key %d repeats an earlier key", i)
		}
		seen[m.id] = true
		m.secret = append([]byte(nil), s...)
		kr.masters = append(kr.masters, m)
	}
	return kr, nil
}

// Fingerprint names the configured keys and their order by their IDs,
// which every sealed value carries already: two keyrings have the same
// fingerprint when they hold the same keys, the same one current.
func (kr *Keyring) Fingerprint() string {
	var b []byte
	for _, m := range kr.masters {
		b = append(b, m.id[:]...)
	}
	return hex.EncodeToString(b)
}

func derive(secret []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, "caddy-twofactor "+purpose, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce; 32 always fits
	}
	return k
}

// Sealer encrypts and authenticates data for one purpose. Different purposes
// get unrelated keys, so data sealed for one can never be opened as another.
type Sealer struct {
	current [idLen]byte
	ids     [][idLen]byte // the keys' IDs, newest first
	aeads   map[[idLen]byte]cipher.AEAD
}

// Sealer returns the sealer for purpose.
func (kr *Keyring) Sealer(purpose string) *Sealer {
	s := &Sealer{current: kr.masters[0].id, aeads: map[[idLen]byte]cipher.AEAD{}}
	for _, m := range kr.masters {
		block, err := aes.NewCipher(derive(m.secret, "seal "+purpose))
		if err != nil {
			panic(err) // 32-byte keys are always valid
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			panic(err)
		}
		s.aeads[m.id] = aead
		s.ids = append(s.ids, m.id)
	}
	return s
}

// Seal appends to dst the sealed form of plaintext, bound to aad:
// version | key id | random 96-bit nonce | ciphertext and tag.
func (s *Sealer) Seal(dst, plaintext, aad []byte) []byte {
	dst = append(dst, formatVersion)
	dst = append(dst, s.current[:]...)
	n := len(dst)
	dst = append(dst, make([]byte, nonceLen)...)
	nonce := dst[n : n+nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return s.aeads[s.current].Seal(dst, nonce, plaintext, aad)
}

// Open appends to dst the plaintext of sealed, checking that it was sealed
// for this purpose and aad under a configured key.
func (s *Sealer) Open(dst, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead || sealed[0] != formatVersion {
		return nil, ErrOpen
	}
	var id [idLen]byte
	copy(id[:], sealed[1:1+idLen])
	aead, ok := s.aeads[id]
	if !ok {
		return nil, ErrOpen
	}
	nonce := sealed[1+idLen : 1+idLen+nonceLen]
	out, err := aead.Open(dst, nonce, sealed[1+idLen+nonceLen:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// KeyIndex returns the position among the configured keys (0 for the
// current one) of the key sealed was sealed under, or -1 when that key is
// not configured or sealed is not sealed data. It reads the key ID in the
// header without opening anything: it says which data still needs an
// older key after a rotation, not whether the data is genuine.
func (s *Sealer) KeyIndex(sealed []byte) int {
	if len(sealed) < Overhead || sealed[0] != formatVersion {
		return -1
	}
	id := [idLen]byte(sealed[1 : 1+idLen])
	for i, k := range s.ids {
		if k == id {
			return i
		}
	}
	return -1
}

// KeyID returns the ID, in hex, of the master key sealed was sealed
// under, read from its header without opening anything, or "" when sealed
// is not sealed data. IDs name keys without revealing them, so a backup
// can say which keys its records need.
func KeyID(sealed []byte) string {
	if len(sealed) < Overhead || sealed[0] != formatVersion {
		return ""
	}
	return hex.EncodeToString(sealed[1 : 1+idLen])
}

// HasKey reports whether the master key with this ID (as KeyID gives it)
// is configured.
func (s *Sealer) HasKey(id string) bool {
	for _, k := range s.ids {
		if hex.EncodeToString(k[:]) == id {
			return true
		}
	}
	return false
}

// MACKey returns the current key for HMAC-SHA256 tokens of purpose. Tokens
// made with it stop verifying after a rotation; use it only for short-lived
// values (form tokens) or where a rotation may reasonably end them.
func (kr *Keyring) MACKey(purpose string) []byte {
	return derive(kr.masters[0].secret, "mac "+purpose)
}

// MACKeys returns the keys for MACs of purpose from every key in the ring,
// the current one first: for MACs that must outlive a rotation, made with
// the first and checked against each.
func (kr *Keyring) MACKeys(purpose string) [][]byte {
	keys := make([][]byte, len(kr.masters))
	for i, m := range kr.masters {
		keys[i] = derive(m.secret, "mac "+purpose)
	}
	return keys
}

// Sum returns HMAC-SHA256(key, parts...), each part length-prefixed so that
// different splits of the same bytes never collide.
func Sum(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	var l [4]byte
	for _, p := range parts {
		l[0], l[1], l[2], l[3] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
		m.Write(l[:])
		m.Write(p)
	}
	return m.Sum(nil)
}
