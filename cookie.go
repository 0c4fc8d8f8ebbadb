package twofactor

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"unsafe"
)

// cookieValue returns the value of the first cookie called name. Unlike
// r.Cookie, which parses every cookie into a new struct on each call, it
// allocates nothing: it runs on every protected request.
func cookieValue(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			n, v, ok := strings.Cut(textproto.TrimString(part), "=")
			if !ok || n != name {
				continue
			}
			return unquote(v), true
		}
	}
	return "", false
}

// bindingOf hashes the member-site session cookie: the full hash keys the
// identity cache, its first half binds second-factor sessions. A browser
// may send the cookie more than once (set for several paths or domains);
// all values are hashed, in order, so that the answer cached is the one the
// member site gave for exactly this set, whichever value it reads.
func bindingOf(r *http.Request, cookie string) (binding [16]byte, full [32]byte, ok bool) {
	if cookie == "" {
		return binding, full, false
	}
	v, n := firstCookie(r, cookie)
	if n == 0 || v == "" {
		return binding, full, false
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

// firstCookie returns the value of the first cookie called name and how
// many there are, in one pass and without allocating.
func firstCookie(r *http.Request, name string) (first string, n int) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			c, v, ok := strings.Cut(textproto.TrimString(part), "=")
			if !ok || c != name {
				continue
			}
			if n == 0 {
				first = unquote(v)
			}
			n++
		}
	}
	return first, n
}

func unquote(v string) string {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// stripGatewayCookies removes the gateway's cookies from the Cookie header
// lines, leaving the others as they were. Lines without one are left alone,
// so requests without gateway cookies cost no allocation.
func stripGatewayCookies(h http.Header) {
	lines := h["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if hasGatewayCookie(line) {
			var b strings.Builder
			b.Grow(len(line))
			for part := range strings.SplitSeq(line, ";") {
				part = textproto.TrimString(part)
				name, _, _ := strings.Cut(part, "=")
				if part == "" || isGatewayCookie(name) {
					continue
				}
				if b.Len() > 0 {
					b.WriteString("; ")
				}
				b.WriteString(part)
			}
			line = b.String()
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

func hasGatewayCookie(line string) bool {
	for line != "" {
		var part string
		part, line, _ = strings.Cut(line, ";")
		name, _, _ := strings.Cut(textproto.TrimString(part), "=")
		if isGatewayCookie(name) {
			return true
		}
	}
	return false
}
