package challenge

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

var (
	testKey  = []byte("engine test key engine test key!!")
	otherKey = []byte("another engine key another engine")
	ctx      = context.Background()
)

type fixture struct {
	t     *testing.T
	e     *Engine
	clk   *clock.Fake
	st    *embedded.Store
	path  string
	audit *observer.ObservedLogs
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_700_000_010, 0))
	path := filepath.Join(t.TempDir(), "twofactor.db")
	st, err := embedded.Open(path, embedded.Options{Now: clk.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, clk: clk, st: st, path: path}
	f.e = f.engine(cfg, testKey)
	return f
}

func (f *fixture) engine(cfg Config, keys ...[]byte) *Engine {
	f.t.Helper()
	kr, err := keyring.New(keys...)
	if err != nil {
		f.t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	f.audit = logs
	e, err := New(f.st, kr, cfg, f.clk.Now, zap.New(core))
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// code returns the authenticator app's code for secret at the fixture time
// shifted by offset steps.
func (f *fixture) code(secret string, offset int64) string {
	f.t.Helper()
	step := f.clk.Now().Unix()/30 + offset
	c, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func wrong(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// enrol enrols user and returns the base32 secret, moving the clock to the
// next time step so a fresh code is available.
func (f *fixture) enrol(user string) string {
	f.t.Helper()
	a := Actor{User: user, IP: "192.0.2.1"}
	en, err := f.e.StartTOTP(ctx, a, "Example", user, "flow-"+user)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.e.ConfirmTOTP(ctx, a, "flow-"+user, f.code(en.Secret, 0)); err != nil {
		f.t.Fatal(err)
	}
	f.clk.Advance(30 * time.Second)
	return en.Secret
}

func isLocked(err error) bool {
	var l *LockedError
	return errors.As(err, &l)
}

func (f *fixture) count(event, field, value string) int {
	n := 0
	for _, e := range f.audit.FilterMessage(event).All() {
		if e.ContextMap()[field] == value {
			n++
		}
	}
	return n
}

// RFC 6238 Appendix B vectors, through the same code path verification uses.
func TestRFC6238Vectors(t *testing.T) {
	f := newFixture(t, Config{Digits: 8, Skew: SkewZero})
	seeds := map[otp.Algorithm]string{
		otp.AlgorithmSHA1:   "12345678901234567890",
		otp.AlgorithmSHA256: "12345678901234567890123456789012",
		otp.AlgorithmSHA512: "1234567890123456789012345678901234567890123456789012345678901234",
	}
	vectors := []struct {
		unix int64
		alg  otp.Algorithm
		code string
	}{
		{59, otp.AlgorithmSHA1, "94287082"}, {59, otp.AlgorithmSHA256, "46119246"}, {59, otp.AlgorithmSHA512, "90693936"},
		{1111111109, otp.AlgorithmSHA1, "07081804"}, {1111111109, otp.AlgorithmSHA256, "68084774"}, {1111111109, otp.AlgorithmSHA512, "25091201"},
		{1111111111, otp.AlgorithmSHA1, "14050471"}, {1111111111, otp.AlgorithmSHA256, "67062674"}, {1111111111, otp.AlgorithmSHA512, "99943326"},
		{1234567890, otp.AlgorithmSHA1, "89005924"}, {1234567890, otp.AlgorithmSHA256, "91819424"}, {1234567890, otp.AlgorithmSHA512, "93441116"},
		{2000000000, otp.AlgorithmSHA1, "69279037"}, {2000000000, otp.AlgorithmSHA256, "90698825"}, {2000000000, otp.AlgorithmSHA512, "38618901"},
		{20000000000, otp.AlgorithmSHA1, "65353130"}, {20000000000, otp.AlgorithmSHA256, "77737706"}, {20000000000, otp.AlgorithmSHA512, "47863826"},
	}
	for _, v := range vectors {
		if _, ok := f.e.matchStep([]byte(seeds[v.alg]), v.code, v.alg, time.Unix(v.unix, 0)); !ok {
			t.Errorf("t=%d %s: %s not accepted", v.unix, v.alg, v.code)
		}
		if _, ok := f.e.matchStep([]byte(seeds[v.alg]), wrong(v.code), v.alg, time.Unix(v.unix, 0)); ok {
			t.Errorf("t=%d %s: altered code accepted", v.unix, v.alg)
		}
	}
}

// The skew window is the current step plus or minus Skew, nothing wider.
func TestSkewBoundaries(t *testing.T) {
	seed := []byte("12345678901234567890")
	for _, tc := range []struct {
		skew   int
		accept map[int64]bool
	}{
		{1, map[int64]bool{-1: false, 0: true, 29: true, 30: true, 59: true, 60: true, 89: true, 90: false, 119: false}},
		{SkewZero, map[int64]bool{-1: false, 0: false, 29: false, 30: true, 59: true, 60: false, 89: false, 90: false}},
	} {
		f := newFixture(t, Config{Digits: 8, Skew: tc.skew})
		for unix, want := range tc.accept {
			_, ok := f.e.matchStep(seed, "94287082", otp.AlgorithmSHA1, time.Unix(unix, 0))
			if ok != want {
				t.Errorf("skew %d, t=%d: accepted=%v, want %v", tc.skew, unix, ok, want)
			}
		}
	}
}

func TestEnrolThenVerify(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	if _, err := f.e.VerifyTOTP(ctx, a, "123456"); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("before enrolment: %v", err)
	}
	en, err := f.e.StartTOTP(ctx, a, "Example Members", "alice@example.com", "flow")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	if len(raw) < 20 {
		t.Fatalf("secret is %d bytes, want at least 20", len(raw))
	}
	if !strings.HasPrefix(en.URI, "otpauth://totp/") || !strings.Contains(en.URI, "issuer=Example") {
		t.Fatalf("uri %q", en.URI)
	}
	if len(en.QRCode) < 100 || string(en.QRCode[1:4]) != "PNG" {
		t.Fatal("QR code is not a PNG")
	}
	if u, _ := f.e.State(ctx, "alice"); u.Enrolled() {
		t.Fatal("enrolled before confirmation")
	}
	if _, err := f.e.ConfirmTOTP(ctx, a, "flow", wrong(f.code(en.Secret, 0))); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("wrong confirmation: %v", err)
	}
	if again, err := f.e.PendingTOTP(ctx, a, "flow"); err != nil || again.Secret != en.Secret {
		t.Fatalf("pending after wrong code: %v", err)
	}
	confirm := f.code(en.Secret, 0)
	u, err := f.e.ConfirmTOTP(ctx, a, "flow", confirm)
	if err != nil || !u.Enrolled() || u.Epoch != 1 {
		t.Fatalf("confirm: %v %+v", err, u)
	}
	// The confirming code cannot pass the challenge (RP-3).
	if _, err := f.e.VerifyTOTP(ctx, a, confirm); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("confirming code reused: %v", err)
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(en.Secret, 0)); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if _, err := f.e.StartTOTP(ctx, a, "x", "y", "flow2"); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Fatalf("second enrolment: %v", err)
	}
	if f.count("totp_replay", "result", "refused") != 1 {
		t.Fatal("replay not audited")
	}
}

func TestPendingEnrolmentExpiresAndIsBoundToFlow(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice"}
	en, err := f.e.StartTOTP(ctx, a, "Example", "alice", "flow")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.ConfirmTOTP(ctx, a, "another-flow", f.code(en.Secret, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("other flow: %v", err)
	}
	f.clk.Advance(10 * time.Minute)
	if _, err := f.e.ConfirmTOTP(ctx, a, "flow", f.code(en.Secret, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: %v", err)
	}
	if u, _ := f.e.State(ctx, "alice"); u.Enrolled() {
		t.Fatal("enrolled from an expired secret")
	}
	if _, err := f.st.Get(ctx, pendingKey("alice")); err == nil {
		t.Fatal("expired pending secret still readable")
	}
}

func TestEnrolmentStartsAreLimited(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice"}
	for i := range maxEnrolStarts {
		if _, err := f.e.StartTOTP(ctx, a, "Example", "alice", "flow"); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
	}
	var limited *LimitedError
	if _, err := f.e.StartTOTP(ctx, a, "Example", "alice", "flow"); !errors.As(err, &limited) {
		t.Fatalf("start %d: %v", maxEnrolStarts+1, err)
	}
	// Other members are not affected, and the limit passes.
	if _, err := f.e.StartTOTP(ctx, Actor{User: "bob"}, "Example", "bob", "flow"); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(10 * time.Minute)
	if _, err := f.e.StartTOTP(ctx, a, "Example", "alice", "flow"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestAddressLimitCanBeOff(t *testing.T) {
	f := newFixture(t, Config{MaxAddressFailures: -1, MaxFailures: 50})
	secret := f.enrol("alice")
	for range 30 {
		if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", IP: "192.0.2.1"}, wrong(f.code(secret, 0))); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("address limit applied although off: %v", err)
		}
	}
}

func TestCheckKeyRewritesUnderCurrentKey(t *testing.T) {
	f := newFixture(t, Config{})
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine(Config{}, otherKey, testKey).CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// Once rewritten, the old key alone no longer reads it, the new one does.
	if _, err := f.engine(Config{}, otherKey).CheckKey(ctx, ""); err != nil {
		t.Fatalf("new key alone after rotation: %v", err)
	}
}

func TestReplayAndForwardOnly(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	c := f.code(secret, 0)
	if _, err := f.e.VerifyTOTP(ctx, a, c); err != nil {
		t.Fatal(err)
	}
	// Same code again, later in the window, from another address.
	f.clk.Advance(29 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", IP: "198.51.100.7"}, c); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("replay accepted: %v", err)
	}
	// A code for the previous step, still inside the skew window.
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, -1)); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("older step accepted: %v", err)
	}
	// Replays count as failures.
	if n, _ := f.st.Get(ctx, failKey("alice")); string(n) != "2" {
		t.Fatalf("failure count %q, want 2", n)
	}
}

func TestLockoutAfterMaxFailures(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	for i := range 5 {
		// Spread over addresses: the account limit does not care (BF-2).
		a := Actor{User: "alice", IP: "198.51.100." + string(rune('1'+i))}
		_, err := f.e.VerifyTOTP(ctx, a, wrong(f.code(secret, 0)))
		if i < 4 && !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
		if i == 4 && !isLocked(err) {
			t.Fatalf("guess 5 should lock: %v", err)
		}
	}
	a := Actor{User: "alice", IP: "203.0.113.9"}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("correct code during lockout: %v", err)
	}
	if err := f.e.Locked(ctx, a); !isLocked(err) {
		t.Fatalf("Locked: %v", err)
	}
	f.clk.Advance(15*time.Minute + time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatalf("after lockout: %v", err)
	}
	if f.count("lockout", "result", "account_locked") != 1 {
		t.Fatal("lockout not audited")
	}
}

func TestSuccessClearsFailures(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	for range 4 {
		if _, err := f.e.VerifyTOTP(ctx, a, wrong(f.code(secret, 0))); !errors.Is(err, ErrCodeInvalid) {
			t.Fatal(err)
		}
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(30 * time.Second)
	for range 4 {
		if _, err := f.e.VerifyTOTP(ctx, a, wrong(f.code(secret, 0))); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("not expected to lock: %v", err)
		}
	}
}

func TestMalformedCodesCountAndNormalize(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	a := Actor{User: "alice"}
	for _, in := range []string{"", "12345", "1234567", "２８７０８２", "12345\x00", "abcdef", strings.Repeat("1", 1<<20)} {
		if _, err := f.e.VerifyTOTP(ctx, a, in); !errors.Is(err, ErrMalformed) && !isLocked(err) {
			t.Fatalf("%q: %v", in[:min(len(in), 12)], err)
		}
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("malformed input did not count toward the lockout: %v", err)
	}

	for in, want := range map[string]string{" 287082 ": "287082", "287 082": "287082", "287-082": "287082"} {
		if got, err := NormalizeCode(in, 6); err != nil || got != want {
			t.Errorf("NormalizeCode(%q) = %q, %v", in, got, err)
		}
	}
}

// Parallel guesses cannot get past the limit: at most MaxFailures are
// evaluated (BF-3).
func TestParallelGuessesStayWithinLimit(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	bad := wrong(f.code(secret, 0))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			<-start
			_, _ = f.e.VerifyTOTP(ctx, Actor{User: "alice"}, bad)
		})
	}
	close(start)
	wg.Wait()
	if n := f.count("verify", "reason", "incorrect"); n > 5 {
		t.Fatalf("%d guesses evaluated, limit 5", n)
	}
	if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice"}, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("not locked after 50 parallel guesses: %v", err)
	}
}

// The same code submitted in parallel is accepted exactly once (CC-1).
func TestParallelSameCodeAcceptedOnce(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50, MaxAddressFailures: 1000})
	secret := f.enrol("alice")
	for iter := range 20 {
		c := f.code(secret, 0)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for range 10 {
			wg.Go(func() {
				<-start
				if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice"}, c); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if ok != 1 {
			t.Fatalf("iteration %d: %d successes, want 1", iter, ok)
		}
		f.clk.Advance(30 * time.Second)
	}
}

func TestSecretsEncryptedAndBoundToUser(t *testing.T) {
	f := newFixture(t, Config{})
	secret := f.enrol("alice")
	f.enrol("bob")
	raw, err := f.st.Get(ctx, userKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), string(plain)) {
		t.Fatal("secret stored in the clear")
	}
	// Copy alice's sealed secret into bob's record: bob must fail closed.
	alice, _, _ := f.e.loadUser(ctx, "alice")
	if _, err := f.e.updateUser(ctx, "bob", func(u *User) error { u.TOTP.Secret = alice.TOTP.Secret; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.VerifyTOTP(ctx, Actor{User: "bob"}, f.code(secret, 0)); !errors.Is(err, ErrUnreadable) {
		t.Fatalf("bob with alice's secret: %v", err)
	}
	// A record stored under another user's key is refused.
	if err := f.st.Set(ctx, userKey("mallory"), raw, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.VerifyTOTP(ctx, Actor{User: "mallory"}, f.code(secret, 0)); err == nil || errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("copied record: %v", err)
	}
	for _, e := range f.audit.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, secret) || strings.Contains(s, "otpauth")) {
				t.Fatalf("audit log contains secret material: %v", e.ContextMap())
			}
		}
	}
}

func TestCheckKeyAndRotation(t *testing.T) {
	f := newFixture(t, Config{})
	if _, err := f.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	secret := f.enrol("alice")
	if _, err := f.engine(Config{}, otherKey).CheckKey(ctx, ""); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	rotated := f.engine(Config{}, otherKey, testKey)
	if _, err := rotated.CheckKey(ctx, ""); err != nil {
		t.Fatalf("rotated keys: %v", err)
	}
	if _, err := rotated.VerifyTOTP(ctx, Actor{User: "alice"}, f.code(secret, 0)); err != nil {
		t.Fatalf("verify after rotation: %v", err)
	}
}

func TestRememberedDevices(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	f.enrol("bob")
	a := Actor{User: "alice", IP: "192.0.2.1", UserAgent: strings.Repeat("x", 1000)}
	id := [16]byte{1}
	exp, err := f.e.RememberDevice(ctx, a, id, 30*24*time.Hour, MethodTOTP)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(f.clk.Now().Add(30 * 24 * time.Hour)) {
		t.Fatalf("expiry %v", exp)
	}
	if _, _, err := f.e.UseDevice(ctx, a, id, 400*24*time.Hour); err != nil {
		t.Fatalf("use: %v", err)
	}
	if _, _, err := f.e.UseDevice(ctx, Actor{User: "bob"}, id, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("other user: %v", err)
	}
	if _, _, err := f.e.UseDevice(ctx, a, [16]byte{2}, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := f.e.ForgetDevice(ctx, a, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.e.UseDevice(ctx, a, id, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("forgotten: %v", err)
	}

	// A path with a shorter limit refuses an older device.
	if _, err := f.e.RememberDevice(ctx, a, id, 30*24*time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(2 * time.Hour)
	if _, _, err := f.e.UseDevice(ctx, a, id, time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("older than the path allows: %v", err)
	}
	if _, _, err := f.e.UseDevice(ctx, a, id, 3*time.Hour); err != nil {
		t.Fatalf("within the path's limit: %v", err)
	}

	// Expiry is the server's, not the cookie's.
	if _, err := f.e.RememberDevice(ctx, a, id, time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	if _, _, err := f.e.UseDevice(ctx, a, id, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("expired: %v", err)
	}

	// A newer factor epoch ends older devices.
	if _, err := f.e.RememberDevice(ctx, a, id, time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error { u.Epoch++; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.e.UseDevice(ctx, a, id, 400*24*time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("older epoch: %v", err)
	}
}

func TestRevokeSession(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice"}
	sid := [16]byte{9}
	if err := f.e.RevokeSession(ctx, a, sid, f.clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, err := f.e.State(ctx, "alice")
	if err != nil || !u.SessionRevoked(sid) || u.SessionRevoked([16]byte{8}) {
		t.Fatalf("revoked: %v %+v", err, u)
	}
	// Entries are pruned once the session could no longer be used anyway.
	f.clk.Advance(2 * time.Hour)
	if err := f.e.RevokeSession(ctx, a, [16]byte{7}, f.clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, _ = f.e.State(ctx, "alice")
	if len(u.RevokedSessions) != 1 {
		t.Fatalf("not pruned: %v", u.RevokedSessions)
	}
}

func TestStateCacheSeesOwnWritesAndExpires(t *testing.T) {
	f := newFixture(t, Config{})
	if u, _ := f.e.State(ctx, "alice"); u.Enrolled() {
		t.Fatal("enrolled")
	}
	f.enrol("alice")
	if u, _ := f.e.State(ctx, "alice"); !u.Enrolled() {
		t.Fatal("cache did not see the engine's own write")
	}
	// A write by another engine on the same store shows after CacheTTL.
	other := f.engine(Config{}, testKey)
	if _, err := other.updateUser(ctx, "alice", func(u *User) error { u.Epoch = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.e.State(ctx, "alice"); u.Epoch == 42 {
		t.Fatal("cache not used")
	}
	f.clk.Advance(2 * time.Second)
	if u, _ := f.e.State(ctx, "alice"); u.Epoch != 42 {
		t.Fatal("cache entry outlived CacheTTL")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Period: 10 * time.Second}, "totp_period"},
		{Config{Skew: 3}, "totp_skew"},
		{Config{Digits: 7}, "totp_digits"},
		{Config{MaxFailures: 100}, "max_failures"},
		{Config{EnrolTTL: 2 * time.Hour}, "enrolment_timeout"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want error about %s", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// A notice of a change arriving while a read of the older record is still
// in flight: the older record must not be kept, or the change would be
// missed until it expired.
func TestUserCacheNotice(t *testing.T) {
	const ttl = time.Minute
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := newUserCache(UserCacheSize, ttl, false, clk.Now)
	now := clk.Now()
	c.put(&User{ID: "alice", Rev: 3}, now, ttl, false)
	c.changed("alice", 3, now, ttl) // this instance's own write
	if _, ok := c.get("alice", now, time.Minute); !ok {
		t.Fatal("a notice of the revision already held dropped it")
	}
	c.changed("alice", 5, now, ttl)
	if _, ok := c.get("alice", now, time.Minute); ok {
		t.Fatal("a copy older than the notice is still served")
	}
	c.put(&User{ID: "alice", Rev: 4}, now, ttl, false) // the slow read
	if _, ok := c.get("alice", now, time.Minute); ok {
		t.Fatal("a read older than the notice was kept")
	}
	c.put(&User{ID: "alice", Rev: 5}, now, ttl, false)
	if u, ok := c.get("alice", now, time.Minute); !ok || u.Rev != 5 {
		t.Fatalf("the announced revision was not kept: %v %v", u, ok)
	}
	// A store restored from a backup counts from lower revisions: once
	// the TTL has passed, what the cache held no longer stands in the way.
	clk.Advance(ttl)
	later := clk.Now()
	c.put(&User{ID: "alice", Rev: 2}, later, ttl, false)
	if u, ok := c.get("alice", later, ttl); !ok || u.Rev != 2 {
		t.Fatalf("an older revision read after the TTL was not kept: %v %v", u, ok)
	}
	c.restarted(later)
	if _, ok := c.get("alice", later, time.Minute); ok {
		t.Fatal("forget kept a copy")
	}
}

// The notice and this instance's own writes hold their revision even when
// far more members than the cache's bound pass through before the slow
// read finishes: evicting them to make room would let the older read in.
func TestUserCacheNoticeOutlivesFlood(t *testing.T) {
	const ttl = 2 * time.Second
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	c := newUserCache(MinCacheSize, ttl, false, clk.Now)
	now := clk.Now()
	c.changed("alice", 5, now, ttl)                 // another instance's write
	c.put(&User{ID: "bob", Rev: 7}, now, ttl, true) // this instance's write
	for i := range 20 * MinCacheSize {
		id := fmt.Sprintf("member-%d", i)
		c.put(&User{ID: id, Rev: 1}, now, ttl, false)
		c.get(id, now, ttl)
	}
	c.put(&User{ID: "alice", Rev: 4}, now, ttl, false) // reads that began before the writes
	c.put(&User{ID: "bob", Rev: 6}, now, ttl, false)
	if u, ok := c.get("alice", now, ttl); ok {
		t.Errorf("alice: revision %d kept after a notice of revision 5", u.Rev)
	}
	if u, ok := c.get("bob", now, ttl); !ok || u.Rev != 7 {
		t.Errorf("bob: got %v, %t; want this instance's revision 7", u, ok)
	}
	// The pin ends with the TTL, as the notice's meaning does.
	clk.Advance(ttl)
	if _, ok := c.get("bob", clk.Now(), ttl); ok {
		t.Error("bob's pinned copy outlived its TTL")
	}
}

// A member read all the time keeps their cached record while a stream of
// members many times the bound passes through: the store sees only the
// cold ones, never a cliff.
func TestUserCacheKeepsHotMember(t *testing.T) {
	f := newFixture(t, Config{CacheSize: MinCacheSize})
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error { u.Default = MethodTOTP; return nil }); err != nil {
		t.Fatal(err)
	}
	// Past the TTL the written (pinned) copy is gone; the next read is
	// cached like any other.
	f.clk.Advance(f.e.cfg.CacheTTL)
	if u, err := f.e.State(ctx, "alice"); err != nil || u.Rev != 1 {
		t.Fatalf("State: %v %v", u, err)
	}
	// Gone from the store: only the cache can still answer with it.
	if err := f.st.Delete(ctx, userKey("alice")); err != nil {
		t.Fatal(err)
	}
	for i := range 20 * MinCacheSize {
		if _, err := f.e.State(ctx, fmt.Sprintf("member-%d", i)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if u, err := f.e.State(ctx, "alice"); err != nil || u.Rev != 1 {
				t.Fatalf("after %d other members: alice read from the store again (%v, %v)", i, u, err)
			}
		}
	}
	if n := f.e.users.c.Len(); n > MinCacheSize {
		t.Errorf("%d records cached, bound %d", n, MinCacheSize)
	}
	// The record expires with the TTL all the same.
	f.clk.Advance(f.e.cfg.CacheTTL)
	if u, err := f.e.State(ctx, "alice"); err != nil || u.Rev != 0 {
		t.Fatalf("after the TTL: %v %v; want the store's answer (no record)", u, err)
	}
}

func TestCacheSizeValidation(t *testing.T) {
	for _, n := range []int{-1, MinCacheSize - 1, MaxCacheSize + 1} {
		err := Config{CacheSize: n}.Validate()
		if err == nil || !strings.Contains(err.Error(), "member_cache_size") {
			t.Errorf("CacheSize %d: %v; want an error naming member_cache_size", n, err)
		}
	}
	if err := (Config{CacheSize: MinCacheSize}).Validate(); err != nil {
		t.Error(err)
	}
}

// RD-6: once the key check value is in the store, its absence means the
// store lost its data; a member without a record is then not "never
// enrolled" but unknown, and the engine fails closed. A store started
// afresh by another instance is not the one this engine knew either.
func TestStoreLost(t *testing.T) {
	f := newFixture(t, Config{})
	if _, err := f.e.State(ctx, "bob"); err != nil {
		t.Fatalf("before the key check: %v", err)
	}
	id, err := f.e.CheckKey(ctx, "")
	if err != nil || len(id) != 32 {
		t.Fatalf("first check: %q %v", id, err)
	}
	if again, err := f.engine(Config{}, testKey).CheckKey(ctx, id); err != nil || again != id {
		t.Fatalf("the same store again: %q %v", again, err)
	}
	if err := f.e.Intact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Delete(ctx, keyCheckKey); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Intact(ctx); !errors.Is(err, ErrStoreLost) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("after the loss: %v", err)
	}
	if _, err := f.e.StartTOTP(ctx, Actor{User: "carol"}, "Example", "carol", "flow"); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("enrolment after the loss: %v", err)
	}
	f.clk.Advance(time.Minute)
	if _, err := f.e.State(ctx, "bob"); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("state after the loss: %v", err)
	}
	// An instance that knew the store does not start it afresh ...
	if _, err := f.engine(Config{}, testKey).CheckKey(ctx, id); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("a known store found empty: %v", err)
	}
	// ... one that did not know it does, and the others stay closed.
	fresh, err := f.engine(Config{}, testKey).CheckKey(ctx, "")
	if err != nil || fresh == id {
		t.Fatalf("started afresh: %q %v", fresh, err)
	}
	if err := f.e.Intact(ctx); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("after another instance started the store afresh: %v", err)
	}
	if _, err := f.engine(Config{}, testKey).CheckKey(ctx, id); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("a store with another ID: %v", err)
	}
}

// A store written before check values carried an ID gets one, and keeps it.
func TestCheckKeyGivesOldStoresAnID(t *testing.T) {
	f := newFixture(t, Config{})
	if err := f.st.Set(ctx, keyCheckKey, f.e.secret.Seal(nil, []byte(keyCheckText), []byte(keyCheckKey)), 0); err != nil {
		t.Fatal(err)
	}
	id, err := f.e.CheckKey(ctx, "")
	if err != nil || id == "" {
		t.Fatalf("old check value: %q %v", id, err)
	}
	if again, err := f.engine(Config{}, testKey).CheckKey(ctx, id); err != nil || again != id {
		t.Fatalf("checked again: %q %v", again, err)
	}
}

// RD-10: every key of one member carries the same hash tag, so Redis
// Cluster keeps them in one slot.
func TestKeysShareHashTag(t *testing.T) {
	const user = "alice{x}:y"
	want := tag(user)
	for _, k := range []string{userKey(user), activityKey(user), codeKey(user), cooldownKey(user, MethodEmail),
		deviceKey(user, [16]byte{1}), failKey(user), lockKey(user), pendingKey(user)} {
		open := strings.IndexByte(k, '{')
		end := strings.IndexByte(k, '}')
		if open < 0 || end < open || k[open:end+1] != want {
			t.Errorf("key %q: hash tag %q, want %q", k, k[max(open, 0):end+1], want)
		}
	}
}

// A device remembered after the app is refused where only passkeys are
// accepted, audited with the reason, not marked used, and still good
// where the app is accepted.
func TestRememberedDeviceForTheMethodsAccepted(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	id := [16]byte{7}
	if _, err := f.e.RememberDevice(ctx, a, id, 30*24*time.Hour, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	passkeysOnly := func(m string) bool { return m == MethodWebAuthn }
	if _, _, err := f.e.UseDeviceFor(ctx, a, id, 30*24*time.Hour, passkeysOnly, false); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("a device remembered after the app, where only passkeys are accepted: %v", err)
	}
	if n := f.count("device_used", "reason", "method_not_accepted"); n != 1 {
		t.Fatalf("%d refusals audited with method_not_accepted, want 1", n)
	}
	devices, err := f.e.Devices(ctx, "alice")
	if err != nil || len(devices) != 1 || !devices[0].LastUsed.IsZero() && !devices[0].LastUsed.Before(f.clk.Now()) {
		t.Fatalf("the refused device was marked used, or forgotten: %v %+v", err, devices)
	}
	_, method, err := f.e.UseDeviceFor(ctx, a, id, 30*24*time.Hour, func(m string) bool { return m == MethodTOTP }, false)
	if err != nil || method != MethodTOTP {
		t.Fatalf("the same device where the app is accepted: %q %v", method, err)
	}
}
