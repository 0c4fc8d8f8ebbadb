package flow

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

func TestParseAuditQuery(t *testing.T) {
	f := New(Config{Prefix: "/.2fa/", FoldID: strings.ToLower})
	day := func(s string) time.Time { d, _ := time.Parse(adminDay, s); return d }
	for _, c := range []struct {
		query string
		bad   string
		check func(aq auditQuery) string
	}{
		{"", "", func(aq auditQuery) string {
			if aq.filter != (audit.Filter{}) || aq.limit != auditPageSize {
				return fmt.Sprintf("filter %+v, limit %d", aq.filter, aq.limit)
			}
			return ""
		}},
		{"since=2030-04-01&until=2030-04-01", "", func(aq auditQuery) string {
			// One whole day in UTC: until is the end of its day.
			if !aq.filter.Since.Equal(day("2030-04-01")) || !aq.filter.Until.Equal(day("2030-04-02")) {
				return fmt.Sprintf("since %v until %v", aq.filter.Since, aq.filter.Until)
			}
			return ""
		}},
		{"event=any&result=any", "", func(aq auditQuery) string {
			if aq.filter.Event != "" || aq.filter.Result != "" || aq.values().Encode() != "" {
				return fmt.Sprintf("any: %+v, values %q", aq.filter, aq.values().Encode())
			}
			return ""
		}},
		{"event=verify&result=failure&member=%20Alice%20&actor=boss+(approver)&address=2001:DB8::1", "", func(aq auditQuery) string {
			want := audit.Filter{Event: "verify", Result: "failure", Member: "alice", Actor: "boss (approver)", IP: "2001:db8::1"}
			if aq.filter != want {
				return fmt.Sprintf("filter %+v, want %+v", aq.filter, want)
			}
			return ""
		}},
		{"event=from_a_newer_version", "", func(aq auditQuery) string {
			if aq.filter.Event != "from_a_newer_version" {
				return "an unknown but well-formed event is refused"
			}
			return ""
		}},
		{"limit=1", "", func(aq auditQuery) string { return clamped(aq, auditPageMin) }},
		{"limit=100000", "", func(aq auditQuery) string { return clamped(aq, auditPageMax) }},
		{"limit=-5", "", func(aq auditQuery) string { return clamped(aq, auditPageMin) }},
		{"limit=25", "", func(aq auditQuery) string {
			if aq.values().Get("limit") != "25" {
				return "the limit is not kept for the next page"
			}
			return clamped(aq, 25)
		}},
		{"since=yesterday", "since", nil},
		{"since=2030-13-01", "since", nil},
		{"until=2030-04-01T10:00", "until", nil},
		{"since=2030-04-02&until=2030-04-01", "until", nil},
		{"event=Verify", "event", nil},
		{"event=" + url.QueryEscape("<script>"), "event", nil},
		{"event=" + strings.Repeat("a", 65), "event", nil},
		{"result=" + url.QueryEscape("failure or 1=1"), "result", nil},
		{"member=" + strings.Repeat("m", maxFilterText+1), "member", nil},
		{"member=%ff", "member", nil},
		{"actor=%c3%28", "actor", nil},
		{"address=192.0.2.0/24", "address", nil},
		{"address=example.com", "address", nil},
		{"address=fe80::1%25eth0", "address", nil},
		{"limit=ten", "limit", nil},
		{"after=%ff", "after", nil},
		{"after=" + strings.Repeat("a", 4097), "after", nil},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		aq, bad := f.parseAuditQuery(q)
		if bad != c.bad {
			t.Errorf("%.80s: bad field %q, want %q", c.query, bad, c.bad)
			continue
		}
		if c.check != nil {
			if msg := c.check(aq); msg != "" {
				t.Errorf("%.80s: %s", c.query, msg)
			}
		}
	}
}

func clamped(aq auditQuery, want int) string {
	if aq.limit != want {
		return fmt.Sprintf("limit %d, want %d", aq.limit, want)
	}
	return ""
}

// Every catalog label of an event or result exists in both languages,
// and an unknown one shows by its name.
func TestAuditLabels(t *testing.T) {
	f := New(Config{Prefix: "/.2fa/"})
	for _, lang := range []string{"en", "ja"} {
		pg, fm := &pages.Page{Lang: lang}, &pages.AdminAudit{}
		f.auditChoices(pg, fm)
		for _, c := range append(fm.Events, fm.Results...) {
			if c.Value != "" && (c.Label == c.Value || strings.HasPrefix(c.Label, "audit_")) {
				t.Errorf("%s: %q has no label", lang, c.Value)
			}
		}
		fm.Event = "from_a_newer_version"
		f.auditChoices(pg, fm)
		if last := fm.Events[len(fm.Events)-1]; last != (pages.AuditChoice{Value: "from_a_newer_version", Label: "from_a_newer_version"}) {
			t.Errorf("%s: the unknown event's option: %+v", lang, last)
		}
	}
}

// trailFixture is the route fixture with an audit trail of its own.
func trailFixture(t *testing.T) (*fixture, *audit.Trail) {
	fx := newFixture(t)
	st, err := embedded.Open(filepath.Join(t.TempDir(), "trail"), embedded.Options{Now: fx.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tr, err := audit.New(st, [][]byte{[]byte("audit chain test key, 32 bytes or more")}, "test", fx.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	fx.b.Trail = tr
	synced := 0
	fx.b.SyncTrail = func(context.Context) { synced++ }
	t.Cleanup(func() {
		if synced == 0 {
			t.Error("the pages never waited for the trail")
		}
	})
	return fx, tr
}

func (fx *fixture) auditPage(query string) (int, string) {
	fx.t.Helper()
	br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
	w := fx.do(&route{method: http.MethodGet, path: "admin/audit?" + query}, br, "")
	return w.Code, w.Body.String()
}

func TestAuditPage(t *testing.T) {
	fx, tr := trailFixture(t)
	ctx := context.Background()
	for i := range 25 {
		r := audit.Record{Event: "verify", Result: "failure", Member: "bob", IP: "192.0.2.7", Method: "totp",
			Details: map[string]string{"reason": "wrong"}}
		if i%5 == 0 {
			r.Result = "success"
		}
		if err := tr.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		fx.clock.Advance(time.Second)
	}
	hostile := `<script>alert("x")</script>`
	if err := tr.Append(ctx, audit.Record{Event: "verify", Result: "failure", Member: hostile, Browser: hostile,
		Details: map[string]string{"admin_reason": hostile}}); err != nil {
		t.Fatal(err)
	}

	status, body := fx.auditPage("")
	if status != http.StatusOK || strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert") {
		t.Fatalf("the first page: %d, hostile values unescaped or missing:\n%s", status, body)
	}
	if !strings.Contains(body, "/.2fa/admin/member?id="+url.QueryEscape(hostile)) {
		t.Errorf("no link to the hostile member's page, escaped")
	}

	// Paging: 26 records, 10 a page, each once, with the filter kept.
	// Every page is audited, the ones after the first (from a cursor the
	// request brings) as paged.
	query, seen, pagesRead := "member=bob&limit=10&since=2030-04-01", 0, 0
	fx.audit.TakeAll()
	for query != "" {
		status, body := fx.auditPage(query)
		if status != http.StatusOK {
			t.Fatalf("page %d: %d", pagesRead, status)
		}
		pagesRead++
		reads := fx.audited("admin_audit_searched")
		if len(reads) != 1 {
			t.Fatalf("page %d: %d admin_audit_searched entries, want 1", pagesRead, len(reads))
		}
		r := reads[0]
		if r["user"] != "bob" || r["actor"] != "alice (approver)" || r["filter_since"] != "2030-04-01" ||
			r["found"] == nil || (r["paged"] == true) != (pagesRead > 1) {
			t.Errorf("page %d audited as %v", pagesRead, r)
		}
		seen += strings.Count(body, "<tr class=\"failure\">") + strings.Count(body, "<tr>\n<td")
		query = ""
		if i := strings.Index(body, `rel="next"`); i >= 0 {
			href := body[strings.LastIndex(body[:i], `href="`)+6 : i-2]
			u, err := url.Parse(strings.ReplaceAll(href, "&amp;", "&"))
			if err != nil || u.Query().Get("member") != "bob" || u.Query().Get("limit") != "10" {
				t.Fatalf("the next page's link %q does not keep the filter", href)
			}
			query = u.RawQuery
		}
	}
	if seen != 25 || pagesRead != 3 {
		t.Errorf("paged through %d records in %d pages, want 25 in 3", seen, pagesRead)
	}

	for _, c := range []struct{ query, says string }{
		{"since=someday", "Enter the start date as a date"},
		{"since=2030-04-02&until=2030-04-01", "not before the start date"},
		{"address=192.0.2.0/24", "no range"},
		{"after=not-a-cursor", "start again from the newest"},
	} {
		status, body := fx.auditPage(c.query)
		if status != http.StatusBadRequest || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d, want 400 saying %q", c.query, status, c.says)
		}
	}
	if status, body := fx.auditPage("member=nobody"); status != http.StatusOK || !strings.Contains(body, "No records match.") {
		t.Errorf("an empty result: %d", status)
	}
}

func TestAuditExport(t *testing.T) {
	fx, tr := trailFixture(t)
	ctx := context.Background()
	for _, m := range []string{"alice", `=HYPERLINK("http://evil.example")`, "bob"} {
		if err := tr.Append(ctx, audit.Record{Event: "verify", Result: "failure", Member: m, Method: "totp"}); err != nil {
			t.Fatal(err)
		}
		fx.clock.Advance(time.Second)
	}
	br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
	get := func(query string) (int, http.Header, string) {
		w := fx.do(&route{method: http.MethodGet, path: "admin/audit/export?" + query}, br, "")
		return w.Code, w.Header(), w.Body.String()
	}

	status, h, body := get("format=csv&result=failure")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if status != http.StatusOK || h.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.HasPrefix(h.Get("Content-Disposition"), `attachment; filename="two-factor-audit-`) || len(lines) != 4 {
		t.Fatalf("CSV: %d %v\n%s", status, h, body)
	}
	if lines[0] != strings.Join(audit.CSVColumns, ",") || !strings.Contains(lines[1], ",alice,") || !strings.Contains(lines[2], `"'=HYPERLINK(`) {
		t.Errorf("CSV rows, oldest first, formulas guarded:\n%s", body)
	}

	status, h, body = get("member=bob")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/jsonl") || strings.Count(body, "\n") != 1 || !strings.Contains(body, `"member":"bob"`) {
		t.Errorf("JSON Lines of bob's records: %d %v\n%s", status, h, body)
	}

	for _, c := range []struct{ query, says string }{
		{"format=xlsx", "JSON Lines or CSV"},
		{"format=csv&address=example.com", "Enter one IP address"},
	} {
		status, h, body := get(c.query)
		if status != http.StatusBadRequest || h.Get("Content-Disposition") != "" || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d, want 400 saying %q", c.query, status, c.says)
		}
	}

	// The page links to the download of what it shows.
	_, page := fx.auditPage("result=failure&limit=20")
	if !strings.Contains(page, `href="/.2fa/admin/audit/export?format=csv&amp;result=failure"`) {
		t.Errorf("no CSV link for the filter on the page")
	}
}

// The export is a GET without a form token: a download another site's
// page started is refused, any other is served.
func TestAuditExportRefusesCrossSite(t *testing.T) {
	fx, tr := trailFixture(t)
	if err := tr.Append(context.Background(), audit.Record{Event: "verify", Result: "failure", Member: "bob"}); err != nil {
		t.Fatal(err)
	}
	br := browser{user: "alice", csrf: session.NewSecret(), session: fx.sessionFor("alice", 0, false)}
	get := func(site string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "http://club.example/.2fa/admin/audit/export?format=csv", nil)
		r.Header.Set(userHeader, br.user)
		r.Header.Set("Cookie", session.CSRFCookie+"="+br.csrf+"; "+session.SessionCookie+"="+br.session)
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		if site != "" {
			r.Header.Set("Sec-Fetch-Site", site)
		}
		w := httptest.NewRecorder()
		if err := fx.f.Serve(w, r); err != nil {
			t.Fatalf("Sec-Fetch-Site %q: %v", site, err)
		}
		return w
	}

	fx.audit.TakeAll()
	w := get("cross-site")
	if w.Code != http.StatusForbidden || w.Header().Get("Content-Disposition") != "" ||
		!strings.Contains(w.Body.String(), "You do not have access to this page.") || strings.Contains(w.Body.String(), "bob") {
		t.Errorf("cross-site: %d %v, want 403 with the forbidden page\n%s", w.Code, w.Header(), w.Body)
	}
	if refused := fx.audited("csrf_refused"); len(refused) != 1 || refused[0]["page"] != "admin/audit/export" || refused[0]["user"] != "alice" {
		t.Errorf("the cross-site export audited as %v, want one csrf_refused naming the page and alice", refused)
	}

	for _, site := range []string{"same-origin", "same-site", "none", ""} {
		w := get(site)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Disposition"), "attachment;") || !strings.Contains(w.Body.String(), "bob") {
			t.Errorf("Sec-Fetch-Site %q: %d %v, want the download", site, w.Code, w.Header())
		}
		if n := len(fx.audited("admin_audit_export")); n != 1 {
			t.Errorf("Sec-Fetch-Site %q: %d admin_audit_export entries, want 1", site, n)
		}
	}
}

// Every event the gateway audits is in the event select, with a label:
// an event added without one would be missing from the filter.
func TestAuditEventsListsEveryEvent(t *testing.T) {
	calls := []*regexp.Regexp{
		regexp.MustCompile(`\.Audit\([^,()]+(?:\([^()]*\))?,\s*"([a-z_]+)"`),
		regexp.MustCompile(`\.AuditOnce\((?:[^,]+,){4}\s*"([a-z_]+)"`),
		regexp.MustCompile(`\.AuditRead\([^,]+,[^,]+,\s*"([a-z_]+)"`),
		regexp.MustCompile(`auditAdmin\([^,]+,[^,]+,\s*"([a-z_]+)"`),
		regexp.MustCompile(`auditByEndpoint\([^,]+,\s*"([a-z_]+)"`),
		regexp.MustCompile(`memberAction\(ctx,\s*"([a-z_]+)"`),
		regexp.MustCompile(`auditApproval\([^,]+,\s*"([a-z_]+)"`),
		regexp.MustCompile(`zap\.String\("event",\s*"([a-z_]+)"`),
		regexp.MustCompile(`event\s*:?=\s*"([a-z_]+)"`),
	}
	found := map[string]string{}
	for _, dir := range []string{"..", "../challenge", "."} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, re := range calls {
				for _, m := range re.FindAllStringSubmatch(string(src), -1) {
					found[m[1]] = file
				}
			}
		}
	}
	for _, must := range []string{"verify", "admin_unlock", "admin_reset_requested", "admin_app_confirmed", "sms_site_limit", "enrol_confirm", "admin_audit_searched"} {
		if found[must] == "" {
			t.Errorf("the scan missed %s: %v", must, found)
		}
	}
	for event, file := range found {
		if !slices.Contains(auditEvents, event) {
			t.Errorf("%s audits %q, which auditEvents does not list", file, event)
		}
		for _, lang := range []string{"en", "ja"} {
			if label((&pages.Page{Lang: lang}), "audit_event_"+event, "") == "" {
				t.Errorf("no %s label for the event %q", lang, event)
			}
		}
	}
}
