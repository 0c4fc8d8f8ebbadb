package twofactor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/session"
)

func testCaddyContext(t testing.TB) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// useFakeClock installs a fake clock for the rest of the test. Tests that
// call it must not run in parallel: the clock is process-wide.
func useFakeClock(t *testing.T) *clock.Fake {
	t.Helper()
	fake := clock.NewFake(time.Date(2030, 4, 1, 9, 0, 0, 0, time.UTC))
	restore := clock.Set(fake.Now)
	t.Cleanup(restore)
	return fake
}

// whoami is a member site's "who am I" endpoint that counts its calls.
type whoami struct {
	*httptest.Server
	calls atomic.Int64

	mu     sync.Mutex
	answer func(w http.ResponseWriter, r *http.Request)
	last   *http.Request
}

func newWhoami(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *whoami {
	t.Helper()
	s := &whoami{answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		s.mu.Lock()
		s.last = r.Clone(context.Background())
		answer := s.answer
		s.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *whoami) setAnswer(answer func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.answer = answer
	s.mu.Unlock()
}

func (s *whoami) lastRequest() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func jsonAnswer(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

// answerBySID answers {"id":"member-<sid>"} for any sid cookie.
func answerBySID(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("sid")
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	fmt.Fprintf(w, `{"id":"member-%s"}`, c.Value)
}

func newEndpointSource(t *testing.T, url string, edit func(*Identity)) *endpointSource {
	t.Helper()
	cfg := &Identity{Source: "endpoint", URL: url, SessionCookie: "sid"}
	if edit != nil {
		edit(cfg)
	}
	src, err := provisionIdentity(cfg)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	e, ok := src.(*endpointSource)
	if !ok {
		t.Fatalf("provision returned %T, want *endpointSource", src)
	}
	return e
}

// provisionIdentity provisions and validates cfg, as Caddy does.
func provisionIdentity(cfg *Identity) (identitySource, error) {
	src, err := cfg.provision(zap.NewNop())
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return src, nil
}

func memberRequest(cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://club.example/members/page", nil)
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

func TestEndpointSourceAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    flow.Identity // Binding is filled in for non-empty IDs
		wantErr bool
	}{
		{name: "string id", status: 200, body: `{"id":"u-42","email":"ann@club.example","phone":"+81 90 0000 0000"}`,
			want: flow.Identity{ID: "u-42", Email: "ann@club.example", Phone: "+81 90 0000 0000"}},
		{name: "numeric id", status: 200, body: `{"id":42,"email":"bob@club.example"}`,
			want: flow.Identity{ID: "42", Email: "bob@club.example"}},
		{name: "large numeric id kept exactly", status: 200, body: `{"id":12345678901234567890}`,
			want: flow.Identity{ID: "12345678901234567890"}},
		{name: "unknown fields ignored", status: 200, body: `{"id":"u-1","roles":["admin"]}`,
			want: flow.Identity{ID: "u-1"}},
		{name: "unicode id", status: 200, body: `{"id":"会員-7"}`, want: flow.Identity{ID: "会員-7"}},
		{name: "401 means not signed in", status: 401, body: `{"id":"u-42"}`},
		{name: "403 means not signed in", status: 403, body: `{"id":"u-42"}`},
		{name: "500", status: 500, body: `{"id":"u-42"}`, wantErr: true},
		{name: "404", status: 404, body: `{"id":"u-42"}`, wantErr: true},
		{name: "204", status: 204, wantErr: true},
		{name: "bad JSON", status: 200, body: `{"id":"u-42"`, wantErr: true},
		{name: "HTML", status: 200, body: `<html>sign in</html>`, wantErr: true},
		{name: "missing id", status: 200, body: `{"email":"ann@club.example"}`, wantErr: true},
		{name: "null id", status: 200, body: `{"id":null}`, wantErr: true},
		{name: "empty id", status: 200, body: `{"id":""}`, wantErr: true},
		{name: "boolean id", status: 200, body: `{"id":true}`, wantErr: true},
		{name: "object id", status: 200, body: `{"id":{"v":1}}`, wantErr: true},
		{name: "id with newline", status: 200, body: `{"id":"ann\nX-2fa-User: root"}`, wantErr: true},
		{name: "id with NUL", status: 200, body: `{"id":"ann\u0000"}`, wantErr: true},
		{name: "id with DEL", status: 200, body: `{"id":"ann\u007f"}`, wantErr: true},
		{name: "id too long", status: 200, body: `{"id":"` + strings.Repeat("a", maxIdentityLength+1) + `"}`, wantErr: true},
		{name: "id at the limit", status: 200, body: `{"id":"` + strings.Repeat("a", maxIdentityLength) + `"}`,
			want: flow.Identity{ID: strings.Repeat("a", maxIdentityLength)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newWhoami(t, jsonAnswer(tt.status, tt.body))
			src := newEndpointSource(t, srv.URL, nil)
			r := memberRequest("sid=s3ss10n")
			got, err := src.resolve(r)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("resolve = %+v, nil error; want an error", got)
				}
				if got.ID != "" {
					t.Fatalf("resolve returned ID %q together with error %v", got.ID, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			want := tt.want
			if want.ID != "" {
				want.Binding, _, _ = session.Binding(r, "sid")
			}
			if got != want {
				t.Errorf("resolve = %+v, want %+v", got, want)
			}
			if n := srv.calls.Load(); n != 1 {
				t.Errorf("endpoint called %d times, want 1", n)
			}
		})
	}
}

func TestEndpointSourceSendsMemberCookiesOnly(t *testing.T) {
	srv := newWhoami(t, jsonAnswer(200, `{"id":"u-1"}`))
	src := newEndpointSource(t, srv.URL, nil)
	r := memberRequest("sid=abc; theme=dark; 2fa_session=gw1; __Host-2fa_session=gw2; 2fa_device=gw3; " +
		"__Host-2fa_device=gw4; 2fa_csrf=gw5; __Host-2fa_csrf=gw6; 2fa_remind=gw7; cart=42")
	r.Header.Set("Authorization", "Bearer member-token")
	r.Header.Set("X-2fa-User", "forged")
	if _, err := src.resolve(r); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	got := srv.lastRequest()
	if got == nil {
		t.Fatal("endpoint not called")
	}
	if got.Method != http.MethodGet {
		t.Errorf("method = %s, want GET", got.Method)
	}
	if a := got.Header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept = %q, want application/json", a)
	}
	var cookies []string
	for _, c := range got.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	sort.Strings(cookies)
	want := []string{"cart=42", "sid=abc", "theme=dark"}
	if strings.Join(cookies, "; ") != strings.Join(want, "; ") {
		t.Errorf("endpoint received cookies %q, want %q", cookies, want)
	}
	if raw := strings.Join(got.Header.Values("Cookie"), ";"); strings.Contains(raw, "gw") {
		t.Errorf("a gateway cookie reached the endpoint: %q", raw)
	}
	// Only cookies are forwarded, not other request headers.
	if v := got.Header.Get("Authorization"); v != "" {
		t.Errorf("Authorization forwarded: %q", v)
	}
	if v := got.Header.Get("X-2fa-User"); v != "" {
		t.Errorf("X-2fa-User forwarded: %q", v)
	}
}

func TestEndpointSourceRefusalIsNotCached(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			useFakeClock(t)
			srv := newWhoami(t, jsonAnswer(status, `{}`))
			src := newEndpointSource(t, srv.URL, nil)

			got, err := src.resolve(memberRequest("sid=same"))
			if err != nil || got != (flow.Identity{}) {
				t.Fatalf("resolve = %+v, %v; want empty identity, nil error", got, err)
			}
			// The member signs in; many sites keep the same session ID.
			srv.setAnswer(jsonAnswer(200, `{"id":"u-7"}`))
			got, err = src.resolve(memberRequest("sid=same"))
			if err != nil {
				t.Fatalf("resolve after sign-in: %v", err)
			}
			if got.ID != "u-7" {
				t.Errorf("after sign-in ID = %q, want u-7 at once", got.ID)
			}
			if n := srv.calls.Load(); n != 2 {
				t.Errorf("endpoint called %d times, want 2", n)
			}
		})
	}
}

func TestEndpointSourceErrorIsNotCached(t *testing.T) {
	useFakeClock(t)
	srv := newWhoami(t, jsonAnswer(500, `oops`))
	src := newEndpointSource(t, srv.URL, nil)
	if _, err := src.resolve(memberRequest("sid=x")); err == nil {
		t.Fatal("500 gave no error")
	}
	srv.setAnswer(jsonAnswer(200, `{"id":"u-1"}`))
	got, err := src.resolve(memberRequest("sid=x"))
	if err != nil || got.ID != "u-1" {
		t.Fatalf("after recovery resolve = %+v, %v; want u-1", got, err)
	}
}

func TestEndpointSourceDoesNotFollowRedirects(t *testing.T) {
	elsewhere := newWhoami(t, jsonAnswer(200, `{"id":"attacker-chosen"}`))
	srv := newWhoami(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusFound)
	})
	src := newEndpointSource(t, srv.URL, nil)
	// A redirect (typically to the sign-in page) means nobody is signed in.
	got, err := src.resolve(memberRequest("sid=secret-session"))
	if err != nil || got.ID != "" {
		t.Fatalf("redirect gave %+v, %v; want no identity and no error", got, err)
	}
	if n := elsewhere.calls.Load(); n != 0 {
		t.Errorf("redirect target called %d times; the member's cookie left the site", n)
	}
}

func TestEndpointSourceTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newWhoami(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	src := newEndpointSource(t, srv.URL, func(c *Identity) { c.Timeout = caddy.Duration(100 * time.Millisecond) })

	start := time.Now()
	got, err := src.resolve(memberRequest("sid=x"))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("blocked endpoint gave %+v and no error", got)
	}
	if got.ID != "" {
		t.Errorf("timeout gave ID %q", got.ID)
	}
	// Well under the 3s default: the configured timeout applies.
	if elapsed > 2*time.Second {
		t.Errorf("resolve took %v with a 100ms timeout", elapsed)
	}
}

func TestEndpointSourceIgnoresClientCancel(t *testing.T) {
	// The member's request may be cancelled (the browser went away); the
	// shared fetch must not fail for the other waiters because of it.
	srv := newWhoami(t, jsonAnswer(200, `{"id":"u-1"}`))
	src := newEndpointSource(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := src.resolve(memberRequest("sid=x").WithContext(ctx))
	if err != nil || got.ID != "u-1" {
		t.Fatalf("resolve with cancelled request context = %+v, %v; want u-1", got, err)
	}
}

func TestEndpointSourceWithoutSessionCookie(t *testing.T) {
	srv := newWhoami(t, jsonAnswer(200, `{"id":"u-1"}`))
	src := newEndpointSource(t, srv.URL, nil)
	for _, cookie := range []string{
		"",
		"theme=dark",
		"sid=",
		"SID=abc",                 // cookie names are case-sensitive
		"2fa_session=x; sidx=abc", // neither is the member-site session
	} {
		got, err := src.resolve(memberRequest(cookie))
		if err != nil || got != (flow.Identity{}) {
			t.Errorf("cookie %q: resolve = %+v, %v; want empty identity", cookie, got, err)
		}
	}
	if n := srv.calls.Load(); n != 0 {
		t.Errorf("endpoint called %d times without a session cookie", n)
	}
}

func TestEndpointSourceCache(t *testing.T) {
	fake := useFakeClock(t)
	srv := newWhoami(t, jsonAnswer(200, `{"id":"u-old"}`))
	src := newEndpointSource(t, srv.URL, func(c *Identity) { c.Cache = caddy.Duration(30 * time.Second) })

	resolve := func() string {
		t.Helper()
		got, err := src.resolve(memberRequest("sid=abc; theme=dark"))
		if err != nil {
			t.Fatalf("resolve: %v", err)
		}
		return got.ID
	}

	if id := resolve(); id != "u-old" {
		t.Fatalf("first ID = %q", id)
	}
	srv.setAnswer(jsonAnswer(200, `{"id":"u-new"}`))

	fake.Advance(30*time.Second - time.Nanosecond)
	if id := resolve(); id != "u-old" {
		t.Errorf("within the TTL ID = %q, want the cached u-old", id)
	}
	if n := srv.calls.Load(); n != 1 {
		t.Errorf("within the TTL endpoint called %d times, want 1", n)
	}

	fake.Advance(time.Nanosecond)
	if id := resolve(); id != "u-new" {
		t.Errorf("after the TTL ID = %q, want u-new", id)
	}
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("after the TTL endpoint called %d times, want 2", n)
	}

	// The refreshed answer is cached again from now.
	fake.Advance(10 * time.Second)
	resolve()
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("endpoint called %d times, want the refreshed answer cached", n)
	}
}

// A member-site session in use all the time stays cached while sessions
// seen once, many times the bound, pass through: the endpoint is asked
// for the cold ones only, never again for the hot one.
func TestEndpointSourceKeepsHotSession(t *testing.T) {
	useFakeClock(t)
	srv := newWhoami(t, answerBySID)
	const size = 1000
	src := newEndpointSource(t, srv.URL, func(c *Identity) { c.CacheSize = size })
	get := func(cookie string) {
		t.Helper()
		if _, err := src.resolve(memberRequest(cookie)); err != nil {
			t.Fatalf("resolve(%q): %v", cookie, err)
		}
	}
	get("sid=hot")
	for i := range 5 * size {
		get(fmt.Sprintf("sid=cold-%d", i))
		get("sid=hot")
	}
	if n, want := srv.calls.Load(), int64(1+5*size); n != want {
		t.Errorf("endpoint called %d times for one hot session and %d cold ones; want %d", n, 5*size, want)
	}
	if n := src.known.Len(); n > size {
		t.Errorf("%d answers cached, bound %d", n, size)
	}
}

func TestEndpointSourceCacheIsPerCookie(t *testing.T) {
	useFakeClock(t)
	srv := newWhoami(t, answerBySID)
	src := newEndpointSource(t, srv.URL, nil)

	get := func(cookie string) flow.Identity {
		t.Helper()
		got, err := src.resolve(memberRequest(cookie))
		if err != nil {
			t.Fatalf("resolve(%q): %v", cookie, err)
		}
		return got
	}
	a1 := get("sid=aaa")
	b1 := get("sid=bbb")
	a2 := get("theme=light; sid=aaa")
	b2 := get("sid=bbb")

	if a1.ID != "member-aaa" || a2.ID != "member-aaa" {
		t.Errorf("cookie aaa gave %q and %q, want member-aaa", a1.ID, a2.ID)
	}
	if b1.ID != "member-bbb" || b2.ID != "member-bbb" {
		t.Errorf("cookie bbb gave %q and %q, want member-bbb", b1.ID, b2.ID)
	}
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("endpoint called %d times, want one per cookie value (2)", n)
	}
	if a1.Binding != a2.Binding {
		t.Error("same session cookie gave different bindings")
	}
	if a1.Binding == b1.Binding {
		t.Error("different session cookies gave the same binding")
	}
	if a1.Binding == ([16]byte{}) {
		t.Error("binding is zero although a session cookie is present")
	}
}

func TestEndpointSourceSingleflight(t *testing.T) {
	useFakeClock(t)
	release := make(chan struct{})
	srv := newWhoami(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprint(w, `{"id":"u-1"}`)
	})
	src := newEndpointSource(t, srv.URL, nil)

	const n = 50
	var (
		ready, done sync.WaitGroup
		barrier     = make(chan struct{})
		results     = make([]flow.Identity, n)
		errs        = make([]error, n)
	)
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-barrier
			results[i], errs[i] = src.resolve(memberRequest("sid=shared"))
		}()
	}
	ready.Wait()
	close(barrier)

	// Hold the endpoint until every goroutine waits in the same flight,
	// so a late one cannot start a second call after the first ends.
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		nbytes := runtime.Stack(buf, true)
		if nbytes == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if strings.Count(string(buf[:nbytes]), "singleflight.(*Group).Do(") >= n {
			break
		}
		if c := srv.calls.Load(); c > 1 {
			close(release)
			t.Fatalf("endpoint called %d times by concurrent requests for one cookie, want 1", c)
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("goroutines did not all reach the singleflight group")
		}
		runtime.Gosched()
	}
	close(release)
	done.Wait()

	for i := range n {
		if errs[i] != nil || results[i].ID != "u-1" {
			t.Fatalf("goroutine %d: %+v, %v", i, results[i], errs[i])
		}
	}
	if c := srv.calls.Load(); c != 1 {
		t.Errorf("endpoint called %d times by %d concurrent requests, want 1", c, n)
	}
}

func TestEndpointSourceProvisionDefaults(t *testing.T) {
	e := newEndpointSource(t, "https://club.example/api/me", nil)
	if e.ttl != 10*time.Second {
		t.Errorf("default cache = %v, want 10s", e.ttl)
	}
	if n := e.known; n == nil || e.ttl != 10*time.Second {
		t.Error("no answers cache")
	}
	if e.timeout != 3*time.Second || e.client.Timeout != 3*time.Second {
		t.Errorf("default timeout = %v (client %v), want 3s", e.timeout, e.client.Timeout)
	}
	if e.cookie != "sid" || e.url != "https://club.example/api/me" {
		t.Errorf("cookie %q url %q", e.cookie, e.url)
	}
	e = newEndpointSource(t, "http://127.0.0.1:9000/me", func(c *Identity) {
		c.Cache = caddy.Duration(10 * time.Minute)
		c.Timeout = caddy.Duration(500 * time.Millisecond)
	})
	if e.ttl != 10*time.Minute || e.timeout != 500*time.Millisecond {
		t.Errorf("cache %v timeout %v, want 10m and 500ms", e.ttl, e.timeout)
	}
}

func withReplacer(r *http.Request, vars map[string]any) *http.Request {
	repl := caddy.NewReplacer()
	for k, v := range vars {
		repl.Set(k, v)
	}
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}

func newHeaderSource(t *testing.T, cfg *Identity) *headerSource {
	t.Helper()
	cfg.Source = "header"
	src, err := provisionIdentity(cfg)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	h, ok := src.(*headerSource)
	if !ok {
		t.Fatalf("provision returned %T, want *headerSource", src)
	}
	return h
}

func TestHeaderSourcePlaceholder(t *testing.T) {
	src := newHeaderSource(t, &Identity{Header: "{http.auth.user.id}"})
	tests := []struct {
		name string
		vars map[string]any // nil: no replacer in the context at all
		hdr  string         // a client header with the placeholder's name
		want string
	}{
		{name: "set", vars: map[string]any{"http.auth.user.id": "alice"}, want: "alice"},
		{name: "not set", vars: map[string]any{"other": "bob"}},
		{name: "no replacer"},
		{name: "client header is not the placeholder", vars: map[string]any{}, hdr: "mallory"},
		{name: "empty", vars: map[string]any{"http.auth.user.id": ""}},
		{name: "control character", vars: map[string]any{"http.auth.user.id": "ali\rce"}},
		{name: "too long", vars: map[string]any{"http.auth.user.id": strings.Repeat("a", maxIdentityLength+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := memberRequest("")
			if tt.hdr != "" {
				r.Header.Set("Http.auth.user.id", tt.hdr)
			}
			if tt.vars != nil {
				r = withReplacer(r, tt.vars)
			}
			got, err := src.resolve(r)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if got.ID != tt.want {
				t.Errorf("ID = %q, want %q", got.ID, tt.want)
			}
		})
	}
}

func TestHeaderSourceHeader(t *testing.T) {
	src := newHeaderSource(t, &Identity{Header: "x-member-id"})
	if src.id.header != "X-Member-Id" {
		t.Errorf("header = %q, want the canonical X-Member-Id", src.id.header)
	}
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"one value", []string{"m-100"}, "m-100"},
		{"absent", nil, ""},
		{"two values", []string{"m-100", "m-200"}, ""},
		{"two equal values", []string{"m-100", "m-100"}, ""},
		{"empty", []string{""}, ""},
		{"at the limit", []string{strings.Repeat("b", maxIdentityLength)}, strings.Repeat("b", maxIdentityLength)},
		{"too long", []string{strings.Repeat("b", maxIdentityLength+1)}, ""},
		{"newline", []string{"m-100\nx"}, ""},
		{"tab", []string{"m\t100"}, ""},
		{"DEL", []string{"m-100\x7f"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := memberRequest("")
			if tt.values != nil {
				r.Header["X-Member-Id"] = tt.values
			}
			got, err := src.resolve(r)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if got.ID != tt.want {
				t.Errorf("ID = %q, want %q", got.ID, tt.want)
			}
		})
	}
}

func TestHeaderSourceBinding(t *testing.T) {
	bound := newHeaderSource(t, &Identity{Header: "X-Member-Id", SessionCookie: "sid"})
	unbound := newHeaderSource(t, &Identity{Header: "X-Member-Id"})

	resolve := func(src *headerSource, cookie string) flow.Identity {
		t.Helper()
		r := memberRequest(cookie)
		r.Header.Set("X-Member-Id", "m-1")
		got, err := src.resolve(r)
		if err != nil || got.ID != "m-1" {
			t.Fatalf("resolve = %+v, %v", got, err)
		}
		return got
	}
	a := resolve(bound, "sid=aaa")
	a2 := resolve(bound, "theme=x; sid=aaa")
	b := resolve(bound, "sid=bbb")
	none := resolve(bound, "theme=x")
	if a.Binding == ([16]byte{}) {
		t.Error("binding is zero with the session cookie present")
	}
	if a.Binding != a2.Binding {
		t.Error("same session cookie gave different bindings")
	}
	if a.Binding == b.Binding {
		t.Error("different session cookies gave the same binding")
	}
	if none.Binding != ([16]byte{}) {
		t.Error("binding is set without a session cookie")
	}
	if u := resolve(unbound, "sid=aaa"); u.Binding != ([16]byte{}) {
		t.Error("binding is set although no session_cookie is configured")
	}

	// The endpoint and header sources bind the same cookie the same way.
	srv := newWhoami(t, jsonAnswer(200, `{"id":"m-1"}`))
	e, err := newEndpointSource(t, srv.URL, nil).resolve(memberRequest("sid=aaa"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Binding != a.Binding {
		t.Error("endpoint and header sources bind the same cookie differently")
	}
}

func TestIdentityProvisionErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Identity
		want string
	}{
		{"no source", Identity{}, "source: required"},
		{"unknown source", Identity{Source: "ldap"}, `source "ldap"`},
		{"header without header", Identity{Source: "header"}, "header: a header name or placeholder is required"},
		{"header with space", Identity{Source: "header", Header: "X-Member Id"}, "not a header name"},
		{"header with colon", Identity{Source: "header", Header: "X-Member-Id:"}, "not a header name"},
		{"header with brace", Identity{Source: "header", Header: "X-{a}"}, "not a header name"},
		{"header bad cookie name", Identity{Source: "header", Header: "X-A", SessionCookie: "a;b"}, `session_cookie "a;b"`},
		{"endpoint without session_cookie", Identity{Source: "endpoint", URL: "https://club.example/me"}, "session_cookie: required"},
		{"endpoint relative URL", Identity{Source: "endpoint", URL: "/api/me", SessionCookie: "sid"}, `url "/api/me"`},
		{"endpoint ftp URL", Identity{Source: "endpoint", URL: "ftp://club.example/me", SessionCookie: "sid"}, `url "ftp://club.example/me"`},
		{"endpoint no host", Identity{Source: "endpoint", URL: "https:///me", SessionCookie: "sid"}, "url"},
		{"endpoint empty URL", Identity{Source: "endpoint", SessionCookie: "sid"}, "url"},
		{"endpoint unparsable URL", Identity{Source: "endpoint", URL: "http://[::1", SessionCookie: "sid"}, "url"},
		{"bad cookie name space", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "my sid"}, `session_cookie "my sid"`},
		{"bad cookie name equals", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid=1"}, `session_cookie "sid=1"`},
		{"bad cookie name non-ASCII", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sé"}, "session_cookie"},
		{"cache over 10m", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", Cache: caddy.Duration(10*time.Minute + time.Second)}, "cache"},
		{"cache negative", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", Cache: caddy.Duration(-time.Second)}, "cache"},
		{"cache_size too small", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", CacheSize: 999}, "cache_size 999"},
		{"cache_size too large", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", CacheSize: 10_000_001}, "cache_size 10000001"},
		{"cache_size negative", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", CacheSize: -1}, "cache_size -1"},
		{"timeout negative", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", Timeout: caddy.Duration(-time.Second)}, "timeout"},
		{"timeout too long", Identity{Source: "endpoint", URL: "https://a/me", SessionCookie: "sid", Timeout: caddy.Duration(time.Hour)}, "timeout"},
		{"client header placeholder", Identity{Source: "header", Header: "{http.request.header.X-User}"}, "come from the client"},
		{"client cookie placeholder", Identity{Source: "header", Header: "{http.request.cookie.user}"}, "come from the client"},
		{"query placeholder", Identity{Source: "header", Header: "{query.user}"}, "come from the client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			src, err := provisionIdentity(&cfg)
			if err == nil {
				t.Fatalf("provision gave %T and no error; want one containing %q", src, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestIdentityProvisionTwoPlaceholders(t *testing.T) {
	cfg := Identity{Source: "header", Header: "{a} {b}"}
	src, err := provisionIdentity(&cfg)
	if err == nil {
		t.Fatalf("header %q accepted as %+v; want a provision error", cfg.Header, src)
	}
	if !strings.Contains(err.Error(), "header") {
		t.Errorf("error %q does not name the header field", err)
	}
}

func TestFoldID(t *testing.T) {
	for in, want := range map[string]string{
		"alice": "alice", "Alice": "alice", "ALICE@EXAMPLE.COM": "alice@example.com",
		"m-100": "m-100", "": "",
		"ÅSA": "åsa", "Ärger": "ärger", "ΣΊΣΥΦΟΣ": "σίσυφοσ",
		// Never onto ASCII from elsewhere, nor beyond lower case.
		"\u212Aate": "\u212Aate", "\u0130nci": "\u0130nci", "ſam": "ſam", "ﬁle": "ﬁle", "Straße": "straße",
	} {
		if got := foldID(in); got != want {
			t.Errorf("foldID(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = foldID("m-100@example.com") }); n != 0 {
		t.Errorf("folding an ID with nothing to fold allocates %v times", n)
	}
	if _, err := provisionIdentity(&Identity{Source: "header", Header: "{http.auth.user.id}", IDCase: "lower"}); err == nil ||
		!strings.Contains(err.Error(), "id_case") {
		t.Errorf("id_case lower: %v, want an error naming id_case", err)
	}
}

// stubSource gives one identity, as a source would.
type stubSource struct{ id flow.Identity }

func (s stubSource) resolve(*http.Request) (flow.Identity, error) { return s.id, nil }

// The admin role: the app's list first (after id_case), then, only when
// the operator opted in, the identity's role, and only the exact names.
func TestIdentifyAdminRole(t *testing.T) {
	for _, tc := range []struct {
		name         string
		listed       map[string]string
		fromIdentity bool
		id, given    string
		want         string
	}{
		{"listed", map[string]string{"alice": "support"}, false, "alice", "", "support"},
		{"listed wins over the identity", map[string]string{"alice": "viewer"}, true, "alice", "approver", "viewer"},
		{"identity's role ignored unless opted in", nil, false, "carol", "approver", ""},
		{"identity's role opted in", nil, true, "carol", "approver", "approver"},
		{"capitals grant nothing", nil, true, "carol", "Approver", ""},
		{"spaces grant nothing", nil, true, "carol", " support", ""},
		{"other words grant nothing", nil, true, "carol", "admin", ""},
		{"not listed", map[string]string{"alice": "support"}, false, "bob", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{app: &App{AdminRolesFromIdentity: tc.fromIdentity}, admins: tc.listed,
				source: stubSource{flow.Identity{ID: tc.id, Role: tc.given}}}
			got, err := h.identify(httptest.NewRequest(http.MethodGet, "/", nil))
			if err != nil || got.Role != tc.want || got.ID != tc.id {
				t.Fatalf("identify: %+v %v, want role %q", got, err, tc.want)
			}
		})
	}
}

// Admins are listed as the operator writes them and matched after the
// identity's id_case.
func TestAdminsFoldedWithTheIdentity(t *testing.T) {
	h := &Handler{Identity: &Identity{Source: "header", Header: "X-Member", IDCase: "fold"}}
	app := &App{Admins: []AdminEntry{{ID: "Alice", Role: "approver"}}}
	h.app = app
	h.admins = adminRoles(app, h.Identity)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Member", "ALICE")
	src, err := h.Identity.provision(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	h.source = src
	if got, _ := h.identify(r); got.ID != "alice" || got.Role != "approver" {
		t.Fatalf("folded admin: %+v", got)
	}
}

func TestEndpointRole(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"id": "carol", "role": `+r.URL.Query().Get("role")+`}`)
	}))
	defer srv.Close()
	for raw, want := range map[string]string{`"support"`: "support", `7`: "", `null`: "", `["approver"]`: ""} {
		s := &endpointSource{url: srv.URL + "?role=" + url.QueryEscape(raw), timeout: time.Second, client: srv.Client()}
		id, err := s.fetch(httptest.NewRequest(http.MethodGet, "/", nil))
		if err != nil || id.Role != want {
			t.Errorf("role %s: %+v %v, want %q", raw, id, err, want)
		}
	}
}

// Some capitals take more bytes in lower case: an ID within the bound as
// given but beyond it folded is refused, not stored longer than any other.
func TestFoldedIDKeepsTheBound(t *testing.T) {
	src := foldedSource{&headerSource{id: newHeaderValue("X-Member")}}
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{strings.Repeat("Ⱥ", maxIdentityLength/2), false}, // 256 bytes, 384 folded
		{strings.Repeat("Ⱥ", maxIdentityLength/3), true},  // 170 bytes, 255 folded
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-Member", tt.id)
		id, err := src.resolve(r)
		if tt.ok != (err == nil) || (tt.ok && id.ID != foldID(tt.id)) || (!tt.ok && id.ID != "") {
			t.Errorf("%d bytes, %d folded: %q, %v", len(tt.id), len(foldID(tt.id)), id.ID, err)
		}
	}
}
