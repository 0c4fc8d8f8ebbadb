package challenge

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// The first sight starts the grace once: a later call, even after the
// rule's grace changed, reads the stored start, and the audit trail says
// it started once.
func TestStartGraceFirstWriteWins(t *testing.T) {
	f := newFixture(t, Config{})
	bob := Actor{User: "bob", IP: "192.0.2.7"}
	d := &Deadline{Paths: []string{"/members/*", "/echo/*"}, Grace: 14 * 24 * time.Hour}
	start := f.clk.Now()
	at, err := f.e.StartGrace(ctx, bob, d)
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Truncate(time.Second).Add(d.Grace); !at.Equal(want) {
		t.Fatalf("deadline %s, want %s", at, want)
	}
	f.clk.Advance(3 * 24 * time.Hour)
	again, err := f.e.StartGrace(ctx, bob, d)
	if err != nil || !again.Equal(at) {
		t.Fatalf("second sight: %s, %v; want the first deadline %s", again, err, at)
	}
	// The operator lengthens the grace: the start stays, the deadline moves.
	longer := &Deadline{Paths: d.Paths, Grace: 30 * 24 * time.Hour}
	if got, _ := longer.At(f.record("bob")); !got.Equal(start.Truncate(time.Second).Add(longer.Grace)) {
		t.Fatalf("after a longer grace: %s", got)
	}
	// The operator drops a pattern and adds one: the kept pattern keeps
	// the start, and nothing is written.
	rev := f.record("bob").Rev
	edited := &Deadline{Paths: []string{"/echo/*", "/new/*"}, Grace: d.Grace}
	if got, err := f.e.StartGrace(ctx, bob, edited); err != nil || !got.Equal(at) {
		t.Fatalf("after editing the rule: %s, %v", got, err)
	}
	if r := f.record("bob").Rev; r != rev {
		t.Fatalf("a known start was written again (rev %d → %d)", rev, r)
	}
	if n := f.count("enrolment_grace_started", "user", "bob"); n != 1 {
		t.Fatalf("enrolment_grace_started logged %d times", n)
	}
	// A rule with none of the patterns starts afresh.
	other := &Deadline{Paths: []string{"/shop/*"}, Grace: 24 * time.Hour}
	if got, _ := f.e.StartGrace(ctx, bob, other); !got.Equal(f.clk.Now().Truncate(time.Second).Add(24 * time.Hour)) {
		t.Fatalf("another rule: %s", got)
	}
}

// Racing first sights of one member, as on several instances, agree on
// one start.
func TestStartGraceConcurrent(t *testing.T) {
	f := newFixture(t, Config{})
	d := &Deadline{Paths: []string{"/members/*"}, Grace: 24 * time.Hour}
	var wg sync.WaitGroup
	got := make([]time.Time, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := f.e.StartGrace(ctx, Actor{User: "carol"}, d)
			if err != nil {
				t.Error(err)
			}
			got[i] = at
		}()
	}
	wg.Wait()
	for _, at := range got[1:] {
		if !at.Equal(got[0]) {
			t.Fatalf("instances disagree: %v", got)
		}
	}
	if n := f.count("enrolment_grace_started", "user", "carol"); n != 1 {
		t.Fatalf("enrolment_grace_started logged %d times", n)
	}
}

// The marks stay bounded: past MaxGraceMarks patterns, those of other
// rules go, oldest first, and the writing rule's stay.
func TestGraceMarksBounded(t *testing.T) {
	f := newFixture(t, Config{})
	dan := Actor{User: "dan"}
	for i := range MaxGraceMarks + 5 {
		d := &Deadline{Paths: []string{fmt.Sprintf("/area%02d/*", i)}, Grace: time.Hour}
		if _, err := f.e.StartGrace(ctx, dan, d); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Minute)
	}
	u := f.record("dan")
	if len(u.Grace) != MaxGraceMarks {
		t.Fatalf("%d marks kept, want %d", len(u.Grace), MaxGraceMarks)
	}
	for i := range 5 {
		if _, ok := u.Grace[fmt.Sprintf("/area%02d/*", i)]; ok {
			t.Fatalf("the oldest mark %d was kept", i)
		}
	}
	if _, ok := u.Grace[fmt.Sprintf("/area%02d/*", MaxGraceMarks+4)]; !ok {
		t.Fatal("the newest mark was dropped")
	}
	// A rule with more patterns than the bound marks its first ones only.
	var many []string
	for i := range MaxGraceMarks + 3 {
		many = append(many, fmt.Sprintf("/many%02d/*", i))
	}
	if _, err := f.e.StartGrace(ctx, Actor{User: "erin"}, &Deadline{Paths: many, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if u := f.record("erin"); len(u.Grace) != MaxGraceMarks {
		t.Fatalf("%d marks for a rule of %d patterns", len(u.Grace), len(many))
	}
}

// Held back after the deadline: recorded and audited once per deadline;
// a deadline moved later and passed again is audited again.
func TestHoldBackOncePerDeadline(t *testing.T) {
	f := newFixture(t, Config{})
	frank := Actor{User: "frank", IP: "192.0.2.9"}
	from := f.clk.Now().Add(-time.Hour).Truncate(time.Second)
	d := &Deadline{Paths: []string{"/members/*"}, From: from}
	for range 3 {
		if err := f.e.HoldBack(ctx, frank, d, from); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count("enrolment_deadline_passed", "user", "frank"); n != 1 {
		t.Fatalf("enrolment_deadline_passed logged %d times", n)
	}
	if !d.Held(f.record("frank"), from) {
		t.Fatal("not recorded as held back")
	}
	later := from.Add(2 * time.Hour)
	f.clk.Advance(3 * time.Hour)
	if d.Held(f.record("frank"), later) {
		t.Fatal("held back before a later deadline counts for it")
	}
	if err := f.e.HoldBack(ctx, frank, d, later); err != nil {
		t.Fatal(err)
	}
	if n := f.count("enrolment_deadline_passed", "user", "frank"); n != 2 {
		t.Fatalf("after a moved deadline: logged %d times", n)
	}
}

// The member list shows a member's deadlines: a date rule for every
// member without a second factor, a grace rule once it has seen them,
// nothing once enrolled.
func TestMemberDeadlines(t *testing.T) {
	clk0 := time.Unix(1_700_000_010, 0)
	from := clk0.Add(10 * 24 * time.Hour).UTC()
	grace := &Deadline{Paths: []string{"/members/*"}, Grace: 3 * 24 * time.Hour}
	date := Deadline{Paths: []string{"/shop/*"}, From: from}
	f := newFixture(t, Config{Deadlines: []Deadline{*grace, date}})
	if err := f.e.RecordSeen(ctx, "gina", "", f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	d, err := f.e.Member(ctx, "gina")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Deadlines) != 1 || !d.Deadlines[0].At.Equal(from) || d.Deadlines[0].Passed || !d.EnrolmentDeadline.Equal(from) {
		t.Fatalf("before the grace rule saw her: %+v", d.Deadlines)
	}
	if _, err := f.e.StartGrace(ctx, Actor{User: "gina"}, grace); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(4 * 24 * time.Hour)
	d, err = f.e.Member(ctx, "gina")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Deadlines) != 2 || !d.Deadlines[0].Passed || d.Deadlines[0].GraceStarted == nil ||
		!d.Deadlines[0].At.Equal(clk0.Add(grace.Grace)) || !d.EnrolmentDeadline.Equal(d.Deadlines[0].At) {
		t.Fatalf("after the grace passed: %+v", d.Deadlines)
	}
	list, err := f.e.Members(ctx, "", 10, MembersFilter{})
	if err != nil || len(list.Members) != 1 || list.Members[0].EnrolmentDeadline == nil {
		t.Fatalf("list: %+v, %v", list.Members, err)
	}
	f.enrol("gina")
	if d, _ := f.e.Member(ctx, "gina"); len(d.Deadlines) != 0 || d.EnrolmentDeadline != nil {
		t.Fatalf("enrolled, still a deadline: %+v", d.Deadlines)
	}
}

// Two instances on one Redis: the second to see the member reads the
// first one's start, even with its clock later and its own copy of the
// record read before the start was written.
func TestStartGraceTwoInstancesOnRedis(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	hana := Actor{User: "hana"}
	d := &Deadline{Paths: []string{"/members/*"}, Grace: 7 * 24 * time.Hour}
	if u, err := b.State(ctx, "hana"); err != nil || len(u.Grace) != 0 {
		t.Fatalf("B's copy before: %+v, %v", u, err)
	}
	first, err := a.StartGrace(ctx, hana, d)
	if err != nil {
		t.Fatal(err)
	}
	// A second later, within B's copy's lifetime (no change notices
	// here): B reads A's start from the store and keeps it.
	clk.Advance(time.Second)
	second, err := b.StartGrace(ctx, hana, d)
	if err != nil || !second.Equal(first) {
		t.Fatalf("B: %s, %v; A wrote %s", second, err, first)
	}
	u, err := b.State(ctx, "hana")
	if err != nil {
		t.Fatal(err)
	}
	if at, ok := d.At(u); !ok || !at.Equal(first) {
		t.Fatalf("B's copy after: %s %v", at, ok)
	}
}

// A live rule's mark is never dropped to make room, however many marks
// of rules edited away the record holds: dropping it would give the
// member a new grace on a rule they were already held back on.
func TestGraceMarksOfLiveRulesStay(t *testing.T) {
	live := Deadline{Paths: []string{"/live/*"}, Grace: 24 * time.Hour}
	f := newFixture(t, Config{Deadlines: []Deadline{live}})
	gus := Actor{User: "gus"}
	first, err := f.e.StartGrace(ctx, gus, &live)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	// Rules the config no longer has (their marks stay in the record),
	// each newer than the live rule's mark.
	for i := range MaxGraceMarks + 5 {
		if _, err := f.e.StartGrace(ctx, gus, &Deadline{Paths: []string{fmt.Sprintf("/gone%02d/*", i)}, Grace: time.Hour}); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Minute)
	}
	u := f.record("gus")
	if len(u.Grace) != MaxGraceMarks {
		t.Fatalf("%d marks kept, want %d", len(u.Grace), MaxGraceMarks)
	}
	if _, ok := u.Grace["/live/*"]; !ok {
		t.Fatal("the live rule's mark, the oldest, was dropped")
	}
	if again, err := f.e.StartGrace(ctx, gus, &live); err != nil || !again.Equal(first) {
		t.Fatalf("live rule after the others: deadline %s, %v; want the first, %s", again, err, first)
	}
	if n := f.count("enrolment_grace_started", "paths", "/live/*"); n > 1 {
		t.Fatalf("the live rule's grace started %d times", n)
	}
}

// A member whose factors were reset had a second factor: they get no new
// grace, enrolment is required of them at once.
func TestNoNewGraceAfterAReset(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("hana")
	if _, err := f.e.Reset(ctx, "admin endpoint", "hana", "lost phone"); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	d := &Deadline{Paths: []string{"/members/*"}, Grace: 14 * 24 * time.Hour}
	at, err := f.e.StartGrace(ctx, Actor{User: "hana"}, d)
	if err != nil {
		t.Fatal(err)
	}
	if now := f.clk.Now(); at.After(now) {
		t.Fatalf("after a reset: deadline %s, after now (%s)", at, now)
	}
	if n := f.count("enrolment_grace_started", "user", "hana"); n != 0 {
		t.Fatalf("a grace was audited as started %d times", n)
	}
	// A member never enrolled still gets theirs.
	if at, _ := f.e.StartGrace(ctx, Actor{User: "ivan"}, d); !at.After(f.clk.Now()) {
		t.Fatalf("a new member's deadline %s is not ahead", at)
	}
}
