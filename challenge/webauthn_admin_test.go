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
			if _, err := r.b.RemoveCredentialFor(ctx, "root", tc.member, tc.credential, tc.why); !isField(err, tc.field) {
				t.Errorf("%+v: %v, want an error naming %s", tc, err, tc.field)
			}
		}
		if _, err := r.login(alice, blue); err != nil {
			t.Fatalf("a refused removal removed it: %v", err)
		}
		if ev := r.audited("admin_passkey_removed", "error"); len(ev) != 2 || ev[0]["reason"] != "invalid_credential" || ev[1]["reason"] != "invalid_member" {
			t.Fatalf("refused removals audited: %v", ev)
		}

		res, err := r.b.RemoveCredentialFor(ctx, "root", alice.User, c1.ID, "reported stolen, caller verified")
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
		res, err = r.a.RemoveCredentialFor(ctx, "root", alice.User, c2.ID, "lost the phone")
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
