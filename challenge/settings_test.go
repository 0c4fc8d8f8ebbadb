package challenge

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// recoveryFormat is how codes are shown: four groups of four Crockford
// base32 symbols.
var recoveryFormat = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$`)

func TestRecoveryCodesGenerateAndUse(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	if _, err := f.e.GenerateRecoveryCodes(ctx, a); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("codes before enrolment: %v", err)
	}
	f.enrol("alice")
	codes, err := f.e.GenerateRecoveryCodes(ctx, a)
	if err != nil || len(codes) != RecoveryCodeCount {
		t.Fatalf("%d codes, %v", len(codes), err)
	}
	for _, c := range codes {
		if !recoveryFormat.MatchString(c) {
			t.Fatalf("code %q", c)
		}
	}
	// Nothing readable in the store.
	raw, err := f.st.Get(ctx, userKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if strings.Contains(string(raw), c) || strings.Contains(string(raw), strings.ReplaceAll(c, "-", "")) {
			t.Fatal("a recovery code in the store")
		}
	}
	u, err := f.e.UseRecoveryCode(ctx, a, " "+strings.ToLower(codes[3])+" ")
	if err != nil || u.Recovery.Left != 9 {
		t.Fatalf("use: %v, left %v", err, u.Recovery)
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, codes[3]); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("used code again: %v", err)
	}
	if _, err := f.e.UseRecoveryCode(ctx, Actor{User: "bob"}, codes[4]); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("alice's code for bob: %v", err)
	}
	for _, bad := range []string{"", "abc", "abcd-efgh-jkm0", strings.Repeat("a", 100), "ａｂｃｄ-efgh-jkmn"} {
		if _, err := f.e.UseRecoveryCode(ctx, Actor{User: "carol"}, bad); !errors.Is(err, ErrMalformed) && !isLocked(err) {
			t.Fatalf("%q: %v", bad, err)
		}
	}

	// A new set voids the old one.
	next, err := f.e.GenerateRecoveryCodes(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, codes[5]); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("old set: %v", err)
	}
	if u, err := f.e.UseRecoveryCode(ctx, a, next[0]); err != nil || u.Recovery.Left != 9 {
		t.Fatalf("new set: %v", err)
	}
	if f.count("recovery_codes_generated", "replaced", "true") != 0 && f.count("recovery_codes_generated", "result", "success") != 2 {
		t.Fatal("generation not audited")
	}

	// Codes survive a key rotation: the new key first, the old kept.
	rotated := f.engine(Config{}, otherKey, testKey)
	if _, err := rotated.UseRecoveryCode(ctx, a, next[1]); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

// Wrong recovery codes count toward the account lockout.
func TestRecoveryCodeGuessesCount(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrol("alice")
	codes, err := f.e.GenerateRecoveryCodes(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		_, _ = f.e.UseRecoveryCode(ctx, a, "2222-3333-4444")
	}
	if _, err := f.e.UseRecoveryCode(ctx, a, codes[0]); !isLocked(err) {
		t.Fatalf("right code after five wrong: %v", err)
	}
}

// CC-3: the same recovery code in parallel → one success.
func TestRecoveryCodeParallelOnce(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrol("alice")
	for round := range 20 {
		codes, err := f.e.GenerateRecoveryCodes(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		gate := make(chan struct{})
		results := make([]error, 10)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				_, results[i] = f.e.UseRecoveryCode(ctx, Actor{User: "alice"}, codes[0])
			}()
		}
		close(gate)
		wg.Wait()
		ok := 0
		for _, err := range results {
			if err == nil {
				ok++
			} else if !errors.Is(err, ErrCodeInvalid) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d successes", round, ok)
		}
	}
}

func TestRemoveMethod(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	u := f.enrolCode(a, MethodSMS, alicePhone, false)
	if _, err := f.e.GenerateRecoveryCodes(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.SetDefault(ctx, a, MethodSMS); err != nil {
		t.Fatal(err)
	}
	epoch := u.Epoch
	if _, err := f.e.RemoveMethod(ctx, a, MethodTOTP, false); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("a method not enrolled: %v", err)
	}
	u, err := f.e.RemoveMethod(ctx, a, MethodSMS, false)
	if err != nil || u.SMS != nil || u.Default != "" || u.Epoch != epoch+1 || u.Recovery == nil {
		t.Fatalf("removing SMS: %v %+v", err, u)
	}
	if _, err := f.e.RemoveMethod(ctx, a, MethodEmail, false); !errors.Is(err, ErrLastMethod) {
		t.Fatalf("the last method: %v", err)
	}
	u, err = f.e.RemoveMethod(ctx, a, MethodEmail, true)
	if err != nil || u.Enrolled() || u.Recovery != nil {
		t.Fatalf("the last method, allowed: %v %+v", err, u)
	}
	if f.count("method_removed", "result", "success") != 2 || f.count("method_removed", "reason", "last_method") != 1 {
		t.Fatal("removals not audited")
	}
}

func TestDevicesListedAndRevoked(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1", UserAgent: "Mozilla/5.0 (Windows NT 10.0) Chrome/130.0"}
	ids := [][16]byte{{1}, {2}, {3}}
	for _, id := range ids {
		if _, err := f.e.RememberDevice(ctx, a, id, time.Hour, MethodTOTP); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Second)
	}
	list, err := f.e.Devices(ctx, "alice")
	if err != nil || len(list) != 3 || list[0].ID != "03000000000000000000000000000000" || list[0].IP != "192.0.2.1" {
		t.Fatalf("devices: %v %+v", err, list)
	}
	if err := f.e.ForgetDevice(ctx, a, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.e.UseDevice(ctx, a, ids[0], time.Hour); !errors.Is(err, ErrDeviceUnknown) {
		t.Fatalf("a forgotten device: %v", err)
	}
	if list, _ := f.e.Devices(ctx, "alice"); len(list) != 2 {
		t.Fatalf("%d devices after forgetting one", len(list))
	}
	if err := f.e.ForgetAllDevices(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, _, err := f.e.UseDevice(ctx, a, id, time.Hour); !errors.Is(err, ErrDeviceUnknown) {
			t.Fatalf("device after forgetting all: %v", err)
		}
	}
	if u, _ := f.e.State(ctx, "alice"); len(u.Devices) != 0 {
		t.Fatalf("index left: %v", u.Devices)
	}
	// Expired devices drop out of the index by themselves.
	if _, err := f.e.RememberDevice(ctx, a, ids[0], time.Minute, MethodTOTP); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(2 * time.Minute)
	if list, _ := f.e.Devices(ctx, "alice"); len(list) != 0 {
		t.Fatalf("expired device listed: %+v", list)
	}
}

func TestRecentActivity(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50, MaxAddressFailures: -1})
	a := Actor{User: "alice", IP: "192.0.2.1", UserAgent: "test browser"}
	secret := f.enrol("alice")
	for range 40 {
		_, _ = f.e.VerifyTOTP(ctx, a, "000000")
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); err != nil {
		t.Fatal(err)
	}
	list, err := f.e.RecentActivity(ctx, "alice")
	// The wrong codes fold into one entry, so the enrolment stays listed.
	if err != nil || len(list) != 3 {
		t.Fatalf("%d events, %v: %+v", len(list), err, list)
	}
	if list[0].Event != "verify" || list[0].Result != "success" || list[0].Method != MethodTOTP || list[0].IP != "192.0.2.1" {
		t.Fatalf("newest event %+v", list[0])
	}
	if list[1].Result != "failure" || list[1].Count != 40 || list[2].Event != "enrol_confirm" {
		t.Fatalf("older events %+v", list[1:])
	}
	// From many addresses they do not fold, and the list stays bounded.
	for i := range 40 {
		_, _ = f.e.VerifyTOTP(ctx, Actor{User: "alice", IP: fmt.Sprintf("198.51.100.%d", i)}, "000000")
	}
	if list, _ := f.e.RecentActivity(ctx, "alice"); len(list) != activityKept {
		t.Fatalf("%d events kept", len(list))
	}
	if other, _ := f.e.RecentActivity(ctx, "bob"); len(other) != 0 {
		t.Fatalf("bob sees %d events", len(other))
	}
}

func TestTOTPReplacement(t *testing.T) {
	f := newFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	if _, err := f.e.StartTOTPReplacement(ctx, a, "Example", "alice", "flow"); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("replacing with no app: %v", err)
	}
	old := f.enrol("alice")
	before, _ := f.e.State(ctx, "alice")
	en, err := f.e.StartTOTPReplacement(ctx, a, "Example", "alice", "flow")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.StartTOTP(ctx, a, "Example", "alice", "flow2"); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Fatalf("a plain start with the app enrolled: %v", err)
	}
	// Starting again gives a fresh secret; confirming it swaps the app.
	en, err = f.e.StartTOTPReplacement(ctx, a, "Example", "alice", "flow")
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.e.ConfirmTOTP(ctx, a, "flow", f.code(en.Secret, 0))
	if err != nil || u.Epoch != before.Epoch+1 {
		t.Fatalf("confirm: %v, epoch %d → %d", err, before.Epoch, u.Epoch)
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(old, 0)); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("old secret: %v", err)
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(en.Secret, 0)); err != nil {
		t.Fatalf("new secret: %v", err)
	}
}

// Right codes do not count toward an address's limit: an office behind
// one address signs in all day; wrong codes from it still lock it.
func TestAddressLimitCountsWrongCodesOnly(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 50, MaxAddressFailures: 5})
	office := "192.0.2.10"
	secret := f.enrol("alice")
	for i := range 12 {
		f.clk.Advance(30 * time.Second)
		if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", IP: office}, f.code(secret, 0)); err != nil {
			t.Fatalf("sign-in %d from the office: %v", i+1, err)
		}
	}
	for i := range 5 {
		_, err := f.e.VerifyTOTP(ctx, Actor{User: fmt.Sprintf("u%d", i), IP: office}, "000000")
		if i < 4 && isLocked(err) {
			t.Fatalf("wrong code %d locked the address early", i+1)
		}
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.e.VerifyTOTP(ctx, Actor{User: "alice", IP: office}, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("after five wrong codes from the address: %v", err)
	}
}
