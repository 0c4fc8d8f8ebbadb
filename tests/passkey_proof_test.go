package tests

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// What a stolen password with one weaker code must not reach through
// passkeys: a passkeys-only path, the admin pages, or the owner's own
// settings.

// A member with the app and a passkey: one app code phished in real time
// does not add the attacker's passkey. Passkeys are added, renamed and
// removed only in a session verified by a passkey (or a recovery code,
// for a member who lost theirs), so the passkeys-only path stays shut.
func TestPasskeyAddedOnlyWithAPasskeySession(t *testing.T) {
	e := start(t, setup{policy: strongPolicy, admin: true})
	key := testwebauthn.New(e.origin())
	b := e.browser()
	b.login("alice")
	secret := b.enrol("/echo/x")
	b.registerPasskey(key, strongPath, "alice key")
	if s, h := b.upstream(strongPath); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("alice with her passkey: %d %q", s, h.Get("X-2fa-Method"))
	}

	c := e.browser()
	c.login("alice")
	e.nextStep()
	if r := c.verify(e.code(secret, 0), "/echo/x", false); r.status != http.StatusSeeOther {
		t.Fatalf("an app code: %d", r.status)
	}
	tok := c.csrfToken(t)
	got := c.postJSON("/.2fa/webauthn/register/begin?return_to="+url.QueryEscape(strongPath), tok, nil).answer(t, http.StatusForbidden)
	if got["error"] != "step_up_required" || !strings.HasPrefix(got["redirect"], "/.2fa/challenge?") {
		t.Fatalf("adding a passkey in an app session: %v", got)
	}
	if r := c.get("/.2fa/enrol/webauthn"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("the passkey set-up page in an app session: %d %q", r.status, r.location())
	}
	for _, path := range []string{"/.2fa/webauthn/rename", "/.2fa/webauthn/remove"} {
		r := c.post(path, url.Values{"csrf": {c.csrf("/.2fa/methods")}, "credential": {"x"}, "name": {"y"}, "confirm": {"yes"}})
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
			t.Fatalf("%s in an app session: %d %q", path, r.status, r.location())
		}
	}
	c.refusedHere(strongPath, "the app session")
	if u := memberState(t, e, "alice"); len(u.Credentials) != 1 {
		t.Fatalf("alice has %d passkeys, want her own alone", len(u.Credentials))
	}

	// Her own passkey session adds one.
	b.registerPasskey(testwebauthn.New(e.origin()), strongPath, "spare key")
	if u := memberState(t, e, "alice"); len(u.Credentials) != 2 {
		t.Fatalf("alice has %d passkeys after adding a spare with her passkey, want 2", len(u.Credentials))
	}
}

// A session remembers that it came from an unproven passkey. bob (no
// admin yet) has a passkey; a stolen password with one recovery code
// plants another (unproven), signs in with it, removes it and adds an
// app: the app is unproven too, so it will not open the admin pages if
// bob becomes an admin, although his remaining passkey is proven.
func TestPasskeySessionFromAnUnprovenKeyProvesNothing(t *testing.T) {
	s := adminPagesSetup(t)
	s.policy = passkeyPolicy
	e := start(t, s)
	bob := e.browser()
	bob.login("bob")
	got := bob.registerPasskey(testwebauthn.New(e.origin()), "/echo/x", "bob key")
	r := bob.get(got["redirect"])
	r = bob.post("/.2fa/recovery", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/echo/x"}})
	codes := recoveryCodes(r.body)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes after a first passkey", len(codes))
	}

	x := e.browser()
	x.login("bob")
	if r := x.useRecovery(codes[0], "/.2fa/methods"); r.status != http.StatusSeeOther {
		t.Fatalf("a recovery code: %d", r.status)
	}
	x.renewRecovery("/.2fa/methods")
	planted := testwebauthn.New(e.origin())
	id := x.registerPasskey(planted, "/members/", "B")["credential"]
	if n := auditOf(e, "webauthn_registered", "bob", map[string]any{"unproven": true}); n != 1 {
		t.Fatalf("%d unproven passkeys audited, want 1", n)
	}
	options, tok := x.passkeyBegin("/members/")
	x.passkeyFinish(planted, options, tok, "?return_to=%2Fmembers%2F").answer(t, http.StatusOK)
	rm := x.post("/.2fa/webauthn/remove", url.Values{"csrf": {x.csrf("/.2fa/methods")}, "credential": {id}, "confirm": {"yes"}})
	if rm.status != http.StatusSeeOther || !strings.Contains(rm.location(), "removed=webauthn") {
		t.Fatalf("removing the planted passkey: %d %q", rm.status, rm.location())
	}
	x.enrol("/members/")
	if n := auditOf(e, "enrol_confirm", "bob", map[string]any{"method": "totp", "unproven": true}); n != 1 {
		t.Fatalf("%d unproven apps audited, want 1: the app was added in a session from an unproven passkey", n)
	}
}

// An admin with a proven app is guarded whichever admin_methods says: a
// stolen password with a recovery code plants no passkey (which would
// otherwise guard the settings against their owner, with
// admin_methods webauthn), and the owner's app still opens them.
func TestPlantedPasskeyRefusedForAGuardedAdmin(t *testing.T) {
	s := adminPagesSetup(t, "admin_methods webauthn")
	s.policy = passkeyPolicy
	e := start(t, s)
	alice, secret := enrolled(e, "alice")
	x := e.browser()
	x.login("alice")
	if r := x.useRecovery(alice.recovery[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("a recovery code: %d", r.status)
	}
	x.renewRecovery("/members/")
	got := x.postJSON("/.2fa/webauthn/register/begin?return_to=%2Fmembers%2F", x.csrfToken(t), nil).answer(t, http.StatusForbidden)
	if got["error"] != "step_up_required" {
		t.Fatalf("planting a passkey after a recovery code: %v", got)
	}
	if r := x.get("/.2fa/challenge?return_to=%2F.2fa%2Fmethods"); r.status != http.StatusOK || strings.Contains(r.body, "method=recovery") {
		t.Fatalf("the step-up for a guarded admin's settings offers a recovery code: %d\n%s", r.status, r.body)
	}

	v := e.browser()
	v.login("alice")
	e.nextStep()
	if r := v.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice's app code: %d", r.status)
	}
	if r := v.get("/.2fa/methods"); r.status != http.StatusOK {
		t.Fatalf("alice's settings after a fresh code from her app: %d %q", r.status, r.location())
	}
}

// memberFactors is what the admin API says of member's factors.
type memberFactors struct {
	Methods     []string          `json:"methods"`
	Credentials []json.RawMessage `json:"credentials"`
}

func memberState(t *testing.T, e *env, member string) memberFactors {
	t.Helper()
	status, body, _ := adminGet(t, e, "/two-factor/members?id="+url.QueryEscape(member))
	var m memberFactors
	if status != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("member %s: %d %s", member, status, body)
	}
	return m
}

// Removing the passkey method as a whole (methods/remove) is a passkey
// route too: otherwise one phished app code clears the member's passkeys,
// and the attacker's then is a first one, added with the app session.
func TestPasskeysNotClearedWithoutAPasskeySession(t *testing.T) {
	for _, admin := range []bool{false, true} {
		s := adminPagesSetup(t, "admin_methods totp webauthn")
		s.policy = strongPolicy
		e := start(t, s)
		member := "bob"
		if admin {
			member = "alice"
		}
		b := e.browser()
		b.login(member)
		secret := b.enrol("/echo/x")
		b.registerPasskey(testwebauthn.New(e.origin()), strongPath, member+" key")

		c := e.browser()
		c.login(member)
		e.nextStep()
		if r := c.verify(e.code(secret, 0), "/echo/x", false); r.status != http.StatusSeeOther {
			t.Fatalf("%s: an app code: %d", member, r.status)
		}
		rm := c.post("/.2fa/methods/remove", url.Values{"csrf": {c.csrf("/.2fa/methods")}, "method": {"webauthn"}, "confirm": {"yes"}})
		if rm.status != http.StatusSeeOther || !strings.HasPrefix(rm.location(), "/.2fa/challenge?") {
			t.Fatalf("%s: removing every passkey in an app session: %d %q, want the challenge", member, rm.status, rm.location())
		}
		if u := memberState(t, e, member); len(u.Credentials) != 1 {
			t.Fatalf("%s has %d passkeys, want their own", member, len(u.Credentials))
		}
		got := c.postJSON("/.2fa/webauthn/register/begin?return_to="+url.QueryEscape(strongPath), c.csrfToken(t), nil).answer(t, http.StatusForbidden)
		if got["error"] != "step_up_required" {
			t.Fatalf("%s: adding a passkey in an app session: %v", member, got)
		}
	}
}
