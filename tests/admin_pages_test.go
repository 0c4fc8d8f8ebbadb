package tests

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/flow"
	"github.com/caddy-twofactor/twofactor/session"
)

// The admin pages under the prefix, through a real Caddy: who may open
// them, with which second factor, the CSRF guard on every form, and each
// action's effect on the member, its audit entry and its notice.

// pageAdmins lists admin as an approver and alice as a viewer; bob is no
// admin.
const pageAdmins = "admins {\n\t\t\tadmin approver\n\t\t\talice viewer\n\t\t}"

// adminPagesSetup is pageAdmins with lines, on an embedded store.
func adminPagesSetup(t *testing.T, lines ...string) setup {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	return adminSetup(db, []string{testKey}, append([]string{pageAdmins}, lines...)...)
}

// adminRequest sends one admin route's request, a post with the form
// token tok (none when "").
func adminRequest(b *browser, rt flow.AdminRoute, tok string, form url.Values) *response {
	b.t.Helper()
	if rt.Method == http.MethodGet {
		return b.get("/.2fa/" + rt.Path)
	}
	f := url.Values{"member": {"alice"}, "reason": {"testing"}, "address": {"192.0.2.9"}, "ids": {"alice"}}
	for k, v := range form {
		f[k] = v
	}
	if tok != "" {
		f.Set("csrf", tok)
	}
	return b.post("/.2fa/"+rt.Path, f)
}

func TestAdminPagesRefuseMembersWhoAreNoAdmin(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	bob, _ := enrolled(e, "bob")
	tok := bob.csrf("/.2fa/methods")
	routes := flow.AdminRoutes()
	if len(routes) < 5 {
		t.Fatalf("admin routes: %v", routes)
	}
	for _, rt := range routes {
		r := adminRequest(bob, rt, tok, nil)
		if r.status != http.StatusForbidden {
			t.Errorf("%s %s for a member who is no admin: %d, want 403", rt.Method, rt.Path, r.status)
		}
		if low := strings.ToLower(r.body); strings.Contains(low, "admin") || strings.Contains(low, "reconcile") {
			t.Errorf("%s %s: the 403 page speaks of the admin pages:\n%s", rt.Method, rt.Path, r.body)
		}
	}
	// Nothing was done: the audit trail has the refusals, no action.
	refused := 0
	for _, a := range e.audit() {
		switch a["event"] {
		case "admin_refused":
			refused++
		case "admin_unlock", "admin_reset", "admin_devices", "admin_sessions", "admin_unlock_address":
			t.Errorf("an action was taken: %v", a)
		}
	}
	if refused != len(routes) {
		t.Errorf("%d admin_refused audit entries, want %d", refused, len(routes))
	}
}

func TestAdminPagesViewerCannotAct(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	viewer, _ := enrolled(e, "alice")
	if r := viewer.get("/.2fa/admin/members"); r.status != http.StatusOK || strings.Contains(r.body, "admin/member/reset") {
		t.Fatalf("the list for a viewer: %d", r.status)
	}
	if r := viewer.get("/.2fa/admin/member?id=alice"); r.status != http.StatusOK || strings.Contains(r.body, `action="/.2fa/admin/member/`) {
		t.Fatalf("a viewer sees action forms: %d\n%s", r.status, r.body)
	}
	tok := viewer.csrf("/.2fa/admin/reconcile")
	acts := 0
	for _, rt := range flow.AdminRoutes() {
		if rt.Role == flow.RoleViewer {
			continue
		}
		acts++
		if r := adminRequest(viewer, rt, tok, nil); r.status != http.StatusForbidden {
			t.Errorf("%s %s for a viewer: %d, want 403", rt.Method, rt.Path, r.status)
		}
	}
	if acts < 5 {
		t.Fatalf("%d admin actions", acts)
	}
	// Reconciling reads only: a viewer may.
	if r := viewer.post("/.2fa/admin/reconcile", url.Values{"csrf": {tok}, "ids": {"alice\nnobody"}}); r.status != http.StatusOK {
		t.Fatalf("reconcile for a viewer: %d", r.status)
	}
}

func TestAdminPagesCSRF(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin, _ := enrolled(e, "admin")
	good := admin.csrf("/.2fa/admin/members")
	other, _ := enrolled(e, "bob")
	foreign := other.csrf("/.2fa/methods")
	for _, rt := range flow.AdminRoutes() {
		if rt.Method != http.MethodPost {
			continue
		}
		for what, tok := range map[string]string{"no token": "", "another member's token": foreign, "a changed token": good[:len(good)-1] + "x"} {
			if r := adminRequest(admin, rt, tok, nil); r.status != http.StatusForbidden {
				t.Errorf("%s with %s: %d, want 403", rt.Path, what, r.status)
			}
		}
	}
	for _, a := range e.audit() {
		switch a["event"] {
		case "admin_unlock", "admin_reset", "admin_devices", "admin_sessions", "admin_unlock_address":
			t.Errorf("an action passed without its token: %v", a)
		}
	}
}

func TestAdminPagesNeedAFreshAppCode(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin := e.browser()
	admin.login("admin")
	secret := admin.enrol("/members/")
	if r := admin.get("/.2fa/admin/"); r.status != http.StatusOK {
		t.Fatalf("admin right after the app code: %d", r.status)
	}

	// After step_up (10m) the pages ask for the app again, and come back.
	e.clock.Advance(11 * time.Minute)
	r := admin.get("/.2fa/admin/member?id=admin")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/challenge?return_to="+url.QueryEscape("/.2fa/admin/member?id=admin") {
		t.Fatalf("after step_up: %d %q, want the challenge", r.status, r.location())
	}
	page := admin.get(r.location())
	if page.status != http.StatusOK || strings.Contains(page.body, `name="remember"`) {
		t.Fatalf("the challenge for an admin page offers to remember the device: %d\n%s", page.status, page.body)
	}
	r = admin.verify(e.code(secret, 0), "/.2fa/admin/member?id=admin", false)
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id=admin" {
		t.Fatalf("after the code: %d %q", r.status, r.location())
	}
	if r := admin.get(r.location()); r.status != http.StatusOK || !strings.Contains(r.body, "Member admin") {
		t.Fatalf("back on the member page: %d", r.status)
	}

	// An action after step_up has passed asks again too, and does nothing.
	tok := admin.csrf("/.2fa/admin/member?id=admin")
	e.clock.Advance(11 * time.Minute)
	r = admin.post("/.2fa/admin/member/end-sessions", url.Values{"csrf": {tok}, "member": {"admin"}, "reason": {"test"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?return_to="+url.QueryEscape("/.2fa/admin/member?id=admin")) {
		t.Fatalf("an action after step_up: %d %q, want the challenge", r.status, r.location())
	}
	for _, a := range e.audit() {
		if a["event"] == "admin_sessions" {
			t.Fatalf("the action ran without a fresh code: %v", a)
		}
	}

	// A session from a remembered device does not count, however new.
	e.nextStep()
	other := e.browser()
	other.login("admin")
	if r := other.verify(e.code(secret, 0), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("verify with remember: %d", r.status)
	}
	third := e.browser()
	third.login("admin")
	device := other.cookie(session.DeviceCookie)
	if device == nil {
		t.Fatal("no remembered-device cookie")
	}
	third.setCookie(device.Name, device.Value)
	if r := third.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("remembered device on /members/: %d", r.status)
	}
	if r := third.get("/.2fa/admin/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/challenge?") {
		t.Fatalf("a remembered-device session opens the admin pages: %d %q", r.status, r.location())
	}
}

// An admin with only email codes (no app) is told to add the app.
func TestAdminPagesWithoutTheApp(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin := e.browser()
	admin.login("admin")
	r := admin.get("/.2fa/admin/")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "authenticator app") || !strings.Contains(r.body, "/.2fa/methods?return_to=") {
		t.Fatalf("an admin without the app: %d\n%s", r.status, r.body)
	}
}

// adminAct posts an action from a member's page.
func adminAct(admin *browser, action, member, reason string, extra ...string) *response {
	admin.t.Helper()
	tok := admin.csrf("/.2fa/admin/reconcile")
	form := url.Values{"csrf": {tok}, "member": {member}, "reason": {reason}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	return admin.post("/.2fa/admin/member/"+action, form)
}

// assertActorAudit checks that event was audited for alice with the acting
// admin, their role and the reason.
func assertActorAudit(t *testing.T, e *env, event, why string) {
	t.Helper()
	for _, a := range e.audit() {
		if a["event"] == event && a["user"] == "alice" && a["actor"] == "admin (approver)" && a["admin_reason"] == why && a["result"] == "success" &&
			a["admin_ip"] == "127.0.0.1" {
			return
		}
	}
	t.Fatalf("no %s audit entry with the admin and the reason: %v", event, e.audit())
}

func TestAdminPagesUnlock(t *testing.T) {
	e := start(t, adminPagesSetup(t, "max_failures 3", "lockout 1h"))
	_, secret := enrolled(e, "alice")
	admin, _ := enrolled(e, "admin")
	member := e.browser()
	member.login("alice")
	for i := 0; i < 3; i++ {
		member.verify(wrongCode(e.code(secret, 0)), "/members/", false)
	}
	if r := admin.get("/.2fa/admin/member?id=alice"); r.status != http.StatusOK || !strings.Contains(r.body, "Locked") {
		t.Fatalf("the member page does not show the lockout: %d\n%s", r.status, r.body)
	}
	if r := admin.get("/.2fa/admin/members?filter=locked"); r.status != http.StatusOK || !strings.Contains(r.body, `class="badge locked"`) {
		t.Fatalf("the list does not mark the lockout: %d", r.status)
	}

	// A reason is required, and the page says so.
	r := adminAct(admin, "unlock", "alice", "   ")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Give a reason") {
		t.Fatalf("unlock without a reason: %d\n%s", r.status, r.body)
	}
	r = adminAct(admin, "unlock", "alice", strings.Repeat("あ", 200))
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "The reason is too long") {
		t.Fatalf("unlock with a reason of 600 bytes: %d\n%s", r.status, r.body)
	}
	r = adminAct(admin, "unlock", "alice", "called the member back")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id=alice&done=unlock" {
		t.Fatalf("unlock: %d %q", r.status, r.location())
	}
	if r := admin.get(r.location()); !strings.Contains(r.body, "unlocked and can try again") || strings.Contains(r.body, `class="badge locked"`) {
		t.Fatalf("after the unlock: %s", r.body)
	}
	// The member can try again at once, with every try.
	if r := member.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther || r.location() != "/members/" {
		t.Fatalf("the member after the unlock: %d %q", r.status, r.location())
	}
	assertActorAudit(t, e, "admin_unlock", "called the member back")
	// The member's activity shows an admin acted.
	if r := admin.get("/.2fa/admin/member?id=alice"); !strings.Contains(r.body, "Unlocked by an administrator") {
		t.Fatalf("the member's activity does not show the unlock:\n%s", r.body)
	}
}

func TestAdminPagesUnlockAddress(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	admin, _ := enrolled(e, "admin")
	tok := admin.csrf("/.2fa/admin/members")
	for what, form := range map[string]url.Values{
		"no reason":  {"address": {"192.0.2.9"}, "reason": {""}},
		"no address": {"address": {""}, "reason": {"x"}},
		"bad":        {"address": {"not-an-ip"}, "reason": {"x"}},
	} {
		form.Set("csrf", tok)
		if r := admin.post("/.2fa/admin/unlock-address", form); r.status != http.StatusBadRequest || !strings.Contains(r.body, `role="alert"`) {
			t.Errorf("unlock address with %s: %d", what, r.status)
		}
	}
	r := admin.post("/.2fa/admin/unlock-address", url.Values{"csrf": {tok}, "address": {"192.0.2.9"}, "reason": {"office NAT"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("unlock address: %d %s", r.status, r.body)
	}
	for _, a := range e.audit() {
		if a["event"] == "admin_unlock_address" && a["actor"] == "admin (approver)" && a["admin_reason"] == "office NAT" {
			return
		}
	}
	t.Fatalf("no admin_unlock_address audit entry: %v", e.audit())
}

func TestAdminPagesMemberActions(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	member, secret := enrolled(e, "alice")
	admin, _ := enrolled(e, "admin")
	if r := member.get("/members/"); r.status != http.StatusOK {
		t.Fatalf("member before: %d", r.status)
	}
	r := admin.get("/.2fa/admin/member?id=alice")
	for _, want := range []string{"Authenticator app", "10 of 10 recovery codes left", "End sessions", "whoever signs in", "Reset 2-step verification"} {
		if !strings.Contains(strings.ToLower(r.body), strings.ToLower(want)) {
			t.Errorf("the member page lacks %q", want)
		}
	}

	// End sessions: the member is asked again at once.
	if r := adminAct(admin, "end-sessions", "alice", "laptop stolen"); r.status != http.StatusSeeOther {
		t.Fatalf("end sessions: %d %s", r.status, r.body)
	}
	sentTo(t, member, "/.2fa/challenge", "after end sessions")
	assertActorAudit(t, e, "admin_sessions", "laptop stolen")
	e.clock.Advance(time.Second)
	if r := member.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("verify after end sessions: %d", r.status)
	}
	e.nextStep()

	if r := adminAct(admin, "forget-devices", "alice", "shared computer"); r.status != http.StatusSeeOther {
		t.Fatalf("forget devices: %d", r.status)
	}
	assertActorAudit(t, e, "admin_devices", "shared computer")

	// Reset: only with the identity confirmed.
	r = adminAct(admin, "reset", "alice", "lost phone")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Tick the box") {
		t.Fatalf("reset without the box: %d\n%s", r.status, r.body)
	}
	r = adminAct(admin, "reset", "alice", "lost phone, called back", "confirm", "yes")
	if r.status != http.StatusSeeOther || r.location() != "/.2fa/admin/member?id=alice&done=reset" {
		t.Fatalf("reset: %d %q", r.status, r.location())
	}
	sentTo(t, member, "/.2fa/enrol", "after the reset")
	assertActorAudit(t, e, "admin_reset", "lost phone, called back")
	r = admin.get("/.2fa/admin/member?id=alice&done=reset")
	for _, want := range []string{"sets it up again", "Not set up", "Reset by an administrator"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("after the reset, the member page lacks %q", want)
		}
	}
	// A member with no record: nothing to reset, said on the page.
	if r := adminAct(admin, "reset", "bob", "x", "confirm", "yes"); r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
		t.Fatalf("reset of a member never seen: %d", r.status)
	}
	if r := admin.get("/.2fa/admin/member?id=nobody"); r.status != http.StatusNotFound {
		t.Fatalf("an unknown member: %d", r.status)
	}
}

func TestAdminPagesMemberList(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	enrolled(e, "alice")
	admin, _ := enrolled(e, "admin")
	bob := e.browser()
	bob.login("bob")
	bob.get("/members/") // seen, not enrolled

	r := admin.get("/.2fa/admin/members")
	if r.status != http.StatusOK {
		t.Fatalf("list: %d", r.status)
	}
	for _, want := range []string{`href="/.2fa/admin/member?id=alice"`, `href="/.2fa/admin/member?id=bob"`, `href="/.2fa/admin/member?id=admin"`,
		`<span class="count">3</span> members`, `<span class="count">2</span> with 2-step verification`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the list lacks %s", want)
		}
	}
	r = admin.get("/.2fa/admin/members?filter=not_enrolled")
	if !strings.Contains(r.body, "id=bob") || strings.Contains(r.body, "id=alice") {
		t.Errorf("not enrolled filter:\n%s", r.body)
	}
	for _, q := range []string{"filter=everyone", "order=name", "filter=TOTP"} {
		field := strings.SplitN(q, "=", 2)[0]
		r := admin.get("/.2fa/admin/members?" + q)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Check the "+field+" field") {
			t.Errorf("?%s: %d, want 400 naming %s", q, r.status, field)
		}
	}
	r = admin.get("/.2fa/admin/members?q=" + strings.Repeat("x", 300))
	if r.status != http.StatusBadRequest {
		t.Errorf("an over-long search: %d", r.status)
	}
	// ja too.
	admin.lang = "ja"
	if r := admin.get("/.2fa/admin/members"); !strings.Contains(r.body, "<h1>会員一覧</h1>") || !strings.Contains(r.body, `lang="ja"`) {
		t.Errorf("the list in ja:\n%s", r.body)
	}
}

// reconcileUpload posts ids as an uploaded file.
func reconcileUpload(t *testing.T, b *browser, tok string, body []byte, fields ...string) *response {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("csrf", tok)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = w.WriteField(fields[i], fields[i+1])
	}
	fw, _ := w.CreateFormFile("file", "members.csv")
	_, _ = fw.Write(body)
	w.Close()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, b.e.base+"/.2fa/admin/reconcile", &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Origin", b.e.base)
	return b.do(req)
}

func TestAdminPagesReconcile(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	enrolled(e, "alice")
	admin, _ := enrolled(e, "admin")
	bob := e.browser()
	bob.login("bob")
	bob.get("/members/")
	tok := admin.csrf("/.2fa/admin/reconcile")

	// 10,000 IDs in a CSV file, the ID in the first column.
	var file bytes.Buffer
	file.WriteString("alice,alice@example.com\nbob,bob@example.com\n")
	for i := range 9998 {
		fmt.Fprintf(&file, "member%05d,m%d@example.com\n", i, i)
	}
	r := reconcileUpload(t, admin, tok, file.Bytes())
	if r.status != http.StatusOK {
		t.Fatalf("reconcile 10,000 IDs: %d\n%.2000s", r.status, r.body)
	}
	for _, want := range []string{`<span class="count">1</span> With 2-step verification`, `<span class="count">1</span> Seen, not set up`,
		`<span class="count">9998</span> Never seen`, "member09997"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the result lacks %q", want)
		}
	}

	// The CSV download of the same list.
	r = reconcileUpload(t, admin, tok, file.Bytes(), "format", "csv")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %d %v", r.status, r.header)
	}
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	if err != nil || len(rows) != 10001 || rows[1][0] != "alice" || rows[1][1] != "enrolled" || rows[2][1] != "seen_not_enrolled" || rows[3][1] != "never_seen" {
		t.Fatalf("CSV: %v, %d rows, first %v", err, len(rows), rows[:min(4, len(rows))])
	}

	// Pasted, without a file.
	r = admin.post("/.2fa/admin/reconcile", url.Values{"csrf": {tok}, "ids": {"bob\r\nnobody\n"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, `<span class="count">1</span> Never seen`) {
		t.Fatalf("pasted: %d", r.status)
	}

	// Bad input, said clearly.
	r = admin.post("/.2fa/admin/reconcile", url.Values{"csrf": {tok}, "ids": {"\n \n"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "paste at least one ID") {
		t.Fatalf("empty: %d", r.status)
	}
	var many bytes.Buffer
	for i := range challenge.MaxReconcile + 1 {
		fmt.Fprintf(&many, "m%d\n", i)
	}
	r = reconcileUpload(t, admin, tok, many.Bytes())
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, fmt.Sprintf("at most %d at a time", challenge.MaxReconcile)) {
		t.Fatalf("too many IDs: %d\n%.500s", r.status, r.body)
	}
	r = reconcileUpload(t, admin, tok, bytes.Repeat([]byte("x"), 17<<20))
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too large") {
		t.Fatalf("too large: %d\n%.500s", r.status, r.body)
	}
}

// Roles from the identity, opted in: only the exact role names count.
func TestAdminRolesFromIdentityHeader(t *testing.T) {
	db := filepath.Join(t.TempDir(), "twofactor.db")
	s := adminSetup(db, []string{testKey}, "admins {\n\t\t\tfrom_identity\n\t\t}")
	s.policy = `
	identity header X-Member {
		role_header X-Member-Role
	}
	protect /members/* /echo/*
	site_name "Test Members"
`
	e := start(t, s)
	b := e.browser()
	b.header.Set("X-Member", "carol")
	b.header.Set("X-Member-Role", "support")
	b.enrol("/members/")
	if r := b.get("/.2fa/admin/"); r.status != http.StatusOK || !strings.Contains(r.body, "Signed in as carol") {
		t.Fatalf("carol as support: %d", r.status)
	}
	for _, role := range []string{"Support", "admin", "support,approver", ""} {
		b.header.Set("X-Member-Role", role)
		if r := b.get("/.2fa/admin/"); r.status != http.StatusForbidden {
			t.Errorf("role %q: %d, want 403", role, r.status)
		}
	}
	// A header sent twice counts as none.
	b.header["X-Member-Role"] = []string{"viewer", "approver"}
	if r := b.get("/.2fa/admin/"); r.status != http.StatusForbidden {
		t.Errorf("two role headers: %d, want 403", r.status)
	}
}

// startEmailAdmins is a gateway with SMTP on loopback and members named
// by a header, admins as given (an admins block's lines), and dora
// enrolled with email codes at dora@example.com. It returns dora's
// browser.
func startEmailAdmins(t *testing.T, admins ...string) (*codeEnv, *browser) {
	t.Helper()
	c := startCodesPolicy(t, `
	identity header X-Member
	protect /members/* /echo/*
	site_name "Test Members"
`, strings.Join(admins, "\n\t\t"))
	member := c.browser()
	member.header.Set("X-Member", "dora")
	r := member.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F",
		url.Values{"return_to": {"/members/"}, "address": {"dora@example.com"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("enrolling email: %d %s", r.status, r.body)
	}
	_, code := c.mailCode(1)
	r = member.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "code": {code}})
	enrolDone(t, r, "/members/")
	return c, member
}

// headerAdmin is a browser named id by the header, with the app set up.
func (c *codeEnv) headerAdmin(id string) *browser {
	b := c.browser()
	b.header.Set("X-Member", id)
	b.enrol("/members/")
	return b
}

// An action from the admin pages emails the member, over real SMTP, at
// the address they typed at enrolment (one that follows the member site's
// identity is not stored, so no admin action can reach it).
func TestAdminPagesEmailTheMember(t *testing.T) {
	c, _ := startEmailAdmins(t, "admins {\n\t\t\tboss approver\n\t\t}")
	admin := c.headerAdmin("boss")

	if r := adminAct(admin, "end-sessions", "dora", "laptop stolen"); r.status != http.StatusSeeOther {
		t.Fatalf("end sessions: %d %s", r.status, r.body)
	}
	m := c.notice("dora@example.com", "sessions were ended")
	if !strings.Contains(m.Subject, "[Test Members]") {
		t.Errorf("notice subject %q", m.Subject)
	}
	if r := adminAct(admin, "reset", "dora", "lost phone, called back", "confirm", "yes"); r.status != http.StatusSeeOther {
		t.Fatalf("reset: %d", r.status)
	}
	c.notice("dora@example.com", "reset by an administrator")
}
