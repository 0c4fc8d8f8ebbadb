package flow

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/pages"
)

// The audit page: the durable audit trail, filtered, newest first, a page
// at a time; and the latest records of one member on their page. Reading
// the trail is itself audited.

// Records a page of the audit page: the default, and the bounds a limit
// parameter is clamped to.
const (
	auditPageSize = 50
	auditPageMin  = 10
	auditPageMax  = 200
)

// memberTrailSize is how many records a member's page shows.
const memberTrailSize = 20

// memberTrailReads bounds the queries behind a member's page: each reads
// at most 20 times its limit of entries, so a member with no recent
// records costs a bounded read of the trail, not all of it.
const memberTrailReads = 3

// trailSyncWait bounds the wait for the records queued before a page
// reads the trail: past it the page shows what is appended already.
const trailSyncWait = 2 * time.Second

// maxFilterText bounds the member and actor filters, as member IDs are.
const maxFilterText = 1024

// auditEvents are the events the gateway writes to the trail, in the
// order the event select lists them. An event not listed here (a newer
// version's) is still accepted as a filter and shown by its name.
var auditEvents = []string{
	"verify", "totp_replay", "code_send", "code_not_arrived", "lockout",
	"enrol_start", "enrol_confirm", "enrol_reminder", "enrolment_grace_started", "enrolment_deadline_passed", "method_removed", "default_method", "recovery_codes_generated",
	"webauthn_registered", "webauthn_removed", "webauthn_renamed", "webauthn_counter_regressed", "webauthn_start",
	"device_remembered", "device_used", "device_forgotten", "new_browser", "network_skip", "session_revoked", "csrf_refused", "sms_site_limit",
	"admin_refused", "admin_overview_viewed", "admin_member_viewed", "admin_members_searched", "admin_reconcile", "admin_audit_searched",
	"admin_audit_export", "admin_audit_verify",
	"admin_unlock", "admin_unlock_address", "admin_devices", "admin_sessions", "admin_reset", "admin_app_confirmed", "admin_passkey_removed",
	"admin_reset_requested", "admin_reset_approved", "admin_reset_withdrawn",
	"admin_export", "admin_import", "admin_rekey", "audit_suppressed",
}

// auditResults are the results events end with, for the result select.
var auditResults = []string{"success", "failure", "refused", "error", "later", "account_locked", "address_locked"}

// failedResults are the results shown as a failure.
var failedResults = []string{"failure", "refused", "error", "account_locked", "address_locked"}

// auditReads are the events of admins reading, left out of a member's
// page so that looking at it does not push the member's own records out.
var auditReads = []string{"admin_overview_viewed", "admin_member_viewed", "admin_members_searched", "admin_audit_searched",
	"admin_audit_export"}

// auditQuery is the audit page's request: the filter, the page size and
// where to continue, and the filter as the form shows it.
type auditQuery struct {
	filter audit.Filter
	limit  int
	after  string
	form   pages.AdminAudit
}

// values is the query string that selects the same records.
func (q *auditQuery) values() url.Values {
	v := url.Values{}
	for _, kv := range [][2]string{{"since", q.form.Since}, {"until", q.form.Until}, {"event", q.form.Event},
		{"result", q.form.Result}, {"member", q.form.Member}, {"actor", q.form.Actor}, {"address", q.form.Address}} {
		if kv[1] != "" {
			v.Set(kv[0], kv[1])
		}
	}
	if q.limit != auditPageSize {
		v.Set("limit", strconv.Itoa(q.limit))
	}
	return v
}

// validName is the shape of an event or result: what audit.Filter
// accepts, bounded.
func validName(s string) bool {
	return len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == ""
}

// parseAuditQuery reads the audit page's query, naming the field of a
// bad value. Dates are whole days in UTC: since from its midnight, until
// to the end of its day.
func (f *Flow) parseAuditQuery(q url.Values) (auditQuery, string) {
	aq := auditQuery{limit: auditPageSize}
	text := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	aq.form = pages.AdminAudit{Since: text("since"), Until: text("until"), Event: text("event"), Result: text("result"),
		Member: text("member"), Actor: text("actor"), Address: text("address")}
	fm := &aq.form
	if fm.Event == "any" {
		fm.Event = ""
	}
	if fm.Result == "any" {
		fm.Result = ""
	}
	if fm.Since != "" {
		d, err := time.Parse(adminDay, fm.Since)
		if err != nil {
			return aq, "since"
		}
		aq.filter.Since = d
	}
	if fm.Until != "" {
		d, err := time.Parse(adminDay, fm.Until)
		if err != nil || d.Before(aq.filter.Since) {
			return aq, "until"
		}
		aq.filter.Until = d.AddDate(0, 0, 1)
	}
	if !validName(fm.Event) {
		return aq, "event"
	}
	if !validName(fm.Result) {
		return aq, "result"
	}
	aq.filter.Event, aq.filter.Result = fm.Event, fm.Result
	for _, v := range []struct {
		name string
		s    *string
	}{{"member", &fm.Member}, {"actor", &fm.Actor}} {
		if len(*v.s) > maxFilterText || !utf8.ValidString(*v.s) {
			return aq, v.name
		}
	}
	if fm.Member != "" {
		fm.Member = f.memberID(fm.Member)
	}
	aq.filter.Member, aq.filter.Actor = fm.Member, fm.Actor
	if fm.Address != "" {
		ip, err := netip.ParseAddr(fm.Address)
		if err != nil || ip.Zone() != "" {
			return aq, "address"
		}
		fm.Address = ip.String()
		aq.filter.IP = fm.Address
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return aq, "limit"
		}
		aq.limit = min(max(n, auditPageMin), auditPageMax)
	}
	aq.after = q.Get("after")
	if len(aq.after) > 4096 || !utf8.ValidString(aq.after) {
		return aq, "after"
	}
	return aq, ""
}

// syncTrail waits, briefly, for the audit records queued before this
// request to reach the trail.
func (f *Flow) syncTrail(p *request) {
	if p.backend == nil || p.backend.SyncTrail == nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.r.Context(), trailSyncWait)
	defer cancel()
	p.backend.SyncTrail(ctx)
}

// startAudit reads the audit page's query (and, for a download, its
// format) into the page's data and waits for the queued records. A bad
// value is answered on the page, naming it, and so is a trail not
// open; then done is true.
func (f *Flow) startAudit(p *request, download bool) (aq *auditQuery, format audit.Format, done bool, err error) {
	a := f.adminPage(p)
	parsed, bad := f.parseAuditQuery(p.r.URL.Query())
	aq = &parsed
	a.Audit = &aq.form // the page shows what the handler adds to it
	aq.form.Limit = aq.limit
	f.auditChoices(p.page, &aq.form)
	if download {
		var ferr error
		if format, ferr = audit.ParseFormat(p.r.URL.Query().Get("format")); ferr != nil && bad == "" {
			bad = "format"
		}
	}
	if bad != "" {
		p.page.Error = "audit_bad_" + bad
		return aq, format, true, f.render(p, http.StatusBadRequest, "admin_audit")
	}
	if p.backend == nil || p.backend.Trail == nil {
		return aq, format, true, f.unavailable(p, "audit trail", ErrNotReady)
	}
	f.syncTrail(p)
	return aq, format, false, nil
}

func (f *Flow) adminAuditPage(p *request) error {
	aq, _, done, err := f.startAudit(p, false)
	if done {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	page, err := p.backend.Trail.Query(ctx, aq.filter, aq.after, aq.limit)
	var fe *audit.FieldError
	if errors.As(err, &fe) {
		// The filter is checked above, so this is mostly a cursor the
		// trail did not give; the trail names the field either way.
		field := fe.Field
		if field == "ip" {
			field = "address"
		}
		p.page.Error = "audit_bad_" + field
		aq.form.First = f.auditURL(aq.values())
		return f.render(p, http.StatusBadRequest, "admin_audit")
	}
	if err != nil {
		return f.unavailable(p, "audit trail", err)
	}
	// Who read what of the trail, every page of it: the filter, how much
	// the page found, and whether it went on from a cursor (which the
	// request brings, so a hand-made one is audited as any other).
	fields := append(aq.auditFields(), zap.Int("found", len(page.Records)))
	if aq.after != "" {
		fields = append(fields, zap.Bool("paged", true))
	}
	p.e.AuditRead(ctx, p.adminActor(), "admin_audit_searched", aq.filter.Member, fields...)
	aq.form.Records = f.auditRecords(p.page, page.Records)
	if page.Next != "" {
		v := aq.values()
		v.Set("after", page.Next)
		aq.form.Next = f.auditURL(v)
	}
	if aq.after != "" {
		aq.form.First = f.auditURL(aq.values())
	}
	v := aq.values()
	v.Del("limit")
	v.Set("format", string(audit.JSONL))
	aq.form.DownloadJSONL = f.cfg.Prefix + "admin/audit/export?" + v.Encode()
	v.Set("format", string(audit.CSV))
	aq.form.DownloadCSV = f.cfg.Prefix + "admin/audit/export?" + v.Encode()
	return f.render(p, http.StatusOK, "admin_audit")
}

// auditFields are the filter of a read of the trail, for its own audit
// record. Named filter_*, as actor and ip are the record's own fields.
func (q *auditQuery) auditFields() []zap.Field {
	var fields []zap.Field
	for _, kv := range [][2]string{{"filter_since", q.form.Since}, {"filter_until", q.form.Until},
		{"filter_event", q.form.Event}, {"filter_result", q.form.Result}, {"filter_actor", q.form.Actor},
		{"filter_ip", q.form.Address}} {
		if kv[1] != "" {
			fields = append(fields, zap.String(kv[0], kv[1]))
		}
	}
	return fields
}

// countingWriter counts what reached the response.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// adminAuditExport downloads what the audit page's filter selects, every
// record of it, oldest first, as JSON Lines or CSV (audit.Trail.Export:
// CSV cells guarded against spreadsheet formulas). Audited with the
// filter and the count.
//
// A GET, so it carries no form token: a request another site's page
// started (Sec-Fetch-Site: cross-site, which pages cannot forge) is
// refused, so that page cannot make an admin's browser read the whole
// trail. Same-origin, same-site, none (typed, bookmarked) and no header
// (older browsers) are served.
func (f *Flow) adminAuditExport(p *request) error {
	if p.r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		p.e.Audit(f.actor(p.r, p.id.ID), "csrf_refused", "refused", zap.String("page", "admin/audit/export"),
			zap.String("sec_fetch_site", "cross-site"))
		return f.message(p.w, p.r, http.StatusForbidden, "title_forbidden", "forbidden", nil, "")
	}
	aq, format, done, err := f.startAudit(p, true)
	if done {
		return err
	}
	// No timeout of its own: an export reads the whole trail, and ends
	// when the admin's browser goes away.
	ctx := p.r.Context()
	h := p.w.Header()
	h.Set("Content-Type", format.ContentType())
	h.Set("Content-Disposition", `attachment; filename="`+format.FileName(clock.Now())+`"`)
	cw := &countingWriter{w: p.w}
	n, err := p.backend.Trail.Export(ctx, aq.filter, format, cw)
	fields := append(aq.auditFields(), zap.String("format", string(format)), zap.Int("count", n))
	if err != nil {
		p.e.AuditRead(context.WithoutCancel(ctx), p.adminActor(), "admin_audit_export", aq.filter.Member,
			append(fields, zap.Bool("complete", false))...)
		if cw.n == 0 {
			h.Del("Content-Disposition")
			return f.unavailable(p, "audit export", err)
		}
		// Part of the file is sent: break the connection, so the browser
		// reports a failed download instead of keeping a short file that
		// looks whole.
		f.logger.Error("audit export broken off", zap.Int("records", n), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	p.e.AuditRead(ctx, p.adminActor(), "admin_audit_export", aq.filter.Member, fields...)
	return nil
}

// auditURL is the audit page with query v.
func (f *Flow) auditURL(v url.Values) string {
	if len(v) == 0 {
		return f.cfg.Prefix + "admin/audit"
	}
	return f.cfg.Prefix + "admin/audit?" + v.Encode()
}

// auditChoices fills the selects' options in the page's language, with
// an event or result the filter names that the list does not know.
func (f *Flow) auditChoices(pg *pages.Page, fm *pages.AdminAudit) {
	choices := func(names []string, prefix, current string) []pages.AuditChoice {
		out := []pages.AuditChoice{{Value: "", Label: pg.T("audit_any")}}
		if current != "" && !slices.Contains(names, current) && validName(current) {
			names = append(slices.Clip(names), current)
		}
		for _, n := range names {
			out = append(out, pages.AuditChoice{Value: n, Label: label(pg, prefix+n, n)})
		}
		return out
	}
	fm.Events = choices(auditEvents, "audit_event_", fm.Event)
	fm.Results = choices(auditResults, "audit_result_", fm.Result)
}

// label is the catalog's text for key, or raw when the catalog has none.
func label(pg *pages.Page, key, raw string) string {
	if s := pg.T(key); s != key {
		return s
	}
	return raw
}

// auditRecords turns trail entries into table rows.
func (f *Flow) auditRecords(pg *pages.Page, entries []audit.Entry) []pages.AuditRecord {
	out := make([]pages.AuditRecord, 0, len(entries))
	for _, e := range entries {
		r := e.Record
		row := pages.AuditRecord{
			Time: r.Time.UTC().Format("2006-01-02 15:04:05"), Event: label(pg, "audit_event_"+r.Event, r.Event), EventName: r.Event,
			Result: label(pg, "audit_result_"+r.Result, r.Result), Failure: slices.Contains(failedResults, r.Result),
			Member: r.Member, Actor: r.Actor, IP: r.IP, Browser: r.Browser, Details: detailPairs(r.Details),
		}
		if r.Method != "" {
			row.Method = label(pg, "method_name_"+r.Method, r.Method)
		}
		if r.Member != "" {
			row.MemberURL = f.memberURL(r.Member)
		}
		if r.Actor != "" {
			row.ActorURL = f.auditURL(url.Values{"actor": {r.Actor}})
		}
		out = append(out, row)
	}
	return out
}

// memberTrail fills the member page's section: the member's latest
// records, without admins' reading of them.
func (f *Flow) memberTrail(p *request, m *pages.AdminMemberDetail) error {
	kept, err := f.latestRecords(p, audit.Filter{Member: m.ID}, memberTrailSize, func(r audit.Record) bool {
		return !slices.Contains(auditReads, r.Event)
	})
	if err != nil || kept == nil {
		return err
	}
	m.Trail = f.auditRecords(p.page, kept)
	m.TrailURL = f.auditURL(url.Values{"member": {m.ID}})
	return nil
}

// latestRecords reads the newest n records that filter selects and keep
// keeps, within memberTrailReads queries: nil when there is no trail.
func (f *Flow) latestRecords(p *request, filter audit.Filter, n int, keep func(audit.Record) bool) ([]audit.Entry, error) {
	if p.backend == nil || p.backend.Trail == nil {
		return nil, nil
	}
	f.syncTrail(p)
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	kept := []audit.Entry{}
	after := ""
	for range memberTrailReads {
		page, err := p.backend.Trail.Query(ctx, filter, after, 5*n)
		if err != nil {
			return nil, err
		}
		for _, e := range page.Records {
			if len(kept) < n && keep(e.Record) {
				kept = append(kept, e)
			}
		}
		if after = page.Next; after == "" || len(kept) == n {
			break
		}
	}
	return kept, nil
}

// detailPairs are a record's details sorted by key, as audit.DetailsText
// writes them, for the page to lay out: a pair's value may start a line,
// and a time in it stays whole.
func detailPairs(d map[string]string) []pages.DetailPair {
	out := make([]pages.DetailPair, 0, len(d))
	for _, k := range slices.Sorted(maps.Keys(d)) {
		out = append(out, pages.DetailPair{Key: k, Value: pages.KeepTogether(d[k])})
	}
	return out
}
