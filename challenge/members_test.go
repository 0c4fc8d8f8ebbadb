package challenge

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// Members lists both the enrolled (through the users index) and those only
// seen (through the seen index), in ID order, paged and filtered, with
// first and last seen kept across visits.
func TestMembersListsEnrolledAndSeen(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	first := f.clk.Now()
	for _, id := range []string{"bob", "carol", "alice"} {
		if err := f.e.RecordSeen(ctx, id, "", first); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(48 * time.Hour)
	last := f.clk.Now()
	if err := f.e.RecordSeen(ctx, "bob", "", last); err != nil {
		t.Fatal(err)
	}
	// A late note from another instance moves nothing back.
	if err := f.e.RecordSeen(ctx, "bob", "", first.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.enrol("dave") // enrolled, never seen on a protected path

	var ids []string
	after := ""
	for {
		p, err := f.e.Members(ctx, after, 2, MembersFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range p.Members {
			ids = append(ids, fmt.Sprintf("%s:%t", m.ID, m.Enrolled))
			if m.ID == "bob" && (!m.FirstSeen.Equal(first.UTC().Truncate(time.Second)) || !m.LastSeen.Equal(last.UTC().Truncate(time.Second))) {
				t.Errorf("bob seen %v .. %v", m.FirstSeen, m.LastSeen)
			}
			if m.ID == "alice" && (len(m.Methods) != 1 || m.Methods[0] != MethodTOTP) {
				t.Errorf("alice's methods: %v", m.Methods)
			}
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if want := []string{"alice:true", "bob:false", "carol:false", "dave:true"}; !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want %v", ids, want)
	}

	no := false
	p, err := f.e.Members(ctx, "", 10, MembersFilter{Enrolled: &no})
	if err != nil || len(p.Members) != 2 || p.Members[0].ID != "bob" || p.Members[1].ID != "carol" || p.Next != "" {
		t.Fatalf("not enrolled: %+v %v", p, err)
	}
	c, err := f.e.CountMembers(ctx)
	if err != nil || c.Members != 4 || c.Seen != 3 || c.Enrolled != 2 || c.ByMethod[MethodTOTP] != 2 {
		t.Fatalf("counts: %+v %v", c, err)
	}

	d, err := f.e.Member(ctx, "alice")
	if err != nil || len(d.MethodDetails) != 1 || d.MethodDetails[0].Method != MethodTOTP || d.MethodDetails[0].Added.IsZero() {
		t.Fatalf("alice: %+v %v", d, err)
	}
	if _, err := f.e.Member(ctx, "nobody"); err != ErrNoMember {
		t.Fatalf("unknown member: %v", err)
	}

	r, err := f.e.Reconcile(ctx, []string{"alice", "bob", "zed", "dave", "alice", "carol"}, nil)
	if err != nil || !slices.Equal(r.Enrolled, []string{"alice", "dave"}) ||
		!slices.Equal(r.SeenNotEnrolled, []string{"bob", "carol"}) || !slices.Equal(r.NeverSeen, []string{"zed"}) {
		t.Fatalf("reconcile: %+v %v", r, err)
	}
	if _, err := f.e.Members(ctx, "", 0, MembersFilter{}); err == nil {
		t.Fatal("limit 0 accepted")
	}
}
