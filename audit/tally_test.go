package audit

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/clock"
)

const retention = 400 * 24 * time.Hour

func newTally(t *testing.T, b *backend, instance string, clk *clock.Fake) *Tally {
	t.Helper()
	ty, err := NewTally(b.st, instance, retention, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return ty
}

func flush(t *testing.T, ty *Tally) {
	t.Helper()
	if err := ty.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func days(t *testing.T, b *backend, from, to time.Time) []Day {
	t.Helper()
	got, unreadable, err := Days(t.Context(), b.st, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(unreadable) > 0 {
		t.Fatalf("unreadable documents %q", unreadable)
	}
	return got
}

// Two instances count a day between them, one of them restarts, and the
// clock crosses midnight: each day's figures add up every instance's,
// the restarted one's continuing from what it had written, and a day
// without figures is there with nothing counted.
func TestTallyDays(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		day1 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		clk := clock.NewFake(day1.Add(23*time.Hour + 59*time.Minute))
		a, other := newTally(t, b, "a", clk), newTally(t, b, "b", clk)

		a.Observe(CountVerification, "totp", "ok")
		a.Observe(CountVerification, "totp", "ok")
		a.Observe(CountVerification, "email", "wrong")
		a.Observe(CountSent, "email", "sent")
		a.ObserveRecovered(90)
		a.Members(10, 4)
		other.Observe(CountVerification, "totp", "ok")
		other.Observe(CountLockout, "account")
		other.Members(11, 5)
		flush(t, a)
		flush(t, other)

		// a restarts: its new tally adds to what the old one wrote.
		a = newTally(t, b, "a", clk)
		a.Observe(CountVerification, "totp", "ok")
		a.Observe(CountAdminAction, "unlock")
		// Midnight passes before the next flush: the counts before it
		// stay on day 1, those after go to day 2.
		clk.Advance(2 * time.Minute)
		a.Observe(CountEnrolment, "totp")
		a.Observe(CountRemoval, "sms")
		a.Observe(CountNotArrived, "sms")
		a.ObserveRecovered(4000)
		flush(t, a)

		got := days(t, b, day1.Add(-24*time.Hour), day1.Add(24*time.Hour+5*time.Hour))
		if len(got) != 3 {
			t.Fatalf("%d days, want 3: %+v", len(got), got)
		}
		empty := got[0]
		if !empty.Date.Equal(day1.Add(-24*time.Hour)) || empty.Seen != -1 || empty.Enrolled != -1 ||
			empty.Verifications != nil || empty.Recovered.Count != 0 {
			t.Errorf("a day without figures: %+v", empty)
		}
		d1 := got[1]
		if !d1.Date.Equal(day1) {
			t.Errorf("day 1's date %s", d1.Date)
		}
		wantVerif := map[string]map[string]int64{"totp": {"ok": 4}, "email": {"wrong": 1}}
		if !reflect.DeepEqual(d1.Verifications, wantVerif) {
			t.Errorf("day 1 verifications %v, want %v", d1.Verifications, wantVerif)
		}
		if !reflect.DeepEqual(d1.Sent, map[string]map[string]int64{"email": {"sent": 1}}) ||
			!reflect.DeepEqual(d1.Lockouts, map[string]int64{"account": 1}) ||
			!reflect.DeepEqual(d1.AdminActions, map[string]int64{"unlock": 1}) || d1.Enrolments != nil {
			t.Errorf("day 1: %+v", d1)
		}
		if d1.Seen != 11 || d1.Enrolled != 5 {
			t.Errorf("day 1 members %d seen, %d enrolled; want the highest snapshot, 11 and 5", d1.Seen, d1.Enrolled)
		}
		if d1.Recovered.Count != 1 || d1.Recovered.Counts[1] != 1 || d1.Recovered.Sum != 90 {
			t.Errorf("day 1 recovered %+v", d1.Recovered)
		}
		d2 := got[2]
		if d2.Verifications != nil || !reflect.DeepEqual(d2.Enrolments, map[string]int64{"totp": 1}) ||
			!reflect.DeepEqual(d2.Removals, map[string]int64{"sms": 1}) ||
			!reflect.DeepEqual(d2.NotArrived, map[string]int64{"sms": 1}) || d2.Seen != -1 {
			t.Errorf("day 2: %+v", d2)
		}
		if d2.Recovered.Count != 1 || d2.Recovered.Counts[4] != 1 {
			t.Errorf("day 2 recovered %+v", d2.Recovered)
		}

		// A flush with nothing new changes nothing.
		flush(t, a)
		if again := days(t, b, day1, day1); !reflect.DeepEqual(again[0], d1) {
			t.Errorf("after an empty flush: %+v, want %+v", again[0], d1)
		}
	})
}

// Counts that could not be written are kept for the next flush.
func TestTallyKeepsUnwrittenCounts(t *testing.T) {
	b := openBolt(t)
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	ty := newTally(t, b, "a", clk)
	ty.Observe(CountVerification, "totp", "wrong")
	ty.Members(3, 2)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ty.Flush(ctx); err == nil {
		t.Fatal("flush with a cancelled context: no error")
	}
	ty.Observe(CountVerification, "totp", "wrong")
	flush(t, ty)
	got := days(t, b, clk.Now(), clk.Now())
	if n := got[0].Verifications["totp"]["wrong"]; n != 2 || got[0].Seen != 3 {
		t.Errorf("after a failed flush and a good one: %d wrong, %d seen; want 2 and 3", n, got[0].Seen)
	}
}

// A document that does not parse is left out of its day and named, the
// other instances' documents still count, and the read does not fail.
func TestDaysUnreadable(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		day1 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		clk := clock.NewFake(day1)
		a := newTally(t, b, "a", clk)
		a.Observe(CountVerification, "totp", "ok")
		flush(t, a)
		for _, date := range []string{"2026-03-01", "2026-03-02"} {
			if err := b.st.IndexPut(t.Context(), figuresIndex(date), "broken"); err != nil {
				t.Fatal(err)
			}
			if err := b.st.Set(t.Context(), figuresKey(date, "broken"), []byte("{not json"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		got, unreadable, err := Days(t.Context(), b.st, day1, day1.AddDate(0, 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"figures:2026-03-01:broken", "figures:2026-03-02:broken"}
		if !reflect.DeepEqual(unreadable, want) {
			t.Errorf("unreadable %q, want %q", unreadable, want)
		}
		if len(got) != 2 || got[0].Verifications["totp"]["ok"] != 1 || got[1].Verifications != nil {
			t.Errorf("days beside unreadable documents: %+v", got)
		}
	})
}

func TestDaysRange(t *testing.T) {
	b := openBolt(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		from, to time.Time
		want     string
	}{
		{at, at.Add(-24 * time.Hour), "from 2026-03-01 is after to 2026-02-28"},
		{at.AddDate(0, 0, -400), at, "401 days; at most 400"},
	} {
		if _, _, err := Days(t.Context(), b.st, c.from, c.to); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Days(%s, %s) = %v, want an error saying %q", c.from, c.to, err, c.want)
		}
	}
	if got := days(t, b, at.AddDate(0, 0, -399), at); len(got) != 400 {
		t.Errorf("400 days: got %d", len(got))
	}
}

func TestNewTallyRefuses(t *testing.T) {
	b := openBolt(t)
	for _, c := range []struct {
		instance  string
		retention time.Duration
		want      string
	}{
		{"", retention, "instance"},
		{strings.Repeat("x", MaxInstanceLen+1), retention, "instance"},
		{"a\nb", retention, "instance"},
		{"a", 0, "retention"},
	} {
		if _, err := NewTally(b.st, c.instance, c.retention, time.Now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewTally(%q, %s) = %v, want an error naming %s", c.instance, c.retention, err, c.want)
		}
	}
}

// The indexes of days past retention are emptied; the days within stay.
func TestTallyTrimsOldDays(t *testing.T) {
	b := openBolt(t)
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	ty, err := NewTally(b.st, "a", 10*24*time.Hour, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	old := clk.Now().AddDate(0, 0, -12)
	kept := clk.Now().AddDate(0, 0, -9)
	for _, d := range []time.Time{old, kept} {
		if err := b.st.IndexPut(t.Context(), figuresIndex(d.Format(dateLayout)), "other"); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, ty)
	for d, want := range map[time.Time]int{old: 0, kept: 1} {
		n, err := b.st.IndexCount(t.Context(), figuresIndex(d.Format(dateLayout)), "", "")
		if err != nil || n != want {
			t.Errorf("index of %s: %d members (%v), want %d", d.Format(dateLayout), n, err, want)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := NewHistogram([]float64{60, 300, 900})
	if q := h.Quantile(0.5); !math.IsNaN(q) {
		t.Errorf("empty: %v, want NaN", q)
	}
	for _, v := range []float64{10, 20, 100, 200, 250, 400, 5000, 6000, 7000, 8000} {
		h.Observe(v)
	}
	if !reflect.DeepEqual(h.Counts, []int64{2, 3, 1, 4}) || h.Count != 10 || h.Sum != 26980 {
		t.Fatalf("observed: %+v", h)
	}
	for _, c := range []struct{ q, want float64 }{
		{0.1, 30},           // half of the first bucket's two: 60 * 1/2
		{0.5, 60 + 240},     // the third of three in (60, 300]
		{0.6, 300 + 600},    // the one in (300, 900]
		{0.9, math.Inf(1)},  // above every bound: more than the highest
		{0.35, 60 + 80*1.5}, // 3.5 of 10: 1.5 of three in (60, 300]
	} {
		if got := h.Quantile(c.q); got != c.want && math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	var sum Histogram
	sum.Add(h)
	sum.Add(h)
	// An empty histogram takes RecoveredBounds; buckets of other bounds
	// count at their upper bound.
	if want := []int64{4, 6, 2, 0, 0, 0, 0, 0, 8}; sum.Count != 20 || sum.Sum != 2*26980 || !reflect.DeepEqual(sum.Counts, want) {
		t.Errorf("two added: %+v", sum)
	}
}

// Totals: every result but ok is a failure; limited sends are neither
// sent nor undelivered; an approved reset counts once, as its reset.
func TestDayTotals(t *testing.T) {
	d := Day{
		Verifications: map[string]map[string]int64{"totp": {"ok": 3, "wrong": 2, "replay": 1}, "email": {"ok": 1, "expired": 1}},
		Sent:          map[string]map[string]int64{"email": {"sent": 5, "limited": 7, "timeout": 1}, "sms": {"sent": 2, "throttled": 2}},
		Lockouts:      map[string]int64{"account": 1, "address": 2},
		AdminActions:  map[string]int64{"reset": 2, "reset_approved": 1, "unlock": 1},
	}
	want := Totals{Verified: 4, Failed: 4, Sent: 7, NotDelivered: 3, Lockouts: 3, AdminActions: 4, Resets: 2}
	if got := d.Totals(); got != want {
		t.Errorf("Totals = %+v, want %+v", got, want)
	}
}

func TestHistogramQuantileBuckets(t *testing.T) {
	b := RecoveredBounds // 60, 300, 900, ...
	h := func(counts ...int64) Histogram {
		c := make([]int64, len(b)+1)
		copy(c, counts)
		var n int64
		for _, k := range c {
			n += k
		}
		return Histogram{Bounds: b, Counts: c, Count: n}
	}
	for _, c := range []struct {
		h    Histogram
		q    float64
		want float64
	}{
		{h(), 0.5, math.NaN()},
		{h(2), 0.5, 30},                 // half of the first bucket: half of a minute
		{h(0, 4), 0.5, 60 + 240*0.5},    // the middle of (60, 300]
		{h(1, 1, 2), 0.5, 300},          // the median is the top of the second bucket
		{h(1, 1, 2), 0.9, 300 + 600*.8}, // rank 3.6: 1.6 of the 2 in (300, 900]
		{h(0, 0, 0, 0, 0, 0, 0, 0, 3), 0.5, math.Inf(1)},
		{h(9, 0, 0, 0, 0, 0, 0, 0, 1), 0.9, 60},
		{h(9, 0, 0, 0, 0, 0, 0, 0, 2), 0.9, math.Inf(1)},
	} {
		got := c.h.Quantile(c.q)
		if !(got == c.want || math.IsNaN(got) && math.IsNaN(c.want)) && math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v, %v) = %v, want %v", c.h.Counts, c.q, got, c.want)
		}
	}
}
