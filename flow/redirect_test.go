package flow

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSafeReturnPath(t *testing.T) {
	refused := []string{
		"", "https://evil.com", "//evil.com", "/\\evil.com", "\\\\evil.com", "/%2F%2Fevil.com",
		"%2F%2Fevil.com", "https:evil.com", "javascript:alert(1)", "data:text/html,x",
		"http://localhost/x", "https://localhost.evil.com/", "https://user@evil.com",
		"/ok%0d%0aSet-Cookie:a=b", "/%09/evil.com", "/%5Cevil.com", "/%5C%5Cevil.com",
		"/\t/evil.com", "/x\x00", "relative/path", "/%zz",
	}
	for _, p := range refused {
		if got := SafeReturnPath(p); got != "" {
			t.Errorf("SafeReturnPath(%q) = %q, want refusal", p, got)
		}
	}
	allowed := []string{"/", "/members/page?x=1", "/members/a%2Fb", "/search?q=%2F%2Fx", "/members/#top"}
	for _, p := range allowed {
		if got := SafeReturnPath(p); got != p {
			t.Errorf("SafeReturnPath(%q) = %q, want it kept", p, got)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name   string
		url    string // https:// URLs give a TLS request
		origin string
		fetch  string // Sec-Fetch-Site
		want   bool
	}{
		{name: "no Origin and no Sec-Fetch-Site", url: "http://club.example/.2fa/challenge", want: true},
		{name: "same origin", url: "http://club.example/.2fa/challenge", origin: "http://club.example", fetch: "same-origin", want: true},
		{name: "same origin, Origin only", url: "http://club.example/.2fa/challenge", origin: "http://club.example", want: true},
		{name: "same origin, host case differs", url: "http://club.example/.2fa/challenge", origin: "http://CLUB.example", want: true},
		{name: "Sec-Fetch-Site none", url: "http://club.example/.2fa/challenge", fetch: "none", want: true},
		{name: "Sec-Fetch-Site same-origin only", url: "http://club.example/.2fa/challenge", fetch: "same-origin", want: true},
		{name: "same origin with port", url: "http://club.example:8080/.2fa/challenge", origin: "http://club.example:8080", want: true},
		{name: "other host", url: "http://club.example/.2fa/challenge", origin: "http://evil.example"},
		{name: "sibling subdomain", url: "http://club.example/.2fa/challenge", origin: "http://a.club.example"},
		{name: "host as prefix", url: "http://club.example/.2fa/challenge", origin: "http://club.example.evil.example"},
		{name: "other scheme", url: "http://club.example/.2fa/challenge", origin: "https://club.example"},
		{name: "other port", url: "http://club.example/.2fa/challenge", origin: "http://club.example:8080"},
		{name: "null without Sec-Fetch-Site", url: "http://club.example/.2fa/challenge", origin: "null"},
		{name: "null from the same origin (privacy setting)", url: "http://club.example/.2fa/challenge", origin: "null", fetch: "same-origin", want: true},
		{name: "null from another site", url: "http://club.example/.2fa/challenge", origin: "null", fetch: "cross-site"},
		{name: "garbage", url: "http://club.example/.2fa/challenge", origin: "::not a url::"},
		{name: "host without scheme", url: "http://club.example/.2fa/challenge", origin: "club.example"},
		{name: "bad escape", url: "http://club.example/.2fa/challenge", origin: "http://club.example/%zz"},
		{name: "cross-site", url: "http://club.example/.2fa/challenge", fetch: "cross-site"},
		{name: "same-site", url: "http://club.example/.2fa/challenge", fetch: "same-site"},
		{name: "cross-site with a same Origin", url: "http://club.example/.2fa/challenge", origin: "http://club.example", fetch: "cross-site"},
		{name: "unknown Sec-Fetch-Site", url: "http://club.example/.2fa/challenge", fetch: "bogus"},
		{name: "TLS with https origin", url: "https://club.example/.2fa/challenge", origin: "https://club.example", fetch: "same-origin", want: true},
		{name: "TLS with http origin", url: "https://club.example/.2fa/challenge", origin: "http://club.example"},
		{name: "TLS with other host", url: "https://club.example/.2fa/challenge", origin: "https://evil.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tt.url, nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.fetch != "" {
				r.Header.Set("Sec-Fetch-Site", tt.fetch)
			}
			if got := sameOrigin(r); got != tt.want {
				t.Errorf("sameOrigin = %v, want %v", got, tt.want)
			}
		})
	}
}
