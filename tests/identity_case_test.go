package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-twofactor/twofactor/internal/testnet"
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

// With id_case fold, the admin endpoint folds the IDs it is given as the
// handler does: "Alice" from the member site's list is the member stored
// as "alice", and the answer gives the IDs as they were sent.
func TestIDCaseFoldOnTheAdminEndpoint(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s := adminSetup(filepath.Join(t.TempDir(), "twofactor.db"), []string{testKey})
	s.extra = fmt.Sprintf("basic_auth {\n\t\tAlice %s\n\t}", hash)
	s.policy = "identity header {http.auth.user.id} {\n\t\tid_case fold\n\t}\n\tprotect /echo/*"
	e := start(t, s)
	b := e.browser()
	b.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("Alice:pw")))
	b.enrol("/echo/x")

	out, code := twoFactorCLI(t, "members", "reconcile", "--address", e.admin, "--json", writeIDs(t, "ALICE", "Bob"))
	var rec struct {
		Enrolled  []string `json:"enrolled"`
		NeverSeen []string `json:"never_seen"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || len(rec.Enrolled) != 1 || rec.Enrolled[0] != "ALICE" ||
		len(rec.NeverSeen) != 1 || rec.NeverSeen[0] != "Bob" {
		t.Fatalf("reconcile under fold: exit %d\n%s", code, out)
	}
	if out, code := twoFactorCLI(t, "members", "show", "--address", e.admin, "Alice"); code != 0 || !strings.Contains(out, "totp") {
		t.Fatalf("members show Alice under fold: exit %d\n%s", code, out)
	}
	if status, msg := adminPost(t, e, "/two-factor/members/end-sessions", `{"member": "Alice", "reason": "lost phone"}`); status != http.StatusOK {
		t.Fatalf("end-sessions of Alice under fold: %d %s", status, msg)
	}
	if r := b.get("/echo/x"); r.status != http.StatusFound {
		t.Fatalf("Alice's session after end-sessions: %d", r.status)
	}
}

// writeIDs writes a member list, one ID a line, and returns its path.
func writeIDs(t *testing.T, ids ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "members.txt")
	if err := os.WriteFile(file, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// The admin pages fold the IDs an admin types as the identity does: a
// member's page, a reconcile list and an ID search find "alice" from
// "ALICE".
func TestIDCaseFoldOnTheAdminPages(t *testing.T) {
	e := start(t, setup{
		global: "admins {\n\t\t\tboss approver\n\t\t}",
		policy: "identity header X-Member {\n\t\tid_case fold\n\t}\n\tprotect /members/* /echo/*",
	})
	as := func(id string) *browser {
		b := e.browser()
		b.header.Set("X-Member", id)
		return b
	}
	as("Alice").enrol("/members/")
	boss := as("boss")
	boss.enrol("/members/")

	if r := boss.get("/.2fa/admin/member?id=ALICE"); r.status != http.StatusOK || !strings.Contains(r.body, "<h1>Member alice</h1>") {
		t.Fatalf("member page of ALICE under fold: %d", r.status)
	}
	if r := boss.get("/.2fa/admin/members?q=AL"); r.status != http.StatusOK || !strings.Contains(r.body, "admin/member?id=alice") {
		t.Fatalf("ID search AL under fold: %d", r.status)
	}
	tok := boss.csrf("/.2fa/admin/reconcile")
	r := boss.post("/.2fa/admin/reconcile", url.Values{"csrf": {tok}, "ids": {"ALICE\nBob"}})
	enrolledPart, _, _ := strings.Cut(r.body, "admin_reconcile_seen")
	if r.status != http.StatusOK || !strings.Contains(r.body, ">ALICE<") {
		t.Fatalf("reconcile under fold: %d\n%s", r.status, enrolledPart)
	}
}

// Where sites differ in id_case, the admin endpoint takes IDs as typed:
// "Bob" and "bob" are two members of the exact site, and an action on one
// never reaches the other.
func TestIDCaseMixedSitesOnTheAdminEndpoint(t *testing.T) {
	other := testnet.FreePort(t)
	s := adminSetup(filepath.Join(t.TempDir(), "twofactor.db"), []string{testKey})
	s.policy = "identity header X-Member\n\tprotect /members/* /echo/*"
	s.sites = fmt.Sprintf("http://127.0.0.1:%d {\n\ttwo_factor {\n\t\tidentity header X-Member {\n\t\t\tid_case fold\n\t\t}\n\t\tprotect /x/*\n\t}\n\trespond \"ok\" 200\n}\n", other)
	e := start(t, s)
	capital := e.browser()
	capital.header.Set("X-Member", "Bob")
	capital.enrol("/echo/x")
	lower := e.browser()
	lower.header.Set("X-Member", "bob")
	lower.enrol("/echo/x")
	if status, msg := adminPost(t, e, "/two-factor/members/end-sessions", `{"member": "Bob", "reason": "Bob's laptop stolen"}`); status != http.StatusOK {
		t.Fatalf("end-sessions: %d %s", status, msg)
	}
	if r := capital.get("/echo/x"); r.status == http.StatusOK {
		t.Errorf("Bob's session survived end-sessions of Bob")
	}
	if r := lower.get("/echo/x"); r.status != http.StatusOK {
		t.Errorf("bob's session was ended by end-sessions of Bob: %d", r.status)
	}
}

// A member site whose session cookie is split into parts the ASP.NET Core
// way (".AspNetCore.Cookies=chunks-2" and the parts in ...C1 and ...C2):
// the marker is the same for every member, so the identity's answers are
// keyed by the parts, and one member's answer never serves another.
func TestIdentityChunkedSessionCookie(t *testing.T) {
	const name = ".AspNetCore.Cookies"
	var calls atomic.Int64
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		c, err := r.Cookie(name + "C1")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		member, _, _ := strings.Cut(c.Value, "-")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q}`, member)
	}))
	t.Cleanup(site.Close)
	e := start(t, setup{policy: fmt.Sprintf("\n\tidentity endpoint %s/me {\n\t\tsession_cookie %s\n\t}\n\tprotect /echo/* {\n\t\tenrolment optional\n\t}\n", site.URL, name)})
	user := func(member string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, e.base+"/echo/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Cookie", name+"=chunks-2; "+name+"C1="+member+"-part-1; "+name+"C2="+member+"-part-2")
		req.Header.Set("Sec-Fetch-Mode", "cors") // a script's request, not a page load: no set-up reminder
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var body struct{ Headers http.Header }
		if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v %.300s", member, resp.StatusCode, err, raw)
		}
		return body.Headers.Get("X-2fa-User")
	}
	for _, member := range []string{"alice", "bob", "alice", "bob"} {
		if got := user(member); got != member {
			t.Fatalf("%s's request reached the site as %q", member, got)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("who-am-I called %d times for two members, twice each: want 2 (each answer cached by its parts)", n)
	}
}
