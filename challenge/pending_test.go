package challenge

import (
	"testing"
	"time"
)

// An admin action on a member whose record holds no address is kept for
// the pages to tell at the next visit: at most maxPending, the newest, and
// taken once.
func TestPendingNotices(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	for i := range maxPending + 2 {
		act := f.e.EndSessions
		if i == maxPending+1 {
			act = f.e.ForgetDevices
		}
		if res, err := act(ctx, "admin endpoint", "alice", "support call"); err != nil || res.Contact != "" {
			t.Fatalf("action %d: %+v %v", i, res, err)
		}
		f.clk.Advance(time.Second)
	}
	taken, err := f.e.TakePending(ctx, "alice")
	if err != nil || len(taken) != maxPending || taken[len(taken)-1].Kind != "admin_devices" || taken[0].Kind != "admin_sessions" ||
		!taken[0].At.Before(taken[len(taken)-1].At) {
		t.Fatalf("taken: %+v %v", taken, err)
	}
	if again, err := f.e.TakePending(ctx, "alice"); err != nil || len(again) != 0 {
		t.Fatalf("taken twice: %+v %v", again, err)
	}
	if u, _ := f.e.State(ctx, "alice"); len(u.Pending) != 0 {
		t.Fatalf("left on the record: %+v", u.Pending)
	}
	// Nothing pending, nothing written: a member with no record gets none.
	if taken, err := f.e.TakePending(ctx, "nobody"); err != nil || taken != nil {
		t.Fatalf("nobody: %+v %v", taken, err)
	}
	if u, _, _ := f.e.loadUser(ctx, "nobody"); u.Rev != 0 {
		t.Fatal("taking from a member with no record created one")
	}
}
