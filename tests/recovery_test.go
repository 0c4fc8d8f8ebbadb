package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Recovery codes: shown once at the first enrolment, each works once in
// place of a code, wrong ones count toward the lockout, and a new set
// voids the old one.

// useRecovery signs in with a recovery code for returnTo.
func (b *browser) useRecovery(code, returnTo string) *response {
	b.t.Helper()
	rt := url.QueryEscape(returnTo)
	return b.postPage("/.2fa/challenge", "/.2fa/challenge?method=recovery&return_to="+rt,
		url.Values{"return_to": {returnTo}, "method": {"recovery"}, "code": {code}})
}

func TestRecoveryCodes(t *testing.T) {
	c := startCodesPolicy(t, strictPolicy, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	codes := b.recovery
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes at the first enrolment", len(codes))
	}
	seen := map[string]bool{}
	for _, code := range codes {
		if seen[code] {
			t.Fatalf("repeated code %s", code)
		}
		seen[code] = true
	}
	// A second method shows no new codes.
	c.enrolEmail(b, "/members/", 1)

	a := c.browser()
	a.login("alice")
	page := a.get("/.2fa/challenge?return_to=%2Fecho-admin%2Fx")
	if !strings.Contains(page.body, "method=recovery") {
		t.Fatalf("no way to use a recovery code: %s", page.body)
	}
	page = a.get("/.2fa/challenge?method=recovery&return_to=%2Fecho-admin%2Fx")
	if !strings.Contains(page.body, `name="method" value="recovery"`) || strings.Contains(page.body, `inputmode="numeric"`) || strings.Contains(page.body, `name="remember"`) {
		t.Fatalf("recovery form: %s", page.body)
	}
	if r := a.useRecovery("abcd-efgh-jkmn", "/echo-admin/x"); r.status != http.StatusUnauthorized {
		t.Fatalf("a wrong recovery code: %d", r.status)
	}
	// Typed loosely: upper case, spaces instead of hyphens.
	loose := strings.ToUpper(strings.ReplaceAll(codes[0], "-", " "))
	r := a.useRecovery(loose, "/echo-admin/x")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/methods?") {
		t.Fatalf("a right recovery code: %d %q: %s", r.status, r.location(), r.body)
	}
	page = a.get(r.location())
	if page.status != http.StatusOK || !strings.Contains(page.body, "recovery code") || !strings.Contains(page.body, "9") {
		t.Fatalf("methods page after a recovery code: %d: %s", page.status, page.body)
	}
	// It passes even the app-only page, so the member can get back in.
	if status, h := a.upstream("/echo-admin/x"); status != http.StatusOK || h.Get("X-2fa-Method") != "recovery" {
		t.Fatalf("app-only page after a recovery code: %d %q", status, h.Get("X-2fa-Method"))
	}
	// Used once only.
	again := c.browser()
	again.login("alice")
	if r := again.useRecovery(codes[0], "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("a used recovery code again: %d", r.status)
	}

	// New codes void the old ones, and need a recent code.
	c.clock.Advance(11 * time.Minute)
	tok := a.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	r = a.post("/.2fa/methods/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("new codes without a recent code: %d %q", r.status, r.location())
	}
	fresh := c.browser()
	fresh.login("alice")
	if r := fresh.useRecovery(codes[1], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("second code: %d", r.status)
	}
	tok = fresh.csrf("/.2fa/methods?return_to=%2Fmembers%2F")
	r = fresh.post("/.2fa/methods/recovery", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	next := recoveryCodes(r.body)
	if r.status != http.StatusOK || len(next) != 10 {
		t.Fatalf("new codes: %d, %d codes", r.status, len(next))
	}
	other := c.browser()
	other.login("alice")
	if r := other.useRecovery(codes[2], "/members/"); r.status != http.StatusUnauthorized {
		t.Fatalf("an old code after new ones: %d", r.status)
	}
	if r := other.useRecovery(next[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("a new code: %d", r.status)
	}
	for _, a := range c.audit() {
		for _, code := range append(codes, next...) {
			for _, v := range a {
				if s, ok := v.(string); ok && strings.Contains(strings.ReplaceAll(s, "-", ""), strings.ReplaceAll(code, "-", "")) {
					t.Fatalf("a recovery code in the audit log: %v", a)
				}
			}
		}
	}
}

// Wrong recovery codes share the account's lockout with every other code.
func TestRecoveryCodeGuessesLockOut(t *testing.T) {
	c := startCodes(t, "")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	codes := b.recovery
	a := c.browser()
	a.login("alice")
	tok := a.csrf("/.2fa/challenge?method=recovery&return_to=%2Fmembers%2F")
	try := func(code string) int {
		return a.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"recovery"}, "code": {code}}).status
	}
	for i := range 5 {
		if s := try("2222-3333-4444"); s != http.StatusUnauthorized && !(i == 4 && s == http.StatusTooManyRequests) {
			t.Fatalf("wrong code %d: %d", i+1, s)
		}
	}
	if s := try(codes[0]); s != http.StatusTooManyRequests {
		t.Fatalf("right code while locked: %d", s)
	}
}

// With two or fewer codes left the methods page warns.
func TestRecoveryCodesRunningLow(t *testing.T) {
	c := startCodes(t, "max_failures 50")
	b := c.browser()
	b.login("alice")
	b.enrol("/members/")
	codes := b.recovery
	for i := range 8 {
		x := c.browser()
		x.login("alice")
		if r := x.useRecovery(codes[i], "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("code %d: %d", i, r.status)
		}
		page := x.get("/.2fa/methods?return_to=%2Fmembers%2F")
		low := strings.Contains(page.body, `class="notice warning"`)
		if left := 9 - i; low != (left <= 2) {
			t.Errorf("%d left: warning shown %v", left, low)
		}
	}
}

// RC-6: a recovery code as long as a form allows is refused as malformed
// and counted, a megabyte is refused before the form is read, and neither
// hashes anything or locks the member out by itself.
func TestRecoveryCodeInputBounded(t *testing.T) {
	c := startCodes(t, "")
	alice, _ := enrolled(c.env, "alice")
	codes := alice.recovery

	x := c.browser()
	x.login("alice")
	long := strings.Repeat(strings.ToLower(codes[0])+" ", 500)
	r := x.useRecovery(long, "/members/")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Enter a recovery code, like 7K3M-Q9TX-4HPA-2WRE.") {
		t.Fatalf("a 10 KB code: %d: %s", r.status, r.body)
	}
	tok := x.csrf("/.2fa/challenge?method=recovery&return_to=%2Fmembers%2F")
	huge := url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"recovery"}, "code": {strings.Repeat("7", 1<<20)}}
	if r := x.post("/.2fa/challenge", huge); r.status != http.StatusBadRequest {
		t.Fatalf("a 1 MB code: %d", r.status)
	}
	malformed := 0
	for _, a := range c.audit() {
		if a["event"] == "verify" && a["method"] == "recovery" {
			if a["reason"] != "malformed" {
				t.Fatalf("audit: %v", a)
			}
			malformed++
		}
	}
	if malformed != 1 {
		t.Fatalf("%d malformed recovery codes audited, want the 10 KB one", malformed)
	}
	// The code itself, typed right, still works.
	if r := x.useRecovery(codes[0], "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("the code after the long inputs: %d", r.status)
	}
}
