package tests

import (
	"encoding/base64"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Wrong codes lock the account, whichever browser or address they come
// from, and during the lockout a right code gets exactly the same answer.
func TestLockoutAfterRepeatedWrongCodes(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")
	for i := 1; i <= 5; i++ {
		b := e.browser() // a fresh cookie jar each time
		b.login("alice")
		b.header.Set("X-Forwarded-For", "203.0.113."+string(rune('0'+i)))
		r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
		want := http.StatusUnauthorized
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if r.status != want {
			t.Fatalf("wrong code %d: status %d", i, r.status)
		}
	}
	b := e.browser()
	b.login("alice")
	// The challenge page shows the lockout instead of a form, so take the
	// form token from another page.
	tok := b.csrf("/.2fa/logout")
	post := func(code string) *response {
		return b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {code}})
	}
	right := post(e.code(secret, 0))
	wrong := post(wrongCode(e.code(secret, 0)))
	if right.status != http.StatusTooManyRequests || right.body != wrong.body {
		t.Fatalf("locked: right code %d, bodies equal %v", right.status, right.body == wrong.body)
	}
	if right.header.Get("Retry-After") == "" || !strings.Contains(right.body, "15 minutes") {
		t.Fatalf("lockout page does not say when to retry: %v %s", right.header, right.body)
	}
	if b.cookie("2fa_session") != nil {
		t.Fatal("session issued during lockout")
	}
	// The challenge page itself says so too.
	if r := b.get("/.2fa/challenge?return_to=%2Fmembers%2F"); r.status != http.StatusTooManyRequests {
		t.Fatalf("challenge page during lockout: %d", r.status)
	}

	e.clock.Advance(15*time.Minute + time.Second)
	e.nextStep()
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("after the lockout: %d %s", r.status, r.body)
	}
	var lockouts int
	for _, entry := range e.audit() {
		if entry["event"] == "lockout" && entry["user"] == "alice" {
			lockouts++
		}
	}
	if lockouts != 1 {
		t.Fatalf("%d lockout audit entries, want 1", lockouts)
	}
}

// Parallel guesses cannot get more than the allowance evaluated.
func TestParallelGuessesLocked(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")
	bad := wrongCode(e.code(secret, 0))
	type attempt struct {
		b   *browser
		tok string
	}
	var attempts []attempt
	for range 30 {
		b := e.browser()
		b.login("alice")
		attempts = append(attempts, attempt{b, b.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")})
	}
	startGun := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for _, a := range attempts {
		wg.Go(func() {
			<-startGun
			r := a.b.post("/.2fa/challenge", url.Values{"csrf": {a.tok}, "return_to": {"/members/"}, "code": {bad}})
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
		})
	}
	close(startGun)
	wg.Wait()
	if statuses[http.StatusUnauthorized] > 4 || statuses[http.StatusTooManyRequests] < 26 {
		t.Fatalf("statuses %v: more than the allowance of 5 evaluated", statuses)
	}
}

// A client cannot name itself: identity comes from the member site or a
// trusted handler, and the gateway's own headers are always its own.
func TestForgedHeadersIgnored(t *testing.T) {
	e := start(t, setup{})
	b, _ := enrolled(e, "alice")

	forged := http.Header{}
	forged["X-2fa-User"] = []string{"admin", "root"}
	forged["x-2fa-user"] = []string{"admin"}
	forged["X_2FA_User"] = []string{"admin"}
	forged["X-2FA-METHOD"] = []string{"forged"}
	forged["X_2fa_enrolled"] = []string{"forged"}
	forged["X-2fa-Verified"] = []string{"true"}
	b.header = forged
	_, h := b.upstream("/echo/x")
	if h == nil {
		t.Fatal("verified member did not reach the upstream")
	}
	for name, vals := range h {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if !strings.HasPrefix(n, "x-2fa-") {
			continue
		}
		switch n {
		case "x-2fa-user":
			if len(vals) != 1 || vals[0] != "alice" {
				t.Errorf("%s = %v", name, vals)
			}
		case "x-2fa-method":
			if len(vals) != 1 || vals[0] != "totp" {
				t.Errorf("%s = %v", name, vals)
			}
		case "x-2fa-enrolled":
			if len(vals) != 1 || vals[0] != "true" {
				t.Errorf("%s = %v", name, vals)
			}
		default:
			t.Errorf("client header %s = %v reached the upstream", name, vals)
		}
	}

	// Unprotected paths too.
	anon := e.browser()
	anon.header = forged
	r := anon.get("/public/x")
	if strings.Contains(strings.ToLower(r.body), "x-2fa") || strings.Contains(r.body, "X_2FA") {
		t.Fatalf("client 2FA headers reached the upstream on an unprotected path: %s", r.body)
	}

	// Without a member-site session, claiming to be someone gets nothing:
	// the request passes as anonymous, for the member site to turn away.
	anon.header = http.Header{"X-2fa-User": {"alice"}, "X-Remote-User": {"alice"}}
	anon.setCookie("2fa_session", b.cookie("2fa_session").Value)
	if _, h := anon.upstream("/echo/x"); h == nil || h.Get("X-2fa-User") != "" || h.Get("X-2fa-Enrolled") != "" {
		t.Fatalf("no member session, forged headers and a stolen 2FA cookie: upstream saw %v", h)
	}
}

// Identity from forward_auth: the client's own copy of the identity header
// never counts.
func TestForwardAuthIdentityCannotBeForged(t *testing.T) {
	auth := newAuthServer(t)
	e := start(t, setup{
		policy: `
	identity header X-Member-Id
	protect /echo/*
`,
		extra: "forward_auth " + auth + " {\n\t\turi /check\n\t\tcopy_headers X-Member-Id\n\t}",
	})
	// No auth cookie: forward_auth refuses before we are reached.
	b := e.browser()
	b.header.Set("X-Member-Id", "alice")
	if r := b.get("/echo/x"); r.status != http.StatusUnauthorized {
		t.Fatalf("forged header without auth: %d", r.status)
	}
	// Signed in as bob, claiming alice: bob it is.
	b.setCookie("auth_user", "bob")
	r := b.get("/echo/x")
	if r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("bob: %d %q", r.status, r.location())
	}
	tok := b.csrf("/.2fa/enrol?return_to=%2Fecho%2Fx")
	page := b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/echo/x"}})
	if !strings.Contains(page.body, "bob") || strings.Contains(page.body, "alice") {
		t.Fatalf("enrolment is not bob's: %s", page.body)
	}
}

// newAuthServer is a forward_auth endpoint: 200 with X-Member-Id from the
// auth_user cookie, 401 without it.
func newAuthServer(t testing.TB) string {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("auth_user")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Member-Id", c.Value)
	})}
	port := testnet.FreePort(t)
	ln, err := listen(port)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestEnrolmentRequiredVersusOptional(t *testing.T) {
	e := start(t, setup{})
	b := e.browser()
	b.login("bob")

	// Required: no way around enrolment.
	if r := b.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol?") {
		t.Fatalf("required: %d %q", r.status, r.location())
	}
	if r := b.get("/.2fa/enrol?return_to=%2Fmembers%2F"); strings.Contains(r.body, `action="/.2fa/remind"`) {
		t.Fatal("required enrolment offers 'later'")
	}
	tok := b.csrf("/.2fa/remind?return_to=%2Fmembers%2F")
	if r := b.post("/.2fa/remind", url.Values{"csrf": {tok}, "return_to": {"/members/"}}); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("'later' on a required path: %d %q", r.status, r.location())
	}
	if r := b.get("/members/"); r.status != http.StatusFound {
		t.Fatalf("required path after 'later': %d", r.status)
	}
	// A non-navigation request is refused, not redirected.
	req, _ := http.NewRequest(http.MethodPost, e.base+"/echo/x", strings.NewReader("{}"))
	req.Header.Set("Accept", "application/json")
	if r := b.do(req); r.status != http.StatusUnauthorized || r.location() != "" || strings.Contains(r.body, "echo") {
		t.Fatalf("API call without second factor: %d %q %s", r.status, r.location(), r.body)
	}

	// Optional: a reminder, then through with the upstream told.
	r := b.get("/optional/page")
	if r.status != http.StatusFound || r.location() != "/.2fa/remind?return_to=%2Foptional%2Fpage" {
		t.Fatalf("optional, first visit: %d %q", r.status, r.location())
	}
	page := b.get(r.location())
	if !strings.Contains(page.body, "/.2fa/enrol?return_to=%2Foptional%2Fpage") {
		t.Fatalf("reminder lacks 'set up now': %s", page.body)
	}
	// Seen once is enough for this interval, even without "later".
	if _, h := b.upstream("/optional/other"); h == nil || h.Get("X-2fa-Enrolled") != "false" {
		t.Fatalf("reminder shown twice in one interval: %v", h)
	}
	r = b.post("/.2fa/remind", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/optional/page"}})
	if r.status != http.StatusSeeOther || r.location() != "/optional/page" {
		t.Fatalf("later: %d %q", r.status, r.location())
	}
	_, h := b.upstream("/optional/page")
	if h == nil || h.Get("X-2fa-Enrolled") != "false" || h.Get("X-2fa-User") != "bob" || h.Get("X-2fa-Method") != "none" {
		t.Fatalf("optional, after 'later': %v", h)
	}
	e.clock.Advance(7*24*time.Hour + time.Minute)
	if r := b.get("/optional/page"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/remind") {
		t.Fatalf("reminder not shown again after 7 days: %d %q", r.status, r.location())
	}

	// Once enrolled, optional paths need the second factor like any other.
	secret := b.enrol("/optional/page")
	b.login("bob")
	if r := b.get("/optional/page"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("enrolled member on an optional path: %d %q", r.status, r.location())
	}
	if r := b.verify(e.code(secret, 0), "/optional/page", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	if _, h := b.upstream("/optional/page"); h.Get("X-2fa-Enrolled") != "true" {
		t.Fatalf("after verification: %v", h)
	}
}

// After verification the member lands on the page asked for, but only if
// it is a path on this site.
func TestOpenRedirectsLandOnTopPage(t *testing.T) {
	e := start(t, setup{})
	evil := []string{
		"https://evil.example", "//evil.example", "/\\evil.example", "\\\\evil.example", "/%2F%2Fevil.example",
		"%2F%2Fevil.example", "https:evil.example", "javascript:alert(1)", "data:text/html,x",
		"http://" + e.host + "/x", "https://" + e.host + ".evil.example/", "https://user@evil.example",
		"/ok%0d%0aSet-Cookie:a=b", "/%09/evil.example", "/\t/evil.example", "/%5Cevil.example",
	}
	// Optional-path "later" redirects without needing a code per attempt.
	b := e.browser()
	b.login("bob")
	for _, target := range evil {
		tok := b.csrf("/.2fa/remind?return_to=" + url.QueryEscape(target))
		r := b.post("/.2fa/remind", url.Values{"csrf": {tok}, "return_to": {target}})
		if r.location() != "/" {
			t.Errorf("return_to %q: redirected to %q", target, r.location())
		}
		page := b.get("/.2fa/challenge?return_to=" + url.QueryEscape(target))
		if v := inputValue(page.body, "return_to"); v != "/" && v != "" {
			t.Errorf("return_to %q: form carries %q", target, v)
		}
	}
	// And through a real verification.
	a, secret := enrolled(e, "alice")
	e.nextStep()
	a.login("alice")
	a.header.Set("X-Forwarded-Host", "evil.example")
	if r := a.verify(e.code(secret, 0), "//evil.example/x", false); r.status != http.StatusSeeOther || r.location() != "/" {
		t.Fatalf("verify with an evil return_to: %d %q", r.status, r.location())
	}
	e.nextStep()
	a.login("alice")
	if r := a.verify(e.code(secret, 0), "/members/page?x=1", false); r.location() != "/members/page?x=1" {
		t.Fatalf("a good return_to was not kept: %q", r.location())
	}
}

// Every gateway form needs the browser's own token, posted from the site.
func TestCSRF(t *testing.T) {
	e := start(t, setup{})
	a, secret := enrolled(e, "alice")
	a.login("alice")
	code := e.code(secret, 0)
	mallory := e.browser()
	mallory.login("alice") // same member, different browser
	foreignTok := mallory.csrf("/.2fa/challenge")

	for name, form := range map[string]url.Values{
		"no token":            {"code": {code}, "return_to": {"/members/"}},
		"another's token":     {"code": {code}, "csrf": {foreignTok}},
		"garbage token":       {"code": {code}, "csrf": {"x"}},
		"token of wrong size": {"code": {code}, "csrf": {strings.Repeat("A", 43)}},
	} {
		a.csrf("/.2fa/challenge") // make sure the browser has its own secret
		if r := a.post("/.2fa/challenge", form); r.status != http.StatusForbidden {
			t.Errorf("%s: status %d", name, r.status)
		}
	}
	for _, page := range []string{"/.2fa/challenge", "/.2fa/enrol", "/.2fa/enrol/confirm", "/.2fa/remind", "/.2fa/logout"} {
		if r := a.post(page, url.Values{}); r.status != http.StatusForbidden {
			t.Errorf("POST %s without a token: %d", page, r.status)
		}
	}
	// A valid token from a cross-site form.
	tok := a.csrf("/.2fa/challenge")
	req, _ := http.NewRequest(http.MethodPost, e.base+"/.2fa/challenge", strings.NewReader(url.Values{"csrf": {tok}, "code": {code}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if r := a.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-origin post: %d", r.status)
	}
	req, _ = http.NewRequest(http.MethodPost, e.base+"/.2fa/challenge", strings.NewReader(url.Values{"csrf": {tok}, "code": {code}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := a.do(req); r.status != http.StatusForbidden {
		t.Errorf("Sec-Fetch-Site cross-site: %d", r.status)
	}
	// Actions are POST only.
	if r := a.get("/.2fa/enrol/confirm"); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET on a POST-only page: %d %q", r.status, r.header.Get("Allow"))
	}
	// None of that spent the code: it still works with the token.
	if r := a.verify(code, "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("the real form: %d", r.status)
	}
}

func TestNotSignedIn(t *testing.T) {
	e := start(t, setup{})
	b := e.browser()
	// Default: the member site handles it (it asks for its own sign-in).
	if r := b.get("/members/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/login") {
		t.Fatalf("default: %d %q", r.status, r.location())
	}
	if r := b.get("/.2fa/challenge"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "sign in") {
		t.Fatalf("gateway page without a member session: %d %s", r.status, r.body)
	}

	e = start(t, setup{policy: defaultPolicy + "\n\tlogin_url /login?from=2fa\n"})
	b = e.browser()
	if r := b.get("/members/x?y=1"); r.status != http.StatusFound || r.location() != "/login?from=2fa&next=%2Fmembers%2Fx%3Fy%3D1" {
		t.Fatalf("login_url: %d %q", r.status, r.location())
	}
}

func TestLogoutEndsSessionServerSide(t *testing.T) {
	e := start(t, setup{})
	b, _ := enrolled(e, "alice")
	old := b.cookie("2fa_session").Value
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatal("not verified")
	}
	tok := b.csrf("/.2fa/logout")
	r := b.post("/.2fa/logout", url.Values{"csrf": {tok}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Signed out on this browser") {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if b.cookie("2fa_session") != nil {
		t.Fatal("session cookie not cleared")
	}
	b.setCookie("2fa_session", old)
	if s, _ := b.upstream("/echo/x"); s != http.StatusFound {
		t.Fatalf("the old cookie still works after sign-out: %d", s)
	}
}

func TestPageSecurityHeaders(t *testing.T) {
	e := start(t, setup{})
	b := e.browser()
	b.login("alice")
	for _, p := range []string{"/.2fa/enrol", "/.2fa/challenge", "/.2fa/logout", "/.2fa/remind", "/.2fa/nope"} {
		r := b.get(p)
		h := r.header
		csp := h.Get("Content-Security-Policy")
		if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s (%d): headers %v", p, r.status, h)
		}
	}
	if r := b.get("/.2fa/static/style.css"); r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %q", r.status, r.header.Get("Content-Type"))
	}
}

// The upstream never sees the gateway's cookies: they are bearer tokens it
// has no use for.
func TestGatewayCookiesNotForwarded(t *testing.T) {
	e := start(t, setup{})
	b, secret := enrolled(e, "alice")
	b.login("alice")
	if r := b.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	b.setCookie("theme", "dark")
	_, h := b.upstream("/echo/x")
	got := strings.Join(h.Values("Cookie"), "; ")
	if strings.Contains(got, "2fa_") || !strings.Contains(got, "member_session=") || !strings.Contains(got, "theme=dark") {
		t.Fatalf("upstream Cookie header: %q", got)
	}
}

// Scripts fetching data get a 401, not a redirect to HTML, through Caddy's
// error handling: an operator's handle_errors shapes the answer.
func TestScriptFetchGets401(t *testing.T) {
	e := start(t, setup{})
	enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	b.header.Set("Sec-Fetch-Mode", "cors")
	r := b.get("/echo/data.json")
	if r.status != http.StatusUnauthorized || r.location() != "" || strings.Contains(r.body, "<html") || strings.Contains(r.body, "/echo/") {
		t.Fatalf("fetch without second factor: %d %q %s", r.status, r.location(), r.body)
	}
}

// A browser with a strict privacy setting posts with Origin: null; it is
// still the same site.
func TestOriginNullFromSameOrigin(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	tok := b.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
	form := url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {e.code(secret, 0)}}
	post := func(fetchSite string) *response {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/.2fa/challenge", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "null")
		req.Header.Set("Sec-Fetch-Site", fetchSite)
		return b.do(req)
	}
	if r := post("cross-site"); r.status != http.StatusForbidden {
		t.Fatalf("Origin null from another site: %d", r.status)
	}
	if r := post("same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("Origin null from the same origin: %d %s", r.status, r.body)
	}
}

// Starting enrolment over and over is limited.
func TestEnrolmentStartLimited(t *testing.T) {
	e := start(t, setup{})
	b := e.browser()
	b.login("bob")
	tok := b.csrf("/.2fa/enrol")
	var r *response
	for range 11 {
		r = b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/members/"}})
	}
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("11th enrolment start: %d", r.status)
	}
}

// A remembered device only works within the shortest limit of the path it
// is used on.
func TestRememberedDeviceHonoursThePathLimit(t *testing.T) {
	policy := strings.Replace(defaultPolicy, "protect /optional/* {", "protect /short/* {\n\t\tremember_device 1d\n\t}\n\tprotect /optional/* {", 1)
	e := start(t, setup{policy: policy, extra: "respond /short/* \"short\" 200"})
	b, secret := enrolled(e, "alice")
	b.login("alice")
	if r := b.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d", r.status)
	}
	e.clock.Advance(2 * 24 * time.Hour)
	b.login("alice")
	if r := b.get("/short/x"); r.status != http.StatusFound {
		t.Fatalf("a 30-day device on a 1-day path after 2 days: %d", r.status)
	}
	if s, _ := b.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("the same device on the 30-day path: %d", s)
	}
}

// Identity from basic_auth's placeholder: a client header of any name
// cannot stand in for it.
func TestBasicAuthIdentity(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("bob-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, setup{
		policy: "\n\tidentity header {http.auth.user.id}\n\tprotect /echo/*\n",
		extra:  "basic_auth {\n\t\tbob " + string(hash) + "\n\t}",
	})
	b := e.browser()
	b.header.Set("X-Remote-User", "alice")
	b.header.Set("X-Auth-User-Id", "alice")
	if r := b.get("/echo/x"); r.status != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", r.status)
	}
	b.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("bob:bob-password")))
	r := b.get("/echo/x")
	if r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("bob with basic auth: %d %q", r.status, r.location())
	}
	tok := b.csrf("/.2fa/logout")
	page := b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {"/echo/x"}})
	if u := enrolmentSecret(t, page.body); u == "" || !strings.Contains(page.body, "bob") || strings.Contains(page.body, "alice") {
		t.Fatalf("the enrolment is not bob's: %s", page.body)
	}
}

// RD-13: time comes from the gateway's clock (and the store's expiries),
// never from the client: a Date header or a timestamp field sent with the
// form changes nothing.
func TestClientTimeIgnored(t *testing.T) {
	e := start(t, setup{})
	_, secret := enrolled(e, "alice")
	for _, tc := range []struct {
		date  string
		steps int // the code's time step, from the gateway's now
		want  int
	}{
		{"Thu, 01 Jan 1970 00:00:00 GMT", -3, http.StatusUnauthorized}, // too old, whatever the client says
		{"Fri, 01 Jan 2100 00:00:00 GMT", 3, http.StatusUnauthorized},  // too new
		{"Thu, 01 Jan 1970 00:00:00 GMT", 0, http.StatusSeeOther},      // the right code still works
	} {
		b := e.browser()
		b.login("alice")
		b.header.Set("Date", tc.date)
		tok := b.csrf("/.2fa/challenge?return_to=%2Fmembers%2F")
		then, _ := http.ParseTime(tc.date)
		r := b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"},
			"code": {e.code(secret, tc.steps)}, "time": {strconv.FormatInt(then.Unix(), 10)}, "now": {tc.date}})
		if r.status != tc.want {
			t.Fatalf("Date %s, code %+d steps: %d, want %d", tc.date, tc.steps, r.status, tc.want)
		}
	}
}
