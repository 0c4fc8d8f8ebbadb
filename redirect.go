package twofactor

import (
	"net/url"
	"strings"
)

// safeReturnPath returns p when it is a path on this site that no browser
// can read as another origin, and "" otherwise. Both the raw and the
// percent-decoded forms are checked, because browsers and upstreams differ
// in which one they act on: "//host", "/\host", "/%2F%2Fhost",
// "/%09/host", CR/LF injection and any scheme or host are refused.
func safeReturnPath(p string) string {
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
