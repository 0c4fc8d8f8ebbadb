package twofactor

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/text/unicode/norm"
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

// canonicalPath returns the main reading of the decoded path p (see
// pathForms), or errBadPath.
func canonicalPath(p string) (string, error) {
	forms, err := pathForms(p)
	if err != nil {
		return "", err
	}
	return forms[0], nil
}

// pathForms returns the ways an upstream may read the decoded path p,
// each canonical, the most lenient first: decoded again while it holds
// percent escapes, "\" read as "/", each segment cut at ";" and stripped of
// trailing dots and spaces, doubled slashes merged and dot segments
// resolved; then the same cut at a "?" or "#" that decoding made (PHP
// routers and rewrite rules that decode before splitting off the query);
// then each of those as best-fit conversion and case folding read it
// (bestFit). Case is kept. It refuses what misread finds after any
// decode, more than maxExtraDecodes further decodes, and what servers
// resolve in different ways: segments of only dots and spaces other than
// "." and "..", and "\" together with ";".
func pathForms(p string) ([]string, error) {
	var cuts []string
	for round := 0; ; round++ {
		if misread(p) {
			return nil, errBadPath
		}
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			cuts = append(cuts, p[:i])
		}
		decoded, changed := unescape(p)
		if !changed {
			break
		}
		if round == maxExtraDecodes {
			return nil, errBadPath
		}
		p = decoded
	}
	readings := append([]string{p}, cuts...)
	for _, r := range readings[:len(readings):len(readings)] {
		if fit, ok := bestFit(r); ok {
			readings = append(readings, fit)
		}
	}
	forms := make([]string, len(readings))
	for i, r := range readings {
		c, err := canonical(r)
		if err != nil {
			return nil, err
		}
		forms[i] = c
	}
	return forms, nil
}

// canonical applies the clean-up of pathForms to one reading.
func canonical(p string) (string, error) {
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
// no member site needs and upstreams read in ways too many to follow: a
// control character (NUL included), or invalid UTF-8 other than the
// overlong two-byte forms that bestFit reads.
func misread(p string) bool {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return true
			}
			i++
			continue
		}
		if r, n := utf8.DecodeRuneInString(p[i:]); r != utf8.RuneError || n > 1 {
			i += n
			continue
		}
		if (c == 0xc0 || c == 0xc1) && i+1 < len(p) && p[i+1]&0xc0 == 0x80 {
			i += 2
			continue
		}
		return true
	}
	return false
}

// bestFit returns p as an upstream reads it that maps characters to ASCII
// lookalikes: Windows' best-fit conversion of a path to a code page
// (fullwidth forms, accented letters without their accents, ¥ and ₩ as
// "\" in the Japanese and Korean code pages, overlong UTF-8), case
// folding and upper-casing (ſ ı K, ligatures), and NTFS, which drops a
// stream name (dir::$INDEX_ALLOCATION is dir). The reading is cut at a
// "?" or "#" it makes. It reports false when p has nothing to map.
func bestFit(p string) (string, bool) {
	if !strings.Contains(p, ":$") {
		ascii := true
		for i := 0; i < len(p); i++ {
			if p[i] >= utf8.RuneSelf {
				ascii = false
				break
			}
		}
		if ascii {
			return "", false
		}
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		if (c == 0xc0 || c == 0xc1) && i+1 < len(p) && p[i+1]&0xc0 == 0x80 {
			b.WriteByte((c&0x1f)<<6 | p[i+1]&0x3f)
			i += 2
			continue
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		i += n
		switch {
		case '\uff01' <= r && r <= '\uff5e': // fullwidth ASCII
			b.WriteRune(r - 0xfee0)
		case asciiLookalikes[r] != "":
			b.WriteString(asciiLookalikes[r])
		default:
			for _, d := range norm.NFKD.String(string(r)) {
				if !unicode.Is(unicode.Mn, d) {
					b.WriteRune(d)
				}
			}
		}
	}
	out := b.String()
	segs := strings.Split(strings.ReplaceAll(out, `\`, "/"), "/")
	for i, s := range segs {
		if strings.Contains(s, ":$") {
			segs[i], _, _ = strings.Cut(s, ":")
		}
	}
	out = strings.Join(segs, "/")
	if j := strings.IndexAny(out, "?#"); j >= 0 {
		out = out[:j]
	}
	return out, out != p
}

// asciiLookalikes are the characters that upstreams read as ASCII and
// that NFKD leaves alone or maps elsewhere.
var asciiLookalikes = map[rune]string{
	'\u017f': "s", '\u0131': "i", '\u212a': "k", // ſ ı K, by case folding
	'\u2024': ".", '\u2025': "..", '\ufe52': ".", // ․ ‥ ﹒
	'\u2215': "/", '\u2044': "/", // ∕ ⁄
	'\u2216': `\`, '\ufe68': `\`, '\u00a5': `\`, '\u20a9': `\`, // ∖ ﹨ ¥ ₩
	'\ufb00': "ff", '\ufb01': "fi", '\ufb02': "fl", '\ufb03': "ffi", '\ufb04': "ffl", '\ufb05': "st", '\ufb06': "st",
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
