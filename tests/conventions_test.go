package tests

import (
	"encoding/json"
	"fmt"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Caddy's conventions: refusals of clients that are not loading a page go
// through Caddy's error handling, and later handlers read who passed from
// placeholders.

// handleErrors answers every error as JSON from Caddy's error placeholders.
const handleErrors = `handle_errors {
		header Content-Type application/json
		respond ` + "`" + `{"status": {http.error.status_code}, "reason": "{http.error.message}"}` + "`" + `
	}`

// errorAnswer is what handleErrors wrote, or fails the test.
func errorAnswer(t *testing.T, r *response, status int, reason string) {
	t.Helper()
	var got struct {
		Status int    `json:"status"`
		Reason string `json:"reason"`
	}
	if r.status != status || json.Unmarshal([]byte(r.body), &got) != nil || got.Status != status || got.Reason != reason {
		t.Fatalf("want handle_errors' %d %q; got %d %s", status, reason, r.status, r.body)
	}
}

func TestRefusalsReachHandleErrors(t *testing.T) {
	e := start(t, setup{extra: handleErrors, global: fmt.Sprintf("keys %q\n\t\tmax_failures 3", testKey)})
	_, secret := enrolled(e, "alice")

	// 401: a script's fetch without a second factor; a page load is
	// still redirected to the challenge.
	b := e.browser()
	b.login("alice")
	if r := b.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("page load: %d %q", r.status, r.location())
	}
	b.header.Set("Sec-Fetch-Mode", "cors")
	errorAnswer(t, b.get("/echo/data.json"), http.StatusUnauthorized, "second_factor_required")

	// 403: a fetch posting without the CSRF token; a form post gets the
	// gateway's page.
	form := url.Values{"return_to": {"/members/"}, "code": {"123456"}}
	errorAnswer(t, b.post("/.2fa/challenge", form), http.StatusForbidden, "csrf_failed")
	b.header.Set("Sec-Fetch-Mode", "navigate")
	if r := b.post("/.2fa/challenge", form); r.status != http.StatusForbidden || !strings.Contains(r.body, "<html") {
		t.Fatalf("form post without token: %d %s", r.status, r.body)
	}

	// 429: a locked account, with Retry-After for the script.
	tok := b.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	wrong := url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {wrongCode(e.code(secret, 0))}}
	for range 3 {
		b.post("/.2fa/challenge", wrong)
	}
	if r := b.post("/.2fa/challenge", wrong); r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "<html") {
		t.Fatalf("form post when locked: %d", r.status)
	}
	b.header.Set("Sec-Fetch-Mode", "cors")
	r := b.post("/.2fa/challenge", wrong)
	errorAnswer(t, r, http.StatusTooManyRequests, "locked")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

// A store that cannot be reached: scripts get 503 through handle_errors,
// with Retry-After; pages get the gateway's page.
func TestUnavailableReachesHandleErrors(t *testing.T) {
	closed := testnet.FreePort(t) // nothing listens here
	e := start(t, setup{
		extra:  handleErrors,
		global: fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 100ms\n\t\t}", testKey, closed),
	})
	b := e.browser()
	b.login("alice")
	if r := b.get("/members/"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "<html") {
		t.Fatalf("page load: %d %s", r.status, r.body)
	}
	b.header.Set("Sec-Fetch-Mode", "cors")
	r := b.get("/echo/data.json")
	errorAnswer(t, r, http.StatusServiceUnavailable, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// Later handlers read who passed, how, and whether they are enrolled.
func TestPlaceholders(t *testing.T) {
	policy := `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /placed/*
	protect /placed-optional/* {
		enrolment optional
	}
	site_name "Test Members"
`
	e := start(t, setup{
		policy: policy,
		extra:  `respond /placed* "user={http.auth.two_factor.user} method={http.auth.two_factor.method} enrolled={http.auth.two_factor.enrolled}" 200`,
	})
	a, _ := enrolled(e, "alice")
	if r := a.get("/placed/x"); r.status != http.StatusOK || r.body != "user=alice method=totp enrolled=true" {
		t.Fatalf("verified member: %d %q", r.status, r.body)
	}
	b := e.browser()
	b.login("bob")
	b.header.Set("Sec-Fetch-Mode", "cors") // no reminder page for a script
	if r := b.get("/placed-optional/x"); r.status != http.StatusOK || r.body != "user=bob method=none enrolled=false" {
		t.Fatalf("member without a second factor on an optional path: %d %q", r.status, r.body)
	}
	// A client cannot set them: they come from the gateway only.
	c := e.browser()
	c.login("alice")
	c.header.Set("Sec-Fetch-Mode", "cors")
	c.header.Set("X-2fa-User", "mallory")
	if r := c.get("/placed/x"); r.status != http.StatusUnauthorized {
		t.Fatalf("unverified member: %d %q", r.status, r.body)
	}
}

// A handle_errors that passes refusals on (to let the site render its own
// error page, say) hands on a request without the gateway's cookies and
// with empty placeholders: nothing there says anyone passed. (The refused
// request still reaches that upstream: README warns against sending
// refusals to the protected site.)
func TestRefusalPassedOnByHandleErrors(t *testing.T) {
	e := start(t, setup{extra: `handle_errors {
		request_header X-Seen-User "[{http.auth.two_factor.user}]"
		reverse_proxy {ECHO}
	}`})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	if r := b.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther || b.cookie("2fa_device") == nil {
		t.Fatalf("verify: %d", r.status)
	}
	// A new member-site session: the gateway's session and device
	// cookies are there, but the session is bound to the old sign-in and
	// /echo-admin/ refuses remembered devices.
	b.login("alice")
	b.header.Set("Sec-Fetch-Mode", "cors")
	r := b.get("/echo-admin/data.json")
	var got struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("handle_errors did not reach the echo upstream: %s", r.body)
	}
	if c := strings.Join(got.Headers.Values("Cookie"), "; "); strings.Contains(c, "2fa_") || !strings.Contains(c, "member_session=") {
		t.Errorf("cookies handed on with a refusal: %q", c)
	}
	if u := got.Headers.Get("X-Seen-User"); u != "[]" {
		t.Errorf("placeholder after a refusal: %q", u)
	}
	for name := range got.Headers {
		if strings.HasPrefix(strings.ToLower(name), "x-2fa-") {
			t.Errorf("gateway header %s handed on with a refusal", name)
		}
	}
}

// Where nobody passed the gateway (an unprotected path, nobody signed in),
// the placeholders are empty, never their own names.
func TestPlaceholdersEmptyWhenNobodyPassed(t *testing.T) {
	e := start(t, setup{extra: `respond /public/* "user=[{http.auth.two_factor.user}] method=[{http.auth.two_factor.method}] enrolled=[{http.auth.two_factor.enrolled}]" 200`})
	b := e.browser()
	want := "user=[] method=[] enrolled=[]"
	if r := b.get("/public/x"); r.body != want {
		t.Fatalf("unprotected path, nobody signed in: %q", r.body)
	}
	b.login("alice")
	if r := b.get("/public/x"); r.body != want {
		t.Fatalf("unprotected path, signed in: %q", r.body)
	}
}
