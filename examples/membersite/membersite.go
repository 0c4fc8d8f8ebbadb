// Package membersite is a small member website with its own ID/password
// sign-in. The demo and the integration tests run it behind Caddy with the
// two_factor handler, which adds the authenticator-app step in front of the
// paths the operator protects and tells this site about it with the
// X-2FA-User, X-2FA-Method and X-2FA-Enrolled request headers.
//
// Routes:
//
//	GET  /                 public top page
//	GET  /login            ID/password form; POST /login signs in
//	GET  /logout?t=...     signs out when t is the sign-out token of the
//	                       member's session and the browser does not say the
//	                       request comes from another site (the gateway's
//	                       sign-out sends members here); otherwise a page with
//	                       a button for POST /logout
//	POST /logout           signs out
//	GET  /api/me           "who am I" JSON for the gateway's identity endpoint
//	     /members/         member area (signed-in members)
//	GET  /members/account  the member's account page, linking to the gateway's
//	                       settings page
//	     /admin/           admin area (member "admin" only)
//	     /headers          JSON echo of the request as received (for tests)
//	GET  /healthz          "ok"
//
// As the gateway's README asks of a site: the account page links to the
// gateway's settings (/.2fa/methods), and "Sign out" goes through the
// gateway's sign-out (/.2fa/logout), which ends the second-factor session
// and then sends the member on to this site's /logout.
package membersite

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// SessionCookie is the name of the member site's session cookie.
const SessionCookie = "member_session"

// SessionLifetime is how long a member-site session lasts.
const SessionLifetime = 12 * time.Hour

// defaultNext is where members land after signing in when the form carries
// no safe "next" path.
const defaultNext = "/members/"

// adminID is the only member allowed into /admin/.
const adminID = "admin"

// gatewayPrefix is where the two_factor gateway in front of the site
// serves its pages.
const gatewayPrefix = "/.2fa/"

// signOutURL signs out through the gateway first, which then sends the
// member on to this site's own sign-out, carrying a token of the member's
// session: no other link can sign a member out.
func signOutURL(token string) string {
	return gatewayPrefix + "logout?return_to=" + url.QueryEscape("/logout?t="+token)
}

// signOutToken is the sign-out token of the request's session: a hash of
// the session cookie, which another site cannot know.
func signOutToken(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("sign-out:" + c.Value))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// Header names the gateway sets, in Go's canonical form. The last two
// only for members without a second factor: what the rule asks of them
// (optional, or grace until the deadline).
var gatewayHeaders = []string{"X-2fa-User", "X-2fa-Method", "X-2fa-Enrolled", "X-2fa-Enrolment", "X-2fa-Enrolment-Deadline"}

// Member is an account of the member site.
type Member struct {
	ID, Password, Email, Phone, Name string
}

// DemoMembers returns the demo accounts printed by the demo.
func DemoMembers() []Member {
	return []Member{
		{ID: "alice", Password: "alice-password", Email: "alice@example.com", Phone: "+819012345678", Name: "Alice Example"},
		{ID: "bob", Password: "bob-password", Email: "bob@example.com", Name: "Bob Example"},
		{ID: "admin", Password: "admin-password", Email: "admin@example.com", Name: "Site Administrator"},
	}
}

type account struct {
	Member
	pwHash [sha256.Size]byte
	// canSignIn is false for members without a password: they can only be
	// signed in with Site.Login.
	canSignIn bool
}

// DisplayName is the member's name, or the ID when the name is empty.
func (a *account) DisplayName() string {
	if a.Name != "" {
		return a.Name
	}
	return a.ID
}

type session struct {
	memberID string
	expires  time.Time
}

// Site is the member website. It is an http.Handler; its zero value is not
// usable, call New.
type Site struct {
	accounts map[string]*account
	mux      *http.ServeMux
	now      func() time.Time

	mu        sync.Mutex
	sessions  map[[sha256.Size]byte]session // keyed by SHA-256 of the cookie value
	lastSweep time.Time
}

// New returns a site with the given members. Members are copied; when two
// share an ID, the first wins.
func New(members []Member) *Site {
	s := &Site{
		accounts: make(map[string]*account, len(members)),
		now:      time.Now,
		sessions: map[[sha256.Size]byte]session{},
	}
	for _, m := range members {
		if m.ID == "" {
			continue
		}
		if _, dup := s.accounts[m.ID]; dup {
			continue
		}
		s.accounts[m.ID] = &account{
			Member:    m,
			pwHash:    sha256.Sum256([]byte(m.Password)),
			canSignIn: m.Password != "",
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleTop)
	mux.HandleFunc("GET /login", s.handleLoginForm)
	mux.HandleFunc("POST /login", s.handleLogin)
	mux.HandleFunc("GET /logout", s.handleLogoutLink)
	mux.HandleFunc("POST /logout", s.handleLogout)
	mux.HandleFunc("GET /members/account", s.handleAccount)
	mux.HandleFunc("GET /api/me", s.handleMe)
	mux.HandleFunc("/members/", s.handleMembers)
	mux.HandleFunc("/admin/", s.handleAdmin)
	mux.HandleFunc("/headers", s.handleHeaders)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux = mux
	return s
}

// ServeHTTP implements http.Handler.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// Login creates a session for id without the form (for tests and load
// scripts) and returns the session cookie value.
func (s *Site) Login(id string) (string, error) {
	if _, ok := s.accounts[id]; !ok {
		return "", errors.New("membersite: unknown member " + quoteID(id))
	}
	return s.newSession(id)
}

func quoteID(id string) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// --- sessions ---

func (s *Site) newSession(memberID string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastSweep) > time.Minute {
		for k, v := range s.sessions {
			if !now.Before(v.expires) {
				delete(s.sessions, k)
			}
		}
		s.lastSweep = now
	}
	s.sessions[sha256.Sum256([]byte(token))] = session{memberID: memberID, expires: now.Add(SessionLifetime)}
	return token, nil
}

// current returns the signed-in member, or nil.
func (s *Site) current(r *http.Request) *account {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	now := s.now()
	s.mu.Lock()
	sess, ok := s.sessions[key]
	if ok && !now.Before(sess.expires) {
		delete(s.sessions, key)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return s.accounts[sess.memberID]
}

func (s *Site) endSession(r *http.Request) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return
	}
	key := sha256.Sum256([]byte(c.Value))
	s.mu.Lock()
	delete(s.sessions, key)
	s.mu.Unlock()
}

func setSessionCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    token,
		Path:     "/",
		MaxAge:   int(SessionLifetime / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

// --- credentials ---

// dummyHash is compared against when the ID is unknown, so that unknown IDs
// take as long as wrong passwords.
var dummyHash = sha256.Sum256([]byte("membersite: no such member"))

// authenticate checks an ID and password in constant time with respect to
// the password (both sides are SHA-256 digests of equal length).
func (s *Site) authenticate(id, password string) *account {
	got := sha256.Sum256([]byte(password))
	acc, found := s.accounts[id]
	want := dummyHash
	if found {
		want = acc.pwHash
	}
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	if !found || !acc.canSignIn || !match {
		return nil
	}
	return acc
}

// safeNext returns next when it is a same-site relative path, or the
// default landing page otherwise.
func safeNext(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' {
		return defaultNext
	}
	// "//host" and "/\host" are read by browsers as another site.
	if len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return defaultNext
	}
	// Browsers drop tabs and newlines in URLs ("/\t/evil" becomes "//evil");
	// refuse all control characters and spaces.
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= ' ' || c == 0x7f {
			return defaultNext
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return defaultNext
	}
	return next
}

// crossSite reports whether a browser says the request came from another
// site, which this site's forms and links never do (login/logout CSRF).
func crossSite(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	return site == "cross-site" || site == "same-site"
}

// --- handlers ---

func (s *Site) handleTop(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "top", pageData{Title: "Member site", User: s.current(r)})
}

func (s *Site) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", pageData{
		Title: "Sign in",
		User:  s.current(r),
		Next:  safeNext(r.URL.Query().Get("next")),
	})
}

func (s *Site) handleLogin(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		s.renderError(w, r, http.StatusForbidden, "Cross-site form submissions are not accepted.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	id := r.PostForm.Get("id")
	next := safeNext(r.PostForm.Get("next"))
	acc := s.authenticate(id, r.PostForm.Get("password"))
	if acc == nil {
		s.render(w, r, http.StatusUnauthorized, "login", pageData{
			Title:  "Sign in",
			User:   s.current(r),
			Next:   next,
			FormID: id,
			Error:  "ID or password is incorrect.",
		})
		return
	}
	// A new session on every sign-in (no session fixation).
	s.endSession(r)
	token, err := s.newSession(acc.ID)
	if err != nil {
		s.renderError(w, r, http.StatusInternalServerError, "Could not start a session.")
		return
	}
	setSessionCookie(w, r, token)
	w.Header().Set("Location", next)
	w.WriteHeader(http.StatusSeeOther)
}

func (s *Site) handleLogout(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		s.renderError(w, r, http.StatusForbidden, "Cross-site form submissions are not accepted.")
		return
	}
	s.endSession(r)
	clearSessionCookie(w, r)
	w.Header().Set("Location", "/")
	w.WriteHeader(http.StatusSeeOther)
}

// handleLogoutLink signs out a member the gateway's sign-out sent here,
// with the token of their session. Anything else (a link on another site,
// a token of another session) gets a button that posts.
func (s *Site) handleLogoutLink(w http.ResponseWriter, r *http.Request) {
	token, want := r.URL.Query().Get("t"), signOutToken(r)
	if s.current(r) != nil && want != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 && !crossSite(r) {
		s.handleLogout(w, r)
		return
	}
	s.render(w, r, http.StatusOK, "logout", pageData{Title: "Sign out", User: s.current(r)})
}

// handleAccount is the member's account page, with the way to the
// gateway's settings for their second factor.
func (s *Site) handleAccount(w http.ResponseWriter, r *http.Request) {
	acc := s.current(r)
	if acc == nil {
		s.area(w, r, "", false) // sends them to sign in
		return
	}
	s.render(w, r, http.StatusOK, "account", pageData{Title: "Account", User: acc,
		Settings: gatewayPrefix + "methods?return_to=" + url.QueryEscape("/members/account")})
}

type meResponse struct {
	ID    string `json:"id"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
}

func (s *Site) handleMe(w http.ResponseWriter, r *http.Request) {
	acc := s.current(r)
	if acc == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not signed in"})
		return
	}
	writeJSON(w, http.StatusOK, meResponse{ID: acc.ID, Email: acc.Email, Phone: acc.Phone})
}

func (s *Site) handleMembers(w http.ResponseWriter, r *http.Request) {
	s.area(w, r, "Members area (会員エリア)", false)
}

func (s *Site) handleAdmin(w http.ResponseWriter, r *http.Request) {
	s.area(w, r, "Admin area (管理者エリア)", true)
}

func (s *Site) area(w http.ResponseWriter, r *http.Request, heading string, adminOnly bool) {
	acc := s.current(r)
	if acc == nil {
		q := url.Values{"next": {r.URL.RequestURI()}}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Location", "/login?"+q.Encode())
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	if adminOnly && acc.ID != adminID {
		s.renderError(w, r, http.StatusForbidden, "Only the administrator may see this page.")
		return
	}
	rows := make([]headerRow, 0, len(gatewayHeaders))
	for _, name := range gatewayHeaders {
		rows = append(rows, headerRow{Name: name, Values: r.Header.Values(name)})
	}
	s.render(w, r, http.StatusOK, "area", pageData{
		Title:   strings.SplitN(heading, " (", 2)[0],
		Heading: heading,
		User:    acc,
		Path:    r.URL.Path,
		Gateway: rows,
	})
}

type headersResponse struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
}

func (s *Site) handleHeaders(w http.ResponseWriter, r *http.Request) {
	h := make(map[string][]string, len(r.Header))
	for k, v := range r.Header {
		h[k] = append([]string(nil), v...)
	}
	writeJSON(w, http.StatusOK, headersResponse{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Host:    r.Host,
		Headers: h,
	})
}

func (s *Site) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// --- pages ---

type headerRow struct {
	Name   string
	Values []string
}

type pageData struct {
	Title   string
	Heading string
	User    *account
	Next    string
	FormID  string
	Error   string
	Message string
	Path    string
	Gateway []headerRow
	// Settings is the gateway's settings page, from the account page.
	Settings string
	// SignOut is where "Sign out" leads: through the gateway.
	SignOut string
}

func (s *Site) render(w http.ResponseWriter, r *http.Request, status int, name string, data pageData) {
	if data.User != nil {
		data.SignOut = signOutURL(signOutToken(r))
	}
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Site) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", pageData{
		Title:   http.StatusText(status),
		Heading: http.StatusText(status),
		User:    s.current(r),
		Message: msg,
	})
}

const css = `
body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.5}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ccc;padding-bottom:.5rem;margin-bottom:1rem}
header a{margin-right:1rem}
form.inline{display:inline}
label{display:block;margin:.5rem 0}
input[type=text],input[type=password]{display:block;width:100%;max-width:20rem;padding:.4rem;font-size:1rem}
button{padding:.4rem 1rem;font-size:1rem}
.error{color:#a00;font-weight:bold}
table{border-collapse:collapse;margin-top:.5rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
code{background:#f3f3f3;padding:0 .2rem}
.none{color:#888;font-style:italic}
`

// csp allows only the inline style block above (by hash) and same-site
// form submissions.
var csp = func() string {
	sum := sha256.Sum256([]byte(css))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

var templates = template.Must(template.New("layout").Parse(`{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} - Member site</title>
<style>` + css + `</style>
</head>
<body>
<header>
<nav><a href="/">Top</a><a href="/members/">Members</a><a href="/members/account">Account</a><a href="/admin/">Admin</a></nav>
<div>{{if .User}}Signed in as <strong>{{.User.ID}}</strong>
<a href="{{.SignOut}}">Sign out</a>
{{else}}<a href="/login">Sign in</a>{{end}}</div>
</header>
<main>
{{end}}

{{define "foot"}}</main>
</body>
</html>
{{end}}

{{define "top"}}{{template "head" .}}
<h1>Member site (会員サイト)</h1>
{{if .User}}<p>Welcome back, {{.User.DisplayName}} (<code>{{.User.ID}}</code>).</p>
<p><a href="{{.SignOut}}">Sign out</a></p>
{{else}}<p>You are not signed in.</p>{{end}}
<ul>
<li><a href="/login">Sign in</a></li>
<li><a href="/members/">Members area</a></li>
<li><a href="/admin/">Admin area</a></li>
</ul>
{{template "foot" .}}{{end}}

{{define "login"}}{{template "head" .}}
<h1>Sign in (ログイン)</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .User}}<p>You are signed in as <code>{{.User.ID}}</code>. Signing in again replaces that session.</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{.Next}}">
<label>ID <input type="text" name="id" value="{{.FormID}}" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
{{template "foot" .}}{{end}}

{{define "area"}}{{template "head" .}}
<h1>{{.Heading}}</h1>
<p>Hello, {{.User.DisplayName}}. You are signed in as <code>{{.User.ID}}</code>.</p>
<p>Page: <code>{{.Path}}</code></p>
<h2>What the gateway told this site</h2>
<table>
<thead><tr><th>Header</th><th>Values as received</th></tr></thead>
<tbody>
{{range .Gateway}}<tr><th scope="row">{{.Name}}</th><td>{{if .Values}}{{range $i, $v := .Values}}{{if $i}}<br>{{end}}<code>{{$v}}</code>{{end}}{{else}}<span class="none">(not set)</span>{{end}}</td></tr>
{{end}}</tbody>
</table>
{{template "foot" .}}{{end}}

{{define "account"}}{{template "head" .}}
<h1>Account (アカウント)</h1>
<p>{{.User.DisplayName}} (<code>{{.User.ID}}</code>){{if .User.Email}}, {{.User.Email}}{{end}}</p>
<h2>2-step verification (2段階認証)</h2>
<p><a id="two-factor-settings" href="{{.Settings}}">Manage your ways to verify, remembered devices and recovery codes</a></p>
{{template "foot" .}}{{end}}

{{define "logout"}}{{template "head" .}}
<h1>Sign out (ログアウト)</h1>
{{if .User}}<form method="post" action="/logout"><button type="submit">Sign out of the member site</button></form>
{{else}}<p>You are not signed in.</p>{{end}}
{{template "foot" .}}{{end}}

{{define "error"}}{{template "head" .}}
<h1>{{.Heading}}</h1>
<p>{{.Message}}</p>
<p><a href="/">Back to the top page</a></p>
{{template "foot" .}}{{end}}
`))
