package session

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/keyring"
)

func testCodec(t testing.TB, keys ...string) *Codec {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{"test key test key test key test key"}
	}
	var bs [][]byte
	for _, k := range keys {
		bs = append(bs, []byte(k))
	}
	kr, err := keyring.New(bs...)
	if err != nil {
		t.Fatal(err)
	}
	return NewCodec(kr)
}

func sample() *Session {
	return &Session{
		User: "alice@example.com", ID: NewID(), Binding: [16]byte{1, 2, 3}, Method: "totp",
		Epoch: 7, Issued: 1000, LastSeen: 1100, Expires: 5000, Remembered: true,
	}
}

func TestSessionRoundTrip(t *testing.T) {
	c := testCodec(t)
	in := sample()
	v := c.EncodeSession(in)
	if strings.Contains(v, "alice") {
		t.Fatal("user id visible in the cookie")
	}
	var out Session
	if err := c.DecodeSession(v, &out); err != nil {
		t.Fatal(err)
	}
	if out != *in {
		t.Fatalf("round trip: got %+v want %+v", out, *in)
	}
	// Each flag on its own.
	for _, flags := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		in.Remembered, in.Unproven = flags[0], flags[1]
		if err := c.DecodeSession(c.EncodeSession(in), &out); err != nil || out != *in {
			t.Fatalf("flags %v: %v %+v", flags, err, out)
		}
	}
}

func TestDecodeSessionOf(t *testing.T) {
	c := testCodec(t)
	in := sample()
	v := c.EncodeSession(in)
	var out Session
	if err := c.DecodeSessionOf(v, "alice@example.com", &out); err != nil || out != *in {
		t.Fatalf("own user: %v %+v", err, out)
	}
	for _, other := range []string{"", "alice", "alice@example.co", "alice@example.comm", "bob"} {
		if err := c.DecodeSessionOf(v, other, &out); err != ErrInvalid {
			t.Errorf("user %q: want ErrInvalid, got %v", other, err)
		}
	}
}

func TestTamperedValuesAreInvalid(t *testing.T) {
	c := testCodec(t)
	v := c.EncodeSession(sample())
	raw, _ := base64.RawURLEncoding.DecodeString(v)
	var bad []string
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x80
		bad = append(bad, base64.RawURLEncoding.EncodeToString(b))
	}
	bad = append(bad,
		"", v[:len(v)-1], v[:10], v+"A", "not base64 !!", strings.Repeat("A", 8192),
		base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]),
		c.EncodeDevice(&Device{User: "alice", ID: NewID(), Expires: 10}),
		c.EncodeReminder(&Reminder{User: "alice", Until: 10}),
		testCodec(t, "another key another key another key").EncodeSession(sample()),
	)
	for i, b := range bad {
		var s Session
		if err := c.DecodeSession(b, &s); err != ErrInvalid {
			t.Errorf("case %d: want ErrInvalid, got %v", i, err)
		}
	}
}

func TestRotatedKeyStillOpens(t *testing.T) {
	old := testCodec(t, "old key old key old key old key old")
	v := old.EncodeSession(sample())
	rotated := testCodec(t, "new key new key new key new key new", "old key old key old key old key old")
	var s Session
	if err := rotated.DecodeSession(v, &s); err != nil {
		t.Fatalf("old cookie after rotation: %v", err)
	}
}

func TestDeviceAndReminderRoundTrip(t *testing.T) {
	c := testCodec(t)
	d := Device{User: "bob", ID: NewID(), Expires: 99}
	var gotD Device
	if err := c.DecodeDevice(c.EncodeDevice(&d), &gotD); err != nil || gotD != d {
		t.Fatalf("device: %+v %v", gotD, err)
	}
	r := Reminder{User: "bob", Until: 42}
	var gotR Reminder
	if err := c.DecodeReminder(c.EncodeReminder(&r), &gotR); err != nil || gotR != r {
		t.Fatalf("reminder: %+v %v", gotR, err)
	}
	var s Session
	if err := c.DecodeSession(c.EncodeDevice(&d), &s); err != ErrInvalid {
		t.Fatal("device cookie accepted as a session")
	}
}

func TestIDsAreUnique(t *testing.T) {
	seen := make(map[[16]byte]bool, 100000)
	for range 100000 {
		id := NewID()
		if seen[id] {
			t.Fatal("duplicate id")
		}
		seen[id] = true
	}
}

func TestCSRF(t *testing.T) {
	kr, _ := keyring.New([]byte("test key test key test key test key"))
	c := NewCSRF(kr)
	secret := NewSecret()
	tok := c.Token(secret, "alice")
	if !c.Valid(secret, "alice", tok) {
		t.Fatal("own token refused")
	}
	if c.Valid(secret, "mallory", tok) {
		t.Fatal("token valid for another user")
	}
	if c.Valid(NewSecret(), "alice", tok) {
		t.Fatal("token valid with another cookie")
	}
	altered := tok[:42] + "A"
	if tok[42] == 'A' {
		altered = tok[:42] + "B"
	}
	if c.Valid(secret, "alice", "") || c.Valid("", "alice", tok) || c.Valid(secret, "alice", altered) {
		t.Fatal("malformed token accepted")
	}
	if len(tok) > 64 || len(Name(CSRFCookie, true))+len(secret) > 4096 {
		t.Fatal("token or cookie too large")
	}
}

func TestName(t *testing.T) {
	if Name(SessionCookie, true) != "__Host-2fa_session" || Name(SessionCookie, false) != "2fa_session" {
		t.Fatal("cookie names")
	}
}

func BenchmarkDecodeSession(b *testing.B) {
	c := testCodec(b)
	v := c.EncodeSession(sample())
	var s Session
	b.ReportAllocs()
	for b.Loop() {
		if err := c.DecodeSessionOf(v, "alice@example.com", &s); err != nil {
			b.Fatal(err)
		}
	}
}
