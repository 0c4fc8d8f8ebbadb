package tests

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// An app code from a phone whose clock is off, through Caddy: refused
// like a wrong code, with the clock's offset and how to fix it on the
// page in both languages, an audit event that says how far off, and the
// clock_drift_total metric counting it by direction.
func TestClockDriftThroughCaddy(t *testing.T) {
	e := start(t, setup{admin: true})
	_, secret := enrolled(e, "alice")
	// Well past the step the enrolment used: a slow phone's code for a
	// step before it would be a replay, not a slow clock.
	e.clock.Advance(15 * time.Minute)
	for _, tc := range []struct {
		lang, want, advice string
		steps              int
	}{
		{"en-US,en;q=0.8", "Your phone&#39;s clock looks about 5 minutes fast.",
			"iPhone: Settings &gt; General &gt; Date &amp; Time &gt; Set Automatically", 10},
		{"ja-JP,ja;q=0.9", "スマートフォンの時計が約5分遅れているようです。",
			"iPhone: 設定 &gt; 一般 &gt; 日付と時刻 &gt; 自動設定", -10},
		{"en-US,en;q=0.8", "Your phone&#39;s clock looks about 1 minute slow.",
			"Android: Settings &gt; System &gt; Date &amp; time &gt; Set time automatically", -2},
	} {
		b := e.browser()
		b.lang = tc.lang
		b.login("alice")
		r := b.verify(e.code(secret, tc.steps), "/members/", false)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, tc.want) || !strings.Contains(r.body, tc.advice) {
			t.Fatalf("%s, %d steps off: %d\n%s", tc.lang, tc.steps, r.status, r.body)
		}
	}
	// A code 20 minutes off is beyond the window: the plain message.
	b := e.browser()
	b.login("alice")
	r := b.verify(e.code(secret, 40), "/members/", false)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "The verification code is incorrect.") || strings.Contains(r.body, "clock") {
		t.Fatalf("20 minutes off: %d\n%s", r.status, r.body)
	}

	var drifts []float64
	for _, ev := range e.audit() {
		if ev["event"] == "verify" && ev["reason"] == "clock_drift" {
			drifts = append(drifts, ev["drift_seconds"].(float64))
		}
	}
	if len(drifts) != 3 || drifts[0] != 300 || drifts[1] != -300 || drifts[2] != -60 {
		t.Fatalf("clock_drift audit events' drift_seconds %v, want [300 -300 -60]", drifts)
	}

	families := scrape(t, e)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"caddy_two_factor_clock_drift_total", map[string]string{"direction": "fast"}, 1},
		{"caddy_two_factor_clock_drift_total", map[string]string{"direction": "slow"}, 2},
		{"caddy_two_factor_verifications_total", map[string]string{"method": "totp", "result": "wrong"}, 4},
	} {
		if got, ok := metricValue(families, want.name, want.labels); !ok || got != want.value {
			t.Errorf("%s%v = %v (found %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}

	// Four wrong codes so far, one more locks (max_failures 5): drifted
	// codes count like any other.
	r = b.verify(e.code(secret, 8), "/members/", false)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("fifth wrong code, drifted: %d, want the lockout", r.status)
	}
}

// With the hint off, a drifted code gets the plain wrong-code message.
func TestClockDriftOff(t *testing.T) {
	e := start(t, setup{global: "totp_drift_window off"})
	_, secret := enrolled(e, "alice")
	b := e.browser()
	b.login("alice")
	r := b.verify(e.code(secret, 10), "/members/", false)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "The verification code is incorrect.") || strings.Contains(r.body, "clock") {
		t.Fatalf("drifted code with the hint off: %d\n%s", r.status, r.body)
	}
}
