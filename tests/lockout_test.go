package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The case from the outside review: max_failures 3 and lockout 20s under
// the default 15m window. The page says when to try again, in the right
// unit and plural in both languages, and at that time the right code
// works; the tries after it are counted afresh, and a second lockout in a
// row lasts twice as long.
func TestLockoutEndsWhenThePageSays(t *testing.T) {
	e := start(t, setup{global: "max_failures 3\n\t\tlockout 20s"})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	b.header.Set("Accept-Language", "ja")
	for i := 1; i <= 3; i++ {
		r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
		if i < 3 && r.status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d", i, r.status)
		}
		if i == 3 {
			if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "20秒後に") {
				t.Fatalf("lockout page in ja: %d\n%s", r.status, r.body)
			}
			if got := r.header.Get("Retry-After"); got != "20" {
				t.Fatalf("Retry-After %q, want 20", got)
			}
		}
	}
	b.header.Set("Accept-Language", "en")
	// The challenge page shows the lockout instead of a form, so post
	// with a form token from another page.
	tok := b.csrf("/.2fa/logout")
	post := func(code string) *response {
		return b.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "code": {code}})
	}
	e.clock.Advance(5 * time.Second)
	r := post(e.code(secret, 0))
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Try again in 15 seconds.") {
		t.Fatalf("right code 5s into the lockout: %d\n%s", r.status, r.body)
	}

	// When the lockout ends, three fresh tries; the third locks again for
	// 40 seconds.
	e.clock.Advance(15 * time.Second)
	for i := 1; i <= 3; i++ {
		r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
		if i < 3 && r.status != http.StatusUnauthorized {
			t.Fatalf("after the lockout, wrong code %d: %d, want a fresh try", i, r.status)
		}
		if i == 3 && (r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Try again in 40 seconds.")) {
			t.Fatalf("second lockout: %d\n%s", r.status, r.body)
		}
	}
	e.clock.Advance(40 * time.Second)
	e.nextStep()
	if r := b.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("right code when the second lockout ended: %d\n%s", r.status, r.body)
	}
}

// A lockout of a minute or more is said in minutes, singular when one.
func TestLockoutPageSaysOneMinute(t *testing.T) {
	e := start(t, setup{global: "max_failures 1\n\t\tlockout 1m"})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	r := b.verify(wrongCode(e.code(secret, 0)), "/members/", false)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Try again in 1 minute, at <time") {
		t.Fatalf("lockout page: %d\n%s", r.status, r.body)
	}
	if r.header.Get("Retry-After") != "60" {
		t.Fatalf("Retry-After %q, want 60", r.header.Get("Retry-After"))
	}
}
