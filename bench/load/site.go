package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// site is the member site behind the gateway's site block under test: a
// sign-in that takes a member ID (no password: the gateway never sees
// one), the who-am-I endpoint the gateway's identity endpoint calls, and
// the member pages. The session cookie is signed and names the member, so
// a million members need no session table.
//
//	POST /login     form id, next: sets the session cookie, 303 to next
//	GET  /api/me    {"id", "email"} of the cookie's member, or 401
//	GET  /app/...   a member page: 200 when the gateway's X-2fa-User names
//	                the cookie's member, 409 when it names another, 401
//	                without a session
type site struct {
	pop    *population
	cookie string
	key    []byte
	mux    *http.ServeMux
}

// userHeader is the header the gateway sets for the upstream on a
// verified request.
const userHeader = "X-2fa-User"

func newSite(pop *population, cookie string) *site {
	s := &site{pop: pop, cookie: cookie, key: make([]byte, 32)}
	_, _ = rand.Read(s.key)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("GET /api/me", s.me)
	s.mux.HandleFunc("/app/", s.page)
	return s
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// session returns a new session cookie value for id: the ID, a random
// nonce (each sign-in is a session of its own, as the gateway binds its
// session to it) and a MAC of both.
func (s *site) session(id string) string {
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	body := base64.RawURLEncoding.EncodeToString([]byte(id)) + "." + base64.RawURLEncoding.EncodeToString(nonce)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(body))
}

func (s *site) mac(body string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(body))
	return m.Sum(nil)[:16]
}

// member returns the member the request's session cookie names, "" for
// none or a cookie this site did not sign.
func (s *site) member(r *http.Request) string {
	c, err := r.Cookie(s.cookie)
	if err != nil {
		return ""
	}
	body, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return ""
	}
	nonce, sig, ok := strings.Cut(sig, ".")
	if !ok {
		return ""
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(body+"."+nonce)) {
		return ""
	}
	id, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return ""
	}
	return string(id)
}

func (s *site) login(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	if id == "" || len(id) > 256 {
		http.Error(w, "id: a member ID is required", http.StatusBadRequest)
		return
	}
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/app/") {
		next = "/app/"
	}
	http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: s.session(id), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *site) me(w http.ResponseWriter, r *http.Request) {
	id := s.member(r)
	w.Header().Set("Content-Type", "application/json")
	if id == "" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"not signed in"}`)
		return
	}
	_ = json.NewEncoder(w).Encode(struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	}{id, id + "@" + s.pop.domain})
}

func (s *site) page(w http.ResponseWriter, r *http.Request) {
	id := s.member(r)
	w.Header().Set("Cache-Control", "no-store")
	switch verified := r.Header.Get(userHeader); {
	case id == "":
		http.Error(w, "not signed in", http.StatusUnauthorized)
	case verified != id:
		// The gateway passed a request for one member as another's.
		http.Error(w, "the gateway's "+userHeader+" is "+strconv.Quote(verified)+", the session's member "+strconv.Quote(id),
			http.StatusConflict)
	default:
		io.WriteString(w, "member page of "+id+"\n")
	}
}
