package challenge

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	requester = "admin endpoint"
	approver  = "carol"
	window    = time.Hour
)

// approvalAudits returns the context of each audit entry of event.
func (f *fixture) approvalAudits(event string) []map[string]any {
	var out []map[string]any
	for _, e := range f.audit.FilterMessage(event).All() {
		out = append(out, e.ContextMap())
	}
	return out
}

func (f *fixture) enrolled(user string) bool {
	f.t.Helper()
	u, _, err := f.e.loadUser(ctx, user)
	if err != nil {
		f.t.Fatal(err)
	}
	return u.Enrolled()
}

// The four-eyes rules: bad arguments name their field; nobody requests a
// reset of their own factors; the requester cannot approve; the member
// cannot approve; one approval by another admin resets at once, audited
// with the approver and the requester; the request then is gone.
func TestResetApprovalRules(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	f.enrol("dave")

	for _, tt := range []struct {
		name                 string
		requester, member, r string
		window               time.Duration
		field                string
	}{
		{"no member", requester, "", "lost phone", window, "member"},
		{"no reason", requester, "alice", " ", window, "reason"},
		{"long reason", requester, "alice", strings.Repeat("x", 501), window, "reason"},
		{"no requester", "", "alice", "lost phone", window, "requester"},
		{"approval off", requester, "alice", "lost phone", 0, "reset_approval"},
		{"member never seen", requester, "nobody", "lost phone", window, "member"},
	} {
		if _, err := f.e.RequestReset(ctx, Admin{ID: tt.requester}, tt.member, tt.r, tt.window); !isInput(err, tt.field) {
			t.Errorf("%s: %v, want an error naming %s", tt.name, err, tt.field)
		}
	}
	if _, err := f.e.RequestReset(ctx, Admin{ID: "alice"}, "alice", "I lost my phone", window); !errors.Is(err, ErrOwnReset) {
		t.Fatalf("a reset of one's own factors requested: %v", err)
	}
	if events, _ := f.e.RecentActivity(ctx, "nobody"); len(events) != 0 {
		t.Fatalf("a refused request recorded activity for a member never seen: %+v", events)
	}

	req, err := f.e.RequestReset(ctx, Admin{ID: requester}, "alice", " lost phone, ID checked ", window)
	if err != nil {
		t.Fatal(err)
	}
	if !validRequestID(req.ID) || req.Member != "alice" || req.Requester != requester || req.Reason != "lost phone, ID checked" ||
		!req.Requested.Equal(f.clk.Now()) || !req.Expires.Equal(f.clk.Now().Add(window)) {
		t.Fatalf("request: %+v", req)
	}
	if !f.enrolled("alice") {
		t.Fatal("a request reset the member before approval")
	}
	if events, _ := f.e.RecentActivity(ctx, "alice"); len(events) == 0 || events[0].Event != "admin_reset_requested" {
		t.Fatalf("the member's activity does not show the request: %+v", events)
	}
	var requested []map[string]any
	for _, a := range f.approvalAudits("admin_reset_requested") {
		if a["result"] == "success" {
			requested = append(requested, a)
		}
	}
	if a := requested; len(a) != 1 || a[0]["actor"] != requester ||
		a[0]["user"] != "alice" || a[0]["request"] != req.ID || a[0]["admin_reason"] != "lost phone, ID checked" {
		t.Fatalf("request audit: %v", f.approvalAudits("admin_reset_requested"))
	}

	// One pending request per member: a second answers with the first.
	again, err := f.e.RequestReset(ctx, Admin{ID: "bob"}, "alice", "another try", window)
	if !errors.Is(err, ErrResetPending) || again.ID != req.ID || !strings.HasPrefix(err.Error(), "member: ") || !strings.Contains(err.Error(), req.ID) {
		t.Fatalf("second request for alice: %+v, %v", again, err)
	}

	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: requester}, req.ID, ""); !errors.Is(err, ErrSameAdmin) {
		t.Fatalf("approval by the requester: %v", err)
	}
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: "alice"}, req.ID, ""); !errors.Is(err, ErrOwnReset) {
		t.Fatalf("approval by the member: %v", err)
	}
	for _, id := range []string{newRequestID(), "not-an-id", strings.ToUpper(req.ID), "../" + req.ID} {
		if _, _, err := f.e.ApproveReset(ctx, Admin{ID: approver}, id, ""); !errors.Is(err, ErrNoRequest) {
			t.Errorf("approval of %q: %v, want ErrNoRequest", id, err)
		}
	}
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: approver}, "", ""); !isInput(err, "id") {
		t.Fatalf("approval without an ID: %v", err)
	}
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: approver}, req.ID, strings.Repeat("x", 501)); !isInput(err, "reason") {
		t.Fatalf("approval with a long reason: %v", err)
	}
	if !f.enrolled("alice") {
		t.Fatal("a refused approval reset the member")
	}
	refused := 0
	for _, a := range f.approvalAudits("admin_reset_approved") {
		if a["result"] == "refused" {
			refused++
		}
	}
	if refused != 8 {
		t.Fatalf("refused approvals audited: %d, want 8", refused)
	}

	got, res, err := f.e.ApproveReset(ctx, Admin{ID: approver}, req.ID, "called back on the number on file")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != req.ID || len(res.Methods) != 1 || res.Methods[0] != MethodTOTP {
		t.Fatalf("approval: %+v, %+v", got, res)
	}
	if f.enrolled("alice") || !f.enrolled("dave") {
		t.Fatal("the approved reset did not reset alice, or reset another member")
	}
	resets := f.approvalAudits("admin_reset")
	if len(resets) != 1 || resets[0]["actor"] != approver || resets[0]["requester"] != requester || resets[0]["request"] != req.ID ||
		resets[0]["admin_reason"] != "lost phone, ID checked" || resets[0]["approval_reason"] != "called back on the number on file" ||
		resets[0]["user"] != "alice" || resets[0]["result"] != "success" {
		t.Fatalf("reset audit: %v", resets)
	}
	approved := 0
	for _, a := range f.approvalAudits("admin_reset_approved") {
		if a["result"] == "success" && a["actor"] == approver && a["requester"] == requester && a["user"] == "alice" {
			approved++
		}
	}
	if approved != 1 {
		t.Fatalf("approval audit: %v", f.approvalAudits("admin_reset_approved"))
	}
	if events, _ := f.e.RecentActivity(ctx, "alice"); len(events) < 2 || events[0].Event != "admin_reset" || events[1].Event != "admin_reset_requested" {
		t.Fatalf("the member's activity: %+v", events)
	}

	// Acted on once: gone from the list, and a second approval finds
	// nothing.
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: "erin"}, req.ID, ""); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("second approval: %v", err)
	}
	if list, err := f.e.ResetRequests(ctx); err != nil || len(list) != 0 {
		t.Fatalf("pending after approval: %+v, %v", list, err)
	}
	if len(f.approvalAudits("admin_reset")) != 1 {
		t.Fatal("reset twice")
	}
}

// A request lapses at the end of its window: it cannot be approved, leaves
// the list (and the index), and a new request for the member may be made.
func TestResetRequestExpires(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	req, err := f.e.RequestReset(ctx, Admin{ID: requester}, "alice", "lost phone", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(10*time.Minute - time.Second)
	if list, err := f.e.ResetRequests(ctx); err != nil || len(list) != 1 || list[0].ID != req.ID {
		t.Fatalf("pending a second before the end: %+v, %v", list, err)
	}
	f.clk.Advance(time.Second)
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: approver}, req.ID, ""); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("approval after the window: %v", err)
	}
	if !f.enrolled("alice") {
		t.Fatal("an expired request reset the member")
	}
	if list, err := f.e.ResetRequests(ctx); err != nil || len(list) != 0 {
		t.Fatalf("pending after the window: %+v, %v", list, err)
	}
	if entries, err := f.st.IndexPage(ctx, resetRequestsIndex, "", 10); err != nil || len(entries) != 0 {
		t.Fatalf("index after listing: %v, %v", entries, err)
	}
	next, err := f.e.RequestReset(ctx, Admin{ID: requester}, "alice", "lost phone, again", 10*time.Minute)
	if err != nil || next.ID == req.ID {
		t.Fatalf("new request after expiry: %+v, %v", next, err)
	}
}

// Withdrawn, a request needs a reason, cannot be approved after, and
// changes nothing for the member; it shows in their activity.
func TestResetRequestWithdraw(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	req, err := f.e.RequestReset(ctx, Admin{ID: "bob"}, "alice", "caller says lost phone", window)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.WithdrawReset(ctx, Admin{ID: approver}, req.ID, ""); !isInput(err, "reason") {
		t.Fatalf("withdraw without a reason: %v", err)
	}
	if _, err := f.e.WithdrawReset(ctx, Admin{ID: ""}, req.ID, "x"); !isInput(err, "actor") {
		t.Fatalf("withdraw without an actor: %v", err)
	}
	if _, err := f.e.WithdrawReset(ctx, Admin{ID: approver}, newRequestID(), "x"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("withdraw of an unknown request: %v", err)
	}
	got, err := f.e.WithdrawReset(ctx, Admin{ID: approver}, req.ID, "the caller failed the ID check")
	if err != nil || got.ID != req.ID || got.Member != "alice" {
		t.Fatalf("withdraw: %+v, %v", got, err)
	}
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: "dave"}, req.ID, ""); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("approval after withdraw: %v", err)
	}
	if _, err := f.e.WithdrawReset(ctx, Admin{ID: "bob"}, req.ID, "again"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("second withdraw: %v", err)
	}
	if !f.enrolled("alice") {
		t.Fatal("a withdrawn request reset the member")
	}
	ok := false
	for _, a := range f.approvalAudits("admin_reset_withdrawn") {
		ok = ok || (a["result"] == "success" && a["actor"] == approver && a["requester"] == "bob" &&
			a["admin_reason"] == "the caller failed the ID check" && a["user"] == "alice")
	}
	if !ok {
		t.Fatalf("withdraw audit: %v", f.approvalAudits("admin_reset_withdrawn"))
	}
	if events, _ := f.e.RecentActivity(ctx, "alice"); len(events) == 0 || events[0].Event != "admin_reset_withdrawn" {
		t.Fatalf("the member's activity: %+v", events)
	}
	if _, err := f.e.RequestReset(ctx, Admin{ID: "bob"}, "alice", "new call, ID checked", window); err != nil {
		t.Fatalf("new request after withdraw: %v", err)
	}
}

// Pending requests are listed oldest first, each with its own random ID.
func TestResetRequestsOldestFirst(t *testing.T) {
	f := newFixture(t, Config{})
	members := []string{"zoe", "alice", "mike"}
	ids := map[string]bool{}
	for _, m := range members {
		f.enrol(m)
	}
	for _, m := range members {
		req, err := f.e.RequestReset(ctx, Admin{ID: requester}, m, "reason for "+m, window)
		if err != nil {
			t.Fatal(err)
		}
		ids[req.ID] = true
		f.clk.Advance(time.Minute)
	}
	list, err := f.e.ResetRequests(ctx)
	if err != nil || len(list) != 3 || len(ids) != 3 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	for i, m := range members {
		if list[i].Member != m || list[i].Reason != "reason for "+m {
			t.Fatalf("list[%d] = %+v, want %s's", i, list[i], m)
		}
	}
}

// Approvers clicking at the same moment on several instances: exactly one
// approval resets, the others find no request, and the reset is audited
// once.
func TestApproveResetActsOnce(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	req, err := f.e.RequestReset(ctx, Admin{ID: requester}, "alice", "lost phone", window)
	if err != nil {
		t.Fatal(err)
	}
	audits := f.audit
	engines := []*Engine{f.e}
	for range 3 {
		engines = append(engines, f.engine(Config{}, testKey)) // instances on one store
	}
	f.audit = audits
	if n := approveAtOnce(t, engines, req.ID); n != 1 {
		t.Fatalf("%d approvals succeeded, want 1", n)
	}
	if f.enrolled("alice") {
		t.Fatal("not reset")
	}
}

// approveAtOnce has two approvers per engine approve id at the same moment
// and returns how many succeeded; every other must get ErrNoRequest.
func approveAtOnce(t *testing.T, engines []*Engine, id string) int {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make(chan error, 2*len(engines))
	for i, e := range engines {
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, _, err := e.ApproveReset(ctx, Admin{ID: string(rune('p'+i)) + string(rune('0'+j))}, id, "")
				results <- err
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrNoRequest):
			t.Errorf("a concurrent approval: %v", err)
		}
	}
	return ok
}

// On Redis: a request made through A is listed on B; approvers on A and
// B at once reset once; B's reset reaches A's per-request view at once;
// a request lapses by the engine's clock too.
func TestResetApprovalOnRedis(t *testing.T) {
	a, b, clk := twoInstances(t, Config{})
	followAll(t, a, b)
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	enrolOn(t, a, clk, alice)
	enrolOn(t, a, clk, Actor{User: "bob", IP: "192.0.2.2"})
	if seen, _ := a.State(ctx, "alice"); !seen.Enrolled() {
		t.Fatal("A's view before")
	}
	req, err := a.RequestReset(ctx, Admin{ID: requester}, "alice", "lost phone", window)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RequestReset(ctx, Admin{ID: "dave"}, "alice", "again", window); !errors.Is(err, ErrResetPending) {
		t.Fatalf("second request through B: %v", err)
	}
	list, err := b.ResetRequests(ctx)
	if err != nil || len(list) != 1 || list[0].ID != req.ID {
		t.Fatalf("B's list: %+v, %v", list, err)
	}
	if _, _, err := b.ApproveReset(ctx, Admin{ID: requester}, req.ID, ""); !errors.Is(err, ErrSameAdmin) {
		t.Fatalf("the requester approving through B: %v", err)
	}
	if n := approveAtOnce(t, []*Engine{a, b}, req.ID); n != 1 {
		t.Fatalf("%d approvals succeeded, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		seen, err := a.State(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !seen.Enrolled() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A still sees alice enrolled 5s after the approval")
		}
		time.Sleep(5 * time.Millisecond)
	}

	bobReq, err := b.RequestReset(ctx, Admin{ID: requester}, "bob", "lost phone", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Minute)
	if _, _, err := a.ApproveReset(ctx, Admin{ID: approver}, bobReq.ID, ""); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("approval after the window on Redis: %v", err)
	}
	if list, err := a.ResetRequests(ctx); err != nil || len(list) != 0 {
		t.Fatalf("pending after the window: %+v, %v", list, err)
	}
	if seen, _ := a.State(ctx, "bob"); !seen.Enrolled() {
		t.Fatal("bob reset by an expired request")
	}
}

// An admin named by a label ("sam (support)") is compared by ID: the same
// admin under another role is still the requester, the member under a
// label is still the member; the audit entries carry the labels. The
// member's pending request is found by member and by ID.
func TestResetApprovalByLabelledAdmin(t *testing.T) {
	f := newFixture(t, Config{})
	f.enrol("alice")
	if _, err := f.e.MemberResetRequest(ctx, "alice"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("no request yet: %v", err)
	}
	if _, err := f.e.RequestReset(ctx, Admin{ID: "alice", Label: "alice (support)"}, "alice", "mine", window); !errors.Is(err, ErrOwnReset) {
		t.Fatalf("own reset under a label: %v", err)
	}
	req, err := f.e.RequestReset(ctx, Admin{ID: "sam", Label: "sam (support)"}, "alice", "lost phone", window)
	if err != nil || req.Requester != "sam" {
		t.Fatalf("request: %+v, %v", req, err)
	}
	for _, get := range []func() (ResetRequest, error){
		func() (ResetRequest, error) { return f.e.MemberResetRequest(ctx, "alice") },
		func() (ResetRequest, error) { return f.e.ResetRequestByID(ctx, req.ID) },
	} {
		if got, err := get(); err != nil || got.ID != req.ID || got.Member != "alice" {
			t.Fatalf("the pending request: %+v, %v", got, err)
		}
	}
	if _, err := f.e.ResetRequestByID(ctx, "../alice"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("a bad ID: %v", err)
	}
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: "sam", Label: "sam (approver)"}, req.ID, ""); !errors.Is(err, ErrSameAdmin) {
		t.Fatalf("the requester under another role: %v", err)
	}
	if _, _, err := f.e.ApproveReset(ctx, Admin{ID: "alice", Label: "alice (approver)"}, req.ID, ""); !errors.Is(err, ErrOwnReset) {
		t.Fatalf("the member under a label: %v", err)
	}
	if _, _, err := f.e.ApproveReset(WithAdmin(ctx, "192.0.2.7", "approver"), Admin{ID: "carol", Label: "carol (approver)"}, req.ID, "called back"); err != nil {
		t.Fatal(err)
	}
	if f.enrolled("alice") {
		t.Fatal("the approved reset left the member enrolled")
	}
	if _, err := f.e.MemberResetRequest(ctx, "alice"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("after the approval: %v", err)
	}
	found := map[string]bool{}
	for _, ev := range []string{"admin_reset_requested", "admin_reset_approved", "admin_reset"} {
		for _, a := range f.approvalAudits(ev) {
			if a["result"] == "success" {
				found[ev+" "+a["actor"].(string)] = true
			}
		}
	}
	for _, want := range []string{"admin_reset_requested sam (support)", "admin_reset_approved carol (approver)", "admin_reset carol (approver)"} {
		if !found[want] {
			t.Errorf("no %s audit entry: %v", want, found)
		}
	}
	// The admin's address and role, given, go to the approval and the
	// reset, not to the member's activity.
	for _, ev := range []string{"admin_reset_approved", "admin_reset"} {
		for _, a := range f.approvalAudits(ev) {
			if a["result"] == "success" && (a["admin_ip"] != "192.0.2.7" || a["admin_role"] != "approver") {
				t.Errorf("%s without the admin's address and role: %v", ev, a)
			}
		}
	}
	if a := f.approvalAudits("admin_reset_requested"); len(a) == 0 || a[len(a)-1]["admin_ip"] != nil {
		t.Errorf("admin_ip where none was given: %v", a)
	}
	if events, _ := f.e.RecentActivity(ctx, "alice"); len(events) == 0 || events[0].IP == "192.0.2.7" {
		t.Errorf("the member's activity shows the admin's address: %+v", events)
	}
}
