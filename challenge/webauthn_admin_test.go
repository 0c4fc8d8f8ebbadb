package challenge

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// An admin's view of a member's passkeys carries what tells them apart
// and nothing that verifies; an admin's removal of one ends it at once,
// on the other instance too, keeps the others, and may take the last,
// as a reset may. Every refusal names its field.
func TestAdminRemovesPasskey(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		blue, phone := testwebauthn.New(waOrigin), testwebauthn.New(waOrigin)
		blue.Counter = 5
		phone.Flags |= testwebauthn.FlagBE | testwebauthn.FlagBS
		c1 := r.register(alice, blue, "Blue key")
		c2 := r.register(alice, phone, "Phone")
		r.clk.Advance(60e9)
		if _, err := r.login(alice, blue); err != nil {
			t.Fatal(err)
		}

		d, err := r.a.Member(ctx, alice.User)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Credentials) != 2 || d.Credentials[0].ID != c1.ID || d.Credentials[0].Name != "Blue key" || d.Credentials[1].Name != "Phone" {
			t.Fatalf("credentials: %+v", d.Credentials)
		}
		if got := d.Credentials[0]; got.LastUsed == nil || !got.LastUsed.Equal(r.clk.Now()) || got.SignCount != 6 || got.BackupEligible {
			t.Fatalf("the used security key: %+v", got)
		}
		if got := d.Credentials[1]; got.LastUsed != nil || !got.BackupEligible || !got.BackedUp {
			t.Fatalf("the synced passkey: %+v", got)
		}
		raw, _ := json.Marshal(d)
		for _, secret := range [][]byte{blue.CredID, phone.CredID, c1.Sealed} {
			for _, enc := range []string{base64.RawURLEncoding.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
				if strings.Contains(string(raw), enc) {
					t.Fatalf("the member's details carry credential material: %s", raw)
				}
			}
		}
		if strings.Contains(string(raw), `"sealed"`) {
			t.Fatalf("the member's details carry the sealed credential: %s", raw)
		}
		page, err := r.a.Members(ctx, "", 10, MembersFilter{Method: MethodWebAuthn})
		if err != nil || len(page.Members) != 1 || page.Members[0].ID != alice.User {
			t.Fatalf("members with a passkey: %+v, %v", page, err)
		}
		if c, err := r.a.CountMembers(ctx); err != nil || c.ByMethod[MethodWebAuthn] != 1 {
			t.Fatalf("counts: %+v, %v", c, err)
		}

		for _, tc := range []struct {
			member, credential, why, field string
		}{
			{alice.User, c1.ID, " ", "reason"},
			{alice.User, "", "lost", "credential"},
			{alice.User, strings.Repeat("0", 32), "lost", "credential"},
			{bob.User, c1.ID, "lost", "member"},
			{"", c1.ID, "lost", "member"},
		} {
			if _, err := r.b.RemoveCredentialFor(ctx, "root", tc.member, tc.credential, tc.why, false); !isField(err, tc.field) {
				t.Errorf("%+v: %v, want an error naming %s", tc, err, tc.field)
			}
		}
		if _, err := r.login(alice, blue); err != nil {
			t.Fatalf("a refused removal removed it: %v", err)
		}
		if ev := r.audited("admin_passkey_removed", "error"); len(ev) != 2 || ev[0]["reason"] != "invalid_credential" || ev[1]["reason"] != "invalid_member" {
			t.Fatalf("refused removals audited: %v", ev)
		}

		res, err := r.b.RemoveCredentialFor(ctx, "root", alice.User, c1.ID, "reported stolen, caller verified", false)
		if err != nil {
			t.Fatal(err)
		}
		if res.Passkey != "Blue key" || len(res.Methods) != 0 {
			t.Fatalf("result: %+v", res)
		}
		// Refused at once on the other instance, the other key still
		// signs in.
		if _, err := r.login(alice, blue); !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("the removed key on the other instance: %v, want ErrCredentialRefused", err)
		}
		if _, err := r.login(alice, phone); err != nil {
			t.Fatalf("the other key: %v", err)
		}
		ev := r.audited("admin_passkey_removed", "success")
		if len(ev) != 1 || ev[0]["actor"] != "root" || ev[0]["admin_reason"] != "reported stolen, caller verified" ||
			ev[0]["credential"] != c1.ID[:8] || ev[0]["method"] != MethodWebAuthn {
			t.Fatalf("audit: %v", ev)
		}

		// The last one goes too, with the recovery codes: the member
		// enrols again.
		res, err = r.a.RemoveCredentialFor(ctx, "root", alice.User, c2.ID, "lost the phone", false)
		if err != nil || res.Passkey != "Phone" || !slices.Equal(res.Methods, []string{MethodWebAuthn}) {
			t.Fatalf("removing the last: %+v, %v", res, err)
		}
		u, err := r.a.State(ctx, alice.User)
		if err != nil || u.Enrolled() || u.Recovery != nil || u.WebAuthn != nil {
			t.Fatalf("after the last: %+v, %v", u, err)
		}
		if _, err := r.b.BeginLogin(ctx, alice, flowToken("after")); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("sign-in after the last went: %v", err)
		}
		if c, err := r.a.CountMembers(ctx); err != nil || c.ByMethod[MethodWebAuthn] != 0 {
			t.Fatalf("counts after: %+v, %v", c, err)
		}
	})
}

// Where resets need a second admin's approval, one admin's removal of a
// member's last passkey would be a reset by one admin: it is refused,
// nothing changes (recovery codes do not count as a factor, and stay),
// and the refusal is audited with the admin and the reason. A passkey
// whose member keeps another factor, a passkey or the app, still goes.
func TestAdminPasskeyRemovalKeepsResetApproval(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	blue, phone := testwebauthn.New(waOrigin), testwebauthn.New(waOrigin)
	c1 := r.register(alice, blue, "Blue key")
	c2 := r.register(alice, phone, "Phone")
	if _, err := f.e.GenerateRecoveryCodes(ctx, alice); err != nil {
		t.Fatal(err)
	}

	if _, err := f.e.RemoveCredentialFor(ctx, "sam", alice.User, c1.ID, "key reported stolen", true); err != nil {
		t.Fatalf("a passkey beside another: %v", err)
	}
	_, err := f.e.RemoveCredentialFor(ctx, "sam", alice.User, c2.ID, "lost the phone", true)
	if !errors.Is(err, ErrResetNeedsApproval) || !strings.Contains(err.Error(), "request a reset") {
		t.Fatalf("the last passkey under reset approval: %v, want ErrResetNeedsApproval", err)
	}
	u, err := f.e.State(ctx, alice.User)
	if err != nil || !u.Has(MethodWebAuthn) || len(u.WebAuthn.Credentials) != 1 || u.Recovery == nil {
		t.Fatalf("after the refusal: %+v, %v", u, err)
	}
	r.clk.Advance(60e9)
	if _, err := r.login(alice, phone); err != nil {
		t.Fatalf("the refused removal stopped the key: %v", err)
	}
	ev := r.audited("admin_passkey_removed", "refused")
	if len(ev) != 1 || ev[0]["actor"] != "sam" || ev[0]["admin_reason"] != "lost the phone" || ev[0]["reason"] != "reset_approval" ||
		ev[0]["credential"] != c2.ID[:8] {
		t.Fatalf("refusal audited: %v", ev)
	}

	// bob keeps the app: his only passkey may go.
	f.enrol(bob.User)
	c3 := r.register(bob, testwebauthn.New(waOrigin), "Laptop")
	res, err := f.e.RemoveCredentialFor(ctx, "sam", bob.User, c3.ID, "laptop stolen", true)
	if err != nil || res.Passkey != "Laptop" || !slices.Equal(res.Methods, []string{MethodWebAuthn}) {
		t.Fatalf("a passkey beside the app: %+v, %v", res, err)
	}
	if u, err := f.e.State(ctx, bob.User); err != nil || !u.Has(MethodTOTP) || u.Has(MethodWebAuthn) {
		t.Fatalf("bob after: %+v, %v", u, err)
	}
}
