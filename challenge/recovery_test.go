package challenge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

// RC-1: 10,000 codes are 16 Crockford symbols each, none repeats, and
// every symbol turns up as often as chance allows, overall and in every
// position (chi-square, 31 degrees of freedom; 90 is exceeded by chance
// about once in ten million runs).
func TestRecoveryCodeEntropy(t *testing.T) {
	const n = 10_000
	const limit = 90.0
	var overall [32]int
	var byPosition [recoveryLength][32]int
	seen := make(map[string]bool, n)
	for range n {
		c, err := randomRecoveryCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != recoveryLength {
			t.Fatalf("code %q: %d symbols, want %d", c, len(c), recoveryLength)
		}
		if seen[c] {
			t.Fatalf("code %q repeated", c)
		}
		seen[c] = true
		for i := range len(c) {
			k := strings.IndexByte(recoveryAlphabet, c[i])
			if k < 0 {
				t.Fatalf("code %q: %q is not Crockford base32", c, c[i])
			}
			overall[k]++
			byPosition[i][k]++
		}
		if f := FormatRecoveryCode(c); !recoveryFormat.MatchString(f) {
			t.Fatalf("shown as %q", f)
		}
	}
	chi := func(counts []int) float64 {
		total := 0
		for _, c := range counts {
			total += c
		}
		want := float64(total) / float64(len(counts))
		x := 0.0
		for _, c := range counts {
			d := float64(c) - want
			x += d * d / want
		}
		return x
	}
	if x := chi(overall[:]); x > limit {
		t.Errorf("symbol frequencies %v: chi-square %.1f > %.0f", overall, x, limit)
	}
	for i := range byPosition {
		if x := chi(byPosition[i][:]); x > limit {
			t.Errorf("position %d: chi-square %.1f > %.0f", i, x, limit)
		}
	}
	// 16 symbols of 32: 80 bits, at least the 64 the requirement asks.
	if bits := recoveryLength * 5; bits < 64 || len(recoveryAlphabet) != 32 {
		t.Errorf("%d bits per code", bits)
	}

	// The codes come from crypto/rand, never math/rand.
	file, err := parser.ParseFile(token.NewFileSet(), "recovery.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]bool{}
	for _, im := range file.Imports {
		path, _ := strconv.Unquote(im.Path.Value)
		imports[path] = true
	}
	if !imports["crypto/rand"] || imports["math/rand"] || imports["math/rand/v2"] {
		t.Errorf("recovery.go imports %v: want crypto/rand and no math/rand", imports)
	}
}

// enrolWithCodes enrols alice with the app and gives her a set of
// recovery codes; it returns the app's secret and the codes as shown.
func (f *fixture) enrolWithCodes() (string, []string) {
	f.t.Helper()
	secret := f.enrol("alice")
	codes, err := f.e.GenerateRecoveryCodes(ctx, Actor{User: "alice", IP: "192.0.2.1"})
	if err != nil {
		f.t.Fatal(err)
	}
	return secret, codes
}

// setRecoveryCodes gives alice a set built by seal from plain codes, as
// GenerateRecoveryCodes would store it.
func (f *fixture) setRecoveryCodes(set *recoverySet) {
	f.t.Helper()
	plain, err := json.Marshal(set)
	if err != nil {
		f.t.Fatal(err)
	}
	sealed := f.e.secret.Seal(nil, plain, recoveryAAD("alice"))
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error {
		u.Recovery = &RecoveryCodes{Sealed: sealed, Created: f.clk.Now().UTC(), Left: len(set.Hashes)}
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
}

// openRecovery returns alice's set as the store holds it, unsealed.
func (f *fixture) openRecovery(e *Engine) *recoverySet {
	f.t.Helper()
	u, _, err := e.loadUser(ctx, "alice")
	if err != nil || u.Recovery == nil {
		f.t.Fatalf("alice's codes: %v", err)
	}
	plain, err := e.secret.Open(nil, u.Recovery.Sealed, recoveryAAD("alice"))
	if err != nil {
		f.t.Fatal(err)
	}
	var set recoverySet
	if err := json.Unmarshal(plain, &set); err != nil {
		f.t.Fatal(err)
	}
	return &set
}

// A set made before 16-symbol codes (12 symbols, salted SHA-256, no
// format) keeps working: its codes are typed in as they were shown, used
// once each, and the set is replaced by one of the new kind.
func TestRecoveryLegacySetStillVerifies(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrol("alice")
	legacy := []string{"abcdefghjkmn", "pqrstuvwxyz2", "3456789abcde", "fghjkmnpqrst", "uvwxyz234567",
		"89abcdefghjk", "mnpqrstuvwxy", "z23456789abc", "defghjkmnpqr", "stuvwxyz2345"}
	set := &recoverySet{Salt: make([]byte, 16), Used: make([]bool, len(legacy))}
	if _, err := rand.Read(set.Salt); err != nil {
		t.Fatal(err)
	}
	for _, c := range legacy {
		sum := sha256.Sum256(append(append([]byte(nil), set.Salt...), c...))
		set.Hashes = append(set.Hashes, sum[:])
	}
	f.setRecoveryCodes(set)

	for i, typed := range []string{"abcd-efgh-jkmn", "PQRS TUVW XYZ2", " 3456789ABCDE "} {
		u, err := f.e.UseRecoveryCode(ctx, a, typed)
		if err != nil || u.Recovery.Left != 9-i || !u.MustRenewRecovery() {
			t.Fatalf("old code %q: %v %+v", typed, err, u)
		}
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, "abcd-efgh-jkmn"); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("an old code twice: %v", err)
	}
	// A 16-symbol code is no code of an old set.
	fresh, _ := randomRecoveryCode()
	if _, err := f.e.UseRecoveryCode(ctx, a, fresh); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("a new-format code against an old set: %v", err)
	}
	if set := f.openRecovery(f.e); set.Format != 0 || len(set.Key) != 0 {
		t.Fatalf("using a code changed the set's format: %d", set.Format)
	}

	codes, err := f.e.GenerateRecoveryCodes(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if set := f.openRecovery(f.e); set.Format != recoveryFormatHMAC || len(set.Key) != recoveryKeySize || len(set.Salt) != 0 {
		t.Fatalf("the replacement: format %d, %d-byte key, %d-byte salt", set.Format, len(set.Key), len(set.Salt))
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, legacy[5]); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("an old code after the new set: %v", err)
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, codes[0]); err != nil {
		t.Fatalf("a new code: %v", err)
	}
}

// A code is read however it is typed: any case, hyphens, spaces or tabs
// anywhere, Crockford's I, L and O for 1 and 0. Anything else, and any
// input longer than 64 bytes, is malformed, refused before the member's
// record is read, so before any code is hashed.
func TestRecoveryCodeNormalisation(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"7K3M-Q9TX-4HPA-2WRE", "7K3MQ9TX4HPA2WRE"},
		{"7k3m-q9tx-4hpa-2wre", "7K3MQ9TX4HPA2WRE"},
		{"7K3MQ9TX4HPA2WRE", "7K3MQ9TX4HPA2WRE"},
		{" 7k3M Q9tx\t4HPA  2wre ", "7K3MQ9TX4HPA2WRE"},
		{"7K3M--Q9TX - 4HPA-2WRE", "7K3MQ9TX4HPA2WRE"},
		{"OoIi-Ll01-ABCD-EFGH", "00111101ABCDEFGH"},
		{"7K3M-Q9TX-4HPA-2WRE" + strings.Repeat(" ", 64-19), "7K3MQ9TX4HPA2WRE"},
		// Codes of sets made before.
		{"abcd-efgh-jkmn", "abcdefghjkmn"},
		{"ABCD EFGH JKMN", "abcdefghjkmn"},
		{"uvwx-yz23-4567", "uvwxyz234567"},
	} {
		if got, err := NormalizeRecoveryCode(c.in); err != nil || got != c.want {
			t.Errorf("NormalizeRecoveryCode(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	huge := strings.Repeat("7K3M-Q9TX-4HPA-2WRE", 1<<20/19+1)
	for _, bad := range []string{
		"", "7K3M-Q9TX-4HPA-2WR", "7K3M-Q9TX-4HPA-2WRE7",
		"7K3M-Q9TX-4HPA-2WRU",                              // U is not Crockford
		"7K3M-Q9TX-4HPA-2W\x00E",                           // NUL
		"７K3M-Q9TX-4HPA-2WRE",                              // full-width digit
		"7K3M_Q9TX_4HPA_2WRE",                              // not a separator
		"abcd-efgh-jkm1",                                   // 1 was never in the old alphabet
		"7K3M-Q9TX-4HPA-2WRE" + strings.Repeat(" ", 64-18), // 65 bytes
		huge,
	} {
		if got, err := NormalizeRecoveryCode(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("NormalizeRecoveryCode(%.40q) = %q, %v; want ErrMalformed", bad, got, err)
		}
	}
	if n := testing.AllocsPerRun(10, func() { _, _ = NormalizeRecoveryCode(huge) }); n != 0 {
		t.Errorf("refusing 1 MB allocates %v times: it was read", n)
	}

	// Through the engine: every way of typing a code works, once.
	f := newFixture(t, Config{MaxFailures: 50})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrol("alice")
	plain := []string{"1010010100ABCDEF", "7K3MQ9TX4HPA2WRE", "Z0Z1Z0Z1Z0Z1Z0Z1", "GHJKMNPQRSTVWXYZ", "0123456789ABCDEF",
		"FEDCBA9876543210", "M2QX8T0VKE5RPA9W", "1HZCJG4N6SYDB3FQ", "W7PER2KAX0MT9VQC", "D5NJYH1SG8BZ3F6R"}
	set, err := newRecoverySet(plain)
	if err != nil {
		t.Fatal(err)
	}
	f.setRecoveryCodes(set)
	for i, typed := range []string{
		"IoLo-OiOi-oo-abcdef",    // aliases, odd grouping
		"7k3m q9tx 4hpa 2wre",    // lower case, spaces
		"\tz0z1-Z0z1-z0Z1-Z0Z1 ", // tab, mixed case
		"GHJKMNPQRSTVWXYZ",       // no separators
	} {
		u, err := f.e.UseRecoveryCode(ctx, a, typed)
		if err != nil || u.Recovery.Left != 9-i {
			t.Fatalf("%q: %v", typed, err)
		}
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, "1010-0101-00AB-CDEF"); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("a used code, typed another way: %v", err)
	}

	// 1 MB: refused as malformed and counted, without reading the record
	// that holds the set key.
	reads := &readLog{Store: f.st}
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(reads, kr, Config{MaxFailures: 50}, f.clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.UseRecoveryCode(ctx, a, huge); !errors.Is(err, ErrMalformed) {
		t.Fatalf("1 MB: %v", err)
	}
	if got := reads.keys(); len(got) == 0 || strings.Contains(strings.Join(got, " "), userKey("alice")) {
		t.Fatalf("1 MB: the store was asked for %q", got)
	}
}

// readLog is a store that notes the keys it is asked for.
type readLog struct {
	store.Store
	mu   sync.Mutex
	read []string
}

func (r *readLog) Get(ctx context.Context, key string) ([]byte, error) {
	r.mu.Lock()
	r.read = append(r.read, key)
	r.mu.Unlock()
	return r.Store.Get(ctx, key)
}

func (r *readLog) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	r.mu.Lock()
	r.read = append(r.read, "CompareAndSwap "+key)
	r.mu.Unlock()
	return r.Store.CompareAndSwap(ctx, key, old, value, ttl)
}

func (r *readLog) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.read...)
}

// RC-2: the store holds each code only as HMAC-SHA-256 under the set's
// own key, and that key only sealed: the whole database file contains no
// code, no key and no hash in any encoding. Re-sealing the blob under a
// new master key, as a key rotation does, moves the set: the old master
// key can then go.
func TestRecoveryStoreHoldsNoCodeOrKey(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	_, codes := f.enrolWithCodes()
	set := f.openRecovery(f.e)
	if set.Format != recoveryFormatHMAC || len(set.Key) != recoveryKeySize || len(set.Salt) != 0 || len(set.Hashes) != RecoveryCodeCount {
		t.Fatalf("set: format %d, %d-byte key, %d-byte salt, %d hashes", set.Format, len(set.Key), len(set.Salt), len(set.Hashes))
	}
	secrets := [][]byte{set.Key, []byte(hex.EncodeToString(set.Key)), []byte(base64.StdEncoding.EncodeToString(set.Key)),
		[]byte(base64.RawURLEncoding.EncodeToString(set.Key))}
	for i, c := range codes {
		norm, err := NormalizeRecoveryCode(c)
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(sha256.New, set.Key)
		m.Write([]byte(norm))
		if !hmac.Equal(set.Hashes[i], m.Sum(nil)) {
			t.Fatalf("hash %d is not HMAC-SHA-256(set key, %s)", i, norm)
		}
		secrets = append(secrets, []byte(c), []byte(norm), []byte(strings.ToLower(norm)), set.Hashes[i],
			[]byte(base64.StdEncoding.EncodeToString(set.Hashes[i])), []byte(hex.EncodeToString(set.Hashes[i])))
	}
	dump, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	record, err := f.st.Get(ctx, userKey("alice"))
	if err != nil || !bytes.Contains(dump, record) {
		t.Fatalf("the database file does not hold the record (%v): not a dump", err)
	}
	for _, s := range secrets {
		if bytes.Contains(dump, s) {
			t.Fatalf("the store holds %q in the clear", s)
		}
	}
	// Sealed for alice alone.
	u, _, _ := f.e.loadUser(ctx, "alice")
	if _, err := f.e.secret.Open(nil, u.Recovery.Sealed, recoveryAAD("bob")); err == nil {
		t.Fatal("alice's set opens as bob's")
	}

	// Rotation: the new key first, then the blob re-sealed as it stands,
	// then the old key gone.
	rotated := f.engine(Config{}, otherKey, testKey)
	if _, err := rotated.updateUser(ctx, "alice", func(u *User) error {
		plain, err := rotated.secret.Open(nil, u.Recovery.Sealed, recoveryAAD("alice"))
		if err != nil {
			return err
		}
		u.Recovery.Sealed = rotated.secret.Seal(nil, plain, recoveryAAD("alice"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	only := f.engine(Config{}, otherKey)
	if u, err := only.UseRecoveryCode(ctx, a, codes[4]); err != nil || u.Recovery.Left != RecoveryCodeCount-1 {
		t.Fatalf("a code after the old master key went: %v", err)
	}
}

// RC-5: a used code is refused again, from any session, and counted; the
// set must then be replaced, and the new set drops that demand but keeps
// when the member recovered, which the settings page shows until a method
// is added or used.
func TestRecoveryCodeUseDemandsNewSet(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	secret, codes := f.enrolWithCodes()
	u, _ := f.e.State(ctx, "alice")
	if u.MustRenewRecovery() {
		t.Fatal("a new set must be renewed")
	}
	if _, ok := u.RecoveredAt(); ok {
		t.Fatal("recovered before any code was used")
	}

	f.clk.Advance(time.Minute)
	used := f.clk.Now().UTC()
	u, err := f.e.UseRecoveryCode(ctx, a, codes[2])
	if err != nil {
		t.Fatal(err)
	}
	if !u.MustRenewRecovery() || u.Recovery.Left != RecoveryCodeCount-1 || !u.Recovery.LastUsed.Equal(used) {
		t.Fatalf("after a code: %+v", u.Recovery)
	}
	if at, ok := u.RecoveredAt(); !ok || !at.Equal(used) {
		t.Fatalf("RecoveredAt = %v, %v", at, ok)
	}
	failures := func() string { raw, _ := f.st.Get(ctx, failKey("alice")); return string(raw) }
	before := failures()
	if _, err := f.e.UseRecoveryCode(ctx, Actor{User: "alice", IP: "198.51.100.7"}, codes[2]); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("the used code again: %v", err)
	}
	if failures() == before || f.count("verify", "reason", "incorrect") != 1 {
		t.Fatal("the used code again was not counted as a wrong code")
	}

	f.clk.Advance(time.Minute)
	next, err := f.e.GenerateRecoveryCodes(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	renewed := 0
	for _, e := range f.audit.FilterMessage("recovery_codes_generated").All() {
		if e.ContextMap()["after_use"] == true {
			renewed++
		}
	}
	if renewed != 1 {
		t.Fatalf("%d renewals after a use audited, want 1", renewed)
	}
	u, _ = f.e.State(ctx, "alice")
	if u.MustRenewRecovery() || u.Recovery.Left != RecoveryCodeCount {
		t.Fatalf("after the new set: %+v", u.Recovery)
	}
	if at, ok := u.RecoveredAt(); !ok || !at.Equal(used) {
		t.Fatalf("the new set forgot the recovery: %v %v", at, ok)
	}
	for _, c := range codes {
		if _, err := f.e.UseRecoveryCode(ctx, a, c); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("an old code after the new set: %v", err)
		}
	}

	// The app again: the member has it back, so nothing to replace.
	f.clk.Advance(time.Minute)
	if u, err = f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.RecoveredAt(); ok {
		t.Fatal("RecoveredAt after the app was used again")
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, next[0]); err != nil {
		t.Fatal(err)
	}
}
