package tests

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// SC-4: a key rotation that finishes. With the new key first and the old
// one kept, Caddy counts the member records still under the old key; a
// member who signs in moves to the new key, and still passes once the old
// key is removed. A member not seen since gets 503, and the log names the
// cause and the remedy, once however often they try. With the old key
// back they pass, and the log says when the old key can go.
func TestKeyRotationFinishes(t *testing.T) {
	const newKey = "rotation-new-key-0123456789abcdefghijkl"
	e := start(t, setup{})
	_, aliceSecret := enrolled(e, "alice")
	_, bobSecret := enrolled(e, "bob")
	withKeys := func(keys ...string) setup {
		for i, k := range keys {
			keys[i] = strconv.Quote(k)
		}
		return setup{global: fmt.Sprintf("keys %s\n\t\tstore embedded %q", strings.Join(keys, " "), e.dbPath), clock: e.clock}
	}

	rotated := start(t, withKeys(newKey, testKey))
	waitForLog(t, rotated, "keys: 2 member records are still sealed under an older key; keep it listed until this reaches 0")
	alice := rotated.browser()
	alice.login("alice")
	if r := alice.verify(rotated.code(aliceSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice with both keys: %d %s", r.status, r.body)
	}
	rotated.nextStep()

	removed := start(t, withKeys(newKey))
	waitForLog(t, removed, "keys: 1 member record is sealed under a key that is no longer configured")
	alice = removed.browser()
	alice.login("alice")
	if r := alice.verify(removed.code(aliceSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("alice after the old key went: %d %s", r.status, r.body)
	}
	if s, _ := alice.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("alice's page after the old key went: %d", s)
	}

	bob := removed.browser()
	bob.login("bob")
	for try := range 3 {
		if r := bob.verify(removed.code(bobSecret, 0), "/members/", false); r.status != http.StatusServiceUnavailable {
			t.Fatalf("bob, not seen since the rotation, try %d: %d %q", try, r.status, r.location())
		}
	}
	if s, _ := bob.upstream("/echo/x"); s == http.StatusOK {
		t.Fatal("bob reached the upstream")
	}
	var lines []string
	for _, l := range strings.Split(caddyLog(t, removed), "\n") {
		if strings.Contains(l, "sealed under a key that is no longer configured, so they get 503") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"user":"bob"`) ||
		!strings.Contains(lines[0], "put the removed key back in keys, after the current one") {
		t.Fatalf("want one log line about bob that names the remedy, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	}

	back := start(t, withKeys(newKey, testKey))
	waitForLog(t, back, "keys: 1 member record is still sealed under an older key")
	bob = back.browser()
	bob.login("bob")
	if r := bob.verify(back.code(bobSecret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("bob with the old key back: %d %s", r.status, r.body)
	}
	waitForLog(t, back, "keys: no member record is sealed under an older key; the older keys can be removed")
}
