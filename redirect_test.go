package twofactor

import "testing"

func TestSafeReturnPath(t *testing.T) {
	refused := []string{
		"", "https://evil.com", "//evil.com", "/\\evil.com", "\\\\evil.com", "/%2F%2Fevil.com",
		"%2F%2Fevil.com", "https:evil.com", "javascript:alert(1)", "data:text/html,x",
		"http://localhost/x", "https://localhost.evil.com/", "https://user@evil.com",
		"/ok%0d%0aSet-Cookie:a=b", "/%09/evil.com", "/%5Cevil.com", "/%5C%5Cevil.com",
		"/\t/evil.com", "/x\x00", "relative/path", "/%zz",
	}
	for _, p := range refused {
		if got := safeReturnPath(p); got != "" {
			t.Errorf("safeReturnPath(%q) = %q, want refusal", p, got)
		}
	}
	allowed := []string{"/", "/members/page?x=1", "/members/a%2Fb", "/search?q=%2F%2Fx", "/members/#top"}
	for _, p := range allowed {
		if got := safeReturnPath(p); got != p {
			t.Errorf("safeReturnPath(%q) = %q, want it kept", p, got)
		}
	}
}
