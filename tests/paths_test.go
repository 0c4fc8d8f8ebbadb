package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testrecord"
)

// upstreamLog is an upstream that records every request it gets, so a
// test can tell whether a request got past the gateway at all, whatever
// the upstream would have answered.
type upstreamLog struct {
	addr string
	seen testrecord.Recorder[seenRequest]
}

type seenRequest struct {
	method, uri string
	header      http.Header
}

func newUpstreamLog(t *testing.T) *upstreamLog {
	u := &upstreamLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.seen.Add(seenRequest{r.Method, r.RequestURI, r.Header.Clone()})
		fmt.Fprint(w, "upstream")
	}))
	t.Cleanup(srv.Close)
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

// routes sends everything but the member site's sign-in to the log.
func (u *upstreamLog) routes() string {
	return fmt.Sprintf("@logged not path /login\n\thandle @logged {\n\t\treverse_proxy %s\n\t}", u.addr)
}

// raw sends a request with its request line exactly as written (no client
// library cleans or escapes it) and the browser's cookies.
func (b *browser) raw(method, target string, header http.Header) *response {
	b.t.Helper()
	conn, err := net.Dial("tcp", b.e.host)
	if err != nil {
		b.t.Fatal(err)
	}
	defer conn.Close()
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, b.e.host)
	base, _ := url.Parse(b.e.base)
	for _, c := range b.jar.Cookies(base) {
		fmt.Fprintf(&req, "Cookie: %s=%s\r\n", c.Name, c.Value)
	}
	for name, vals := range header {
		for _, v := range vals {
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		b.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// pathCase is a request that must not reach the upstream for a member who
// has not passed the second factor.
type pathCase struct {
	method, target string
	header         http.Header
}

// checkStopped sends each case as the unverified member b and checks that
// the gateway answered it, with a challenge or a 400, and that nothing
// reached the upstream.
func checkStopped(t *testing.T, b *browser, up *upstreamLog, cases []pathCase) {
	t.Helper()
	for _, c := range cases {
		before := len(up.seen.All())
		r := b.raw(c.method, c.target, c.header)
		challenged := r.status == http.StatusFound && strings.HasPrefix(r.location(), "/.2fa/challenge?") ||
			r.status == http.StatusUnauthorized
		if !challenged && r.status != http.StatusBadRequest {
			t.Errorf("%s %s %v: %d %q, want a challenge or 400", c.method, c.target, c.header, r.status, r.location())
		}
		if seen := up.seen.All(); len(seen) > before {
			t.Errorf("%s %s %v reached the upstream as %s %s", c.method, c.target, c.header, seen[before].method, seen[before].uri)
		}
	}
}

// checkPasses sends a request that must reach the upstream, and returns
// what the upstream saw.
func checkPasses(t *testing.T, b *browser, up *upstreamLog, method, target string, header http.Header) seenRequest {
	t.Helper()
	before := len(up.seen.All())
	r := b.raw(method, target, header)
	seen := up.seen.All()
	if r.status != http.StatusOK || len(seen) != before+1 {
		t.Fatalf("%s %s: %d %q, %d requests upstream; want it to pass", method, target, r.status, r.location(), len(seen)-before)
	}
	return seen[before]
}

// overrideHeaders name another path or method; the gateway removes them
// from whatever it passes on. (Caddy itself drops the underscore spellings
// unless the server's expected_underscore_headers lets them in; the
// gateway's removal of those is tested on its own.)
var overrideHeaders = http.Header{
	"X-Original-Url": {"/members/x"}, "X_original_url": {"/members/x"}, "X-Rewrite-Url": {"/members/x"},
	"X-Original-Uri": {"/members/x"}, "X-Override-Url": {"/members/x"}, "X-Http-Method-Override": {"DELETE"},
	"X-Http-Method": {"DELETE"}, "X-Method-Override": {"DELETE"}, "X_HTTP_METHOD_OVERRIDE": {"DELETE"},
}

func checkNoOverrideHeaders(t *testing.T, what string, seen seenRequest) {
	t.Helper()
	for name := range seen.header {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.Contains(n, "original") || strings.Contains(n, "rewrite") || strings.Contains(n, "override") || n == "x-http-method" {
			t.Errorf("%s: %s reached the upstream", what, name)
		}
	}
}

// startLogged runs a gateway with the given protect rules in front of an
// upstream log. It returns two browsers signed in as alice, who is
// enrolled: one has passed the second factor, the other has not.
func startLogged(t *testing.T, protect string) (verified, unverified *browser, up *upstreamLog) {
	up = newUpstreamLog(t)
	e := start(t, setup{
		policy: `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	` + protect + `
	site_name "Test Members"
`,
		extra: up.routes(),
	})
	verified, _ = enrolled(e, "alice")
	unverified = e.browser()
	unverified.login("alice")
	return verified, unverified, up
}

func gets(targets ...string) []pathCase {
	var cases []pathCase
	for _, target := range targets {
		cases = append(cases, pathCase{http.MethodGet, target, nil})
	}
	return cases
}

// HS-3: however the path of a protected page is dressed up (encodings,
// ;parameters, backslashes, trailing dots and spaces, case, NUL, the
// directory without its slash, a decoded "?" or "#", letters that fold
// into ASCII, best-fit forms, NTFS streams, another method, headers naming
// another path), a member who has not passed the second factor is stopped
// at the gateway, and nothing reaches the upstream.
func TestProtectedPathsCannotBeEncodedAround(t *testing.T) {
	verified, b, up := startLogged(t, "protect /members/* {\n\t\texcept *.css\n\t}")
	cases := gets(
		"/members/x", "/members", "/members/", "/members;/x", "/x/..;/members/x", "/members%5cx", `/members\x`,
		"/members./x", "/members%20/x", "/members%00/x", "/members/%2e%2e/members/x", "//members/x",
		"/Members/x", "/MEMBERS", "/members/x;a=b", "/members/x%00", "/members%2fx", "/members/x%0d%0a",
		"/public/%252e%252e/members/x", "/members%3b/x", "/members;jsessionid=1/x", "/members.%20/x",
		"/members/..%3b/members/x", `/public/..\members\x`, "/members/.../x", "/members/%2525252e", "/members/%zz",
		"http://"+b.e.host+"/members/x",
		// Read as /members/x by an upstream that decodes before it splits
		// off the query, folds case, converts with best fit or opens NTFS
		// streams.
		"/members/x%3f/../../public/y", "/members/x%23/../../public/y", "/members/x%253f/../../public/y",
		"/members%3f/../x", "/members/secret%3f.css", "/member%C5%BF/x", "/MEMBER%C5%BF/x",
		"/public/%c0%ae%c0%ae/members/x", "/public/%ef%bc%8e%ef%bc%8e/members/x", "/public/%e2%80%a5/members/x",
		"/public/..%ef%bc%8fmembers/x", "/public/..%ef%bc%bcmembers/x", "/public/..%c2%a5members/x",
		"/members::$INDEX_ALLOCATION/x", "/members:$I30:$INDEX_ALLOCATION/x", "/members::%24INDEX_ALLOCATION/x",
	)
	for _, m := range []string{http.MethodHead, http.MethodOptions, http.MethodPost, http.MethodPut, http.MethodDelete, "PROPFIND"} {
		cases = append(cases, pathCase{m, "/members/x", overrideHeaders})
	}
	cases = append(cases, pathCase{http.MethodPost, "/members/x", http.Header{"X-Http-Method-Override": {"GET"}}})
	checkStopped(t, b, up, cases)

	// Unprotected paths pass, without any header naming another path or
	// method.
	checkNoOverrideHeaders(t, "GET /public", checkPasses(t, b, up, http.MethodGet, "/public", overrideHeaders))
	checkNoOverrideHeaders(t, "POST /public/x", checkPasses(t, b, up, http.MethodPost, "/public/x", overrideHeaders))
	checkPasses(t, b, up, http.MethodGet, "/membersonly", nil)
	checkPasses(t, b, up, http.MethodGet, "/public/x;jsessionid=1", nil)
	checkPasses(t, b, up, http.MethodGet, "/members/site.css", nil)
	checkPasses(t, b, up, http.MethodGet, "/wiki/Help:Contents", nil)
	// So does a verified member, on the paths as they are.
	seen := checkPasses(t, verified, up, http.MethodGet, "/members/x;jsessionid=1", overrideHeaders)
	checkNoOverrideHeaders(t, "verified GET /members/x", seen)
	if seen.uri != "/members/x;jsessionid=1" || seen.header.Get("X-2fa-User") != "alice" {
		t.Errorf("verified member: upstream saw %s with X-2fa-User %q", seen.uri, seen.header.Get("X-2fa-User"))
	}
	checkPasses(t, verified, up, http.MethodGet, "/members", nil)
}

// With everything protected but a few public paths (deny by default), an
// exception cannot be stretched over other paths: a path is exempt only
// if it is exempt both as sent and as any server may read it, in the case
// written.
func TestDenyByDefaultExceptionsCannotBeStretched(t *testing.T) {
	_, b, up := startLogged(t, "protect /* {\n\t\texcept /login /public/*\n\t}")
	checkStopped(t, b, up, gets(
		"/x", "/public", "/PUBLIC/x", "/Public/x", "/public/..;/x", "/public;/../x", "/public%5c..%5cx",
		`/public\..\x`, "/public/%252e%252e/x", "/public/%2e%2e/x", "/public/..%2fx", "/public./x",
		"/public%20/x", "/public/.../x", "/public/x%00", `/public;\..\x`, "/public/x/..;/..;/x",
		"/x%2f..%2fpublic/y", "/public%2fx",
		"/members/x%3f/../../public/y", "/members/x%23/../../public/y", "/members/x%253f/../../public/y",
		"/public/%c0%ae%c0%ae/members/x", "/public/%ef%bc%8e%ef%bc%8e/members/x", "/public/%e2%80%a5/members/x",
		"/public/..%ef%bc%8fmembers/x", "/public/..%c2%a5members/x",
	))
	for _, target := range []string{
		"/public/x", "/public/X", "/public/x;jsessionid=1", "/public/a%20b", "//public/x", "/public/a%2Fb",
		"/public/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B",
	} {
		checkPasses(t, b, up, http.MethodGet, target, nil)
	}
}

// Paths in other scripts (here /会員/お知らせ, percent-encoded as browsers
// send it) are matched like any other: a protected one is challenged, a
// public one reaches the upstream as sent.
func TestNonASCIIPaths(t *testing.T) {
	verified, b, up := startLogged(t, "protect /会員/*")
	const notices = "/%E4%BC%9A%E5%93%A1/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B"
	if r := b.raw(http.MethodGet, notices, nil); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Errorf("GET %s: %d %q, want a challenge", notices, r.status, r.location())
	}
	checkStopped(t, b, up, gets(notices, "/%E4%BC%9A%E5%93%A1"))
	for _, target := range []string{"/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B/2024", "/caf%C3%A9/%C3%84rger"} {
		if seen := checkPasses(t, b, up, http.MethodGet, target, nil); seen.uri != target {
			t.Errorf("GET %s reached the upstream as %s", target, seen.uri)
		}
	}
	if seen := checkPasses(t, verified, up, http.MethodGet, notices, nil); seen.uri != notices {
		t.Errorf("verified GET %s reached the upstream as %s", notices, seen.uri)
	}
}
