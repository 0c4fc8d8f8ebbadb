package tests

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// With id_case fold, the spellings a member site may echo ("alice",
// "Alice") are one member: one enrolment, one lockout.
func TestIDCaseFoldIsOneMember(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		idCase   string
		sameUser bool
	}{{"fold", true}, {"exact", false}} {
		t.Run(c.idCase, func(t *testing.T) {
			e := start(t, setup{
				extra: fmt.Sprintf("basic_auth {\n\t\talice %s\n\t\tAlice %s\n\t}", hash, hash),
				policy: fmt.Sprintf(`identity header {http.auth.user.id} {
		id_case %s
	}
	protect /echo/*`, c.idCase),
			})
			as := func(user string) *browser {
				b := e.browser()
				b.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":pw")))
				return b
			}
			secret := as("alice").enrol("/echo/x")

			b := as("Alice")
			r := b.get("/echo/x")
			if !c.sameUser {
				// Another account: not enrolled, so sent to set one up.
				if r.status != http.StatusFound || r.location() != "/.2fa/enrol?return_to=%2Fecho%2Fx" {
					t.Fatalf("exact: Alice got %d %q, want enrolment", r.status, r.location())
				}
				return
			}
			if r.status != http.StatusFound || r.location() != "/.2fa/challenge?return_to=%2Fecho%2Fx" {
				t.Fatalf("fold: Alice got %d %q, want alice's challenge", r.status, r.location())
			}
			if r := b.verify(e.code(secret, 0), "/echo/x", false); r.status != http.StatusSeeOther {
				t.Fatalf("fold: Alice with alice's code: %d %s", r.status, r.body)
			}
			if r := b.get("/echo/x"); r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("fold: after verifying: %d", r.status)
			}
		})
	}
}
