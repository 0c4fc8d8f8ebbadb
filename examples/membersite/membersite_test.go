package membersite

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

type testEnv struct {
	site   *Site
	server *httptest.Server
	client *http.Client
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	site := New(DemoMembers())
	srv := httptest.NewServer(site)
	t.Cleanup(srv.Close)
	return &testEnv{site: site, server: srv, client: newClient(t)}
}

// newClient returns a client with a cookie jar that does not follow
// redirects, so tests can look at them.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type result struct {
	status int
	header http.Header
	body   string
}

func (e *testEnv) do(t *testing.T, c *http.Client, req *http.Request) result {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *testEnv) get(t *testing.T, c *http.Client, path string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.do(t, c, req)
}

func (e *testEnv) post(t *testing.T, c *http.Client, path string, form url.Values) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.server.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(t, c, req)
}

func (e *testEnv) login(t *testing.T, c *http.Client, id, password, next string) result {
	t.Helper()
	return e.post(t, c, "/login", url.Values{"id": {id}, "password": {password}, "next": {next}})
}

func (e *testEnv) sessionCookie(t *testing.T, c *http.Client) string {
	t.Helper()
	u, _ := url.Parse(e.server.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == SessionCookie {
			return ck.Value
		}
	}
	return ""
}

func wantStatus(t *testing.T, r result, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body:\n%s", r.status, want, r.body)
	}
}

func wantLocation(t *testing.T, r result, want string) {
	t.Helper()
	if got := r.header.Get("Location"); got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
}

func decodeMe(t *testing.T, r result) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("bad JSON %q: %v", r.body, err)
	}
	return m
}

func TestLoginSuccess(t *testing.T) {
	e := newEnv(t)
	r := e.login(t, e.client, "alice", "alice-password", "/members/page?x=1")
	wantStatus(t, r, http.StatusSeeOther)
	wantLocation(t, r, "/members/page?x=1")

	var ck *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == SessionCookie {
			ck = c
		}
	}
	if ck == nil {
		t.Fatal("no session cookie set")
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
		t.Errorf("cookie attributes: %+v", ck)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(ck.Value); err != nil || len(raw) != 32 {
		t.Errorf("cookie value %q is not 32 bytes of base64url (%v)", ck.Value, err)
	}

	r = e.get(t, e.client, "/members/")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "Members area") || !strings.Contains(r.body, "Alice Example") {
		t.Errorf("members page:\n%s", r.body)
	}
	r = e.get(t, e.client, "/")
	if !strings.Contains(r.body, "Signed in as <strong>alice</strong>") || !strings.Contains(r.body, `href="/.2fa/logout?return_to=%2Flogout%3Ft%3D`) {
		t.Errorf("top page does not show the signed-in member:\n%s", r.body)
	}
}

func TestLoginFailure(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ id, pw string }{
		{"alice", "wrong"},
		{"alice", ""},
		{"alice", "bob-password"},
		{"nobody", "alice-password"},
		{"", ""},
	} {
		r := e.login(t, e.client, tc.id, tc.pw, "/members/")
		wantStatus(t, r, http.StatusUnauthorized)
		if !strings.Contains(r.body, "ID or password is incorrect.") {
			t.Errorf("%q/%q: no error message:\n%s", tc.id, tc.pw, r.body)
		}
		if e.sessionCookie(t, e.client) != "" {
			t.Fatalf("%q/%q: session cookie set on failure", tc.id, tc.pw)
		}
	}
	// The ID is kept (escaped) in the re-rendered form; the password is not.
	r := e.login(t, e.client, `<b>"x"</b>`, "secret-pw", "/members/")
	if strings.Contains(r.body, "<b>") || !strings.Contains(r.body, "&lt;b&gt;") {
		t.Errorf("ID not escaped:\n%s", r.body)
	}
	if strings.Contains(r.body, "secret-pw") {
		t.Error("password echoed back")
	}
}

func TestNextRedirectSafety(t *testing.T) {
	e := newEnv(t)
	cases := map[string]string{
		"//evil.example":        "/members/",
		"https://evil.example":  "/members/",
		`/\evil.example`:        "/members/",
		"/\t/evil.example":      "/members/",
		"javascript:alert(1)":   "/members/",
		"":                      "/members/",
		"members/":              "/members/",
		"/admin/":               "/admin/",
		"/members/x?y=1&z=%2F2": "/members/x?y=1&z=%2F2",
	}
	for next, want := range cases {
		c := newClient(t)
		r := e.login(t, c, "bob", "bob-password", next)
		wantStatus(t, r, http.StatusSeeOther)
		if got := r.header.Get("Location"); got != want {
			t.Errorf("next %q: Location %q, want %q", next, got, want)
		}
		// The GET form's hidden field is sanitised the same way.
		r = e.get(t, c, "/login?next="+url.QueryEscape(next))
		wantStatus(t, r, http.StatusOK)
		m := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(r.body)
		if m == nil {
			t.Fatalf("no next field:\n%s", r.body)
		}
		if got := strings.ReplaceAll(m[1], "&amp;", "&"); got != want {
			t.Errorf("form next for %q = %q, want %q", next, got, want)
		}
	}
}

func TestAPIMe(t *testing.T) {
	e := newEnv(t)
	r := e.get(t, e.client, "/api/me")
	wantStatus(t, r, http.StatusUnauthorized)
	if m := decodeMe(t, r); m["error"] != "not signed in" {
		t.Errorf("body %v", m)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}

	// A made-up cookie is not a session.
	req, _ := http.NewRequest(http.MethodGet, e.server.URL+"/api/me", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: "forged"})
	wantStatus(t, e.do(t, http.DefaultClient, req), http.StatusUnauthorized)

	wantStatus(t, e.login(t, e.client, "alice", "alice-password", ""), http.StatusSeeOther)
	r = e.get(t, e.client, "/api/me")
	wantStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	m := decodeMe(t, r)
	if m["id"] != "alice" || m["email"] != "alice@example.com" || m["phone"] != "+819012345678" {
		t.Errorf("alice: %v", m)
	}

	// Empty fields are omitted.
	c := newClient(t)
	wantStatus(t, e.login(t, c, "bob", "bob-password", ""), http.StatusSeeOther)
	m = decodeMe(t, e.get(t, c, "/api/me"))
	if _, ok := m["phone"]; ok || m["id"] != "bob" || m["email"] != "bob@example.com" {
		t.Errorf("bob: %v", m)
	}
}

func TestMemberAreaRedirectsWhenSignedOut(t *testing.T) {
	e := newEnv(t)
	for path, next := range map[string]string{
		"/members/":          "/members/",
		"/members/a/b?c=d":   "/members/a/b?c=d",
		"/admin/":            "/admin/",
		"/admin/users?x=1&y": "/admin/users?x=1&y",
	} {
		r := e.get(t, e.client, path)
		wantStatus(t, r, http.StatusSeeOther)
		wantLocation(t, r, "/login?next="+url.QueryEscape(next))
	}
	// Following the redirect and signing in lands on the page asked for.
	r := e.get(t, e.client, "/members/a/b?c=d")
	loc, _ := url.Parse(r.header.Get("Location"))
	r = e.login(t, e.client, "alice", "alice-password", loc.Query().Get("next"))
	wantLocation(t, r, "/members/a/b?c=d")
	wantStatus(t, e.get(t, e.client, "/members/a/b?c=d"), http.StatusOK)
}

func TestAdminArea(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.login(t, e.client, "alice", "alice-password", ""), http.StatusSeeOther)
	wantStatus(t, e.get(t, e.client, "/admin/"), http.StatusForbidden)
	wantStatus(t, e.get(t, e.client, "/admin/settings"), http.StatusForbidden)

	c := newClient(t)
	wantStatus(t, e.login(t, c, "admin", "admin-password", ""), http.StatusSeeOther)
	r := e.get(t, c, "/admin/")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, "Admin area") {
		t.Errorf("admin page:\n%s", r.body)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.login(t, e.client, "alice", "alice-password", ""), http.StatusSeeOther)
	old := e.sessionCookie(t, e.client)
	if old == "" {
		t.Fatal("no session cookie")
	}
	r := e.post(t, e.client, "/logout", nil)
	wantStatus(t, r, http.StatusSeeOther)
	wantLocation(t, r, "/")
	if e.sessionCookie(t, e.client) != "" {
		t.Error("cookie not deleted")
	}
	wantStatus(t, e.get(t, e.client, "/api/me"), http.StatusUnauthorized)

	// The old cookie value no longer works: the session ended server-side.
	req, _ := http.NewRequest(http.MethodGet, e.server.URL+"/api/me", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: old})
	wantStatus(t, e.do(t, http.DefaultClient, req), http.StatusUnauthorized)

}

// GET /logout, where the gateway's sign-out sends members on, signs out
// only with the token of the member's own session, which the site's
// sign-out link carries; anything else gets a button.
func TestLogoutLink(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.login(t, e.client, "alice", "alice-password", ""), http.StatusSeeOther)
	top := e.get(t, e.client, "/")
	m := regexp.MustCompile(`href="/\.2fa/logout\?return_to=([^"]+)"`).FindStringSubmatch(top.body)
	if m == nil {
		t.Fatalf("no sign-out link through the gateway:\n%s", top.body)
	}
	returnTo, err := url.QueryUnescape(m[1])
	if err != nil || !strings.HasPrefix(returnTo, "/logout?t=") {
		t.Fatalf("sign-out link return_to %q", m[1])
	}
	other := New(DemoMembers())
	otherToken, _ := other.Login("alice")
	for _, c := range []struct {
		what, path, site string
	}{
		{"no token", "/logout", "same-origin"},
		{"a wrong token", "/logout?t=AAAAAAAAAAAAAAAAAAAAAA", "same-origin"},
		{"another session's token", "/logout?t=" + tokenOf(otherToken), "same-origin"},
		{"the right token from another site", returnTo, "cross-site"},
		{"the right token from a sibling site", returnTo, "same-site"},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.server.URL+c.path, nil)
		req.Header.Set("Sec-Fetch-Site", c.site)
		r := e.do(t, e.client, req)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(r.body, `action="/logout"`) {
			t.Errorf("%s: no sign-out button:\n%s", c.what, r.body)
		}
		wantStatus(t, e.get(t, e.client, "/api/me"), http.StatusOK)
	}
	// The link's own token, followed by the browser from the gateway's
	// page, or by a client that does not say where it comes from.
	req, _ := http.NewRequest(http.MethodGet, e.server.URL+returnTo, nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	r := e.do(t, e.client, req)
	wantStatus(t, r, http.StatusSeeOther)
	wantLocation(t, r, "/")
	wantStatus(t, e.get(t, e.client, "/api/me"), http.StatusUnauthorized)
}

// tokenOf is the sign-out token of a session cookie value.
func tokenOf(cookie string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
	return signOutToken(r)
}

// The account page links to the gateway's settings, and back.
func TestAccountPage(t *testing.T) {
	e := newEnv(t)
	r := e.get(t, e.client, "/members/account")
	wantStatus(t, r, http.StatusSeeOther)
	wantStatus(t, e.login(t, e.client, "alice", "alice-password", ""), http.StatusSeeOther)
	r = e.get(t, e.client, "/members/account")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `href="/.2fa/methods?return_to=%2Fmembers%2Faccount"`) {
		t.Errorf("account page without the link to the gateway's settings:\n%s", r.body)
	}
}

func TestCrossSitePostRefused(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodPost, e.server.URL+"/login",
		strings.NewReader(url.Values{"id": {"alice"}, "password": {"alice-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	wantStatus(t, e.do(t, e.client, req), http.StatusForbidden)
	if e.sessionCookie(t, e.client) != "" {
		t.Error("cross-site login set a session")
	}
}

func TestHeadersEcho(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodPost, e.server.URL+"/headers?q=1", nil)
	req.Header.Add("X-2FA-User", "mallory")
	req.Header.Add("X-2FA-User", "alice")
	req.Header.Add("X-Custom", "one")
	r := e.do(t, http.DefaultClient, req)
	wantStatus(t, r, http.StatusOK)
	var got struct {
		Method  string              `json:"method"`
		Path    string              `json:"path"`
		Query   string              `json:"query"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.Path != "/headers" || got.Query != "q=1" {
		t.Errorf("method/path/query: %+v", got)
	}
	if v := got.Headers["X-2fa-User"]; len(v) != 2 || v[0] != "mallory" || v[1] != "alice" {
		t.Errorf("X-2fa-User = %q, want both values in order", v)
	}
	if v := got.Headers["X-Custom"]; len(v) != 1 || v[0] != "one" {
		t.Errorf("X-Custom = %q", v)
	}
}

func TestMembersPageShowsGatewayHeaders(t *testing.T) {
	e := newEnv(t)
	token, err := e.site.Login("alice")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.server.URL+"/members/", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: token})
	req.Header.Add("X-2FA-User", "alice")
	req.Header.Add("X-2FA-User", "<script>evil</script>")
	req.Header.Set("X-2FA-Method", "totp")
	req.Header.Set("X-2fa-Enrolment", "grace")
	req.Header.Set("X-2fa-Enrolment-Deadline", "2027-01-15T00:00:00Z")
	r := e.do(t, http.DefaultClient, req)
	wantStatus(t, r, http.StatusOK)
	for _, want := range []string{
		"What the gateway told this site",
		"<code>alice</code><br><code>&lt;script&gt;evil&lt;/script&gt;</code>",
		"<code>totp</code>",
		"X-2fa-Enrolled</th><td><span class=\"none\">(not set)</span>",
		"X-2fa-Enrolment</th><td><code>grace</code>",
		"X-2fa-Enrolment-Deadline</th><td><code>2027-01-15T00:00:00Z</code>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "<script>") {
		t.Error("header value not escaped")
	}
	// The CSP hash matches the inline style block.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatal("no style block")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(r.header.Get("Content-Security-Policy"), h) {
		t.Errorf("CSP %q lacks %s", r.header.Get("Content-Security-Policy"), h)
	}
}

func TestLoginHelper(t *testing.T) {
	e := newEnv(t)
	if _, err := e.site.Login("nobody"); err == nil {
		t.Error("Login of an unknown ID succeeded")
	}
	a1, err := e.site.Login("admin")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := e.site.Login("admin")
	if a1 == a2 {
		t.Error("two sessions share a cookie value")
	}
	req, _ := http.NewRequest(http.MethodGet, e.server.URL+"/api/me", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: a2})
	r := e.do(t, http.DefaultClient, req)
	wantStatus(t, r, http.StatusOK)
	if m := decodeMe(t, r); m["id"] != "admin" {
		t.Errorf("me = %v", m)
	}
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.site.now = func() time.Time { return now }
	token, err := e.site.Login("bob")
	if err != nil {
		t.Fatal(err)
	}
	req := func() result {
		r, _ := http.NewRequest(http.MethodGet, e.server.URL+"/api/me", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: token})
		return e.do(t, http.DefaultClient, r)
	}
	now = now.Add(SessionLifetime - time.Second)
	wantStatus(t, req(), http.StatusOK)
	now = now.Add(time.Second)
	wantStatus(t, req(), http.StatusUnauthorized)
}

func TestMiscRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.get(t, e.client, "/healthz")
	wantStatus(t, r, http.StatusOK)
	if r.body != "ok" {
		t.Errorf("healthz body %q", r.body)
	}
	r = e.get(t, e.client, "/")
	wantStatus(t, r, http.StatusOK)
	for _, link := range []string{`href="/login"`, `href="/members/"`, `href="/admin/"`} {
		if !strings.Contains(r.body, link) {
			t.Errorf("top page lacks %s", link)
		}
	}
	if strings.Contains(r.body, "/.2fa/logout") {
		t.Error("sign-out link shown to a visitor")
	}
	wantStatus(t, e.get(t, e.client, "/nope"), http.StatusNotFound)
	wantStatus(t, e.get(t, e.client, "/api/other"), http.StatusNotFound)
}
