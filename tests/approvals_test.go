package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// The four-eyes reset (reset_approval) through the admin API and
// `caddy two-factor`: a reset asked through the admin endpoint is a
// pending request that the admin endpoint itself cannot approve.

var requestIDLine = regexp.MustCompile(`Request ID: ([0-9a-f]{32}) `)

// adminPost posts body to the admin route and returns the status and the
// JSON error message, if any.
func adminPost(t *testing.T, e *env, route, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+e.admin+route, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var apiErr struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(raw, &apiErr)
	return resp.StatusCode, apiErr.Error
}

// auditCount counts the audit entries of event for alice with every field
// given.
func auditCount(e *env, event string, fields map[string]any) int {
	return auditOf(e, event, "alice", fields)
}

func TestResetApprovalThroughCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	c := start(t, adminSetup(db, []string{testKey}, "reset_approval 1h"))
	b, _ := enrolled(c, "alice")
	cli := func(args ...string) (string, int) {
		t.Helper()
		return twoFactorCLI(t, append(args, "--address", c.admin)...)
	}

	// The reset is only requested: alice keeps her factors.
	out, code := cli("members", "reset", "alice", "--reason", "caller says lost phone")
	m := requestIDLine.FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(out, "alice: reset requested, pending approval: nothing changed yet.") {
		t.Fatalf("members reset under reset_approval: exit %d\n%s", code, out)
	}
	id := m[1]
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("alice after a reset request: %d %q", r.status, r.location())
	}

	// A second request for alice is refused, naming member.
	out, code = cli("members", "reset", "alice", "--reason", "again", "--json")
	if code != 1 || !strings.HasPrefix(out, `{"error":"member: a reset of this member is already pending (request `+id) {
		t.Fatalf("second request: exit %d\n%s", code, out)
	}
	if status, msg := adminPost(t, c, "/two-factor/members/reset", `{"member": "alice", "reason": "again"}`); status != http.StatusConflict ||
		!strings.HasPrefix(msg, "member: ") {
		t.Fatalf("second request through the API: %d %q", status, msg)
	}

	// Listed, for people and for scripts.
	out, code = cli("approvals", "list")
	if code != 0 || !strings.Contains(out, "Reset approval: 1h0m0s; pending requests: 1") || !regexp.MustCompile(
		id+` +alice +admin endpoint +\d{4}-\d\d-\d\d \d\d:\d\d UTC +\d{4}-\d\d-\d\d \d\d:\d\d UTC +caller says lost phone`).MatchString(out) {
		t.Fatalf("approvals list: exit %d\n%s", code, out)
	}
	out, code = cli("approvals", "list", "--json")
	var list struct {
		ResetApproval string `json:"reset_approval"`
		Requests      []struct {
			ID, Member, Requester, Reason string
			Requested, Expires            time.Time
		} `json:"requests"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || list.ResetApproval != "1h0m0s" || len(list.Requests) != 1 {
		t.Fatalf("approvals list --json: exit %d\n%s", code, out)
	}
	if q := list.Requests[0]; q.ID != id || q.Member != "alice" || q.Requester != "admin endpoint" ||
		q.Expires.Sub(q.Requested) != time.Hour || !q.Requested.Equal(c.clock.Now().Truncate(0)) {
		t.Fatalf("listed request: %+v (now %s)", q, c.clock.Now())
	}

	// The admin endpoint cannot approve its own request.
	out, code = cli("approvals", "approve", id)
	if code != 1 || !strings.Contains(out, "id: this reset was requested through the admin endpoint") {
		t.Fatalf("approving one's own request: exit %d\n%s", code, out)
	}
	if status, msg := adminPost(t, c, "/two-factor/approvals/approve", `{"id": "`+id+`"}`); status != http.StatusForbidden || !strings.HasPrefix(msg, "id: ") {
		t.Fatalf("approving one's own request through the API: %d %q", status, msg)
	}
	if r := b.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("alice after a refused approval: %d", r.status)
	}
	if n := auditCount(c, "admin_reset_approved", map[string]any{"result": "refused", "reason": "same_admin", "actor": "admin endpoint"}); n != 2 {
		t.Fatalf("refused approvals audited: %d, want 2", n)
	}

	// Bad inputs name the field.
	for _, tt := range []struct {
		args  []string
		exit  int
		field string
	}{
		{[]string{"approvals", "approve"}, 2, "id: required"},
		{[]string{"approvals", "withdraw", id}, 2, "reason: required"},
		{[]string{"approvals", "withdraw", "--reason", "x"}, 2, "id: required"},
		{[]string{"approvals", "approve", strings.Repeat("0", 32)}, 1, "id: no pending reset request"},
		{[]string{"approvals", "approve", "../../members"}, 1, "id: no pending reset request"},
		{[]string{"members", "reset", "--reason", "x"}, 2, "member: required"},
		{[]string{"members", "reset", "nobody", "--reason", "x"}, 2, "member: no second-factor record"},
	} {
		if out, code := cli(tt.args...); code != tt.exit || !strings.Contains(out, tt.field) {
			t.Errorf("%s: exit %d, want %d naming %q\n%s", strings.Join(tt.args, " "), code, tt.exit, tt.field, out)
		}
	}
	for body, field := range map[string]string{
		`{"id": 7}`:                    "id",
		`{"id": "x", "approver": "a"}`: "approver",
		`{"id": "x", "reason": 1}`:     "reason",
	} {
		for _, route := range []string{"/two-factor/approvals/approve", "/two-factor/approvals/withdraw"} {
			if status, msg := adminPost(t, c, route, body); status != http.StatusBadRequest || !strings.HasPrefix(msg, field+": ") {
				t.Errorf("%s %s: %d %q, want 400 naming %s", route, body, status, msg, field)
			}
		}
	}
	if resp, err := http.Get("http://" + c.admin + "/two-factor/approvals/approve"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET on approve: %v %v", resp, err)
	}

	// Withdrawn: nothing changes for alice, who sees both in her activity.
	out, code = cli("approvals", "withdraw", id, "--reason", "the caller failed the ID check")
	if code != 0 || !strings.Contains(out, "Request "+id+" withdrawn: alice's reset will not happen") {
		t.Fatalf("withdraw: exit %d\n%s", code, out)
	}
	if out, code = cli("approvals", "list"); code != 0 || !strings.Contains(out, "pending requests: 0") {
		t.Fatalf("approvals list after withdraw: exit %d\n%s", code, out)
	}
	if out, code = cli("approvals", "withdraw", id, "--reason", "again", "--json"); code != 1 || !strings.HasPrefix(out, `{"error":"id: no pending reset request`) {
		t.Fatalf("second withdraw: exit %d\n%s", code, out)
	}
	page := b.get("/.2fa/methods?return_to=%2Fmembers%2F")
	if page.status != http.StatusOK || !strings.Contains(page.body, "Reset requested by an administrator") ||
		!strings.Contains(page.body, "Reset request withdrawn by an administrator") {
		t.Fatalf("alice's settings page: %d\n%s", page.status, page.body)
	}
	if auditCount(c, "admin_reset_requested", map[string]any{"result": "success", "actor": "admin endpoint", "admin_reason": "caller says lost phone"}) != 1 ||
		auditCount(c, "admin_reset_withdrawn", map[string]any{"result": "success", "actor": "admin endpoint", "requester": "admin endpoint",
			"admin_reason": "the caller failed the ID check"}) != 1 || auditCount(c, "admin_reset", nil) != 0 {
		t.Fatalf("audit trail: %v", c.audit())
	}

	// The top-level alias of one release ago still works, with --json.
	out, code = cli("reset", "alice", "--reason", "ID checked by video call", "--json")
	var pending struct {
		Pending bool   `json:"pending"`
		ID      string `json:"id"`
		Member  string `json:"member"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &pending) != nil || !pending.Pending || pending.Member != "alice" || len(pending.ID) != 32 || pending.ID == id {
		t.Fatalf("reset (alias) --json: exit %d\n%s", code, out)
	}
	// It lapses after the window.
	c.clock.Advance(time.Hour)
	if out, code = cli("approvals", "list"); code != 0 || !strings.Contains(out, "pending requests: 0") {
		t.Fatalf("approvals list after the window: exit %d\n%s", code, out)
	}
}

// A request made on the admin page (another admin: here an engine on the
// same Redis, as the page would call it) is approved through the CLI on
// instance A, and the member's session on instance B, another process,
// ends at once: B sends them to enrolment.
func TestResetApprovedOnAEndsSessionOnB(t *testing.T) {
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n\t\treset_approval 2h", testKey, srv.Addr)
	a := start(t, setup{admin: true, global: global})
	b := startInstance(t, 1, a, setup{global: global})
	alice, _ := enrolled(a, "alice")
	onB := alice.on(b.env)
	if s, _ := onB.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("alice on B before the reset: %d", s)
	}

	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	kr, err := keyring.New([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	page, err := challenge.New(redis.New(client, "2fa:"), kr, challenge.Config{}, a.clock.Now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	req, err := page.RequestReset(context.Background(), challenge.Admin{ID: "support-sam"}, "alice", "lost phone, ID checked by video call", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	out, code := twoFactorCLI(t, "approvals", "list", "--address", a.admin)
	if code != 0 || !strings.Contains(out, req.ID) || !strings.Contains(out, "support-sam") {
		t.Fatalf("approvals list: exit %d\n%s", code, out)
	}
	since := time.Now()
	out, code = twoFactorCLI(t, "approvals", "approve", req.ID, "--address", a.admin, "--reason", "called back on the number on file")
	if code != 0 || !strings.Contains(out, "Request "+req.ID+" approved (requested by support-sam).") || !strings.Contains(out, "alice: reset: every method") {
		t.Fatalf("approve: exit %d\n%s", code, out)
	}
	if took := untilRefused(t, onB, "/echo/x", since, 5*time.Second); took > 5*time.Second {
		t.Fatalf("B took %s", took)
	}
	if r := onB.get("/members/"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("alice on B after the reset: %d %q, want enrolment", r.status, r.location())
	}
	if auditCount(a, "admin_reset", map[string]any{"result": "success", "actor": "admin endpoint", "requester": "support-sam",
		"request": req.ID, "admin_reason": "lost phone, ID checked by video call", "approval_reason": "called back on the number on file"}) != 1 {
		t.Fatalf("reset audit: %v", a.audit())
	}
	out, code = twoFactorCLI(t, "approvals", "approve", req.ID, "--address", a.admin, "--json")
	if code != 1 || !strings.HasPrefix(out, `{"error":"id: no pending reset request`) {
		t.Fatalf("second approval: exit %d\n%s", code, out)
	}
}
