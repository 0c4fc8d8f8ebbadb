package twofactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
)

// The audit trail on the admin API and the CLI: GET /two-factor/audit
// (a page of records, newest first), /two-factor/audit/export (every
// matching record, oldest first, as a download) and /two-factor/audit/verify
// (each instance's chain checked). Each first waits for the records queued
// before it, so the operator sees the events that led to the request.

// auditSyncWait bounds the wait for the queued records before a query,
// export or verify.
const auditSyncWait = 5 * time.Second

// defaultAuditLimit is a page of GET /two-factor/audit without limit.
const defaultAuditLimit = 100

// auditRecordsTrailer is the HTTP trailer that ends a complete export with
// its count: an export cut short has none.
const auditRecordsTrailer = "Two-Factor-Records"

// auditFilterParams are the query parameters of the filter; the routes
// refuse any other, so a misspelt filter is named rather than ignored.
var auditFilterParams = []string{"since", "until", "event", "member", "actor", "ip", "result"}

// auditFilter reads the filter from q, refusing an unknown or bad
// parameter by its name. A member is folded as the handlers fold IDs.
func auditFilter(app *App, q url.Values, more ...string) (audit.Filter, error) {
	var f audit.Filter
	known := map[string]bool{}
	for _, p := range append(append([]string{}, auditFilterParams...), more...) {
		known[p] = true
	}
	for p, v := range q {
		switch {
		case !known[p]:
			return f, badField(p, "unknown parameter; the filters are "+strings.Join(auditFilterParams, ", "))
		case len(v) > 1:
			return f, badField(p, "given more than once")
		case len(v[0]) > maxIdentityLength:
			return f, badField(p, fmt.Sprintf("longer than %d bytes", maxIdentityLength))
		}
	}
	var err error
	if f.Since, err = auditTime(q.Get("since"), false); err != nil {
		return f, badField("since", err.Error())
	}
	if f.Until, err = auditTime(q.Get("until"), true); err != nil {
		return f, badField("until", err.Error())
	}
	f.Event, f.Actor, f.IP, f.Result = q.Get("event"), q.Get("actor"), q.Get("ip"), q.Get("result")
	if m := q.Get("member"); m != "" {
		f.Member = app.memberID(m)
	}
	return f, nil
}

// auditTime reads a time as RFC 3339 or a UTC date (YYYY-MM-DD): a date
// starts at its midnight as since and ends at the next as until, so
// since 2026-12-01 until 2026-12-05 takes in the whole fifth.
func auditTime(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a date (2026-12-05) or a time (2026-12-05T15:00:00Z)", s)
	}
	if end {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

// auditAPIError answers a refusal of the trail naming its field, else as
// the store's trouble.
func auditAPIError(err error) error {
	var fe *audit.FieldError
	if errors.As(err, &fe) {
		return badField(fe.Field, fe.Problem)
	}
	return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
}

// auditTrail is the running trail, once what was queued before is in it.
func auditTrail(r *http.Request, app *App) (*audit.Trail, error) {
	b := app.trusted()
	if b == nil || b.Trail == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable,
			Err: errors.New("two_factor: the store is unavailable or its data cannot be trusted; see Caddy's log")}
	}
	// Bounded: with the store down the queue does not drain, and the
	// request then answers with what the trail holds, or the store's
	// error.
	ctx, cancel := context.WithTimeout(r.Context(), auditSyncWait)
	defer cancel()
	app.trailW.Sync(ctx)
	return b.Trail, nil
}

// auditByEndpoint records a use of the trail through the admin endpoint
// (which has no admin_ip); member is the member filtered on, if any.
func auditByEndpoint(engine *challenge.Engine, event, result, member string, fields ...zap.Field) {
	engine.Audit(challenge.Actor{User: member}, event, result, append([]zap.Field{zap.String("actor", adminActor)}, fields...)...)
}

// filterFields are a filter's fields for the audit trail, the set ones.
func filterFields(f audit.Filter) []zap.Field {
	var out []zap.Field
	for _, t := range []struct {
		k string
		v time.Time
	}{{"filter_since", f.Since}, {"filter_until", f.Until}} {
		if !t.v.IsZero() {
			out = append(out, zap.String(t.k, t.v.Format(time.RFC3339)))
		}
	}
	for _, s := range []struct{ k, v string }{{"filter_event", f.Event}, {"filter_actor", f.Actor}, {"filter_ip", f.IP}, {"filter_result", f.Result}} {
		if s.v != "" {
			out = append(out, zap.String(s.k, s.v))
		}
	}
	return out
}

// AuditResponse is the answer of GET /two-factor/audit.
type AuditResponse struct {
	// Records are the page's records, newest first.
	Records []audit.Entry `json:"records"`
	// Next is the after of the following page; "" at the end. A page may
	// hold fewer than limit records, even none, and still have a next.
	Next string `json:"next,omitempty"`
}

// handleAudit answers a page of the trail: the filters, after= (the next
// of the page before) and limit= (1 to 1000, default 100).
func (a *AdminAPI) handleAudit(w http.ResponseWriter, r *http.Request, app *App, _ *challenge.Engine) error {
	q := r.URL.Query()
	f, err := auditFilter(app, q, "after", "limit")
	if err != nil {
		return err
	}
	limit := defaultAuditLimit
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > audit.MaxLimit {
			return badField("limit", fmt.Sprintf("%q: want a number from 1 to %d", s, audit.MaxLimit))
		}
	}
	trail, err := auditTrail(r, app)
	if err != nil {
		return err
	}
	page, err := trail.Query(r.Context(), f, q.Get("after"), limit)
	if err != nil {
		return auditAPIError(err)
	}
	if page.Records == nil {
		page.Records = []audit.Entry{}
	}
	return writeJSON(w, AuditResponse{Records: page.Records, Next: page.Next})
}

// handleAuditExport streams every matching record as a download in
// format= (jsonl, the default, or csv), audited with the filter and the
// count. A complete export ends with the count in a trailer; one that
// fails once begun is cut off, so it cannot pass for complete.
func (a *AdminAPI) handleAuditExport(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	q := r.URL.Query()
	format, err := audit.ParseFormat(q.Get("format"))
	if err != nil {
		return auditAPIError(err)
	}
	f, err := auditFilter(app, q, "format")
	if err != nil {
		return err
	}
	trail, err := auditTrail(r, app)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", format.ContentType())
	h.Set("Content-Disposition", `attachment; filename="`+format.FileName(clock.Now())+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", auditRecordsTrailer)
	out := &startedWriter{w: w}
	n, err := trail.Export(r.Context(), f, format, out)
	fields := append(filterFields(f), zap.String("format", string(format)), zap.Int("records", n))
	if err != nil {
		auditByEndpoint(engine, "admin_audit_export", "error", f.Member, append(fields, zap.Error(err))...)
		if !out.started {
			for _, k := range []string{"Content-Type", "Content-Disposition", "Trailer"} {
				h.Del(k)
			}
			return auditAPIError(err)
		}
		app.logger.Error("audit export cut short", zap.Int("records", n), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	auditByEndpoint(engine, "admin_audit_export", "success", f.Member, fields...)
	h.Set(auditRecordsTrailer, strconv.Itoa(n))
	return nil
}

// startedWriter notes whether anything was written.
type startedWriter struct {
	w       io.Writer
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	s.started = true
	return s.w.Write(p)
}

// AuditVerifyResponse is the answer of GET /two-factor/audit/verify.
type AuditVerifyResponse struct {
	Instances []AuditVerifyInstance `json:"instances"`
	// Intact is true when no chain checked has a problem.
	Intact bool `json:"intact"`
}

// AuditVerifyInstance is what verifying one instance's chain found.
type AuditVerifyInstance struct {
	Instance string `json:"instance"`
	// Checked counts the records found sound, oldest first.
	Checked int `json:"checked"`
	// Problem is "" when intact, else altered, inserted or missing.
	Problem string `json:"problem"`
	// FirstBad is the ID of the first record at fault ("" when the
	// newest are missing).
	FirstBad string `json:"first_bad"`
}

// handleAuditVerify checks every instance's chain, or instance='s,
// audited with the outcome (result failure when a chain is broken).
func (a *AdminAPI) handleAuditVerify(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	q := r.URL.Query()
	for p := range q {
		if p != "instance" {
			return badField(p, "unknown parameter; give instance or nothing")
		}
	}
	trail, err := auditTrail(r, app)
	if err != nil {
		return err
	}
	insts, err := trail.Instances(r.Context())
	if err != nil {
		return auditAPIError(err)
	}
	if q.Has("instance") {
		want := q.Get("instance")
		found := false
		for _, i := range insts {
			found = found || i == want
		}
		if !found {
			return caddy.APIError{HTTPStatus: http.StatusNotFound,
				Err: &challenge.InputError{Field: "instance", Problem: fmt.Sprintf("%q has no records in the trail; instances: %s", want, strings.Join(insts, ", "))}}
		}
		insts = []string{want}
	}
	res := AuditVerifyResponse{Instances: []AuditVerifyInstance{}, Intact: true}
	checked := 0
	var broken []string
	for _, inst := range insts {
		v, err := trail.Verify(r.Context(), inst)
		if err != nil {
			auditByEndpoint(engine, "admin_audit_verify", "error", "", zap.String("instance", inst), zap.Error(err))
			return auditAPIError(err)
		}
		res.Instances = append(res.Instances, AuditVerifyInstance{Instance: inst, Checked: v.Checked, Problem: v.Problem, FirstBad: v.FirstBad})
		checked += v.Checked
		if v.Problem != "" {
			res.Intact = false
			broken = append(broken, inst+": "+v.Problem+" at "+dash(v.FirstBad))
		}
	}
	result := "success"
	fields := []zap.Field{zap.Int("instances", len(insts)), zap.Int("checked", checked)}
	if !res.Intact {
		result = "failure"
		fields = append(fields, zap.String("broken", strings.Join(broken, "; ")))
		app.logger.Error("audit trail: a chain is broken: records were altered, inserted or removed in the store", zap.Strings("instances", broken))
	}
	auditByEndpoint(engine, "admin_audit_verify", result, "", fields...)
	return writeJSON(w, res)
}

// auditCommand is `caddy two-factor audit query|export|verify`.
func auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Queries, exports and verifies the durable audit trail",
	}
	filterFlags := func(c *cobra.Command) *cobra.Command {
		c.Flags().String("since", "", "From this time on (2026-12-05, or 2026-12-05T15:00:00Z)")
		c.Flags().String("until", "", "Before this time (a date: through its end)")
		c.Flags().String("event", "", "Only this event, such as verify or admin_reset")
		c.Flags().String("member", "", "Only records about this member")
		c.Flags().String("actor", "", `Only records of this actor, such as an admin's ID or "admin endpoint"`)
		c.Flags().String("ip", "", "Only records from this client address")
		c.Flags().String("result", "", "Only records with this result, such as success or failure")
		return c
	}
	query := filterFlags(adminCommand(&cobra.Command{
		Use:   "query [--since T] [--until T] [--event E] [--member M] [--actor A] [--ip IP] [--result R] [--limit N]",
		Short: "Shows the trail's records, newest first",
		Long: `
Shows the records of the durable audit trail, newest first across every
instance, as a table: up to --limit records (default 100), following the
API's pages. Filters combine. Times are RFC 3339 or dates (UTC); a date as
--until takes in the whole day.
`,
		Args: cobra.NoArgs,
	}, cmdAuditQuery))
	query.Flags().Int("limit", defaultAuditLimit, "At most this many records")
	cmd.AddCommand(query)
	export := filterFlags(adminCommand(&cobra.Command{
		Use:   "export [--since T] [--until T] [--format jsonl|csv] [--output FILE] [filters]",
		Short: "Writes every matching record, oldest first, as JSON Lines or CSV",
		Long: `
Writes every record of the durable audit trail that matches the filters,
oldest first, as JSON Lines (the default: one record a line, with its
entry's id) or CSV (a header row; cells that a spreadsheet would run as a
formula start with an apostrophe). The export is recorded in the trail.

To standard output by default; --output writes FILE (mode 0600) only once
the export is complete. An export cut short exits 1.
`,
		Args: cobra.NoArgs,
	}, cmdAuditExport))
	export.Flags().String("format", "jsonl", "jsonl or csv")
	export.Flags().StringP("output", "o", "", "Write to this file (mode 0600) instead of standard output")
	cmd.AddCommand(export)
	verify := adminCommand(&cobra.Command{
		Use:   "verify [--instance NAME]",
		Short: "Checks every instance's hash chain for altered, inserted or missing records",
		Long: `
Walks each instance's log of the trail oldest first and checks its keyed
hash chain: it reports the first record altered, inserted or missing in
the store. Exit status: 0 every chain intact, 3 a chain is broken (the
store was written to behind the gateway's back), 1 the check could not
be made, 2 refused as invalid.
`,
		Args: cobra.NoArgs,
	}, cmdAuditVerify)
	verify.Flags().String("instance", "", "Check only this instance's chain")
	cmd.AddCommand(verify)
	return cmd
}

// auditQueryValues are the filter flags as the API's query parameters.
func auditQueryValues(fl caddycmd.Flags) url.Values {
	q := url.Values{}
	for _, p := range auditFilterParams {
		if v := fl.String(p); v != "" {
			q.Set(p, v)
		}
	}
	return q
}

func cmdAuditQuery(fl caddycmd.Flags) (int, error) {
	want := fl.Int("limit")
	if want < 1 {
		return failed(fl, exitInvalid, fmt.Errorf("limit: %d, want 1 or more", want))
	}
	q := auditQueryValues(fl)
	var all AuditResponse
	all.Records = []audit.Entry{}
	for {
		q.Set("limit", strconv.Itoa(min(want-len(all.Records), audit.MaxLimit)))
		var page AuditResponse
		resp, code, err := adminRequest(fl, http.MethodGet, "/two-factor/audit?"+q.Encode(), nil)
		if err != nil {
			return failed(fl, code, err)
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return failed(fl, exitFailed, fmt.Errorf("the answer is not what this command expects (is the instance the same version?): %v", err))
		}
		all.Records = append(all.Records, page.Records...)
		all.Next = page.Next
		if page.Next == "" || len(all.Records) >= want {
			break
		}
		q.Set("after", page.Next)
	}
	if fl.Bool("json") {
		return exitOK, json.NewEncoder(os.Stdout).Encode(all)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tRESULT\tMEMBER\tACTOR\tADDRESS\tMETHOD\tBROWSER\tINSTANCE\tDETAILS")
	for _, e := range all.Records {
		r := e.Record
		cells := []string{r.Time.UTC().Format("2006-01-02 15:04:05Z"), r.Event, r.Result, r.Member, r.Actor, r.IP, r.Method,
			r.Browser, r.Instance, audit.DetailsText(r.Details, ";")}
		for i, c := range cells {
			cells[i] = dash(terminalSafe(c))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	if len(all.Records) == 0 {
		fmt.Println("No records match.")
	}
	return exitOK, nil
}

// terminalSafe keeps what a record holds (a member ID, a browser) from
// writing control sequences to the operator's terminal or breaking the
// table: control characters and tabs are shown escaped.
func terminalSafe(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

func cmdAuditExport(fl caddycmd.Flags) (int, error) {
	format, err := audit.ParseFormat(fl.String("format"))
	if err != nil {
		return failed(fl, exitInvalid, fmt.Errorf("format: %q: want jsonl or csv", fl.String("format")))
	}
	q := auditQueryValues(fl)
	q.Set("format", string(format))
	path := fl.String("output")
	resp, out, code, err := download(fl, "/two-factor/audit/export?"+q.Encode(), path, ".two-factor-audit-*")
	if err != nil {
		return failed(fl, code, err)
	}
	defer resp.Body.Close()
	defer out.discard()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return failed(fl, exitFailed, fmt.Errorf("export: reading the records: %v (the export is incomplete)", err))
	}
	n, err := strconv.Atoi(resp.Trailer.Get(auditRecordsTrailer))
	if err != nil {
		return failed(fl, exitFailed, errors.New("export: the export is incomplete (it has no count at its end): the connection ended early"))
	}
	if path == "" {
		fmt.Fprintf(os.Stderr, "Exported %d audit records.\n", n)
		return exitOK, nil
	}
	if err := out.commit(); err != nil {
		return failed(fl, exitFailed, err)
	}
	if fl.Bool("json") {
		return exitOK, json.NewEncoder(os.Stdout).Encode(map[string]any{"file": path, "records": n, "format": format})
	}
	fmt.Printf("Exported %d audit records to %s.\n", n, path)
	return exitOK, nil
}

func cmdAuditVerify(fl caddycmd.Flags) (int, error) {
	q := url.Values{}
	if fl.Changed("instance") {
		q.Set("instance", fl.String("instance"))
	}
	var res AuditVerifyResponse
	uri := "/two-factor/audit/verify"
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	if code, err := callAdmin(fl, http.MethodGet, uri, nil, &res); err != nil {
		return code, err
	}
	if !fl.Bool("json") {
		for _, i := range res.Instances {
			name := terminalSafe(i.Instance)
			switch {
			case i.Problem == "":
				fmt.Printf("%s: intact, %d records checked.\n", name, i.Checked)
			case i.FirstBad == "":
				fmt.Printf("%s: BROKEN: %s: the newest records are gone, after %d sound ones.\n", name, i.Problem, i.Checked)
			default:
				fmt.Printf("%s: BROKEN: %s record at %s, after %d sound ones.\n", name, i.Problem, i.FirstBad, i.Checked)
			}
		}
		if len(res.Instances) == 0 {
			fmt.Println("The trail has no records yet.")
		}
	}
	if !res.Intact {
		return exitTampered, errors.New("audit trail: a chain is broken: records were altered, inserted or removed in the store")
	}
	return exitOK, nil
}
