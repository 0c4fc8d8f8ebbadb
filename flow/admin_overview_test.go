package flow

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

func TestOverviewRange(t *testing.T) {
	for query, want := range map[string]int{"": 30, "range=7": 7, "range=30": 30, "range=90": 90} {
		q, _ := url.ParseQuery(query)
		if got, ok := overviewRange(q); !ok || got != want {
			t.Errorf("%q: %d %v, want %d", query, got, ok, want)
		}
	}
	for _, query := range []string{"range=", "range=0", "range=-7", "range=31", "range=365", "range=7d", "range=%E4%B8%83", "range=7&range=30", "range=1e1"} {
		q, _ := url.ParseQuery(query)
		if got, ok := overviewRange(q); ok {
			t.Errorf("%q accepted as %d", query, got)
		}
	}
}

func TestFillOverview(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	o := &pages.AdminOverview{Days: []time.Time{day, day.AddDate(0, 0, 1), day.AddDate(0, 0, 2)}}
	rec := audit.Histogram{Bounds: audit.RecoveredBounds, Counts: make([]int64, len(audit.RecoveredBounds)+1), Count: 2}
	rec.Counts[1] = 2
	other := audit.Histogram{Bounds: []float64{1}, Counts: []int64{5, 5}, Count: 10}
	fillOverview(o, []audit.Day{
		{Date: day, Seen: 10, Enrolled: 4, Verifications: map[string]map[string]int64{"totp": {"ok": 5, "wrong": 2, "replay": 1}},
			Sent:     map[string]map[string]int64{"email": {"sent": 8, "limited": 5, "timeout": 2}, "sms": {"limited": 3}},
			Lockouts: map[string]int64{"address": 1}, Recovered: rec, NotArrived: map[string]int64{"sms": 1}},
		// The second day is missing: no counts, no members.
		{Date: day.AddDate(0, 0, 2).Add(3 * time.Hour), Seen: -1, Enrolled: -1, Recovered: other,
			Verifications: map[string]map[string]int64{"email": {"ok": 1}}},
		// A day outside the range is ignored.
		{Date: day.AddDate(0, 0, 5), Seen: 20, Enrolled: 20},
	})
	if o.Coverage[0] != 40 || !math.IsNaN(o.Coverage[1]) || !math.IsNaN(o.Coverage[2]) || o.Seen != 10 || o.Enrolled != 4 {
		t.Errorf("coverage %v, seen %d, enrolled %d", o.Coverage, o.Seen, o.Enrolled)
	}
	if got := o.Verified["totp"]; got[0] != 5 || got[1] != 0 || o.Failed["totp"][0] != 3 || o.Verified["email"][2] != 1 {
		t.Errorf("verified %v, failed %v", o.Verified, o.Failed)
	}
	if o.Results["totp"]["replay"] != 1 || o.Results["totp"]["ok"] != 5 {
		t.Errorf("results %v", o.Results)
	}
	// Limited sends were never handed to the sender: 2 failed of 10.
	if o.SendFailed["email"][0] != 2 || o.SendAttempts["email"][0] != 10 || o.SendAttempts["sms"][0] != 0 || o.NotArrived["sms"] != 1 {
		t.Errorf("sends: failed %v, attempts %v, not arrived %v", o.SendFailed, o.SendAttempts, o.NotArrived)
	}
	if o.Lockouts["address"][0] != 1 || o.Lockouts["account"][0] != 0 || len(o.Lockouts["account"]) != 3 {
		t.Errorf("lockouts %v", o.Lockouts)
	}
	// A day counted with other bounds is re-counted at its buckets' upper
	// bounds: 5 at 1 s, 5 above it (above every bound here).
	last := len(audit.RecoveredBounds)
	if o.Recovered.Count != 12 || o.Recovered.Counts[0] != 5 || o.Recovered.Counts[1] != 2 || o.Recovered.Counts[last] != 5 ||
		o.Median != 180 || !math.IsInf(o.P90, 1) {
		t.Errorf("recovered %+v, median %v, p90 %v", o.Recovered, o.Median, o.P90)
	}
}

// Passkeys show on the overview where they are configured, or where the
// range counts them (configured before, or on another instance).
func TestOverviewMethods(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	none := &pages.AdminOverview{Days: []time.Time{day}}
	fillOverview(none, []audit.Day{{Date: day, Verifications: map[string]map[string]int64{"totp": {"ok": 5}}}})
	some := &pages.AdminOverview{Days: []time.Time{day}}
	fillOverview(some, []audit.Day{{Date: day, Verifications: map[string]map[string]int64{"webauthn": {"counter_regressed": 1}}}})
	for _, tc := range []struct {
		o        *pages.AdminOverview
		passkeys bool
		want     string
	}{
		{none, false, "totp email sms recovery"},
		{none, true, "webauthn totp email sms recovery"},
		{some, false, "webauthn totp email sms recovery"},
	} {
		if got := strings.Join(overviewMethods(tc.o, tc.passkeys), " "); got != tc.want {
			t.Errorf("passkeys configured %v: %q, want %q", tc.passkeys, got, tc.want)
		}
	}
	if strings.Join(pages.OverviewMethods, " ") != "webauthn totp email sms recovery" {
		t.Errorf("the overview's methods changed: %v", pages.OverviewMethods)
	}
}

// Opening the overview shows the latest security events, members' IDs
// and addresses among them: it is audited as a read, and that read is
// not itself one of the latest events.
func TestOverviewAudited(t *testing.T) {
	fx, tr := trailFixture(t)
	ctx := context.Background()
	if err := tr.Append(ctx, audit.Record{Event: "lockout", Result: "account_locked", Member: "bob", IP: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	fx.audit.TakeAll()
	br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
	w := fx.do(&route{method: http.MethodGet, path: "admin/?range=7"}, br, "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "192.0.2.7") {
		t.Fatalf("the overview: %d, without the latest lockout", w.Code)
	}
	reads := fx.audited("admin_overview_viewed")
	if len(reads) != 1 || reads[0]["actor"] != "alice (approver)" || reads[0]["range"] != int64(7) || reads[0]["found"] != int64(1) {
		t.Fatalf("audited as %v, want one admin_overview_viewed by alice (approver), range 7, found 1", reads)
	}
	if securityEvent(audit.Record{Event: "admin_overview_viewed", Result: "success"}) {
		t.Error("an admin opening the overview is listed among its security events")
	}
}
