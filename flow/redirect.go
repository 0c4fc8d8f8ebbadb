package flow

import (
	"net/http"
	"net/url"
	"strings"
)

// SafeReturnPath returns p when it is a path on this site that no browser
// can read as another origin, and "" otherwise. Both the raw and the
// percent-decoded forms are checked, because browsers and upstreams differ
// in which one they act on: "//host", "/\host", "/%2F%2Fhost",
// "/%09/host", CR/LF injection and any scheme or host are refused.
func SafeReturnPath(p string) string {
	if len(p) == 0 || len(p) > 2048 || p[0] != '/' {
		return ""
	}
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return ""
	}
	for _, s := range []string{p, decoded} {
		if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
			return ""
		}
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
			return ""
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	return p
}

// sameOrigin is the defence in depth behind the CSRF token: browsers say
// where a form post comes from.
func sameOrigin(r *http.Request) bool {
	fetchSite := r.Header.Get("Sec-Fetch-Site")
	switch fetchSite {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == "null" {
		// Privacy settings (a no-referrer policy, for one) make browsers
		// send "null"; Sec-Fetch-Site, which pages cannot forge, still
		// tells.
		return fetchSite == "same-origin"
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}
