// Package tests runs the gateway end to end: a real Caddy in this process,
// loaded from a Caddyfile, in front of the demo member site and an echo
// upstream on loopback, driven by clients with their own cookie jars. One
// Caddy runs per process, so these tests do not run in parallel.
package tests

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/net/html"

	_ "github.com/caddy-twofactor/twofactor"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
)

func TestMain(m *testing.M) {
	if os.Getenv(caddyCommand) != "" {
		// A child acting as the caddy command (validate_test.go), with
		// its own data directory.
		os.Args = append([]string{"caddy"}, os.Args[1:]...)
		caddycmd.Main()
		return
	}
	dir, err := os.MkdirTemp("", "twofactor-tests-")
	if err != nil {
		panic(err)
	}
	// Caddy's data and config directories, private to this run.
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	var code int
	if cfg := os.Getenv(instanceConfig); cfg != "" {
		code = runInstance(cfg) // a gateway process of instances_test.go
	} else {
		code = m.Run()
	}
	_ = caddy.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testKey = "integration-test-key-0123456789abcdef"

// env is one running gateway with its upstreams.
type env struct {
	t       testing.TB
	base    string // the gateway, e.g. http://127.0.0.1:40123
	host    string
	site    *membersite.Site
	siteURL string
	echoURL string
	clock   *clock.Fake
	dbPath  string
	https   bool
	port    int
	logPath string
	admin   string // Caddy's admin endpoint, or "" when off
}

// setup describes the gateway configuration of one test.
type setup struct {
	// Lines inside the global two_factor block. Default: the test key and
	// a store in the test's temporary directory.
	global string
	// The body of the site's two_factor directive. Default: defaultPolicy.
	policy string
	// Extra site directives before the upstreams.
	extra string
	// Serve HTTPS with Caddy's internal CA.
	https bool
	// Reuse this store file (restarts).
	dbPath string
	// Keep the clock of an earlier env.
	clock *clock.Fake
	// More site blocks after the gateway's own ({SITE} and {ECHO} as in
	// policy and extra).
	sites string
	// Serve Caddy's admin endpoint on a free loopback port (env.admin).
	admin bool
	// More global options after the default log, such as named logs.
	options string
	// The member site's members. Default: membersite.DemoMembers().
	members []membersite.Member
}

const defaultPolicy = `
	identity endpoint {SITE}/api/me {
		session_cookie member_session
	}
	protect /members/* /echo/* {
		except /members/public/*
		remember_device 30d
	}
	protect /admin/* /echo-admin/* {
		remember_device off
	}
	protect /optional/* {
		enrolment optional
	}
	site_name "Test Members"
`

// echo answers with the request it received, so tests can see exactly
// what reached the upstream.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "method": r.Method, "headers": r.Header})
}

// caddyfile builds the test configuration.
func (e *env) caddyfile(s setup) string {
	global := s.global
	if global == "" {
		global = fmt.Sprintf("keys %q\n\t\tstore embedded %q", testKey, e.dbPath)
	}
	policy := s.policy
	if policy == "" {
		policy = defaultPolicy
	}
	policy = strings.ReplaceAll(policy, "{SITE}", e.siteURL)
	policy = strings.ReplaceAll(policy, "{PORT}", strconv.Itoa(e.port)) // the gateway's, for site_url
	extra := strings.ReplaceAll(s.extra, "{ECHO}", strings.TrimPrefix(e.echoURL, "http://"))
	sites := strings.ReplaceAll(s.sites, "{ECHO}", strings.TrimPrefix(e.echoURL, "http://"))
	sites = strings.ReplaceAll(sites, "{SITE}", e.siteURL)
	scheme, tlsLine := "http", ""
	if e.https {
		scheme, tlsLine = "https", "tls internal"
	}
	admin := "off"
	if e.admin != "" {
		admin = e.admin
	}
	return fmt.Sprintf(`{
	log {
		output file %q
		format json
	}
	%s
	admin %s
	skip_install_trust
	auto_https disable_redirects
	persist_config off
	two_factor {
		%s
	}
}

%s://127.0.0.1:%d {
	%s
	two_factor {
		%s
	}
	%s
	@echo path /echo/* /echo-admin/* /optional/* /public/*
	reverse_proxy @echo %s
	reverse_proxy %s
}
%s
`, e.logPath, s.options, admin, global, scheme, e.port, tlsLine, policy, extra, strings.TrimPrefix(e.echoURL, "http://"), strings.TrimPrefix(e.siteURL, "http://"), sites)
}

// load adapts and loads a Caddyfile, returning Caddy's error.
func load(cfg string) error {
	adapted, err := adapt(cfg)
	if err != nil {
		return err
	}
	return caddy.Load(adapted, true)
}

// adapt turns a Caddyfile into Caddy's JSON config.
func adapt(cfg string) ([]byte, error) {
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	return adapted, err
}

// start runs a gateway for the test and stops it when the test ends.
func start(t testing.TB, s setup) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	// Caddy's data directory: one per test, kept across the test's
	// restarts, like one machine's.
	t.Setenv("XDG_DATA_HOME", dataDir(t))
	e := &env{t: t, https: s.https, port: testnet.FreePort(t), dbPath: s.dbPath, clock: s.clock}
	if e.dbPath == "" {
		e.dbPath = filepath.Join(t.TempDir(), "twofactor.db")
	}
	if e.clock == nil {
		// Start just after a time-step boundary so a test has a whole
		// step before codes change.
		now := time.Now().Truncate(30 * time.Second).Add(time.Second)
		e.clock = clock.NewFake(now)
	}
	t.Cleanup(clock.Set(e.clock.Now))

	members := s.members
	if members == nil {
		members = membersite.DemoMembers()
	}
	e.site = membersite.New(members)
	siteSrv := httptest.NewServer(e.site)
	t.Cleanup(siteSrv.Close)
	e.siteURL = siteSrv.URL
	echoSrv := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(echoSrv.Close)
	e.echoURL = echoSrv.URL

	scheme := "http"
	if e.https {
		scheme = "https"
	}
	e.logPath = filepath.Join(t.TempDir(), "caddy.log")
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(e.logPath); err == nil {
				t.Logf("Caddy's log:\n%s", b)
			}
		}
	})
	// A free port can be taken by another test process (a redis-server,
	// a browser) between finding it and Caddy binding it: try another.
	for try := 1; ; try++ {
		e.host = fmt.Sprintf("127.0.0.1:%d", e.port)
		if s.admin {
			// A port of its own each time: the endpoint of an earlier
			// start closes only after the next one binds.
			e.admin = fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
		}
		e.base = fmt.Sprintf("%s://%s", scheme, e.host)
		err := load(e.caddyfile(s))
		if err == nil {
			break
		}
		if try == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("loading config: %v", err)
		}
		e.port = testnet.FreePort(t)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	e.waitReady()
	return e
}

// stop stops Caddy. The two_factor app's Stop waits for the background
// work still running, such as notices being sent: after it, what was
// going to be sent has been, and nothing more will be.
func (e *env) stop() {
	e.t.Helper()
	if err := caddy.Stop(); err != nil {
		e.t.Fatal(err)
	}
}

var dataDirs sync.Map // testing.TB → its data directory

func dataDir(t testing.TB) string {
	if d, ok := dataDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	dataDirs.Store(t, d)
	t.Cleanup(func() { dataDirs.Delete(t) })
	return d
}

func (e *env) waitReady() {
	e.t.Helper()
	c := e.browser().c
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(e.base + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatal("gateway did not start")
}

// audit returns the audit entries logged so far.
func (e *env) audit() []map[string]any {
	e.t.Helper()
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["logger"] == "two_factor.audit" {
			out = append(out, entry)
		}
	}
	return out
}

// code returns the authenticator app's code at the test clock's time,
// offset by whole time steps.
func (e *env) code(secret string, steps int) string {
	e.t.Helper()
	c, err := totp.GenerateCodeCustom(secret, e.clock.Now().Add(time.Duration(steps)*30*time.Second), totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// nextStep moves the clock into the next time step, so that a fresh code
// exists (a code's step is accepted once only).
func (e *env) nextStep() { e.clock.Advance(30 * time.Second) }

// browser is one client with its own cookies, like one browser profile.
type browser struct {
	t      testing.TB
	e      *env
	c      *http.Client
	jar    *cookiejar.Jar
	lang   string
	header http.Header
	// recovery holds the recovery codes shown at the member's first
	// enrolment in this browser.
	recovery []string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{
		t: e.t, e: e, jar: jar, lang: "en", header: http.Header{},
		c: &http.Client{
			Jar:     jar,
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // Caddy's internal CA
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// response is what a request returned, body read.
type response struct {
	status  int
	header  http.Header
	body    string
	cookies []*http.Cookie
}

func (r *response) location() string { return r.header.Get("Location") }

func (b *browser) do(req *http.Request) *response {
	b.t.Helper()
	req.Header.Set("Accept-Language", b.lang)
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: string(body), cookies: resp.Cookies()}
}

func (b *browser) get(path string) *response {
	b.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, b.e.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// afterReload sends b's first request after a reload, which must pass.
// Each reload closes the old server's idle connections; one closed just
// as the browser reuses it is the keep-alive race HTTP has, not the
// gateway's, so the browser starts on a fresh connection. A connection
// the old server accepted as it shut down can also end without an answer
// (EOF): that too is the reload's, so up to three connections are tried
// before calling it a failure.
func (b *browser) afterReload(path string) {
	b.t.Helper()
	b.c.CloseIdleConnections()
	for try := 1; ; try++ {
		resp, err := b.c.Get(b.e.base + path)
		if err != nil && try < 3 {
			b.t.Logf("after a reload, try %d: %v", try, err)
			continue
		}
		if err != nil {
			b.t.Fatalf("after a reload: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.t.Fatalf("after a reload: %d", resp.StatusCode)
		}
		return
	}
}

func (b *browser) post(path string, form url.Values) *response {
	b.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, b.e.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.base)
	return b.do(req)
}

// login signs in at the member site, through the gateway, with the demo
// password.
func (b *browser) login(id string) {
	b.t.Helper()
	for _, m := range membersite.DemoMembers() {
		if m.ID == id {
			r := b.post("/login", url.Values{"id": {m.ID}, "password": {m.Password}, "next": {"/"}})
			if r.status != http.StatusSeeOther {
				b.t.Fatalf("login %s: status %d: %s", id, r.status, r.body)
			}
			return
		}
	}
	b.t.Fatalf("no demo member %s", id)
}

// cookie returns the jar's cookie named name for the gateway.
func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// setCookie puts a cookie into the jar, as if the server had set it.
func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.e.base)
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: b.e.https}})
}

// form fetches a gateway page and returns its CSRF token.
func (b *browser) csrf(page string) string {
	b.t.Helper()
	r := b.get(page)
	if r.status != http.StatusOK {
		b.t.Fatalf("GET %s: status %d: %s", page, r.status, r.body)
	}
	tok := inputValue(r.body, "csrf")
	if tok == "" {
		b.t.Fatalf("GET %s: no csrf token in %s", page, r.body)
	}
	return tok
}

// enrol sets up the authenticator app for the signed-in member and returns
// its secret. The clock moves to the next step afterwards.
func (b *browser) enrol(returnTo string) string {
	b.t.Helper()
	secret := b.enrolWith(returnTo, func(secret string) string { return b.e.code(secret, 0) })
	b.e.nextStep()
	return secret
}

// enrolWith sets up the authenticator app, confirming with the code that
// code gives for the secret, and returns the secret.
func (b *browser) enrolWith(returnTo string, code func(secret string) string) string {
	b.t.Helper()
	rt := url.QueryEscape(returnTo)
	tok := b.csrf("/.2fa/enrol?return_to=" + rt)
	r := b.post("/.2fa/enrol", url.Values{"csrf": {tok}, "return_to": {returnTo}})
	if r.status != http.StatusOK {
		b.t.Fatalf("starting enrolment: status %d: %s", r.status, r.body)
	}
	secret := enrolmentSecret(b.t, r.body)
	r = b.post("/.2fa/enrol/confirm", url.Values{"csrf": {inputValue(r.body, "csrf")}, "return_to": {returnTo}, "code": {code(secret)}})
	b.recovery = enrolDone(b.t, r, returnTo)
	return secret
}

// verify submits a code on the challenge page for returnTo.
func (b *browser) verify(code, returnTo string, remember bool) *response {
	b.t.Helper()
	tok := b.csrf("/.2fa/challenge?return_to=" + url.QueryEscape(returnTo))
	form := url.Values{"csrf": {tok}, "return_to": {returnTo}, "code": {code}}
	if remember {
		form.Set("remember", "1")
	}
	return b.post("/.2fa/challenge", form)
}

// upstream fetches an echo path and returns the headers the upstream saw.
func (b *browser) upstream(path string) (int, http.Header) {
	b.t.Helper()
	r := b.get(path)
	if r.status != http.StatusOK {
		return r.status, nil
	}
	var got struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		b.t.Fatalf("GET %s: not the echo upstream: %v: %s", path, err, r.body)
	}
	return r.status, got.Headers
}

// inputValue returns the value of the first input named name in page.
func inputValue(page, name string) string {
	var v string
	walk(page, func(n *html.Node) bool {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") == name {
			v = attr(n, "value")
			return true
		}
		return false
	})
	return v
}

// enrolmentSecret reads the secret from the otpauth:// link of the
// enrolment page, the way a phone reads it from the QR code.
func enrolmentSecret(t testing.TB, page string) string {
	t.Helper()
	var uri string
	walk(page, func(n *html.Node) bool {
		if n.Type == html.ElementNode && n.Data == "a" && strings.HasPrefix(attr(n, "href"), "otpauth://") {
			uri = attr(n, "href")
			return true
		}
		return false
	})
	u, err := url.Parse(uri)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("no otpauth link with a secret in the enrolment page: %s", page)
	}
	return u.Query().Get("secret")
}

func walk(page string, visit func(*html.Node) bool) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return
	}
	var rec func(*html.Node) bool
	rec = func(n *html.Node) bool {
		if visit(n) {
			return true
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if rec(c) {
				return true
			}
		}
		return false
	}
	rec(doc)
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func listen(port int) (net.Listener, error) {
	return net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
}

// recoveryCodePattern is how recovery codes are shown: four groups of
// four Crockford base32 symbols.
var recoveryCodePattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$`)

// enrolDone checks the answer to a confirmed enrolment: a member's first
// method brings the page with their recovery codes, shown once with a link
// on to returnTo; a later method (not added from the settings page) a
// confirmation with that link. It returns the codes shown, if any.
func enrolDone(t testing.TB, r *response, returnTo string) []string {
	t.Helper()
	codes := recoveryCodes(r.body)
	if r.status == http.StatusOK && len(codes) == 0 && strings.Contains(r.body, `<a class="button" href="`+html.EscapeString(returnTo)+`"`) &&
		regexp.MustCompile(`<p>(The authenticator app is set up|Email codes are on|Text message codes are on|認証アプリを設定しました|メールでのコード受け取り|SMSでのコード受け取り)`).MatchString(r.body) {
		return nil
	}
	if r.status != http.StatusOK || len(codes) != 10 || !strings.Contains(r.body, `href="`+html.EscapeString(returnTo)+`"`) {
		t.Fatalf("after confirming: %d %q, %d recovery codes, want a link to %s: %s", r.status, r.location(), len(codes), returnTo, r.body)
	}
	return codes
}

// recoveryCodes returns the recovery codes a page shows.
func recoveryCodes(page string) []string {
	var codes []string
	walk(page, func(n *html.Node) bool {
		if n.Type == html.ElementNode && n.Data == "code" && n.FirstChild != nil && recoveryCodePattern.MatchString(n.FirstChild.Data) {
			codes = append(codes, n.FirstChild.Data)
		}
		return false
	})
	return codes
}
