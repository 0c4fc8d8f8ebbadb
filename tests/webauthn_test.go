package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// Passkeys through Caddy: the JSON routes a page's script calls around
// navigator.credentials, driven with the software authenticator.

// passkeyPolicy is the default policy with passkeys on. The relying
// party must be a domain name, so site_url names the gateway's port on
// localhost, while the test's requests go to 127.0.0.1: the gateway
// takes the relying party from site_url only, never from the Host.
const passkeyPolicy = defaultPolicy + "\n\tsite_url http://localhost:{PORT}\n\twebauthn\n"

// origin is the origin the authenticator's "browser" reports.
func (e *env) origin() string { return "http://localhost:" + strconv.Itoa(e.port) }

// postJSON posts body to a JSON route the way the pages' script does:
// fetch from the page's origin, the CSRF token in its header, everything
// else in the query.
func (b *browser) postJSON(path, csrf string, body []byte) *response {
	b.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, b.e.base+path, bytes.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", b.e.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return b.do(req)
}

// answer decodes a JSON route's answer, failing unless it has status.
func (r *response) answer(t testing.TB, status int) map[string]string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store", cc)
	}
	var out map[string]string
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, r.body)
	}
	return out
}

// registerPasskey registers a for the signed-in member, going to
// returnTo, and returns the JSON answer.
func (b *browser) registerPasskey(a *testwebauthn.Authenticator, returnTo, name string) map[string]string {
	b.t.Helper()
	q := "?return_to=" + url.QueryEscape(returnTo)
	tok := b.csrfToken(b.t)
	r := b.postJSON("/.2fa/webauthn/register/begin"+q, tok, nil)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"publicKey"`) {
		b.t.Fatalf("register/begin: %d %s", r.status, r.body)
	}
	cred, err := a.Create([]byte(r.body))
	if err != nil {
		b.t.Fatal(err)
	}
	return b.postJSON("/.2fa/webauthn/register/finish"+q+"&name="+url.QueryEscape(name), tok, cred).answer(b.t, http.StatusOK)
}

// passkeyLogin begins a sign-in in this browser and returns the options
// and the CSRF token it used.
func (b *browser) passkeyBegin(returnTo string) ([]byte, string) {
	b.t.Helper()
	q := "?return_to=" + url.QueryEscape(returnTo)
	tok := b.csrf("/.2fa/challenge" + q)
	r := b.postJSON("/.2fa/webauthn/login/begin"+q, tok, nil)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"allowCredentials"`) {
		b.t.Fatalf("login/begin: %d %s", r.status, r.body)
	}
	return []byte(r.body), tok
}

// passkeyFinish answers options with a and posts the assertion.
func (b *browser) passkeyFinish(a *testwebauthn.Authenticator, options []byte, tok, query string) *response {
	b.t.Helper()
	assertion, err := a.Get(options)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.postJSON("/.2fa/webauthn/login/finish"+query, tok, assertion)
}

// A member registers a passkey as their first method, makes their
// recovery codes, and signs in with it in another browser: the upstream
// sees the method webauthn. The rename, removal and the refusals follow.
func TestPasskeyRegisterAndSignIn(t *testing.T) {
	e := start(t, setup{policy: passkeyPolicy})
	key := testwebauthn.New(e.origin())

	b := e.browser()
	b.login("alice")
	got := b.registerPasskey(key, "/echo/x", "  YubiKey 5 ")
	if want := "/.2fa/recovery?return_to=%2Fecho%2Fx"; got["redirect"] != want || got["name"] != "YubiKey 5" || len(got["credential"]) != 32 {
		t.Fatalf("first passkey: %v, want the recovery codes at %s", got, want)
	}
	credential := got["credential"]
	// The recovery-codes step every first enrolment gets.
	r := b.get(got["redirect"])
	if r.status != http.StatusOK {
		t.Fatalf("recovery page: %d %s", r.status, r.body)
	}
	r = b.post("/.2fa/recovery", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {"/echo/x"}})
	if codes := recoveryCodes(r.body); r.status != http.StatusOK || len(codes) != 10 {
		t.Fatalf("making the first recovery codes: %d, %d codes", r.status, len(codes))
	}
	if s, h := b.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("after registering: %d %q", s, h.Get("X-2fa-Method"))
	}

	// Another browser signs in with it, remembered where the path allows.
	c := e.browser()
	c.login("alice")
	if r := c.get("/echo/x"); r.status/100 != 3 || !strings.Contains(r.location(), "/.2fa/challenge") {
		t.Fatalf("a new browser: %d %q, want the challenge", r.status, r.location())
	}
	options, tok := c.passkeyBegin("/echo/x")
	got = c.passkeyFinish(key, options, tok, "?return_to=%2Fecho%2Fx&remember=1").answer(t, http.StatusOK)
	if got["redirect"] != "/echo/x" {
		t.Fatalf("sign-in: %v, want the redirect to /echo/x", got)
	}
	if s, h := c.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" || h.Get("X-2fa-User") != "alice" {
		t.Fatalf("signed in with the passkey: %d %q %q", s, h.Get("X-2fa-Method"), h.Get("X-2fa-User"))
	}
	if c.cookie("__2fa_device") == nil && !hasDeviceCookie(c) {
		t.Fatal("remember=1 on a path that allows it: no remembered device")
	}
	if n := auditCount(e, "verify", map[string]any{"result": "success"}); n == 0 {
		t.Fatal("no verify success in the audit log")
	}

	// The same assertion again (a replay) finds no ceremony.
	assertion, _ := key.Get(options)
	r = c.postJSON("/.2fa/webauthn/login/finish", c.csrfToken(t), assertion)
	if r.status != http.StatusGone || !strings.Contains(r.body, "passkey_expired") {
		t.Fatalf("replayed assertion: %d %s", r.status, r.body)
	}

	// Without the CSRF token: refused before anything else.
	d := e.browser()
	d.login("alice")
	d.csrf("/.2fa/challenge")
	if r := d.postJSON("/.2fa/webauthn/login/begin", "", nil); r.status != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d %s", r.status, r.body)
	}
	if n := auditCount(e, "csrf_refused", map[string]any{"result": "refused"}); n == 0 {
		t.Fatal("the refused post is not audited")
	}

	// Another browser's ceremony: d began, f posts d's answer.
	options, _ = d.passkeyBegin("/echo/x")
	f := e.browser()
	f.login("alice")
	ftok := f.csrfToken(t)
	r = f.passkeyFinish(key, options, ftok, "")
	if r.status != http.StatusGone {
		t.Fatalf("another browser's ceremony: %d %s", r.status, r.body)
	}
	// Another member: bob has no passkey, alice's answer is not his.
	bob := e.browser()
	bob.login("bob")
	bob.enrol("/echo/x")
	r = bob.passkeyFinish(key, options, bob.csrfToken(t), "")
	if r.status != http.StatusConflict || strings.Contains(r.body, "alice") {
		t.Fatalf("bob posting alice's answer: %d %s", r.status, r.body)
	}
	// With a passkey of his own, his ceremony still takes only his: an
	// answer by alice's key is refused and counted.
	bob.registerPasskey(testwebauthn.New(e.origin()), "/echo/x", "bob's key")
	options, tok = bob.passkeyBegin("/echo/x")
	if got := bob.passkeyFinish(key, options, tok, "").answer(t, http.StatusUnauthorized); got["error"] != "passkey_refused" {
		t.Fatalf("bob answering with alice's key: %v", got)
	}
	if n := auditOf(e, "verify", "bob", map[string]any{"result": "failure", "method": "webauthn"}); n != 1 {
		t.Fatalf("%d failed passkey verifications of bob audited, want 1", n)
	}

	// Rename, on the settings page's form (c verified just now).
	tok = c.csrf("/.2fa/methods")
	r = c.post("/.2fa/webauthn/rename", url.Values{"csrf": {tok}, "credential": {credential}, "name": {strings.Repeat("x", 65)}})
	if r.status != http.StatusBadRequest {
		t.Fatalf("a name too long: %d", r.status)
	}
	r = c.post("/.2fa/webauthn/rename", url.Values{"csrf": {tok}, "credential": {credential}, "name": {"Blue key"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/methods") {
		t.Fatalf("rename: %d %q %s", r.status, r.location(), r.body)
	}
	if n := auditCount(e, "webauthn_renamed", map[string]any{"result": "success"}); n != 1 {
		t.Fatalf("%d webauthn_renamed records, want 1", n)
	}

	// Removal: the last method where one is required stays; with the app
	// added, the passkey goes and stops working at once.
	r = c.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {credential}, "confirm": {"yes"}})
	if r.status != http.StatusConflict {
		t.Fatalf("removing the last method: %d", r.status)
	}
	c.enrol("/echo/x")
	tok = c.csrf("/.2fa/methods")
	r = c.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {credential}, "confirm": {"yes"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("removing a passkey in a session verified by the app: %d %q, want the challenge", r.status, r.location())
	}
	options, tok = c.passkeyBegin("/echo/x")
	c.passkeyFinish(key, options, tok, "?return_to=%2Fecho%2Fx").answer(t, http.StatusOK)
	tok = c.csrf("/.2fa/methods")
	r = c.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {credential}, "confirm": {"yes"}})
	if r.status != http.StatusSeeOther || !strings.Contains(r.location(), "removed=webauthn") {
		t.Fatalf("remove: %d %q %s", r.status, r.location(), r.body)
	}
	if s, _ := b.upstream("/echo/x"); s == http.StatusOK {
		t.Fatal("the session the passkey opened outlived its removal")
	}
	g := e.browser()
	g.login("alice")
	tok = g.csrfToken(t)
	if r := g.postJSON("/.2fa/webauthn/login/begin", tok, nil); r.status != http.StatusConflict {
		t.Fatalf("sign-in begun after removal: %d %s", r.status, r.body)
	}
	if n := auditCount(e, "webauthn_removed", map[string]any{"result": "success"}); n != 1 {
		t.Fatalf("%d webauthn_removed records, want 1", n)
	}
}

// csrfToken is this browser's CSRF token, from the sign-out page (which
// a lockout leaves open).
func (b *browser) csrfToken(t testing.TB) string {
	t.Helper()
	return b.csrf("/.2fa/logout")
}

func hasDeviceCookie(b *browser) bool {
	u, _ := url.Parse(b.e.base)
	for _, c := range b.jar.Cookies(u) {
		if strings.Contains(c.Name, "device") {
			return true
		}
	}
	return false
}

// An authenticator told another origin (a phishing page's) is refused
// and counted: after max_failures the member is locked out with 429 and
// the reason "locked", even with the right origin.
func TestPasskeyWrongOriginLocksOut(t *testing.T) {
	e := start(t, setup{global: "max_failures 3\n\t\tlockout 1m", policy: passkeyPolicy})
	key := testwebauthn.New(e.origin())
	b := e.browser()
	b.login("alice")
	b.registerPasskey(key, "/echo/x", "key")

	c := e.browser()
	c.login("alice")
	key.Origin = "https://members.example.evil"
	for i := range 3 {
		options, tok := c.passkeyBegin("/echo/x")
		got := c.passkeyFinish(key, options, tok, "").answer(t, map[bool]int{true: http.StatusTooManyRequests, false: http.StatusUnauthorized}[i == 2])
		if i < 2 && got["error"] != "passkey_refused" {
			t.Fatalf("wrong origin, try %d: %v", i, got)
		}
	}
	if n := auditCount(e, "verify", map[string]any{"result": "failure", "reason": "refused"}); n < 2 {
		t.Fatalf("%d refused verifications audited, want the wrong origins counted", n)
	}
	key.Origin = e.origin()
	tok := c.csrfToken(t)
	r := c.postJSON("/.2fa/webauthn/login/begin", tok, nil)
	got := r.answer(t, http.StatusTooManyRequests)
	if got["error"] != "locked" || r.header.Get("Retry-After") == "" {
		t.Fatalf("locked out: %v, Retry-After %q", got, r.header.Get("Retry-After"))
	}
	if s, _ := c.upstream("/echo/x"); s == http.StatusOK {
		t.Fatal("through while locked out")
	}
}

// A member with a method adds a passkey only after a recent code
// (step-up); the answer names the challenge to pass first.
func TestPasskeyRegisterNeedsStepUp(t *testing.T) {
	e := start(t, setup{policy: passkeyPolicy})
	b := e.browser()
	b.login("alice")
	b.enrol("/echo/x")
	e.clock.Advance(11 * 60e9) // past step_up (10m)
	tok := b.csrfToken(t)
	got := b.postJSON("/.2fa/webauthn/register/begin?from=settings", tok, nil).answer(t, http.StatusForbidden)
	if got["error"] != "step_up_required" || got["redirect"] != "/.2fa/challenge?return_to="+url.QueryEscape("/.2fa/methods?return_to=%2F") {
		t.Fatalf("register without a recent code: %v, want the challenge, then the settings page", got)
	}
	// The settings page's forms likewise lead through the challenge and
	// back to it.
	r := b.post("/.2fa/webauthn/remove", url.Values{"csrf": {tok}, "credential": {"00"}, "confirm": {"yes"}})
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/challenge?return_to="+url.QueryEscape("/.2fa/methods?return_to=%2F") {
		t.Fatalf("remove without a recent code: %d %q", r.status, r.location())
	}
}

// Two gateway processes on one Redis, as behind a load balancer: each
// ceremony begins on one and finishes on the other.
func TestPasskeyAcrossInstancesOnRedis(t *testing.T) {
	a, b, key := passkeyInstances(t)

	onA := a.browser()
	onA.login("alice")
	tok := onA.csrf("/.2fa/enrol?return_to=%2Fecho%2Fx")
	r := onA.postJSON("/.2fa/webauthn/register/begin?return_to=%2Fecho%2Fx", tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("register/begin on A: %d %s", r.status, r.body)
	}
	cred, err := key.Create([]byte(r.body))
	if err != nil {
		t.Fatal(err)
	}
	onB := onA.on(b.env)
	got := onB.postJSON("/.2fa/webauthn/register/finish?return_to=%2Fecho%2Fx&name=key", tok, cred).answer(t, http.StatusOK)
	if got["credential"] == "" {
		t.Fatalf("register/finish on B: %v", got)
	}

	other := b.browser()
	other.login("alice")
	options, tok := other.passkeyBegin("/echo/x")
	got = other.on(a.env).passkeyFinish(key, options, tok, "?return_to=%2Fecho%2Fx").answer(t, http.StatusOK)
	if got["redirect"] != "/echo/x" {
		t.Fatalf("sign-in finished on A: %v", got)
	}
	if s, h := other.on(a.env).upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("through A: %d %q", s, h.Get("X-2fa-Method"))
	}
	if s, h := other.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "webauthn" {
		t.Fatalf("through B: %d %q", s, h.Get("X-2fa-Method"))
	}
	// The ceremony is used up on both.
	assertion, _ := key.Get(options)
	if r := other.postJSON("/.2fa/webauthn/login/finish", other.csrfToken(t), assertion); r.status != http.StatusGone {
		t.Fatalf("the same answer again on B: %d %s", r.status, r.body)
	}
}
