package tests

// The audit trail's admin page in headless Chromium, through real Caddy:
// what members did shows up for an admin at once, the filters narrow it,
// paging keeps them, hostile values stay text, in Japanese and English at
// a phone's size and a desktop's, under the CSP; and a member's page shows
// their latest records.

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-twofactor/twofactor/audit"
)

// auditRow is one row of an audit table as the browser shows it.
type auditRow struct {
	Time    string `json:"time"`
	Event   string `json:"event"`
	Name    string `json:"name"` // the event's stored name, from the cell's title
	Result  string `json:"result"`
	Member  string `json:"member"`
	Link    string `json:"link"` // the member cell's link, path and query
	Actor   string `json:"actor"`
	Method  string `json:"method"`
	Details string `json:"details"`
}

// auditRows reads the rows of the audit table under sel.
func (c *chrome) auditRows(sel string) []auditRow {
	c.t.Helper()
	return evalJS[[]auditRow](c, "the audit rows", `[...document.querySelectorAll('`+sel+` table.audit tbody tr')].map(tr => {
		const td = [...tr.children].map(d => d.innerText.trim());
		const a = tr.children[3].querySelector('a');
		return {time: td[0], event: td[1], name: tr.children[1].querySelector('span').title, result: td[2], member: td[3],
			link: a ? a.pathname + a.search : '', actor: td[4], method: td[7], details: td[8]};
	})`)
}

// download fetches a path of the gateway as this browser would, with its
// cookies, and returns the status, headers and body: a download the
// browser would save instead of show.
func (c *chrome) download(path string) (int, http.Header, string) {
	c.t.Helper()
	res, err := chromedp.Call(c.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{c.e.base + "/"}})
	if err != nil {
		c.fatalf("reading cookies: %v", err)
	}
	req, err := http.NewRequest(http.MethodGet, c.e.base+path, nil)
	if err != nil {
		c.fatalf("download %s: %v", path, err)
	}
	for _, ck := range res.Cookies {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.fatalf("download %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.fatalf("download %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestBrowserAuditPage(t *testing.T) {
	e := start(t, adminPagesSetup(t))
	requireChromium(t)
	_, secret := enrolled(e, "alice")
	// alice signs in again elsewhere: a wrong code, then the right one.
	other := e.browser()
	other.login("alice")
	if r := other.verify(wrongCode(e.code(secret, 0)), "/members/", false); r.status == http.StatusSeeOther {
		t.Fatalf("a wrong code passed")
	}
	e.nextStep()
	if r := other.verify(e.code(secret, 0), "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("the right code: %d", r.status)
	}
	// bob is no admin.
	bob, _ := enrolled(e, "bob")
	if r := bob.get("/.2fa/admin/audit"); r.status != http.StatusForbidden || strings.Contains(r.body, "audit") {
		t.Fatalf("bob on the audit page: %d", r.status)
	}
	// Hostile values reach the trail through the admin endpoint: a member
	// ID and a reason that are markup.
	const hostileID, hostileWhy = `<script>alert(1)</script>`, `<img src=x onerror=alert(2)>`
	if status, msg := adminPost(t, e, "/two-factor/members/unlock", fmt.Sprintf(`{"member": %q, "reason": %q}`, hostileID, hostileWhy)); status != 200 {
		t.Fatalf("unlocking the hostile member: %d %q", status, msg)
	}
	const formula = `=HYPERLINK("http://evil.example")`
	if status, msg := adminPost(t, e, "/two-factor/members/unlock", fmt.Sprintf(`{"member": %q, "reason": "formula"}`, formula)); status != 200 {
		t.Fatalf("unlocking the formula member: %d %q", status, msg)
	}
	// Enough of one event for two pages of ten.
	for i := range 12 {
		if status, msg := adminPost(t, e, "/two-factor/members/unlock", fmt.Sprintf(`{"member": "alice", "reason": "paging %d"}`, i)); status != 200 {
			t.Fatalf("unlocking alice: %d %q", status, msg)
		}
	}

	c := e.chromium(t)
	console := c.watchConsole()
	c.enrolAdmin("admin")
	shots := screenshots(t)
	headings := map[string]string{"en": "Audit trail", "ja": "監査証跡"}
	labels := map[string][3]string{ // verify, failure, the app
		"en": {"Code check", "Failure", "Authenticator app"},
		"ja": {"コードの確認", "失敗", "認証アプリ"},
	}
	for _, lang := range []string{"en", "ja"} {
		c.setAcceptLanguage(lang)
		for _, v := range adminViewports {
			c.setViewport(v)
			where := fmt.Sprintf("%s-%s", lang, v.name)
			r := c.open("/.2fa/admin/audit?member=alice&event=verify")
			if r.status != 200 {
				c.fatalf("%s: the audit page: %s (%d)", where, r.url, r.status)
			}
			c.checkStyled()
			c.checkAdminLayout(v, lang, headings[lang])
			rows := c.auditRows("main")
			failed := 0
			for _, row := range rows {
				if row.Member != "alice" || row.Name != "verify" || row.Event != labels[lang][0] || row.Link != "/.2fa/admin/member?id=alice" {
					c.fatalf("%s: a row that is not alice's code check: %+v", where, row)
				}
				if row.Result == labels[lang][1] && row.Method == labels[lang][2] && strings.Contains(row.Details, "reason=") {
					failed++
				}
			}
			// Enrolment's check is not a verify; the sign-in's wrong and
			// right codes are.
			if len(rows) != 2 || failed != 1 {
				c.fatalf("%s: alice's code checks: %+v, want a wrong and a right one", where, rows)
			}
			c.screenshot(filepath.Join(shots, "audit-"+where+".png"))
		}
	}

	// The filter form, as an admin fills it in: alice's failures only.
	c.setAcceptLanguage("en")
	c.open("/.2fa/admin/audit")
	c.typeInto("#member", "alice")
	if err := chromedp.Do(c.ctx, chromedp.SetValue(chromedp.CSS("#result"), "failure")); err != nil {
		c.fatalf("choosing the result: %v", err)
	}
	r := c.submit(`form.search button[type=submit]`)
	if r.status != 200 || r.query.Get("member") != "alice" || r.query.Get("result") != "failure" {
		c.fatalf("filtering: %s (%d)", r.url, r.status)
	}
	rows := c.auditRows("main")
	if len(rows) == 0 {
		c.fatalf("no failures of alice")
	}
	for _, row := range rows {
		if row.Member != "alice" || row.Result != "Failure" {
			c.fatalf("the filter let through %+v", row)
		}
	}

	// Hostile values are text: no element made from them, shown as typed.
	c.open("/.2fa/admin/audit?event=admin_unlock")
	found := evalJS[struct {
		Text     bool `json:"text"`
		Injected int  `json:"injected"`
	}](c, "the hostile values", `({
		text: [...document.querySelectorAll('table.audit td')].some(td => td.innerText.includes('<script>alert(1)</script>')) &&
			[...document.querySelectorAll('table.audit td')].some(td => td.innerText.includes('<img src=x onerror=alert(2)>')),
		injected: document.querySelectorAll('main script, main img').length,
	})`)
	if !found.Text || found.Injected != 0 {
		c.fatalf("hostile values: shown as text %v, elements made from them %d", found.Text, found.Injected)
	}

	// The download of what the page shows, with the admin's cookies: the
	// CSV's header, its rows oldest first, a formula kept from running,
	// the details a JSON object (its quotes doubled in the CSV cell).
	href := evalJS[string](c, "the CSV link", `document.querySelector('.downloads a[href*="format=csv"]').getAttribute('href')`)
	status, header, body := c.download(href)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if status != 200 || header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(header.Get("Content-Disposition"), ".csv") ||
		lines[0] != strings.Join(audit.CSVColumns, ",") || len(lines) != 15 {
		t.Fatalf("the CSV download %s: %d %v, %d lines:\n%s", href, status, header, len(lines), body)
	}
	if !strings.Contains(lines[1], "<script>alert(1)</script>") || !strings.Contains(lines[2], `"'=HYPERLINK(""http://evil.example"")"`) ||
		!strings.Contains(lines[14], `""admin_reason"":""paging 11""`) {
		t.Errorf("the CSV's rows, oldest first, the formula guarded:\n%s", body)
	}
	status, _, body = c.download(strings.Replace(href, "format=csv", "format=jsonl", 1))
	if status != 200 || strings.Count(body, "\n") != 14 || !strings.HasPrefix(body, `{"id":`) {
		t.Errorf("the JSON Lines download: %d\n%s", status, body)
	}
	var exported bool
	for _, a := range e.audit() {
		if a["event"] == "admin_audit_export" && a["actor"] == "admin (approver)" && a["filter_event"] == "admin_unlock" &&
			a["format"] == "csv" && a["count"] == float64(14) {
			exported = true
		}
	}
	if !exported {
		t.Errorf("no admin_audit_export entry with the filter and the count: %v", e.audit())
	}

	// Paging: twelve unlocks of alice, ten a page; the filter stays.
	c.open("/.2fa/admin/audit?event=admin_unlock&member=alice&limit=10")
	if rows := c.auditRows("main"); len(rows) != 10 || rows[0].Details != "admin_reason=paging 11, failures=0, was_locked=false" {
		c.fatalf("the first page: %d rows, the newest %+v", len(rows), rows[0])
	}
	r = c.submit(`a[rel=next]`)
	if r.status != 200 || r.query.Get("member") != "alice" || r.query.Get("event") != "admin_unlock" || r.query.Get("limit") != "10" || r.query.Get("after") == "" {
		c.fatalf("the older page: %s (%d)", r.url, r.status)
	}
	if rows := c.auditRows("main"); len(rows) != 2 || rows[1].Details != "admin_reason=paging 0, failures=0, was_locked=false" {
		c.fatalf("the older page: %+v", rows)
	}
	if n := evalJS[int](c, "the pager", `document.querySelectorAll('a[rel=next]').length`); n != 0 {
		c.fatalf("an older link on the last page")
	}
	if r := c.submit(`.pager a.button`); r.query.Get("after") != "" || r.query.Get("member") != "alice" {
		c.fatalf("back to the newest: %s", r.url)
	}

	// A bad value is named on the page, with the form to fix it.
	r = c.open("/.2fa/admin/audit?address=192.0.2.0/24")
	if text := c.bodyText(); r.status != 400 || !strings.Contains(text, "Enter one IP address") || !strings.Contains(text, "no range") {
		c.fatalf("a range for an address: %d", r.status)
	}
	if r := c.open("/.2fa/admin/audit?member=nobody"); r.status != 200 || !strings.Contains(c.bodyText(), "No records match.") {
		c.fatalf("nothing found: %d", r.status)
	}

	// alice's page: her latest records, admins' reads left out, and the
	// way to the rest.
	for _, v := range adminViewports {
		c.setViewport(v)
		c.open("/.2fa/admin/member?id=alice")
		c.checkAdminLayout(v, "en", "Member alice")
		rows := c.auditRows("section.member-trail")
		verified := 0
		for _, row := range rows {
			if row.Member != "alice" || row.Name == "admin_member_viewed" || row.Name == "admin_audit_searched" {
				c.fatalf("%s: on alice's page: %+v", v.name, row)
			}
			if row.Name == "verify" {
				verified++
			}
		}
		// The twelve unlocks are the newest, then her two code checks.
		if len(rows) > 20 || len(rows) < 14 || rows[0].Name != "admin_unlock" || verified != 2 {
			c.fatalf("%s: alice's page shows %d records, want her 20 latest at most, with both code checks: %+v", v.name, len(rows), rows)
		}
		c.screenshot(filepath.Join(shots, "audit-en-"+v.name+"-member-trail.png"))
	}
	if r := c.submit(`section.member-trail p a`); r.path != "/.2fa/admin/audit" || r.query.Get("member") != "alice" {
		c.fatalf("the link to all of alice's records: %s", r.url)
	}

	// Reading the trail is audited, with the filter and the admin.
	var searched bool
	for _, a := range e.audit() {
		if a["event"] == "admin_audit_searched" && a["user"] == "alice" && a["actor"] == "admin (approver)" &&
			a["filter_result"] == "failure" && a["admin_ip"] == "127.0.0.1" {
			searched = true
		}
	}
	if !searched {
		t.Errorf("no admin_audit_searched entry for the filtered read: %v", e.audit())
	}
	c.checkNoCSPViolations()
	// The bad address was answered 400 on purpose.
	console.checkClean(t, "/.2fa/admin/audit")
}
