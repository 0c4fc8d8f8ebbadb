package session

import (
	"net/http"
	"net/http/httptest"
	"reflect"
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

func TestNameAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Name(SessionCookie, true) }); n != 0 {
		t.Fatalf("Name allocates %v times", n)
	}
	if Name(SessionCookie, true) != "__Host-2fa_session" || Name(SessionCookie, false) != "2fa_session" {
		t.Fatal("wrong names")
	}
}
