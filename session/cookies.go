package session

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/caddy-twofactor/twofactor/keyring"
)

// Base cookie names. Over HTTPS they carry the __Host- prefix (see Name).
const (
	SessionCookie  = "2fa_session"
	DeviceCookie   = "2fa_device"
	CSRFCookie     = "2fa_csrf"
	ReminderCookie = "2fa_remind"
	BrowserCookie  = "2fa_browser"
)

const hostPrefix = "__Host-"

// Name returns the cookie name for base. Browsers accept the __Host- prefix
// only on Secure cookies, which need HTTPS. The gateway's names are
// constants, so the hot path concatenates nothing.
func Name(base string, secure bool) string {
	if !secure {
		return base
	}
	switch base {
	case SessionCookie:
		return hostPrefix + SessionCookie
	case DeviceCookie:
		return hostPrefix + DeviceCookie
	case CSRFCookie:
		return hostPrefix + CSRFCookie
	case ReminderCookie:
		return hostPrefix + ReminderCookie
	case BrowserCookie:
		return hostPrefix + BrowserCookie
	}
	return hostPrefix + base
}

// IsGatewayCookie reports whether name is one of the gateway's cookies, in
// either spelling.
func IsGatewayCookie(name string) bool {
	switch strings.TrimPrefix(name, hostPrefix) {
	case SessionCookie, DeviceCookie, CSRFCookie, ReminderCookie, BrowserCookie:
		return true
	}
	return false
}

// Value returns the value of the first cookie called name. Unlike
// r.Cookie, which parses every cookie into a new struct on each call, it
// allocates nothing: it runs on every protected request.
func Value(r *http.Request, name string) (string, bool) {
	v, n := first(r, name)
	return v, n > 0
}

// first returns the value of the first cookie called name and how many
// there are, in one pass and without allocating.
func first(r *http.Request, name string) (value string, n int) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			c, v, ok := strings.Cut(textproto.TrimString(part), "=")
			if !ok || c != name {
				continue
			}
			if n == 0 {
				value = unquote(v)
			}
			n++
		}
	}
	return value, n
}

func unquote(v string) string {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// Binding hashes the member site's session cookie: the full hash keys the
// identity cache, its first half binds second-factor sessions. A browser
// may send the cookie more than once (set for several paths or domains);
// all values are hashed, in order, so that the answer cached is the one the
// member site gave for exactly this set, whichever value it reads.
func Binding(r *http.Request, cookie string) (binding [16]byte, full [32]byte, ok bool) {
	if cookie == "" {
		return binding, full, false
	}
	v, n := first(r, cookie)
	if n == 0 || v == "" {
		return binding, full, false
	}
	if chunks := chunkCount(v); chunks > 0 {
		// The same value for every member: the session is in the parts.
		return chunkedBinding(r, cookie, chunks)
	}
	if n == 1 {
		// Hashing only reads the bytes, so view the string in place.
		full = sha256.Sum256(unsafe.Slice(unsafe.StringData(v), len(v)))
	} else {
		h := sha256.New()
		for _, line := range r.Header["Cookie"] {
			for part := range strings.SplitSeq(line, ";") {
				if n, val, ok := strings.Cut(textproto.TrimString(part), "="); ok && n == cookie {
					fmt.Fprintf(h, "%d:%s;", len(val), val)
				}
			}
		}
		h.Sum(full[:0])
	}
	copy(binding[:], full[:16])
	return binding, full, true
}

// maxChunks bounds the parts of a chunked session cookie followed.
const maxChunks = 64

// chunkCount reads the value ASP.NET Core's cookie manager gives a cookie
// it split into parts, "chunks-<N>": the parts are the cookies named
// <name>C1 to <name>C<N>. It returns 0 for any other value.
func chunkCount(v string) int {
	rest, ok := strings.CutPrefix(v, "chunks-")
	if !ok || rest == "" || len(rest) > 2 || strings.Trim(rest, "0123456789") != "" {
		return 0
	}
	n, _ := strconv.Atoi(rest)
	if n > maxChunks {
		return 0
	}
	return n
}

// chunkedBinding is Binding of a session cookie split into chunks parts:
// the parts' values, in order, each from its first copy. A part missing
// is a session the member site cannot read either: nobody signed in.
func chunkedBinding(r *http.Request, cookie string, chunks int) (binding [16]byte, full [32]byte, ok bool) {
	h := sha256.New()
	fmt.Fprintf(h, "chunks-%d;", chunks)
	for i := 1; i <= chunks; i++ {
		v, n := first(r, cookie+"C"+strconv.Itoa(i))
		if n == 0 || v == "" {
			return binding, full, false
		}
		fmt.Fprintf(h, "%d:%s;", len(v), v)
	}
	h.Sum(full[:0])
	copy(binding[:], full[:16])
	return binding, full, true
}

// Strip removes the gateway's cookies from the Cookie header lines,
// leaving the others as they were: they are bearer credentials the
// upstream has no use for and should not see, or log. Lines without one
// are left alone, so requests without gateway cookies cost no allocation.
func Strip(h http.Header) {
	lines := h["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if hasGatewayCookie(line) {
			line = withoutGatewayCookies(line)
		}
		if line != "" {
			kept = append(kept, line)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
	} else if len(kept) != len(lines) {
		h["Cookie"] = kept
	}
}

// withoutGatewayCookies returns line without the gateway's cookies, the
// others joined by "; ". Browsers send cookies in the order they were set,
// so the gateway's (set after the member site's) usually come last or
// first: when the cookies kept are one run of the line already joined by
// "; ", that run is returned as it is, without an allocation.
func withoutGatewayCookies(line string) string {
	start, end := -1, -1 // the run of kept cookies so far
	run := true
	gap := false // a cookie dropped after the run began
	for rest, off := line, 0; ; {
		part, after, more := strings.Cut(rest, ";")
		trimmed := textproto.TrimString(part)
		name, _, _ := strings.Cut(trimmed, "=")
		if trimmed == "" || IsGatewayCookie(name) {
			gap = gap || start >= 0
		} else {
			s := off + strings.Index(part, trimmed)
			switch {
			case start < 0:
				start = s
			case gap || line[end:s] != "; ":
				run = false
			}
			end = s + len(trimmed)
		}
		if !more || !run {
			break
		}
		off += len(part) + 1
		rest = after
	}
	if start < 0 {
		return ""
	}
	if run {
		return line[start:end]
	}
	var b strings.Builder
	b.Grow(len(line))
	for part := range strings.SplitSeq(line, ";") {
		part = textproto.TrimString(part)
		name, _, _ := strings.Cut(part, "=")
		if part == "" || IsGatewayCookie(name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	return b.String()
}

func hasGatewayCookie(line string) bool {
	for line != "" {
		var part string
		part, line, _ = strings.Cut(line, ";")
		name, _, _ := strings.Cut(textproto.TrimString(part), "=")
		if IsGatewayCookie(name) {
			return true
		}
	}
	return false
}

// set sets one of the gateway's cookies: host-only, whole site, HttpOnly,
// SameSite=Lax, and Secure with the __Host- prefix over HTTPS. maxAge 0
// makes a browser-session cookie, negative deletes it.
func set(w http.ResponseWriter, base, value string, maxAge int, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name: Name(base, secure), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

// secure reports whether the request came over HTTPS, which decides the
// cookies' names and flags.
func secure(r *http.Request) bool { return r.TLS != nil }

// Jar reads and writes the gateway's cookies, sealed under one keyring.
type Jar struct {
	codec *Codec
	csrf  *CSRF
}

// NewJar returns a jar sealing with keys from kr.
func NewJar(kr *keyring.Keyring) *Jar {
	return &Jar{codec: NewCodec(kr), csrf: NewCSRF(kr)}
}

// Codec returns the jar's codec, for tools that seal values without a
// request.
func (j *Jar) Codec() *Codec { return j.codec }

// Session opens the request's second-factor session cookie into s when it
// belongs to user. Validity (lifetimes, epoch, binding) is the caller's.
func (j *Jar) Session(r *http.Request, user string, s *Session) bool {
	v, ok := Value(r, Name(SessionCookie, secure(r)))
	return ok && j.codec.DecodeSessionOf(v, user, s) == nil
}

// SetSession writes s, to expire with it.
func (j *Jar) SetSession(w http.ResponseWriter, r *http.Request, s *Session, now time.Time) {
	set(w, SessionCookie, j.codec.EncodeSession(s), int(s.Expires-now.Unix()), secure(r))
}

// EndSession deletes the session cookie.
func (j *Jar) EndSession(w http.ResponseWriter, r *http.Request) {
	set(w, SessionCookie, "", -1, secure(r))
}

// Device opens the request's remembered-device cookie into d when it
// belongs to user.
func (j *Jar) Device(r *http.Request, user string, d *Device) bool {
	v, ok := Value(r, Name(DeviceCookie, secure(r)))
	return ok && j.codec.DecodeDevice(v, d) == nil && d.User == user
}

// SetDevice writes d, to expire with it.
func (j *Jar) SetDevice(w http.ResponseWriter, r *http.Request, d *Device, now time.Time) {
	set(w, DeviceCookie, j.codec.EncodeDevice(d), int(d.Expires-now.Unix()), secure(r))
}

// ForgetDevice deletes the remembered-device cookie.
func (j *Jar) ForgetDevice(w http.ResponseWriter, r *http.Request) {
	set(w, DeviceCookie, "", -1, secure(r))
}

// Reminder opens the request's reminder cookie into rem when it belongs
// to user.
func (j *Jar) Reminder(r *http.Request, user string, rem *Reminder) bool {
	v, ok := Value(r, Name(ReminderCookie, secure(r)))
	return ok && j.codec.DecodeReminder(v, rem) == nil && rem.User == user
}

// SetReminder writes rem, kept by the browser for maxAge.
func (j *Jar) SetReminder(w http.ResponseWriter, r *http.Request, rem *Reminder, maxAge time.Duration) {
	set(w, ReminderCookie, j.codec.EncodeReminder(rem), int(maxAge/time.Second), secure(r))
}

// Secrets in the CSRF and browser cookies are 32 random bytes, base64:
// anything shorter or much longer was not made here.
const minSecret, maxSecret = 43, 64

// CSRFSecret returns the browser's CSRF secret, or "" when it has none
// that could be one.
func (j *Jar) CSRFSecret(r *http.Request) string {
	return secretValue(r, CSRFCookie)
}

// NewCSRFSecret gives the browser a fresh CSRF secret and returns it.
func (j *Jar) NewCSRFSecret(w http.ResponseWriter, r *http.Request) string {
	s := NewSecret()
	set(w, CSRFCookie, s, 0, secure(r))
	return s
}

// CSRFToken returns the form token for the browser's secret and the member.
func (j *Jar) CSRFToken(secret, user string) string { return j.csrf.Token(secret, user) }

// CSRFValid reports, in constant time, whether token is the form token for
// secret and user.
func (j *Jar) CSRFValid(secret, user, token string) bool { return j.csrf.Valid(secret, user, token) }

// browserTokenAge is how long the cookie that tells browsers apart lasts:
// browsers keep cookies at most 400 days.
const browserTokenAge = 400 * 24 * time.Hour

// BrowserToken returns the random token that tells this browser apart,
// giving the browser a new one when it has none.
func (j *Jar) BrowserToken(w http.ResponseWriter, r *http.Request) string {
	if t := secretValue(r, BrowserCookie); t != "" {
		return t
	}
	t := NewSecret()
	set(w, BrowserCookie, t, int(browserTokenAge/time.Second), secure(r))
	return t
}

func secretValue(r *http.Request, base string) string {
	v, ok := Value(r, Name(base, secure(r)))
	if !ok || len(v) < minSecret || len(v) > maxSecret {
		return ""
	}
	return v
}
