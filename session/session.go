// Package session owns the gateway's cookies: their names, reading them
// without allocating, writing them with the right flags, stripping them
// before a request goes upstream, sealing their values, and CSRF form
// tokens. The cookies are the second-factor session, the remembered device,
// the enrolment reminder, the CSRF secret and the browser token. Sealed
// values use AES-256-GCM (package keyring): opaque to the client,
// unforgeable, and bound to their purpose so one kind can never pass as
// another. Validity rules (lifetimes, epochs, bindings) belong to the
// caller; this package only guarantees that a decoded value is one the
// gateway wrote.
package session

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"unsafe"

	"github.com/caddy-twofactor/twofactor/keyring"
)

// MaxValueLength bounds cookie values we try to decode; anything longer is
// rejected before any work is done.
const MaxValueLength = 2048

// ErrInvalid reports a cookie value that is malformed, tampered with, too
// long, sealed for another purpose, or sealed under a key no longer
// configured. Callers treat it as an absent cookie.
var ErrInvalid = errors.New("session: invalid cookie")

// NewID returns 128 random bits.
func NewID() [16]byte {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic(err)
	}
	return id
}

// Session is a verified second factor for one user and one first-factor
// session. Times are Unix seconds.
type Session struct {
	User string
	// ID is fresh for every verification, so a planted value never becomes
	// an authenticated one.
	ID [16]byte
	// Binding is a hash of the member site's own session cookie; zero when
	// the identity source has no session to bind to.
	Binding [16]byte
	// Method is how the second factor was proven ("totp", ...).
	Method string
	// Epoch is the user's factor epoch at issue; a reset bumps it and so
	// ends every earlier session.
	Epoch    uint64
	Issued   int64
	LastSeen int64
	Expires  int64
	// Remembered marks a session issued from a remembered device rather
	// than a code, for routes that do not accept remembered devices.
	Remembered bool
	// Unproven marks a session verified by an app or passkey that was
	// waiting for an admin's confirmation (added after a weaker factor):
	// it proves no more than that weaker factor did, even once the
	// factor is removed or confirmed.
	Unproven bool
}

// Device is a remembered-device token. The server keeps the matching record.
type Device struct {
	User    string
	ID      [16]byte
	Expires int64
}

// Reminder records that a user chose "later" on the enrolment reminder.
type Reminder struct {
	User  string
	Until int64
}

// Codec seals and opens cookie values.
type Codec struct {
	sealer *keyring.Sealer
}

// NewCodec returns a codec using keys from kr.
func NewCodec(kr *keyring.Keyring) *Codec {
	return &Codec{sealer: kr.Sealer("cookie")}
}

var (
	aadSession  = []byte("session")
	aadDevice   = []byte("device")
	aadReminder = []byte("reminder")
)

const payloadVersion = 1

// strictBase64 gives each cookie value a single spelling.
var strictBase64 = base64.RawURLEncoding.Strict()

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (c *Codec) seal(payload, aad []byte) string {
	sealed := c.sealer.Seal(make([]byte, 0, len(payload)+keyring.Overhead), payload, aad)
	return base64.RawURLEncoding.EncodeToString(sealed)
}

// open decodes value into a pooled buffer and passes the plaintext to read,
// which must copy out what it keeps.
func (c *Codec) open(value string, aad []byte, read func(p []byte) error) error {
	if len(value) == 0 || len(value) > MaxValueLength {
		return ErrInvalid
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]
	if n := base64.RawURLEncoding.DecodedLen(len(value)); cap(buf) < n {
		buf = make([]byte, 0, n)
		*bp = buf
	}
	// The decoder only reads its input, so viewing the string's bytes in
	// place saves a copy on every protected request.
	n, err := strictBase64.Decode(buf[:cap(buf)], unsafe.Slice(unsafe.StringData(value), len(value)))
	if err != nil {
		return ErrInvalid
	}
	sealed := buf[:n]
	// Decrypt in place: the plaintext overwrites the ciphertext.
	p, err := c.sealer.Open(sealed[keyring.Overhead-16:keyring.Overhead-16], sealed, aad)
	if err != nil {
		return ErrInvalid
	}
	if len(p) == 0 || p[0] != payloadVersion {
		return ErrInvalid
	}
	return read(p[1:])
}

// EncodeSession returns the cookie value for s.
func (c *Codec) EncodeSession(s *Session) string {
	p := make([]byte, 0, 80+len(s.Method)+len(s.User))
	p = append(p, payloadVersion)
	var flags byte
	if s.Remembered {
		flags |= 1
	}
	if s.Unproven {
		flags |= 2
	}
	p = append(p, flags)
	p = append(p, s.ID[:]...)
	p = append(p, s.Binding[:]...)
	p = binary.BigEndian.AppendUint64(p, s.Epoch)
	p = binary.BigEndian.AppendUint64(p, uint64(s.Issued))
	p = binary.BigEndian.AppendUint64(p, uint64(s.LastSeen))
	p = binary.BigEndian.AppendUint64(p, uint64(s.Expires))
	p = append(p, byte(len(s.Method)))
	p = append(p, s.Method...)
	p = append(p, s.User...)
	return c.seal(p, aadSession)
}

const sessionFixed = 1 + 16 + 16 + 8*4 + 1

// DecodeSession opens a session cookie value into s.
func (c *Codec) DecodeSession(value string, s *Session) error {
	return c.decodeSession(value, "", s)
}

// DecodeSessionOf opens a session cookie value into s, requiring that it
// belongs to user. It saves copying the user ID on every protected request.
func (c *Codec) DecodeSessionOf(value, user string, s *Session) error {
	if user == "" {
		return ErrInvalid
	}
	return c.decodeSession(value, user, s)
}

func (c *Codec) decodeSession(value, user string, s *Session) error {
	return c.open(value, aadSession, func(p []byte) error {
		if len(p) < sessionFixed {
			return ErrInvalid
		}
		s.Remembered = p[0]&1 != 0
		s.Unproven = p[0]&2 != 0
		copy(s.ID[:], p[1:17])
		copy(s.Binding[:], p[17:33])
		s.Epoch = binary.BigEndian.Uint64(p[33:])
		s.Issued = int64(binary.BigEndian.Uint64(p[41:]))
		s.LastSeen = int64(binary.BigEndian.Uint64(p[49:]))
		s.Expires = int64(binary.BigEndian.Uint64(p[57:]))
		ml := int(p[65])
		rest := p[sessionFixed:]
		if len(rest) < ml || len(rest) == ml {
			return ErrInvalid
		}
		s.Method = internMethod(rest[:ml])
		if user == "" {
			s.User = string(rest[ml:])
		} else if string(rest[ml:]) == user {
			s.User = user
		} else {
			return ErrInvalid
		}
		return nil
	})
}

// internMethod avoids an allocation per request for the known method names.
func internMethod(b []byte) string {
	for _, m := range knownMethods {
		if string(b) == m {
			return m
		}
	}
	return string(b)
}

var knownMethods = [...]string{"totp", "email", "sms", "recovery", "device"}

// EncodeDevice returns the cookie value for d.
func (c *Codec) EncodeDevice(d *Device) string {
	p := make([]byte, 0, 1+16+8+len(d.User))
	p = append(p, payloadVersion)
	p = append(p, d.ID[:]...)
	p = binary.BigEndian.AppendUint64(p, uint64(d.Expires))
	p = append(p, d.User...)
	return c.seal(p, aadDevice)
}

// DecodeDevice opens a remembered-device cookie value into d.
func (c *Codec) DecodeDevice(value string, d *Device) error {
	return c.open(value, aadDevice, func(p []byte) error {
		if len(p) <= 16+8 {
			return ErrInvalid
		}
		copy(d.ID[:], p[:16])
		d.Expires = int64(binary.BigEndian.Uint64(p[16:]))
		d.User = string(p[24:])
		return nil
	})
}

// EncodeReminder returns the cookie value for r.
func (c *Codec) EncodeReminder(r *Reminder) string {
	p := make([]byte, 0, 1+8+len(r.User))
	p = append(p, payloadVersion)
	p = binary.BigEndian.AppendUint64(p, uint64(r.Until))
	p = append(p, r.User...)
	return c.seal(p, aadReminder)
}

// DecodeReminder opens a reminder cookie value into r.
func (c *Codec) DecodeReminder(value string, r *Reminder) error {
	return c.open(value, aadReminder, func(p []byte) error {
		if len(p) <= 8 {
			return ErrInvalid
		}
		r.Until = int64(binary.BigEndian.Uint64(p))
		r.User = string(p[8:])
		return nil
	})
}
