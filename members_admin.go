package twofactor

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
)

// Members on the admin API and the CLI: who is enrolled and who is not,
// one member's detail, and a member site's list reconciled against both.

// defaultMembersLimit is a page of the member list when limit is not given.
const defaultMembersLimit = 50

// maxReconcileBody bounds a reconcile body: MaxReconcile IDs of up to
// maxIdentityLength bytes, quoted.
const maxReconcileBody = challenge.MaxReconcile * (maxIdentityLength + 4)

// MembersResponse is the answer of GET /two-factor/members.
type MembersResponse struct {
	challenge.MembersPage
	// Counts is on the first page only (no after): the sizes of the
	// member list's indexes, a few store round trips.
	Counts *challenge.MemberCounts `json:"counts,omitempty"`
}

// handleMembers lists members, or with ?id= shows one: a query, not a path
// segment, so that no member ID can read as another route (an ID may be
// "unlock", or hold a slash). The list takes enrolled=true|false,
// locked=true, method=totp|email|sms, q= (an ID prefix, or an email
// address), order=id|last_seen, after= (the next of the page before) and
// limit= (1 to 1000, default 50).
func (a *AdminAPI) handleMembers(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	q := r.URL.Query()
	// Members this instance saw a moment ago are listed too.
	app.seen.flush(r.Context())
	if q.Has("id") {
		engine.AuditRead(r.Context(), adminActor, "admin_member_viewed", app.memberID(q.Get("id")))
		d, err := engine.Member(r.Context(), app.memberID(q.Get("id")))
		if errors.Is(err, challenge.ErrNoMember) {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("id: %q has not been seen and has no record", q.Get("id"))}
		}
		if err != nil {
			return apiError(err)
		}
		return writeJSON(w, d)
	}
	limit, filter, err := membersQuery(q)
	if err != nil {
		return err
	}
	if filter.Search != "" && !strings.Contains(filter.Search, "@") {
		filter.Search = app.memberID(filter.Search) // an ID prefix, folded as IDs are
	}
	page, err := engine.Members(r.Context(), q.Get("after"), limit, filter)
	if err != nil {
		return apiError(err)
	}
	if filter.Search != "" && q.Get("after") == "" {
		engine.AuditRead(r.Context(), adminActor, "admin_members_searched", "",
			zap.Bool("by_email", strings.Contains(filter.Search, "@")), zap.Int("found", len(page.Members)))
	}
	res := MembersResponse{MembersPage: page}
	if q.Get("after") == "" {
		c, err := engine.CountMembers(r.Context())
		if err != nil {
			return apiError(err)
		}
		res.Counts = &c
	}
	return writeJSON(w, res)
}

// membersQuery reads the list's query parameters, refusing a bad one by
// its name.
func membersQuery(q url.Values) (int, challenge.MembersFilter, error) {
	var filter challenge.MembersFilter
	limit := defaultMembersLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, filter, badField("limit", "must be a number")
		}
		if n < 1 || n > challenge.MaxMembersPage {
			return 0, filter, badField("limit", fmt.Sprintf("from 1 to %d", challenge.MaxMembersPage))
		}
		limit = n
	}
	switch s := q.Get("enrolled"); s {
	case "":
	case "true", "false":
		b := s == "true"
		filter.Enrolled = &b
	default:
		return 0, filter, badField("enrolled", "true or false")
	}
	switch q.Get("locked") {
	case "":
	case "true":
		filter.Locked = true
	default:
		return 0, filter, badField("locked", "true, or leave it out")
	}
	switch m := q.Get("method"); m {
	case "", challenge.MethodWebAuthn, challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS:
		filter.Method = m
	default:
		return 0, filter, badField("method", "webauthn, totp, email or sms")
	}
	switch o := q.Get("order"); o {
	case "", challenge.OrderID, challenge.OrderLastSeen:
		filter.Order = o
	default:
		return 0, filter, badField("order", "id or last_seen")
	}
	filter.Search = strings.TrimSpace(q.Get("q"))
	if len(filter.Search) > challenge.MaxSearch {
		return 0, filter, badField("q", fmt.Sprintf("at most %d bytes: an ID prefix or an email address", challenge.MaxSearch))
	}
	return limit, filter, nil
}

// ReconcileRequest is the body of POST /two-factor/members/reconcile.
type ReconcileRequest struct {
	Members []string `json:"members"`
}

func (a *AdminAPI) handleReconcile(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	var req ReconcileRequest
	if err := decodeBodyUpTo(r, &req, maxReconcileBody); err != nil {
		return err
	}
	if req.Members == nil {
		return badField("members", "required: a list of member IDs")
	}
	app.seen.flush(r.Context())
	// Folded as the handlers fold them, answered as given: "Alice" in the
	// member site's list is the member stored as "alice".
	res, err := engine.Reconcile(r.Context(), req.Members, app.idFolder())
	if err != nil {
		return apiError(err)
	}
	engine.AuditRead(r.Context(), adminActor, "admin_reconcile", "", zap.Int("ids", len(req.Members)),
		zap.Int("enrolled", len(res.Enrolled)), zap.Int("seen_not_enrolled", len(res.SeenNotEnrolled)), zap.Int("never_seen", len(res.NeverSeen)))
	return writeJSON(w, res)
}

// membersCommand is `caddy two-factor members list|show|reconcile`.
func membersCommand() *cobra.Command {
	members := &cobra.Command{
		Use:   "members",
		Short: "Lists members, enrolled or not, shows one, reconciles a list",
	}
	list := adminCommand(&cobra.Command{
		Use:   "list [--enrolled|--not-enrolled] [--locked] [--method totp|email|sms] [--search <id prefix|email>] [--order id|last_seen] [--limit N] [--after <next>]",
		Short: "Lists members seen on a protected path or enrolled, filtered and ordered",
		Long: `
Lists the members the gateway has seen on a protected path (each instance
notes a member once a day) or that have a record, with their methods,
recovery codes left, remembered devices, lockout and when they were first
and last seen. Filters combine: --enrolled or --not-enrolled, --locked
(locked out now, listed by the end of the lockout), --method, and
--search (members whose ID starts with it, or with an @, the member
enrolled with or last seen with that email address). --order last_seen
lists the most recently seen first. The first page starts with counts:
members, seen, enrolled, not enrolled, locked now, and by method. The next
page: --after <the value given after "More:">.
`,
		Args: cobra.NoArgs,
	}, cmdMembersList)
	list.Flags().Bool("enrolled", false, "Only members with a second factor")
	list.Flags().Bool("not-enrolled", false, "Only members without one")
	list.Flags().Bool("locked", false, "Only members locked out now")
	list.Flags().String("method", "", "Only members with this method: webauthn, totp, email or sms")
	list.Flags().String("search", "", "An ID prefix, or an email address")
	list.Flags().String("order", "", "id (the default) or last_seen (most recent first)")
	list.Flags().Int("limit", defaultMembersLimit, "Members per page (at most 1000)")
	list.Flags().String("after", "", "Start after this (the More: of the page before)")
	members.AddCommand(list)
	members.AddCommand(adminCommand(&cobra.Command{
		Use:   "show <id>",
		Short: "Shows one member's methods, recovery codes, devices, lockout and recent activity",
		Args:  cobra.ExactArgs(1),
	}, cmdMembersShow))
	members.AddCommand(adminCommand(&cobra.Command{
		Use:   "reconcile <file>",
		Short: "Sorts the member IDs in file (one a line) into enrolled, seen not enrolled, never seen",
		Long: fmt.Sprintf(`
Reads member IDs from file, one a line (blank lines skipped; - reads standard
input), at most %d, and sorts them into: enrolled; seen on a protected path
(or with a record) but not enrolled; never seen.
`, challenge.MaxReconcile),
		Args: cobra.ExactArgs(1),
	}, cmdMembersReconcile))
	return members
}

func cmdMembersList(fl caddycmd.Flags) (int, error) {
	q := url.Values{"limit": {strconv.Itoa(fl.Int("limit"))}}
	switch {
	case fl.Bool("enrolled") && fl.Bool("not-enrolled"):
		return exitInvalid, errors.New("--enrolled and --not-enrolled: give one or neither")
	case fl.Bool("enrolled"):
		q.Set("enrolled", "true")
	case fl.Bool("not-enrolled"):
		q.Set("enrolled", "false")
	}
	if fl.Bool("locked") {
		q.Set("locked", "true")
	}
	for flag, param := range map[string]string{"after": "after", "method": "method", "search": "q", "order": "order"} {
		if v := fl.String(flag); v != "" {
			q.Set(param, v)
		}
	}
	var res MembersResponse
	if code, err := callAdmin(fl, http.MethodGet, "/two-factor/members?"+q.Encode(), nil, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	if c := res.Counts; c != nil {
		fmt.Printf("Members: %d; seen: %d; enrolled: %d; not enrolled: %d; locked: %d; by method: %s\n\n",
			c.Members, c.Seen, c.Enrolled, c.NotEnrolled, c.Locked, byMethod(c.ByMethod))
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENROLLED\tMETHODS\tRECOVERY\tDEVICES\tLOCKED UNTIL\tFIRST SEEN\tLAST SEEN\tREQUIRED")
	for _, m := range res.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", m.ID, yesNo(m.Enrolled), dash(strings.Join(m.Methods, ",")),
			m.RecoveryLeft, m.Devices, when(m.LockedUntil), day(m.FirstSeen), day(m.LastSeen), requiredFrom(m.Deadlines))
	}
	tw.Flush()
	if res.Next != "" {
		fmt.Printf("\nMore: --after %s\n", res.Next)
	}
	return exitOK, nil
}

func cmdMembersShow(fl caddycmd.Flags) (int, error) {
	var d challenge.MemberDetail
	if code, err := callAdmin(fl, http.MethodGet, "/two-factor/members?"+url.Values{"id": {fl.Arg(0)}}.Encode(), nil, &d); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Member:        %s\n", d.ID)
	fmt.Printf("Enrolled:      %s\n", yesNo(d.Enrolled))
	fmt.Printf("First seen:    %s\nLast seen:     %s\n", day(d.FirstSeen), day(d.LastSeen))
	fmt.Printf("Locked until:  %s\n", when(d.LockedUntil))
	for _, dl := range d.Deadlines {
		fmt.Printf("Required:      %s (%s)\n", requiredFrom([]challenge.MemberDeadline{dl}), strings.Join(dl.Paths, " "))
	}
	fmt.Printf("Recovery left: %d\n", d.RecoveryLeft)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	if len(d.MethodDetails) > 0 {
		fmt.Fprintln(tw, "\nMETHOD\tDESTINATION\tADDED\tLAST USED")
		for _, m := range d.MethodDetails {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Method, dash(m.Destination), day(&m.Added), day(m.LastUsed))
		}
	}
	if len(d.Credentials) > 0 {
		// The full ID: remove-passkey takes it.
		fmt.Fprintln(tw, "\nPASSKEY\tNAME\tADDED\tLAST USED\tAAGUID\tSYNCED")
		for _, c := range d.Credentials {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, day(&c.Added), day(c.LastUsed), dash(c.AAGUID), synced(c))
		}
	}
	if len(d.DeviceList) > 0 {
		fmt.Fprintln(tw, "\nDEVICE\tREMEMBERED\tUNTIL\tADDRESS")
		for _, dv := range d.DeviceList {
			fmt.Fprintf(tw, "%.8s\t%s\t%s\t%s\n", dv.ID, day(&dv.Created), day(&dv.Expires), dash(dv.IP))
		}
	}
	if len(d.Networks) > 0 {
		fmt.Fprintln(tw, "\nNETWORK\tLAST PASSED")
		for _, n := range d.Networks {
			fmt.Fprintf(tw, "%s\t%s\n", n.Range, when(&n.Last))
		}
	}
	if len(d.Activity) > 0 {
		fmt.Fprintln(tw, "\nWHEN\tEVENT\tRESULT\tMETHOD\tADDRESS")
		for _, a := range d.Activity {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", when(&a.Time), a.Event, a.Result, dash(a.Method), dash(a.IP))
		}
	}
	tw.Flush()
	return exitOK, nil
}

func cmdMembersReconcile(fl caddycmd.Flags) (int, error) {
	f := os.Stdin
	if name := fl.Arg(0); name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return exitInvalid, err
		}
		defer f.Close()
	}
	var req ReconcileRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			req.Members = append(req.Members, id)
		}
	}
	if err := sc.Err(); err != nil {
		return exitInvalid, fmt.Errorf("reading %s: %v", fl.Arg(0), err)
	}
	if req.Members == nil {
		req.Members = []string{}
	}
	var res challenge.Reconciliation
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/members/reconcile", req, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Enrolled:           %d\n", len(res.Enrolled))
	fmt.Printf("Seen, not enrolled: %d\n", len(res.SeenNotEnrolled))
	for _, id := range res.SeenNotEnrolled {
		fmt.Printf("  %s\n", id)
	}
	fmt.Printf("Never seen:         %d\n", len(res.NeverSeen))
	for _, id := range res.NeverSeen {
		fmt.Printf("  %s\n", id)
	}
	return exitOK, nil
}

// synced says whether a passkey is synced between devices.
func synced(c challenge.CredentialDetail) string {
	switch {
	case c.BackedUp:
		return "yes"
	case c.BackupEligible:
		return "can be"
	}
	return "no (this device only)"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func day(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02")
}

// requiredFrom writes the earliest enrolment deadline of a member
// without a second factor: "from 2027-01-15", "now (since 2027-01-15)",
// or "-" for none.
func requiredFrom(ds []challenge.MemberDeadline) string {
	if len(ds) == 0 {
		return "-"
	}
	if ds[0].Passed {
		return "now (since " + day(&ds[0].At) + ")"
	}
	return "from " + day(&ds[0].At)
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 MST")
}

func byMethod(m map[string]int) string {
	var parts []string
	for _, method := range []string{challenge.MethodWebAuthn, challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		if n := m[method]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", method, n))
		}
	}
	if parts == nil {
		return "-"
	}
	return strings.Join(parts, ", ")
}
