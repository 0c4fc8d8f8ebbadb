package twofactor

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Protected paths that an encoding cannot get around.
//
// Caddy's path matcher sees the decoded path, cleaned of dot segments and
// doubled slashes, in lower case. An upstream can read the same bytes as
// another path: Tomcat, Jetty and Spring cut ";parameters" from each
// segment (/x/..;/members/x is /members/x to them), IIS folds "\" into "/"
// and drops trailing dots and spaces from segments (/members./x), some
// servers decode twice, and Express keeps "%2F" inside a segment. So a
// request's path is matched as sent and, when it holds any of these, in a
// canonical form that undoes them all (and, with "%2F", as read without
// splitting there): it is protected if any form is, and exempt only if
// all are.
//
// What no form can express is refused: a "?" or "#" that decoding made
// (an upstream that decodes before it splits off the query reads
// /members/x%3f/../../public/y as /members/x), letters that case folding
// turns into ASCII ones (ſ is s to NTFS and Java), invalid UTF-8 and
// lookalikes of ".", "/" and "\" (Windows' best-fit conversion reads
// both %c0%ae and U+FF0E as "."), and NTFS stream names (IIS reads
// /members::$INDEX_ALLOCATION/x as /members/x).

// errBadPath refuses a path that no member site needs and that servers
// read in different ways.
var errBadPath = errors.New("bad_path")

// maxExtraDecodes is how many more times than once a path is
// percent-decoded for matching; a path still encoded after that is
// refused. No site links to a path encoded three times over.
const maxExtraDecodes = 2

// needsCanonical reports whether the decoded path p holds anything an
// upstream might read differently from Caddy's path matcher. It runs on
// every request, so ordinary paths pay a byte scan and no allocation.
func needsCanonical(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ';', '\\', '%', '?', '#':
			// "?" and "#" are in the decoded path only if sent encoded.
			return true
		case ':':
			if i+1 < len(p) && p[i+1] == '$' {
				return true
			}
		case '.', ' ':
			// The end of a segment: a trailing dot or space, or a dot
			// segment (these Caddy cleans too, but cost nothing here).
			if i+1 == len(p) || p[i+1] == '/' {
				return true
			}
		default:
			// A control character, or any non-ASCII byte: it may be
			// invalid UTF-8 or a lookalike until misread has looked.
			if c < 0x20 || c >= 0x7f {
				return true
			}
		}
	}
	return false
}

// canonicalPath returns the decoded path p as the most lenient upstream
// would read it: decoded again while it holds percent escapes, "\" read as
// "/", each segment cut at ";" and stripped of trailing dots and spaces,
// doubled slashes merged and dot segments resolved. Case is kept. It
// refuses what misread finds after any decode, more than maxExtraDecodes
// further decodes, and what servers resolve in different ways: segments
// of only dots and spaces other than "." and "..", and "\" together with
// ";".
func canonicalPath(p string) (string, error) {
	for round := 0; ; round++ {
		if misread(p) {
			return "", errBadPath
		}
		decoded, changed := unescape(p)
		if !changed {
			break
		}
		if round == maxExtraDecodes {
			return "", errBadPath
		}
		p = decoded
	}
	if strings.Contains(p, `\`) && strings.Contains(p, ";") {
		// Servlet containers cut parameters before they read "\" as
		// "/", the rest the other way round: /public;\..\members is
		// /public to one and /members to the other.
		return "", errBadPath
	}
	segs := strings.Split(strings.ReplaceAll(p, `\`, "/"), "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			s = s[:j]
		}
		if s != "." && s != ".." {
			t := strings.TrimRight(s, ". ")
			if t == "" && s != "" {
				return "", errBadPath
			}
			s = t
		}
		segs[i] = s
	}
	return caddyhttp.CleanPath(strings.Join(segs, "/"), true), nil
}

// hasEncodedSlash reports whether the raw path holds "%2F", which Go and
// Caddy decode into a separator and Express, or Apache without
// AllowEncodedSlashes, keep inside a segment.
func hasEncodedSlash(raw string) bool {
	return raw != "" && (strings.Contains(raw, "%2F") || strings.Contains(raw, "%2f"))
}

// keepEncodedSlashes returns u's path as a server that does not split
// segments at "%2F" reads it: each segment decoded, "%2F" kept, so
// /public%2Fx is not under /public/. Dot segments are resolved by the
// matcher.
func keepEncodedSlashes(u *url.URL) string {
	segs := strings.Split(u.EscapedPath(), "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			segs[i] = strings.ReplaceAll(d, "/", "%2F")
		}
	}
	return strings.Join(segs, "/")
}

// misread reports whether p, a path after some decode round, holds what
// an upstream may read as another path and no member site needs:
//   - a control character (NUL included);
//   - "?" or "#", where an upstream that decodes first ends the path;
//   - invalid UTF-8 (overlong %c0%ae is "." to a best-fit conversion);
//   - a character that lookalike reports;
//   - an NTFS stream: a ':' and a later ":$" in one segment, as in
//     dir::$INDEX_ALLOCATION and dir:$I30:$INDEX_ALLOCATION.
func misread(p string) bool {
	colon := false // a ':' earlier in this segment
	for i := 0; i < len(p); {
		c := p[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(p[i:])
			if r == utf8.RuneError && n == 1 || lookalike(r) {
				return true
			}
			i += n
			continue
		}
		switch {
		case c < 0x20 || c == 0x7f || c == '?' || c == '#':
			return true
		case c == '/' || c == '\\':
			colon = false
		case c == ':':
			if colon && i+1 < len(p) && p[i+1] == '$' {
				return true
			}
			colon = true
		}
		i++
	}
	return false
}

// lookalike reports whether an upstream may read r as ASCII: the letters
// that case folding or upper-casing turns into ASCII ones (NTFS, APFS,
// Java's equalsIgnoreCase; U+0130 İ too, but Caddy's matcher lowercases
// it to i already), the ligatures that Java's toUpperCase spells in ASCII,
// and forms of ".", "/" and "\" that Windows' best-fit conversion (¥ and ₩
// in the Japanese and Korean code pages) or NFKC turns into them.
func lookalike(r rune) bool {
	switch r {
	case '\u017f', '\u0131', '\u212a', // ſ ı K: s i k
		'\uff0e', '\u2024', '\u2025', '\ufe52', // ． ․ ‥ ﹒: . ..
		'\uff0f', '\u2215', '\u2044', // ／ ∕ ⁄: /
		'\uff3c', '\u2216', '\ufe68', '\u00a5', '\u20a9': // ＼ ∖ ﹨ ¥ ₩: \
		return true
	}
	return '\ufb00' <= r && r <= '\ufb06' // ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ
}

// unescape decodes every valid %XX in p and leaves any other "%" as it
// is: after Go's own decoding, a "%" not followed by two hex digits is a
// literal percent sign.
func unescape(p string) (string, bool) {
	var out []byte
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			if out == nil {
				out = append(make([]byte, 0, len(p)), p[:i]...)
			}
			out = append(out, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		if out != nil {
			out = append(out, p[i])
		}
	}
	if out == nil {
		return p, false
	}
	return string(out), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// withDirectories adds, for every pattern /dir/*, the directory /dir
// itself: many servers answer /dir as /dir/ (Express by default, any that
// redirects), so protecting only what lies below it would leave /dir open.
func withDirectories(patterns []string) []string {
	out := append([]string(nil), patterns...)
	for _, p := range patterns {
		if dir, ok := strings.CutSuffix(p, "/*"); ok && dir != "" {
			out = append(out, dir)
		}
	}
	return out
}

// exempts reports whether one of the rule's exceptions matches the
// request's path in the case written. Protection folds case, as Caddy's
// path matcher does, so that /Members/x is protected like /members/x; an
// exception must not, or /PUBLIC/x would be let through to a
// case-sensitive upstream that serves something other than /public/x
// there.
func (rule *Rule) exempts(r *http.Request) bool {
	for _, pattern := range rule.Except {
		if strings.Contains(pattern, "{") {
			// Placeholders, replaced as Caddy's path matcher does.
			if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
				pattern = repl.ReplaceAll(pattern, "")
			}
		}
		if matchCased(pattern, r.URL.Path) {
			return true
		}
	}
	return false
}

// matchCased is Caddy's path matching (exact, prefix*, *suffix,
// *substring*, else a glob) on the cleaned path, without folding case.
func matchCased(pattern, p string) bool {
	if pattern == "*" {
		return true
	}
	p = cleaned(p, !strings.Contains(pattern, "//"))
	stars := strings.Count(pattern, "*")
	n := len(pattern)
	switch {
	case stars == 2 && pattern[0] == '*' && pattern[n-1] == '*':
		return strings.Contains(p, pattern[1:n-1])
	case stars == 1 && pattern[0] == '*':
		return strings.HasSuffix(p, pattern[1:])
	case stars == 1 && pattern[n-1] == '*':
		return strings.HasPrefix(p, pattern[:n-1])
	}
	ok, _ := path.Match(pattern, p)
	return ok
}

// cleaned is caddyhttp.CleanPath, without its allocation for a path that
// is clean already, as nearly every path is.
func cleaned(p string, mergeSlashes bool) string {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		if mergeSlashes && strings.HasPrefix(rest, "/") ||
			rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
			return caddyhttp.CleanPath(p, mergeSlashes)
		}
	}
	return p
}
