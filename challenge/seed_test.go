package challenge

import (
	"encoding/base32"
	"strings"
	"testing"
)

// Seeded members are members the engine knows as enrolled: their app
// codes verify (once per step), their email follows the identity, the
// member list counts them, and a second load keeps what the first wrote.
func TestSeedWritesEnrolledMembers(t *testing.T) {
	f := newFixture(t, Config{})
	secret := func(i int) []byte { return []byte(strings.Repeat(string(rune('a'+i)), 20)) }
	members := []SeedMember{
		{ID: "load-0", TOTPSecret: secret(0), Email: true},
		{ID: "load-1", TOTPSecret: secret(1), Email: true},
		{ID: "load-2", TOTPSecret: secret(2)},
	}
	b, err := f.e.Seed(members, f.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.e.WriteSeed(ctx, b); err != nil || n != 3 {
		t.Fatalf("WriteSeed wrote %d, %v; want 3", n, err)
	}

	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret(1))
	a := Actor{User: "load-1", IP: "192.0.2.1"}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(b32, 0)); err != nil {
		t.Fatalf("the seeded member's app code: %v", err)
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(b32, 0)); err == nil {
		t.Fatal("the same step verified twice")
	}
	u, err := f.e.State(ctx, "load-0")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.e.Destination(u, MethodEmail, "load-0@example.com"); got == "" || u.DefaultMethod() != MethodTOTP {
		t.Fatalf("load-0: email to %q, default %q; want the identity's address and totp", got, u.DefaultMethod())
	}
	if u, _ := f.e.State(ctx, "load-2"); u.Has(MethodEmail) {
		t.Fatal("load-2 was seeded without email but has it")
	}

	c, err := f.e.CountMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Members != 3 || c.Enrolled != 3 || c.ByMethod[MethodTOTP] != 3 || c.ByMethod[MethodEmail] != 2 {
		t.Fatalf("counts %+v; want 3 members, 3 enrolled, 3 app, 2 email", c)
	}
	page, err := f.e.Members(ctx, "", 10, MembersFilter{})
	if err != nil || len(page.Members) != 3 {
		t.Fatalf("member list: %+v, %v", page, err)
	}

	// Again: nothing written, and load-1's used step is kept.
	if n, err := f.e.WriteSeed(ctx, b); err != nil || n != 0 {
		t.Fatalf("second WriteSeed wrote %d, %v; want 0", n, err)
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(b32, 0)); err == nil {
		t.Fatal("reseeding forgot the step load-1 used")
	}
}

func TestSeedRefusesBadMembers(t *testing.T) {
	f := newFixture(t, Config{})
	for _, tc := range []struct {
		m    SeedMember
		want string
	}{
		{SeedMember{ID: "", TOTPSecret: make([]byte, 20)}, "member ID"},
		{SeedMember{ID: "a\x00b", TOTPSecret: make([]byte, 20)}, "member ID"},
		{SeedMember{ID: strings.Repeat("x", maxMemberID+1), TOTPSecret: make([]byte, 20)}, "member ID"},
		{SeedMember{ID: "short", TOTPSecret: make([]byte, 10)}, "TOTPSecret"},
	} {
		_, err := f.e.Seed([]SeedMember{tc.m}, f.clk.Now())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Seed(%.20q): %v; want an error naming %s", tc.m.ID, err, tc.want)
		}
	}
}
