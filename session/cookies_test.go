package session

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

func TestIsGatewayCookie(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"2fa_session", true},
		{"__Host-2fa_session", true},
		{"2fa_device", true},
		{"__Host-2fa_device", true},
		{"2fa_csrf", true},
		{"__Host-2fa_csrf", true},
		{"2fa_remind", true},
		{"__Host-2fa_remind", true},
		{"2fa_browser", true},
		{"__Host-2fa_browser", true},
		{"sid", false},
		{"__Host-sid", false},
		{"2fa_session2", false},
		{"x2fa_session", false},
		{"2FA_SESSION", false}, // cookie names are case-sensitive
		{"__Secure-2fa_session", false},
		{"__Host-", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsGatewayCookie(tt.name); got != tt.want {
			t.Errorf("IsGatewayCookie(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStripGatewayCookies(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{"member_session=abc"}, []string{"member_session=abc"}},
		{[]string{"member_session=abc; 2fa_session=x; _ga=1"}, []string{"member_session=abc; _ga=1"}},
		{[]string{"__Host-2fa_session=x; __Host-2fa_device=y", "a=1"}, []string{"a=1"}},
		{[]string{"2fa_csrf=x;2fa_remind=y;  member_session=abc"}, []string{"member_session=abc"}},
		{[]string{"2fa_device=y"}, nil},
		{[]string{"x2fa_session=keep; 2fa_sessionx=keep"}, []string{"x2fa_session=keep; 2fa_sessionx=keep"}},
	}
	for _, tt := range tests {
		h := http.Header{"Cookie": append([]string(nil), tt.in...)}
		Strip(h)
		if !reflect.DeepEqual(h["Cookie"], tt.want) {
			t.Errorf("%q: got %q, want %q", tt.in, h["Cookie"], tt.want)
		}
	}
	h := http.Header{"Cookie": {"member_session=abc; theme=dark"}}
	if n := testing.AllocsPerRun(100, func() { Strip(h) }); n != 0 {
		t.Errorf("no gateway cookie: %v allocations", n)
	}
}

// stripReference is Strip's rule spelled out: every cookie but the
// gateway's, trimmed, joined by "; ".
func stripReference(line string) string {
	var kept []string
	for part := range strings.SplitSeq(line, ";") {
		part = textproto.TrimString(part)
		name, _, _ := strings.Cut(part, "=")
		if part != "" && !IsGatewayCookie(name) {
			kept = append(kept, part)
		}
	}
	return strings.Join(kept, "; ")
}

// The run taken without copying must be exactly what rebuilding the line
// gives, whatever the spacing, empty parts and order.
func TestStripRunEqualsRebuilt(t *testing.T) {
	pieces := []string{"member_session=abc", "2fa_session=x", "__Host-2fa_device=y", "_ga=GA1.1", "a=1", "", " ", "\t", "b=2 ", " c=3", "2fa_csrf=z", "x2fa_session=k"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := 1 + rng.IntN(6)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = pieces[rng.IntN(len(pieces))]
		}
		seps := []string{";", "; ", ";  ", " ;"}
		line := parts[0]
		for _, p := range parts[1:] {
			line += seps[rng.IntN(len(seps))] + p
		}
		if got, want := withoutGatewayCookies(line), stripReference(line); got != want {
			t.Fatalf("%q: got %q, want %q", line, got, want)
		}
	}
}

// The usual browser lines: the gateway's cookies set after the member
// site's (last) or before it (first) cost no allocation.
func TestStripUsualLinesWithoutAllocation(t *testing.T) {
	for _, line := range []string{
		"member_session=abc; _ga=1; 2fa_session=x",
		"2fa_session=x; 2fa_device=y; member_session=abc; _ga=1",
		"member_session=abc; 2fa_session=x",
	} {
		h := http.Header{"Cookie": {line}}
		if n := testing.AllocsPerRun(100, func() { h["Cookie"][0] = line; Strip(h) }); n != 0 {
			t.Errorf("%q: %v allocations", line, n)
		}
		if got, want := h["Cookie"][0], stripReference(line); got != want {
			t.Errorf("%q: got %q, want %q", line, got, want)
		}
	}
}

func TestBindingCoversEveryCopyOfTheSessionCookie(t *testing.T) {
	req := func(cookie string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", cookie)
		return r
	}
	one, _, _ := Binding(req("sid=a"), "sid")
	same, _, _ := Binding(req("x=1; sid=a; y=2"), "sid")
	if one != same {
		t.Fatal("other cookies changed the binding")
	}
	ab, _, _ := Binding(req("sid=a; sid=b"), "sid")
	ba, _, _ := Binding(req("sid=b; sid=a"), "sid")
	ac, _, _ := Binding(req("sid=a; sid=c"), "sid")
	if ab == one || ab == ba || ab == ac {
		t.Fatal("a second copy of the session cookie did not change the binding")
	}
	if _, _, ok := Binding(req("x=1"), "sid"); ok {
		t.Fatal("binding without the cookie")
	}
	r := req("sid=a; theme=dark")
	if n := testing.AllocsPerRun(100, func() { Binding(r, "sid") }); n != 0 {
		t.Fatalf("%v allocations for a single session cookie", n)
	}
}

// A session cookie split into parts the ASP.NET Core way ("chunks-N", the
// parts in <name>C1 to <name>CN) binds to its parts: the marker is the
// same for every member, and an answer cached for one must not serve
// another.
func TestBindingFollowsChunkedCookies(t *testing.T) {
	req := func(cookie string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", cookie)
		return r
	}
	const name = ".AspNetCore.Cookies"
	alice, _, okA := Binding(req(name+"=chunks-2; "+name+"C1=alice-part-1; "+name+"C2=alice-part-2"), name)
	bob, _, okB := Binding(req(name+"=chunks-2; theme=dark; "+name+"C1=bob-part-1; "+name+"C2=bob-part-2"), name)
	if !okA || !okB || alice == bob {
		t.Fatalf("two members' chunked sessions: %t %t, the same binding %t", okA, okB, alice == bob)
	}
	moved, _, _ := Binding(req(name+"C2=alice-part-2; "+name+"C1=alice-part-1; "+name+"=chunks-2"), name)
	if moved != alice {
		t.Fatal("the order of the cookies in the header changed the binding")
	}
	for _, bad := range []string{
		name + "=chunks-2; " + name + "C1=alice-part-1",       // a part missing
		name + "=chunks-2; " + name + "C1=; " + name + "C2=x", // a part empty
	} {
		if _, _, ok := Binding(req(bad), name); ok {
			t.Errorf("%q: bound", bad)
		}
	}
	// Values that only look like the marker are values.
	for _, v := range []string{"chunks-", "chunks-x", "chunks-100", "chunks-999", "xchunks-2"} {
		if _, _, ok := Binding(req(name+"="+v), name); !ok {
			t.Errorf("%q: not bound as a plain value", v)
		}
	}
}

func TestNameAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Name(SessionCookie, true) }); n != 0 {
		t.Fatalf("Name allocates %v times", n)
	}
	if Name(SessionCookie, true) != "__Host-2fa_session" || Name(SessionCookie, false) != "2fa_session" {
		t.Fatal("wrong names")
	}
}

// BenchmarkBinding is the identity's key on every protected request: the
// member-site cookie found in the header and hashed (SHA-256).
func BenchmarkBinding(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/members/x", nil)
	r.Header.Set("Cookie", "_ga=GA1.1.123456789.1700000000; member_session=3f9c2a7be41d0c5e8a6b2f1d9e7c4a30b5d8e2f6a1c9b7d3; "+
		"2fa_session=AQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := Binding(r, "member_session"); !ok {
			b.Fatal("no binding")
		}
	}
}
