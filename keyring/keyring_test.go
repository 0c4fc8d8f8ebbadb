package keyring

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var (
	keyA = []byte("0123456789abcdef0123456789abcdef-A")
	keyB = []byte("0123456789abcdef0123456789abcdef-B")
)

func TestNewRejectsShortAndRepeatedKeys(t *testing.T) {
	if _, err := New(); err == nil {
		t.Fatal("no keys: want error")
	}
	_, err := New(keyA, []byte("short"))
	if err == nil || !strings.Contains(err.Error(), "key 1 is 5 bytes") {
		t.Fatalf("short key: got %v", err)
	}
	if _, err := New(keyA, keyA); err == nil {
		t.Fatal("repeated key: want error")
	}
}

func TestSealOpenRoundTripAndBinding(t *testing.T) {
	kr, err := New(keyA)
	if err != nil {
		t.Fatal(err)
	}
	s := kr.Sealer("totp")
	sealed := s.Seal(nil, []byte("secret"), []byte("user:alice"))
	if bytes.Contains(sealed, []byte("secret")) {
		t.Fatal("plaintext visible in sealed data")
	}
	got, err := s.Open(nil, sealed, []byte("user:alice"))
	if err != nil || string(got) != "secret" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.Open(nil, sealed, []byte("user:bob")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other aad: want ErrOpen, got %v", err)
	}
	if _, err := kr.Sealer("cookie").Open(nil, sealed, []byte("user:alice")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other purpose: want ErrOpen, got %v", err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := s.Open(nil, bad, []byte("user:alice")); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	if _, err := s.Open(nil, sealed[:len(sealed)-1], []byte("user:alice")); err == nil {
		t.Fatal("truncated data accepted")
	}
	if _, err := s.Open(nil, nil, nil); err == nil {
		t.Fatal("empty data accepted")
	}
}

func TestRotation(t *testing.T) {
	old, _ := New(keyA)
	sealed := old.Sealer("totp").Seal(nil, []byte("secret"), nil)

	rotated, _ := New(keyB, keyA)
	s := rotated.Sealer("totp")
	if got, err := s.Open(nil, sealed, nil); err != nil || string(got) != "secret" {
		t.Fatalf("old data after rotation: %q %v", got, err)
	}
	if s.KeyIndex(sealed) != 1 {
		t.Fatal("old data not reported as sealed by the older key")
	}
	if s.KeyIndex(s.Seal(nil, []byte("x"), nil)) != 0 {
		t.Fatal("new data not reported as sealed by the current key")
	}

	onlyNew, _ := New(keyB)
	if _, err := onlyNew.Sealer("totp").Open(nil, sealed, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("removed key still opens: %v", err)
	}
}

// KeyIndex tells, without opening, which configured key sealed the data:
// what a rotation still needs an older key for.
func TestKeyIndex(t *testing.T) {
	keyC := []byte("0123456789abcdef0123456789abcdef-C")
	underA, _ := New(keyA)
	underB, _ := New(keyB)
	sealedA := underA.Sealer("totp").Seal(nil, []byte("secret"), nil)
	sealedB := underB.Sealer("totp").Seal(nil, []byte("secret"), nil)

	rotated, _ := New(keyC, keyB, keyA)
	s := rotated.Sealer("totp")
	for _, c := range []struct {
		name   string
		sealed []byte
		want   int
	}{
		{"current", s.Seal(nil, []byte("x"), nil), 0},
		{"second key", sealedB, 1},
		{"third key", sealedA, 2},
		{"empty", nil, -1},
		{"truncated", sealedA[:Overhead-1], -1},
		{"other version", append([]byte{formatVersion + 1}, sealedA[1:]...), -1},
	} {
		if got := s.KeyIndex(c.sealed); got != c.want {
			t.Errorf("%s: KeyIndex = %d, want %d", c.name, got, c.want)
		}
	}
	onlyC, _ := New(keyC)
	if got := onlyC.Sealer("totp").KeyIndex(sealedA); got != -1 {
		t.Errorf("key no longer configured: KeyIndex = %d, want -1", got)
	}
}

func TestNoncesAreUnique(t *testing.T) {
	kr, _ := New(keyA)
	s := kr.Sealer("totp")
	seen := make(map[string]bool, 100000)
	for range 100000 {
		sealed := s.Seal(nil, []byte("same"), nil)
		nonce := string(sealed[1+idLen : 1+idLen+nonceLen])
		if seen[nonce] {
			t.Fatal("repeated nonce")
		}
		seen[nonce] = true
	}
}

func TestSumSeparatesParts(t *testing.T) {
	k := []byte("k")
	if bytes.Equal(Sum(k, []byte("ab"), []byte("c")), Sum(k, []byte("a"), []byte("bc"))) {
		t.Fatal("different splits collide")
	}
}

// KeyID names the key a value was sealed under, the same for every
// purpose, and HasKey finds it among the configured keys only while the
// key is configured.
func TestKeyIDAndHasKey(t *testing.T) {
	underA, _ := New(keyA)
	underB, _ := New(keyB)
	idA := KeyID(underA.Sealer("totp").Seal(nil, []byte("x"), nil))
	idB := KeyID(underB.Sealer("totp").Seal(nil, []byte("x"), nil))
	if len(idA) != 2*idLen || idA == idB {
		t.Fatalf("KeyID: %q and %q, want distinct hex of %d bytes", idA, idB, idLen)
	}
	if other := KeyID(underA.Sealer("destinations").Seal(nil, []byte("y"), []byte("aad"))); other != idA {
		t.Fatalf("KeyID for another purpose: %q, want %q", other, idA)
	}
	if got := KeyID([]byte("not sealed")); got != "" {
		t.Fatalf("KeyID of plain bytes: %q", got)
	}
	both, _ := New(keyB, keyA)
	if s := both.Sealer("totp"); !s.HasKey(idA) || !s.HasKey(idB) {
		t.Fatal("HasKey: a configured key not found")
	}
	if underB.Sealer("totp").HasKey(idA) || underB.Sealer("totp").HasKey("") {
		t.Fatal("HasKey: found a key that is not configured")
	}
}
