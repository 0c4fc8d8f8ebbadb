package twofactor

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/text/unicode/norm"
)

func TestNeedsCanonical(t *testing.T) {
	for p, want := range map[string]bool{
		"/members/x":          false,
		"/members/":           false,
		"/":                   false,
		"/index.html":         false,
		"/.well-known/x":      false,
		"/my file.pdf":        false,
		"/café/x":             true, // non-ASCII: misread decides
		"/会員/お知らせ":            true,
		"/members/x?/y":       true, // sent as %3f
		"/members/x#":         true,
		"/members::$DATA":     true,
		"/wiki/Help:Contents": false,
		"/x:/$y":              false,
		"/members;/x":         true,
		`/members\x`:          true,
		"/members%2e":         true,
		"/members./x":         true,
		"/members.":           true,
		"/members /x":         true,
		"/members ":           true,
		"/members\x00/x":      true,
		"/members/x\x7f":      true,
		"/members/\tx":        true,
		"/members/./x":        true,
		"/members/../x":       true,
		"/members/x/..":       true,
		"/members/x;a=b":      true,
		"/members/x.pdf.":     true,
		"/members/x%20y":      true,
		"/members/x/y.z/":     false,
		"/members/x/.hide/":   false,
	} {
		if got := needsCanonical(p); got != want {
			t.Errorf("needsCanonical(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestNeedsCanonicalAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { needsCanonical("/members/account/settings.html") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in, want string // in: the path as Go decoded it; want "" for errBadPath
	}{
		{"/members/x", "/members/x"},
		{"/members/x/", "/members/x/"},
		{"/members;/x", "/members/x"},
		{"/members;jsessionid=A1/x;b=2", "/members/x"},
		{"/x/..;/members/x", "/members/x"},
		{"/x/.;/members", "/x/members"},
		{`/members\x`, "/members/x"},
		{`\members\x`, "/members/x"},
		{"/members./x", "/members/x"},
		{"/members. . ./x", "/members/x"},
		{"/members /x", "/members/x"},
		{"/members/x.", "/members/x"},
		{"/members/x. ", "/members/x"},
		{"//members//x", "/members/x"},
		{"/members/%2e%2e/members/x", "/members/x"},
		{"/members/%2E%2E/../x", "/x"},
		{"/members/%252e%252e/x", "/x"},
		{"/members%5cx", "/members/x"},
		{"/Members/X", "/Members/X"},
		{"/a%zz/b", "/a%zz/b"},
		{"/100%", "/100%"},
		{"/%2", "/%2"},
		{"/a/;x/b", "/a/b"},
		{"/a/../../b", "/b"},
		{"/members\x00/x", ""},
		{"/members/x\x00", ""},
		{"/members/x%00", ""},
		{"/members/x%2500", ""},
		{"/members/\x1bx", ""},
		{"/members/x\x7f", ""},
		{"/members/.../x", ""},
		{"/members/.. /x", ""},
		{"/members/. /x", ""},
		{"/members/ /x", ""},
		{"/members/..;x. /y", "/y"},
		{"/members/%2525252e", ""},
		{`/members;\x`, ""},
		// A "?" or "#" that decoding made, after any round: the main
		// reading keeps it (TestPathForms shows the cut readings).
		{"/members/x?/../../public/y", "/public/y"},
		{"/members/x#/../../public/y", "/public/y"},
		{"/members/x%3f/../../public/y", "/public/y"},
		{"/members/x%253F/../../public/y", "/public/y"},
		{"/members/secret?.css", "/members/secret?.css"},
		// Letters that fold into ASCII ones, and the rest: read as they
		// are here, as ASCII in the best-fit reading.
		{"/member\u017f/x", "/member\u017f/x"},
		{"/adm\u0131n/x", "/adm\u0131n/x"},
		{"/\u212aey", "/\u212aey"},
		{"/members/%ef%ac%81le", "/members/\ufb01le"}, // ﬁ
		// Invalid UTF-8, overlong forms included, and lookalikes of ".",
		// "/" and "\".
		{"/public/\xc0\xae\xc0\xae/members/x", "/public/\xc0\xae\xc0\xae/members/x"},
		{"/public/%c0%ae%c0%ae/members/x", "/public/\xc0\xae\xc0\xae/members/x"},
		{"/public/%e0%80%ae/x", ""},
		{"/x/\xff", ""},
		{"/x/\xed\xa0\x80", ""}, // a UTF-16 surrogate
		{"/public/\uff0e\uff0e/members/x", "/public/\uff0e\uff0e/members/x"},
		{"/public/%ef%bc%8e%ef%bc%8e/members/x", "/public/\uff0e\uff0e/members/x"},
		{"/public/\u2025/members/x", "/public/\u2025/members/x"},
		{"/public/..\uff0fmembers/x", "/public/..\uff0fmembers/x"},
		{"/public/..\u2215members/x", "/public/..\u2215members/x"},
		{"/public/..\uff3cmembers/x", "/public/..\uff3cmembers/x"},
		{"/public/..\u00a5members/x", "/public/..\u00a5members/x"},
		// NTFS streams.
		{"/members::$INDEX_ALLOCATION/x", "/members::$INDEX_ALLOCATION/x"},
		{"/members:$I30:$INDEX_ALLOCATION/x", "/members:$I30:$INDEX_ALLOCATION/x"},
		{`/x\members::$index_allocation\y`, "/x/members::$index_allocation/y"},
		{"/members/x.php::%24DATA", "/members/x.php::$DATA"},
		// Other non-ASCII text, and colons, are paths like any other.
		{"/会員/お知らせ", "/会員/お知らせ"},
		{"/会員/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B", "/会員/お知らせ"},
		{"/café/Ärger/ß", "/café/Ärger/ß"},
		{"/x/\ufffd", "/x/\ufffd"},
		{"/wiki/Help:Contents", "/wiki/Help:Contents"},
		{"/a:b/c:$d", "/a:b/c:$d"},
		{"/a:/:$b", "/a:/:$b"},
	}
	for _, tt := range tests {
		got, err := canonicalPath(tt.in)
		if tt.want == "" {
			if err != errBadPath {
				t.Errorf("canonicalPath(%q) = %q, %v; want errBadPath", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Besides the main reading, a path has the readings of upstreams that
// split at a decoded "?" or "#" and of best-fit conversion, case folding
// and NTFS.
func TestPathForms(t *testing.T) {
	for in, want := range map[string][]string{
		"/members/x%3f/../../public/y":           {"/public/y", "/members/x"},
		"/members/x%253F/../../public/y":         {"/public/y", "/members/x"},
		"/member\u017f/x":                        {"/member\u017f/x", "/members/x"},
		"/\uff4dembers/x":                        {"/\uff4dembers/x", "/members/x"},
		"/m\u0113mbers/x":                        {"/m\u0113mbers/x", "/members/x"},
		"/public/\xc0\xae\xc0\xae/members/x":     {"/public/\xc0\xae\xc0\xae/members/x", "/members/x"},
		"/public/\uff0e\uff0e/members/x":         {"/public/\uff0e\uff0e/members/x", "/members/x"},
		"/public/..\u00a5members/x":              {"/public/..\u00a5members/x", "/members/x"},
		"/members::$INDEX_ALLOCATION/x":          {"/members::$INDEX_ALLOCATION/x", "/members/x"},
		"/x/\ufb01le":                            {"/x/\ufb01le", "/x/file"},
		"/\u4f1a\u54e1/\u304a\u77e5\u3089\u305b": {"/\u4f1a\u54e1/\u304a\u77e5\u3089\u305b"},
		"/members/x":                             {"/members/x"},
	} {
		got, err := pathForms(in)
		if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("pathForms(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestWithDirectories(t *testing.T) {
	got := withDirectories([]string{"/members/*", "/*", "*.pdf", "/api/v1/*", "/exact", "*/files/*"})
	want := []string{"/members/*", "/*", "*.pdf", "/api/v1/*", "/exact", "*/files/*", "/members", "/api/v1", "*/files"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("withDirectories = %q, want %q", got, want)
	}
}

func TestMatchCased(t *testing.T) {
	for _, tt := range []struct {
		pattern, path string
		want          bool
	}{
		{"/public/*", "/public/x", true},
		{"/public/*", "/public/X", true},
		{"/public/*", "/Public/x", false},
		{"/public/*", "/PUBLIC/x", false},
		{"/public/*", "/public", false},
		{"/public/*", "/public/../members/x", false},
		{"/public/*", "//public/x", true},
		{"/public/*", "/public/./x", true},
		{"*.css", "/static/site.css", true},
		{"*.css", "/static/site.CSS", false},
		{"*/img/*", "/a/img/b", true},
		{"/login", "/login", true},
		{"/login", "/Login", false},
		{"/login", "/login/", false},
		{"/", "/", true},
		{"/a/*/c", "/a/b/c", true},
		{"/a/*/c", "/a/b/C", false},
		{"*", "/anything", true},
		{"/a//b/*", "/a//b/x", true},
		{"/a//b/*", "/a/b/x", false},
	} {
		if got := matchCased(tt.pattern, tt.path); got != tt.want {
			t.Errorf("matchCased(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestCleaned(t *testing.T) {
	for _, p := range []string{
		"/members/x", "/members/x/", "/", "/a/.b/c", "/a/b.", "/a/..b", "//a", "/a/./b", "/a/../b", "/a/.", "/a/..", "/a//b/",
	} {
		for _, merge := range []bool{true, false} {
			if got, want := cleaned(p, merge), caddyhttp.CleanPath(p, merge); got != want {
				t.Errorf("cleaned(%q, %v) = %q, want %q", p, merge, got, want)
			}
		}
	}
	for _, p := range []string{"/members/x", "/members/x/", "/", "/a/.b/c"} {
		if n := testing.AllocsPerRun(100, func() { cleaned(p, true) }); n != 0 {
			t.Errorf("cleaned(%q) allocates %v times", p, n)
		}
	}
}

// serverReadings are ways servers behind the gateway read a request's
// path: what a fuzzed path must not get past the gateway as.
var serverReadings = map[string]func(u *url.URL) string{
	"go": func(u *url.URL) string { return serverClean(u.Path) },
	// Tomcat, Jetty, Spring: ;parameters cut from each segment, then
	// "\" read as "/" (where allowed).
	"servlet": func(u *url.URL) string {
		segs := strings.Split(u.Path, "/")
		for i, s := range segs {
			s, _, _ = strings.Cut(s, ";")
			segs[i] = s
		}
		return serverClean(strings.ReplaceAll(strings.Join(segs, "/"), `\`, "/"))
	},
	// IIS: "\" read as "/", trailing dots and spaces dropped.
	"iis": func(u *url.URL) string { return iisRead(u.Path) },
	// IIS in front of an application that converts paths to a Windows
	// code page with best fit: overlong UTF-8 and fullwidth forms read as
	// ASCII, NTFS streams dropped.
	"best fit": func(u *url.URL) string {
		var b strings.Builder
		for i := 0; i < len(u.Path); i++ {
			c := u.Path[i]
			if (c == 0xc0 || c == 0xc1) && i+1 < len(u.Path) && u.Path[i+1]&0xc0 == 0x80 {
				i++
				c = (c&0x1f)<<6 | u.Path[i]&0x3f
			}
			b.WriteByte(c)
		}
		p := strings.NewReplacer("\u00a5", `\`, "\u20a9", `\`).Replace(b.String())
		p = strings.Map(func(r rune) rune {
			if '\uff01' <= r && r <= '\uff5e' {
				return r - 0xfee0 // fullwidth ASCII
			}
			return r
		}, p)
		// Accented letters lose their accents.
		p = strings.Map(func(r rune) rune {
			if unicode.Is(unicode.Mn, r) {
				return -1
			}
			return r
		}, norm.NFKD.String(p))
		return iisRead(ntfsStream.ReplaceAllString(p, ""))
	},
	// PHP routers, mod_rewrite backreferences: decoded (once more), then
	// cut at the first "?" or "#".
	"decoded, then split": func(u *url.URL) string {
		d, _ := unescape(u.Path)
		if i := strings.IndexAny(d, "?#"); i >= 0 {
			d = d[:i]
		}
		return serverClean(d)
	},
	// NTFS, APFS, Java's equalsIgnoreCase: case folded, ſ read as s.
	"case-insensitive": func(u *url.URL) string {
		return serverClean(strings.ToLower(strings.ToUpper(u.Path)))
	},
	// A server that decodes once more.
	"twice": func(u *url.URL) string {
		d, _ := unescape(u.Path)
		return serverClean(d)
	},
	// Express, Apache without AllowEncodedSlashes: "%2F" is not a slash.
	"encoded slash": func(u *url.URL) string {
		segs := strings.Split(u.EscapedPath(), "/")
		for i, s := range segs {
			if d, err := url.PathUnescape(s); err == nil {
				segs[i] = strings.ReplaceAll(d, "/", "%2F")
			}
		}
		return serverClean(strings.Join(segs, "/"))
	},
}

// iisRead reads p as IIS does: "\" as "/", trailing dots and spaces
// dropped.
func iisRead(p string) string {
	segs := strings.Split(strings.ReplaceAll(p, `\`, "/"), "/")
	for i, s := range segs {
		if s != "." && s != ".." {
			segs[i] = strings.TrimRight(s, ". ")
		}
	}
	return serverClean(strings.Join(segs, "/"))
}

// ntfsStream is a stream's name and type after a file's: x::$DATA,
// x:$I30:$INDEX_ALLOCATION.
var ntfsStream = regexp.MustCompile(`:[^/\\:]*:\$[^/\\]*`)

// serverClean resolves dot segments and doubled slashes, keeping a
// trailing slash, as servers do.
func serverClean(p string) string {
	c := path.Clean(p)
	if c != "/" && strings.HasSuffix(p, "/") {
		c += "/"
	}
	return c
}

// FuzzProtectedPath checks that no path a server behind the gateway would
// read as under /members/ (or outside /public/ with deny by default) gets
// past the gateway unprotected. The seeds run in every go test.
func FuzzProtectedPath(f *testing.F) {
	for _, s := range []string{
		"/members", "/members;/x", "/x/..;/members/x", `/members\x`, "/members./x", "/members /x",
		"/members\x00/x", "/members/%2e%2e/members/x", "//members/x", "/Members/x", "/members/x;a=b",
		"/public/..;/members/x", `/public\..\members`, "/public/%2e%2e/members", "/public;/../members",
		`/public;\..\members`, "/public/x/..%2f..%2fmembers", "/public/.../members", "/PUBLIC/x",
		"/public/%252e%252e/members", "/members%2fx", "/x%2f..%2fpublic/y", "/public/a%2Fb",
		"/members/x%3f/../../public/y", "/members/x%23/../../public/y", "/members/x%253f/../../public/y",
		"/members%3f/../x", "/member%C5%BF/x", "/public/%c0%ae%c0%ae/members/x",
		"/public/%ef%bc%8e%ef%bc%8e/members/x", "/members::$INDEX_ALLOCATION/x", "/public/%E4%BC%9A",
		"/%EF%BD%8Dembers/x", "/m%C4%93mbers/x", "/wiki/C%23", "/public/%EF%BC%8E%EF%BC%8E/x",
	} {
		f.Add(s)
	}
	ctx := testCaddyContext(f)
	members := &Handler{Protect: []*Rule{{Paths: []string{"/members/*"}}}}
	denyByDefault := &Handler{Protect: []*Rule{{Paths: []string{"/*"}, Except: []string{"/public/*"}}}}
	for _, h := range []*Handler{members, denyByDefault} {
		if err := h.Protect[0].provision(ctx, &App{}, false); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + raw + " HTTP/1.1\r\nHost: club.example\r\n\r\n")))
		if err != nil || !strings.HasPrefix(r.URL.Path, "/") {
			return // Go refuses it before any handler sees it
		}
		r = withReplacer(r, nil)
		for name, h := range map[string]*Handler{"members": members, "deny by default": denyByDefault} {
			rule, err := h.ruleFor(r)
			if err != nil || rule != nil {
				continue
			}
			for server, read := range serverReadings {
				seen := read(r.URL)
				lower := strings.ToLower(seen)
				if name == "members" && (lower == "/members" || strings.HasPrefix(lower, "/members/")) ||
					name == "deny by default" && !strings.HasPrefix(seen, "/public/") {
					t.Errorf("%s: %q (decoded %q) passes unprotected, but %s reads it as %q", name, raw, r.URL.Path, server, seen)
				}
			}
		}
		if canon, err := canonicalPath(r.URL.Path); err == nil {
			if again, err := canonicalPath(canon); err != nil || again != canon {
				t.Errorf("canonicalPath not idempotent: %q → %q → %q, %v", r.URL.Path, canon, again, err)
			}
			if strings.ContainsAny(canon, ";\\") || misread(canon) {
				t.Errorf("canonicalPath(%q) = %q", r.URL.Path, canon)
			}
		}
	})
}

// Deny by default: an exception covers only what every server reads as
// under it, and a path two rules claim is refused.
func TestRuleForDenyByDefault(t *testing.T) {
	h := &Handler{Protect: []*Rule{
		{Paths: []string{"/admin/*"}, RememberDevice: "off"},
		{Paths: []string{"/*"}, Except: []string{"/", "/login", "/public/*"}},
	}}
	for _, rule := range h.Protect {
		if err := rule.provision(testCaddyContext(t), &App{}, false); err != nil {
			t.Fatal(err)
		}
	}
	admin, all, refused := h.Protect[0], h.Protect[1], &Rule{}
	for target, want := range map[string]*Rule{
		"/":                      nil,
		"/login":                 nil,
		"/public/x":              nil,
		"/public/X":              nil,
		"/public/a%2Fb":          nil,
		"/public/x;jsessionid=1": nil,
		"//public/x":             nil,
		"/public/a%20b":          nil,
		"/x":                     all,
		"/public":                all,
		"/PUBLIC/x":              all,
		"/login;jsessionid=1":    all, // not /login as sent
		"/public%2fx":            all,
		"/x%2f..%2fpublic/y":     all,
		"/public/..;/x":          all,
		"/public/%252e%252e/x":   all,
		`/public\..\x`:           all,
		"/public./x":             all,
		"/admin/x":               admin,
		"/ADMIN":                 admin,
		"/public/..;/admin/x":    admin,   // exempt as sent only
		"/admin;/x":              refused, // all's as sent, admin's as Tomcat reads it
		"/admin/x/..;/..;/y":     refused,
	} {
		r := withReplacer(httptest.NewRequest(http.MethodGet, "http://club.example"+target, nil), nil)
		got, err := h.ruleFor(r)
		if want == refused {
			if err != errBadPath {
				t.Errorf("ruleFor(%q) = %v, %v; want errBadPath", target, got, err)
			}
			continue
		}
		if got != want || err != nil {
			t.Errorf("ruleFor(%q) = %v, %v; want %v", target, got, err, want)
		}
	}
}

// Paths that an upstream reads as a protected one through a decoded "?"
// or "#", case folding, best fit or an NTFS stream are refused, under the
// rules they would get past; other non-ASCII text is matched as usual.
func TestRuleForMisreadPaths(t *testing.T) {
	members := &Handler{Protect: []*Rule{{Paths: []string{"/members/*", "/admin/*", "/会員/*"}, Except: []string{"*.css"}}}}
	denyByDefault := &Handler{Protect: []*Rule{{Paths: []string{"/*"}, Except: []string{"/public/*", "/お知らせ/*"}}}}
	for _, h := range []*Handler{members, denyByDefault} {
		if err := h.Protect[0].provision(testCaddyContext(t), &App{}, false); err != nil {
			t.Fatal(err)
		}
	}
	const refused, protected, open = "refused", "protected", "open"
	for _, tt := range []struct {
		h            *Handler
		target, want string
	}{
		{members, "/members/x%3f/../../public/y", protected},
		{members, "/members/x%23/../../public/y", protected},
		{members, "/members/x%253f/../../public/y", protected},
		{members, "/members%3f/../x", protected},
		{members, "/members/secret%3f.css", protected},
		{members, "/member%C5%BF/x", protected},
		{members, "/MEMBER%C5%BF/x", protected},
		{members, "/public/%c0%ae%c0%ae/members/x", protected},
		{members, "/public/%ef%bc%8e%ef%bc%8e/members/x", protected},
		{members, "/public/..%ef%bc%8fmembers/x", protected},
		{members, "/public/..%c2%a5members/x", protected},
		{members, "/members::$INDEX_ALLOCATION/x", protected},
		{members, "/members:$I30:$INDEX_ALLOCATION/x", protected},
		{members, "/members::%24INDEX_ALLOCATION/x", protected},
		{members, "/adm%C4%B1n/x", protected}, // ı
		{members, "/%E2%84%AAey", open},       // K: /key, not protected here
		{members, "/%E2%84%AAdmin/x", open},   // K
		{members, "/adm%E2%84%AAn/x", open},
		{members, "/members/site.css", open},
		{members, "/%EF%BD%8Dembers/x", protected}, // ｍembers
		{members, "/%EF%BC%ADEMBERS/x", protected},
		{members, "/m%C4%93mbers/x", protected}, // mēmbers
		{members, "/wiki/C%23", open},
		{members, "/tags/c%23/questions", open},
		{members, "/files/report%3Fv2", open},
		{members, "/price/%C2%A5100", open},
		{members, "/x/%EF%AC%81le", open},
		{members, "/caf%E9", refused}, // not UTF-8
		{members, "/public/%e0%80%ae%e0%80%ae/members/x", refused},
		{members, "/%E4%BC%9A%E5%93%A1/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B", protected},
		{members, "/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B/x", open},
		{members, "/adm%C4%B0n/x", protected}, // İ, which Caddy lowercases to i
		{members, "/wiki/Help:Contents", open},
		{denyByDefault, "/members/x%3f/../../public/y", protected},
		{denyByDefault, "/members/x%23/../../public/y", protected},
		{denyByDefault, "/members/x%253f/../../public/y", protected},
		{denyByDefault, "/public/%c0%ae%c0%ae/members/x", protected},
		{denyByDefault, "/public/%ef%bc%8e%ef%bc%8e/members/x", protected},
		{denyByDefault, "/public/%e2%80%a5/members/x", protected}, // ‥
		{denyByDefault, "/public/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B", open},
		{denyByDefault, "/%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B/x", open},
		{denyByDefault, "/%E4%BC%9A%E5%93%A1/x", protected},
		{denyByDefault, "/public/c%23/x", open},
		{denyByDefault, "/public/%EF%BC%8E%EF%BC%8E/public/x", open},
	} {
		r := withReplacer(httptest.NewRequest(http.MethodGet, "http://club.example"+tt.target, nil), nil)
		rule, err := tt.h.ruleFor(r)
		got := open
		switch {
		case err == errBadPath:
			got = refused
		case err != nil:
			got = err.Error()
		case rule != nil:
			got = protected
		}
		if got != tt.want {
			t.Errorf("ruleFor(%q): %s, want %s", tt.target, got, tt.want)
		}
	}
}

func TestRuleForNoAllocationOnOrdinaryPaths(t *testing.T) {
	h := &Handler{Protect: []*Rule{
		{Paths: []string{"/admin/*"}},
		{Paths: []string{"/*"}, Except: []string{"/", "/login", "/public/*", "*.css"}},
	}}
	for _, rule := range h.Protect {
		if err := rule.provision(testCaddyContext(t), &App{}, false); err != nil {
			t.Fatal(err)
		}
	}
	r := withReplacer(httptest.NewRequest(http.MethodGet, "/members/account/settings", nil), nil)
	if n := testing.AllocsPerRun(100, func() { _, _ = h.ruleFor(r) }); n != 0 {
		t.Errorf("ruleFor allocates %v times on an ordinary path", n)
	}
}
