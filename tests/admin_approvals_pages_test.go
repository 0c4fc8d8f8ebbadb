package tests

import (
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The four-eyes reset on the admin pages (reset_approval), through a real
// Caddy: a support admin's reset is a request, shown on the member's page
// and on the approvals page, approved by another approver (never the
// requester, never the member) or withdrawn, each step audited with the
// acting admin and the requester.

// approvalPagesSetup: admin and boss approve, sam is support, alice a
// viewer; carol and the rest are members, named by a header (asMember).
// A reset waits up to an hour.
func approvalPagesSetup(t *testing.T) setup {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	s := adminSetup(db, []string{testKey},
		"admins {\n\t\t\tadmin approver\n\t\t\tboss approver\n\t\t\tsam support\n\t\t\talice viewer\n\t\t}", "reset_approval 1h")
	s.policy = `
	identity header X-Member
	protect /members/* /echo/*
	site_name "Test Members"
`
	return s
}

// asMember is a browser signed in as id that has set up the app; it
// returns the app's secret too.
func asMember(e *env, id string) (*browser, string) {
	b := e.browser()
	b.header.Set("X-Member", id)
	return b, b.enrol("/echo/x")
}

// passes reports whether b reaches the upstream; enrolling whether it is
// sent to enrolment instead.
func passes(b *browser) bool { s, _ := b.upstream("/echo/x"); return s == http.StatusOK }

func sentToEnrol(t *testing.T, b *browser, what string) {
	t.Helper()
	if r := b.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("%s: %d %q, want enrolment", what, r.status, r.location())
	}
}

var pendingIDRE = regexp.MustCompile(`<code>([0-9a-f]{32})</code>`)

// requestReset has admin request a reset of member on the member page and
// returns the request's ID, read from the page it lands on.
func requestReset(t *testing.T, admin *browser, member, reason string) string {
	t.Helper()
	r := adminAct(admin, "reset", member, reason, "confirm", "yes")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id="+member+"&done=requested" {
		t.Fatalf("requesting a reset of %s: %d %q\n%s", member, r.status, r.location(), r.body)
	}
	page := admin.get(r.location())
	m := pendingIDRE.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil {
		t.Fatalf("the member page after the request: %d\n%s", page.status, page.body)
	}
	return m[1]
}

// approval posts an approve or withdraw form: from the member page when
// member is given, else from the approvals page.
func approval(admin *browser, action, id, reason, member string) *response {
	admin.t.Helper()
	form := url.Values{"csrf": {admin.csrf("/.2fa/admin/reconcile")}, "id": {id}, "reason": {reason}}
	if member != "" {
		form.Set("member", member)
	}
	return admin.post("/.2fa/admin/approvals/"+action, form)
}

// auditOf counts the audit entries of event for user with every field
// given.
func auditOf(e *env, event, user string, fields map[string]any) int {
	n := 0
	for _, a := range e.audit() {
		ok := a["event"] == event && a["user"] == user
		for k, v := range fields {
			ok = ok && a[k] == v
		}
		if ok {
			n++
		}
	}
	return n
}

func TestApprovalPagesFourEyes(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	carol, _ := asMember(e, "carol")
	sam, _ := asMember(e, "sam")
	admin, _ := asMember(e, "admin")
	boss, _ := asMember(e, "boss")
	viewer, _ := asMember(e, "alice")

	// Support requests: the page says it is pending, with its ID and when
	// it lapses; carol keeps her factors.
	id := requestReset(t, sam, "carol", "caller says lost phone, ID checked")
	page := sam.get("/.2fa/admin/member?id=carol&done=requested")
	// A time in a message keeps together: no-break spaces and hyphens.
	lapses := e.clock.Now().Add(time.Hour).UTC().Format("2006\u201101\u201102\u00a015:04\u00a0UTC")
	for _, want := range []string{"The reset is requested and waits for an approver", "Reset waiting for approval",
		"the request lapses at " + lapses, "caller says lost phone, ID checked", `action="/.2fa/admin/approvals/withdraw"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the member page after the request lacks %q", want)
		}
	}
	if strings.Contains(page.body, `action="/.2fa/admin/approvals/approve"`) || strings.Contains(page.body, `action="/.2fa/admin/member/reset"`) {
		t.Errorf("support sees an approve form, or a second reset form, beside the pending request")
	}
	if !passes(carol) {
		t.Fatal("carol does not pass after the request")
	}
	if auditOf(e, "admin_reset_requested", "carol", map[string]any{"result": "success", "actor": "sam (support)", "request": id, "admin_ip": "127.0.0.1"}) != 1 {
		t.Fatalf("request audit: %v", e.audit())
	}

	// A second request for carol is refused, said on the page.
	if r := adminAct(admin, "reset", "carol", "again", "confirm", "yes"); r.status != http.StatusConflict ||
		!strings.Contains(r.body, "already waiting for approval") {
		t.Fatalf("a second request: %d\n%s", r.status, r.body)
	}
	// Support cannot approve, a viewer can neither approve nor withdraw.
	if r := approval(sam, "approve", id, "", ""); r.status != http.StatusForbidden {
		t.Fatalf("support approves: %d", r.status)
	}
	for _, action := range []string{"approve", "withdraw"} {
		if r := approval(viewer, action, id, "x", ""); r.status != http.StatusForbidden {
			t.Fatalf("a viewer's %s: %d", action, r.status)
		}
	}

	// The approvals page: a viewer reads it, without forms; the count on
	// the member list links to it.
	r := viewer.get("/.2fa/admin/approvals")
	if r.status != http.StatusOK || !strings.Contains(r.body, `href="/.2fa/admin/member?id=carol"`) || !strings.Contains(r.body, id) ||
		strings.Contains(r.body, `method="post"`) {
		t.Fatalf("the approvals page for a viewer: %d\n%s", r.status, r.body)
	}
	for _, page := range []string{"/.2fa/admin/members", "/.2fa/admin/"} {
		if r := viewer.get(page); !strings.Contains(r.body, `<a href="/.2fa/admin/approvals"><span class="count">1</span> resets waiting for approval</a>`) {
			t.Fatalf("the count of pending resets on %s:\n%s", page, r.body)
		}
	}

	// An approver's own request: they cannot approve it; the member
	// cannot approve their own reset, nor request it; support cannot
	// withdraw another admin's request.
	own := requestReset(t, admin, "boss", "new phone, ID checked")
	if r := approval(admin, "approve", own, "", ""); r.status != http.StatusForbidden || !strings.Contains(r.body, "You requested this reset, so you cannot approve it") {
		t.Fatalf("the requester approves: %d\n%s", r.status, r.body)
	}
	if r := approval(boss, "approve", own, "", "boss"); r.status != http.StatusForbidden || !strings.Contains(r.body, "This reset is of your own 2-step verification") {
		t.Fatalf("the member approves their own reset: %d\n%s", r.status, r.body)
	}
	if r := adminAct(admin, "reset", "admin", "mine", "confirm", "yes"); r.status != http.StatusForbidden || !strings.Contains(r.body, "your own 2-step verification") {
		t.Fatalf("an admin requests their own reset: %d\n%s", r.status, r.body)
	}
	if r := approval(sam, "withdraw", own, "not mine to withdraw", ""); r.status != http.StatusForbidden || !strings.Contains(r.body, "Only the admin who requested this reset") {
		t.Fatalf("support withdraws another admin's request: %d\n%s", r.status, r.body)
	}
	if !passes(boss) {
		t.Fatal("boss does not pass after refused approvals")
	}
	if auditOf(e, "admin_reset_approved", "boss", map[string]any{"result": "refused", "reason": "same_admin", "actor": "admin (approver)"}) != 1 ||
		auditOf(e, "admin_reset_approved", "boss", map[string]any{"result": "refused", "reason": "own_reset", "actor": "boss (approver)"}) != 1 {
		t.Fatalf("refused approvals audit: %v", e.audit())
	}

	// Withdraw needs a reason; the requester withdraws from the approvals page.
	if r := approval(admin, "withdraw", own, " ", ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Give a reason") {
		t.Fatalf("withdraw without a reason: %d\n%s", r.status, r.body)
	}
	r = approval(admin, "withdraw", own, "boss found the phone", "")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/approvals?done=withdrawn" {
		t.Fatalf("withdraw: %d %q", r.status, r.location())
	}
	if r := admin.get(r.location()); !strings.Contains(r.body, "The reset request is withdrawn") || strings.Contains(r.body, own) {
		t.Fatalf("the approvals page after the withdrawal:\n%s", r.body)
	}
	if auditOf(e, "admin_reset_withdrawn", "boss", map[string]any{"result": "success", "actor": "admin (approver)", "requester": "admin",
		"admin_reason": "boss found the phone"}) != 1 {
		t.Fatalf("withdraw audit: %v", e.audit())
	}

	// Another approver approves sam's request from carol's page: carol's
	// factors are reset and her session ends.
	r = approval(boss, "approve", id, "called back on the number on file", "carol")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id=carol&done=approved" {
		t.Fatalf("approve: %d %q\n%s", r.status, r.location(), r.body)
	}
	if r := boss.get(r.location()); !strings.Contains(r.body, "The reset is approved and done") || !strings.Contains(r.body, "Not set up") ||
		strings.Contains(r.body, "Reset waiting for approval") {
		t.Fatalf("carol's page after the approval:\n%s", r.body)
	}
	sentToEnrol(t, carol, "after the approval")
	if auditOf(e, "admin_reset", "carol", map[string]any{"result": "success", "actor": "boss (approver)", "requester": "sam", "request": id, "admin_ip": "127.0.0.1",
		"admin_reason": "caller says lost phone, ID checked", "approval_reason": "called back on the number on file"}) != 1 ||
		auditOf(e, "admin_reset_approved", "carol", map[string]any{"result": "success", "actor": "boss (approver)", "requester": "sam"}) != 1 {
		t.Fatalf("approval audit: %v", e.audit())
	}
	// Approved once: a second approval is told the request is gone.
	if r := approval(admin, "approve", id, "", ""); r.status != http.StatusNotFound || !strings.Contains(r.body, "no longer pending") {
		t.Fatalf("a second approval: %d\n%s", r.status, r.body)
	}
	if r := approval(admin, "approve", "../members", "", ""); r.status != http.StatusNotFound {
		t.Fatalf("a bad ID: %d", r.status)
	}

	// ja too.
	admin.lang = "ja"
	if r := approval(admin, "approve", id, "", ""); !strings.Contains(r.body, "このリセットの依頼はもう承認待ちではありません") {
		t.Fatalf("the message in ja:\n%s", r.body)
	}
}

// A request lapses after reset_approval: it leaves the lists, and an
// approval after that is told so.
func TestApprovalPagesExpiry(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	carol, carolSecret := asMember(e, "carol")
	sam, _ := asMember(e, "sam")
	boss, bossSecret := asMember(e, "boss")
	id := requestReset(t, sam, "carol", "lost phone")
	if r := boss.get("/.2fa/admin/approvals"); !strings.Contains(r.body, id) || !strings.Contains(r.body, `action="/.2fa/admin/approvals/approve"`) {
		t.Fatalf("the approvals page before the window ends:\n%s", r.body)
	}

	e.clock.Advance(time.Hour)
	if r := boss.verify(e.code(bossSecret, 0), "/.2fa/admin/approvals", false); r.status != http.StatusSeeOther {
		t.Fatalf("boss's fresh code: %d", r.status)
	}
	if r := boss.get("/.2fa/admin/approvals"); strings.Contains(r.body, id) || !strings.Contains(r.body, "No reset is waiting for approval") {
		t.Fatalf("the approvals page after the window:\n%s", r.body)
	}
	if r := boss.get("/.2fa/admin/member?id=carol"); strings.Contains(r.body, "Reset waiting for approval") {
		t.Fatalf("carol's page after the window still shows the request")
	}
	if r := approval(boss, "approve", id, "", "carol"); r.status != http.StatusNotFound || !strings.Contains(r.body, "it lapsed, or was approved or withdrawn") {
		t.Fatalf("approving a lapsed request: %d\n%s", r.status, r.body)
	}
	// An hour on, carol is asked for her code, not sent to enrolment.
	if r := carol.get("/echo/x"); r.status != http.StatusFound || !strings.HasPrefix(r.location(), "/.2fa/challenge") {
		t.Fatalf("carol after the request lapsed: %d %q", r.status, r.location())
	}
	if r := carol.verify(e.code(carolSecret, 0), "/echo/x", false); r.status != http.StatusSeeOther || !passes(carol) {
		t.Fatalf("carol's code after the request lapsed: %d", r.status)
	}
}

// A reset requested through the admin API is approved on the page; the
// admin endpoint is the requester in the audit trail.
func TestApprovalPagesApproveAnAPIRequest(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	carol, _ := asMember(e, "carol")
	boss, _ := asMember(e, "boss")
	if status, msg := adminPost(t, e, "/two-factor/members/reset", `{"member": "carol", "reason": "ticket 42, ID checked"}`); status != http.StatusAccepted {
		t.Fatalf("reset through the API: %d %q", status, msg)
	}
	r := boss.get("/.2fa/admin/approvals")
	m := pendingIDRE.FindStringSubmatch(r.body)
	if m == nil || !strings.Contains(r.body, "admin endpoint") {
		t.Fatalf("the approvals page:\n%s", r.body)
	}
	r = approval(boss, "approve", m[1], "", "")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/approvals?done=approved" {
		t.Fatalf("approve: %d %q\n%s", r.status, r.location(), r.body)
	}
	sentToEnrol(t, carol, "after the approval")
	if auditOf(e, "admin_reset", "carol", map[string]any{"result": "success", "actor": "boss (approver)", "requester": "admin endpoint",
		"admin_reason": "ticket 42, ID checked"}) != 1 {
		t.Fatalf("reset audit: %v", e.audit())
	}
}

// Both new forms refuse a post without this browser's token, and nothing
// changes.
func TestApprovalPagesCSRF(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	carol, _ := asMember(e, "carol")
	sam, _ := asMember(e, "sam")
	boss, _ := asMember(e, "boss")
	other, _ := asMember(e, "dave")
	id := requestReset(t, sam, "carol", "lost phone")
	foreign := other.csrf("/.2fa/methods")
	for _, action := range []string{"approve", "withdraw"} {
		for what, tok := range map[string]string{"no token": "", "another member's token": foreign} {
			form := url.Values{"id": {id}, "reason": {"x"}}
			if tok != "" {
				form.Set("csrf", tok)
			}
			if r := boss.post("/.2fa/admin/approvals/"+action, form); r.status != http.StatusForbidden {
				t.Errorf("%s with %s: %d, want 403", action, what, r.status)
			}
		}
	}
	if r := boss.get("/.2fa/admin/approvals"); !strings.Contains(r.body, id) {
		t.Fatal("the request is gone after refused posts")
	}
	if !passes(carol) {
		t.Fatal("carol does not pass after refused posts")
	}
	if n := auditOf(e, "admin_reset_approved", "carol", nil) + auditOf(e, "admin_reset_withdrawn", "carol", nil); n != 0 {
		t.Fatalf("a post without its token reached the engine: %v", e.audit())
	}
}

// The admin pages' address without its slash leads to the overview, and
// with the member list's parameters (a bookmark from when the list was
// there) on to the list.
func TestAdminWithoutSlash(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	admin, _ := asMember(e, "admin")
	r := admin.get("/.2fa/admin?filter=locked")
	if r.status != http.StatusMovedPermanently || r.location() != "/.2fa/admin/?filter=locked" {
		t.Fatalf("/.2fa/admin: %d %q", r.status, r.location())
	}
	if r = admin.get(r.location()); r.status != http.StatusMovedPermanently || r.location() != "/.2fa/admin/members?filter=locked" {
		t.Fatalf("the old list address: %d %q", r.status, r.location())
	}
	if r := admin.get(r.location()); r.status != http.StatusOK || !strings.Contains(r.body, "<h1>Members</h1>") {
		t.Fatalf("after the redirects: %d", r.status)
	}
	if r := admin.get("/.2fa/admin"); r.status != http.StatusMovedPermanently || r.location() != "/.2fa/admin/" {
		t.Fatalf("/.2fa/admin without a query: %d %q", r.status, r.location())
	}
}

// The member is emailed, over real SMTP, when a reset is requested and
// when it is approved.
func TestApprovalPagesEmailTheMember(t *testing.T) {
	c, member := startEmailAdmins(t, "admins {\n\t\t\tsam support\n\t\t\tboss approver\n\t\t}", "reset_approval 2h")
	sam, boss := c.headerAdmin("sam"), c.headerAdmin("boss")

	id := requestReset(t, sam, "dora", "lost phone, called back")
	m := c.notice("dora@example.com", "asked to reset")
	if !strings.Contains(m.Text, "Nothing has changed yet") {
		t.Errorf("the request notice:\n%s", m.Text)
	}
	if r := member.get("/members/"); strings.HasPrefix(r.location(), "/.2fa/enrol") {
		t.Fatalf("dora after the request: %d %q", r.status, r.location())
	}
	if r := approval(boss, "approve", id, "", "dora"); r.status != http.StatusSeeOther {
		t.Fatalf("approve: %d\n%s", r.status, r.body)
	}
	c.notice("dora@example.com", "reset by an administrator")
}

// The member of a reset request cannot hold it off by withdrawing it,
// even as an approver: only other admins request, approve or withdraw it.
func TestMemberCannotWithdrawOwnReset(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	sam, _ := asMember(e, "sam")
	boss, _ := asMember(e, "boss")
	id := requestReset(t, sam, "boss", "boss's account looks taken over")
	if page := boss.get("/.2fa/admin/approvals"); strings.Contains(page.body, "admin/approvals/withdraw") {
		t.Errorf("the approvals page offers boss the withdrawal of his own reset")
	}
	if r := approval(boss, "withdraw", id, "no thanks", ""); r.status != http.StatusForbidden {
		t.Fatalf("boss withdrawing the reset of his own factors: %d %q", r.status, r.location())
	}
	if n := auditOf(e, "admin_reset_withdrawn", "boss", map[string]any{"result": "refused"}); n != 1 {
		t.Fatalf("%d refused withdrawals audited, want 1", n)
	}
}

// A member's data shown on a refusal (an action without a reason, a
// request that is gone) is a read like the member's page, and audited.
func TestMemberReadOnARefusalAudited(t *testing.T) {
	e := start(t, approvalPagesSetup(t))
	asMember(e, "carol")
	sam, _ := asMember(e, "sam")
	if r := adminAct(sam, "unlock", "carol", ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Member carol") {
		t.Fatalf("unlock without a reason: %d", r.status)
	}
	if r := approval(sam, "withdraw", "00000000000000000000000000000000", "x", "carol"); r.status != http.StatusNotFound {
		t.Fatalf("withdrawal of no request: %d", r.status)
	}
	if n := auditOf(e, "admin_member_viewed", "carol", nil); n != 2 {
		t.Fatalf("%d admin_member_viewed entries for carol's page shown twice, want 2", n)
	}
}
