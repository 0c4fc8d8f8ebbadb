// Package pages renders the gateway's own pages: the code prompt, the
// choice and set-up of second factors (authenticator app, email, SMS), the
// list of a member's methods, new recovery codes and the step that asks
// for them after one was used, the set-up reminder, sign-out, plain
// messages, and the admin pages (the overview with its charts, drawn by
// pages/chart; the member list, a member's page, reconcile, approvals).
//
// The pages are server-rendered HTML that work fully without JavaScript,
// styled by one embedded stylesheet, in Japanese or English. Two small
// embedded scripts only add conveniences: static/countdown.js counts down
// the wait on a resend button (without it the page says to reload
// instead), static/recovery.js shows "Copy" and "Print" buttons for
// new recovery codes (without it they stay hidden; the codes can still be
// downloaded, or copied by hand), and static/localtime.js shows times in
// the browser's zone (without it they stay in UTC, which they say).
// static/webauthn.js calls navigator.credentials for passkeys and security
// keys on the challenge and passkey enrolment pages; those parts are
// rendered hidden and shown by it, so without it (or without WebAuthn in
// the browser) the member sees their other methods.
//
// Operators may replace any template with a file of the same name in a
// directory of their own (see [New]). A page defines the templates "title"
// and "content", and may define "scripts" (placed in the layout's head;
// the CSP lets only the embedded scripts run). Templates receive
// a [*Page]; besides html/template's built-ins they may call
//
//	{{.T "key"}} / {{.T "key" arg...}}   catalog text in the page's language
//	{{tr . .Error .ErrorArgs}}           the same with a key and an argument slice
//	{{.TH "key" arg...}}                 T, where arguments may be times from [When], [Day] or [Clock]
//	{{trh . .Message .MessageArgs}}      the same with a key and an argument slice
//	{{template "localtime" .}}           (in "scripts") the script that shows times in the browser's zone
//	{{template "webauthn" .}}            (in "scripts") the script behind the passkey parts
//	{{group .Secret}}                    a key split into blocks of four characters
package pages

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var embeddedTemplates embed.FS

// Page is the data every template receives. Fields not used by a page stay zero.
type Page struct {
	Lang      string // "ja" or "en"
	SiteName  string // shown in titles
	Prefix    string // the gateway's path prefix, always ends in "/", e.g. "/.2fa/"
	CSRF      string // form token, carried by every form as hidden field "csrf"
	ReturnTo  string // already validated same-origin relative path, hidden field "return_to"
	Error     string // catalog key of an error shown above the code input (or the page body); "" for none
	ErrorArgs []any  // fmt arguments for Error's text, if it has verbs
	ErrorHint string // catalog key of advice shown with Error, in the same alert; "" for none
	PageName  string // the page being rendered (templates/<name>.html), set by Render for the layout

	// Who is signed in and the way out, on the challenge and enrolment
	// pages: Member is the account's ID as the identity gives it (never
	// its address, which these pages, seen with the password alone, keep
	// masked); SignOut is where the way out leads, "" for none, and
	// SiteSignOut says it goes on to the site's own sign-out ("Cancel
	// and sign out") rather than to its top page ("Cancel").
	Member      string
	SignOut     string
	SiteSignOut bool
	// FromSettings: the member came from the settings page to add a
	// method; the enrolment pages carry it on (hidden field and links
	// "from=settings") and lead back there.
	FromSettings bool
	// LocalTimes: the page shows times (When, Day, Clock) and loads
	// static/localtime.js to show them in the browser's zone. The
	// settings and admin member pages always do; a message page when set.
	LocalTimes bool

	// challenge page
	ShowRemember bool // show the "skip the code on this device" checkbox
	// StepUp: the member is signed in and asked for a fresh code before
	// changing their settings, not signing in.
	StepUp       bool
	RememberDays int // how long, shown in the checkbox label

	// Passkeys and security keys. Challenge: Passkey shows the section
	// id="passkey" (first, hidden until static/webauthn.js shows it);
	// PasskeyOnly: it is the member's only method here, so without the
	// script the page says it needs JavaScript; PasskeyRemember offers
	// "skip the code on this device" with it. Enrolment (enrol_webauthn):
	// PasskeyName prefills the name, at most MaxPasskeyName characters.
	// Settings (methods): Passkeys lists the member's credentials.
	Passkey         bool
	PasskeyOnly     bool
	PasskeyRemember bool
	PasskeyName     string
	MaxPasskeyName  int
	Passkeys        []PasskeyOption
	// PasskeyAdd: the settings page offers to add a passkey (they are
	// on, and the member has fewer than the most allowed).
	PasskeyAdd bool
	// FirstCodes: recovery_renew makes the member's first set of
	// recovery codes (after a first passkey), not a replacement after one
	// was used.
	FirstCodes bool

	// method choice (challenge, enrolment, methods pages)
	Method   string         // the method this page is about: "totp", "email" or "sms"
	Methods  []MethodOption // challenge: other ways to verify; enrol: methods that can be added; methods page: enrolled methods
	SentTo   string         // masked address or number the code was (or will be) sent to
	CodeSent bool           // a code is outstanding for Method: show the code form and the resend button
	ResendIn int            // seconds before the resend button works; 0 means now
	SentFrom string         // email challenge: the address codes come from, for "allow the sender"; "" when unknown
	Reported bool           // challenge: the member just reported that the code did not arrive: thank them, other ways first
	Enrolled bool           // the member already has a second factor (enrol page: adding another)
	CanAdd   bool           // methods page: there are methods the member can still add
	// Suggest lists the methods to offer as a second way in, best first,
	// to a member with one method: the settings page and the recovery
	// codes shown after the first.
	Suggest        []string
	NotAllowedHere bool   // challenge: none of the member's methods is allowed for this page; after verifying they must add one
	Address        string // refills the email or phone input after an error
	Regions        string // SMS enrolment: the allowed regions, e.g. "JP, US"
	Region         string // SMS enrolment: the region assumed without a country code, e.g. "JP"

	// recovery codes
	RecoveryCodes    []string        // recovery page: the new codes, formatted "7K3M-Q9TX-4HPA-2WRE", shown once
	RecoveryDownload template.URL    // recovery page: data:text/plain;charset=utf-8;base64,... of the codes, for a download link
	RecoveryFile     string          // recovery page: the download's file name, after the site ("example.com-recovery-codes.txt")
	RecoveryLeft     int             // methods page: unused codes left (warn at 2 or fewer); challenge: > 0 offers "use a recovery code"
	HasRecovery      bool            // methods page: the member has a set of codes (even if all are used)
	RecoveredOn      template.HTML   // methods page: the date (Day) the member last signed in with a recovery code, while no method was added or used since; "" for none
	Devices          []DeviceOption  // methods page: the member's remembered devices, newest first
	Networks         []NetworkOption // methods page: the ranges the member passed the second factor from, most recent first
	RecordsNetworks  bool            // methods and admin member pages: ranges are recorded (a rule rechecks remembered devices), so the section shows even when empty
	Activity         []ActivityItem  // methods page: the member's recent security events, newest first
	Notice           string          // catalog key of an informational notice at the top of the page; "" for none
	NoticeDone       bool            // the notice confirms a change the member made (a method added), rather than informs
	NoticeArgs       []any           // fmt arguments for Notice

	// enrolment deadline (remind and enrolment pages)
	Deadline       time.Time // when enrolment becomes (or became) required where the member is going; zero for none
	DeadlineDays   int       // remind: whole days left until Deadline, rounded up (1: the last day)
	DeadlinePassed bool      // enrolment pages: Deadline has passed, so enrolment is required now

	// enrolment pages (TOTP)
	Required   bool         // enrolment is required to continue: no "later" option
	TOTPPeriod int          // seconds an authenticator code lasts (totp_period), for "a new code every N seconds"
	QRCode     template.URL // data:image/png;base64,... of the QR code
	OTPAuthURI template.URL // otpauth:// URI for an authenticator app on this device
	Secret     string       // base32 key for manual entry
	Issuer     string
	Account    string

	// admin pages
	Admin *AdminPage // the admin pages' data; nil elsewhere

	// message page
	Title       string // catalog key of the heading
	Message     string // catalog key of the body text
	MessageArgs []any
	Status      int    // HTTP status (informational)
	Link        string // optional href for a "continue" link (already safe relative path)
	LinkLabel   string // catalog key of that link's label
}

// MethodOption is one second-factor method in a list.
type MethodOption struct {
	Name     string        // "totp", "email" or "sms"
	SentTo   string        // masked destination for email and SMS; "" when unknown or none
	Default  bool          // the member's default method
	Added    template.HTML // date added (methods page), from Day
	LastUsed template.HTML // date last used (methods page), from Day; "" when never
	Usable   bool          // methods page/challenge: can be used now (email needs an address); if not, shown greyed, without a link or "make default"
	// Kept: the methods page offers no "Disable": it is the member's only
	// method and the site requires one (the server refuses it too).
	Kept bool
}

// PasskeyOption is one of the member's passkeys and security keys on the
// settings page.
type PasskeyOption struct {
	ID       string        // the gateway's ID of the credential, posted back to rename or remove it
	Name     string        // the member's name for it
	Added    template.HTML // date added, from Day
	LastUsed template.HTML // date last used, from Day; "" when never
	// Kind is a catalog key describing it, from its transports and
	// flags ("passkey_kind_synced", "passkey_kind_usb", ...); "" when
	// unknown.
	Kind string
	// Kept: the member's last method where one is required: no
	// "Remove", the reason instead (the server refuses it too).
	Kept bool
}

// ActivityItem is one of the member's recent security events.
type ActivityItem struct {
	When     template.HTML // date and time, from When
	What     string        // catalog key describing the event
	WhatArgs []any         // fmt arguments for What
	IP       string
	Browser  string // browser and system; "" when unknown
	Failure  bool   // a security failure (a wrong code, a lockout), shown as such
	Count    int    // how many times in a row, when more than once
}

// AdminPage is what the admin pages show: the overview (admin_overview),
// the member list (admin_members), one member (admin_member), a
// reconciliation (admin_reconcile) and the resets waiting for approval
// (admin_approvals).
type AdminPage struct {
	Actor  string // the admin's member ID
	Role   string // "viewer", "support" or "approver"
	CanAct bool   // the role may act on members (support and above)
	Reason string // refills the reason after an error

	// admin_members
	Counts  *AdminCounts  // the counts at the top; nil when not read
	Search  string        // the search box
	Filter  string        // "", "enrolled", "not_enrolled", "locked", "totp", "email" or "sms"
	Order   string        // "id" or "last_seen"
	Members []AdminMember // one page of members
	Next    string        // the next page's URL; "" at the end

	// admin_member
	Member *AdminMemberDetail

	// admin_approvals, and the member list's count
	Approval bool                // resets need a second admin's approval (reset_approval)
	Pending  int                 // how many resets wait for approval (member list)
	Requests []AdminResetRequest // the pending requests, oldest first

	// admin_reconcile
	Reconciled *AdminReconciled // the result; nil before the upload
	MaxIDs     int              // how many IDs one reconciliation takes

	// admin_overview
	Overview *AdminOverview
	// admin_audit
	Audit *AdminAudit
}

// AdminAudit is the audit page: its filter as typed, the choices of its
// selects, one page of records and the links on from it.
type AdminAudit struct {
	Since, Until    string // dates, YYYY-MM-DD, the admin's day boundaries in UTC
	Event, Result   string // "" for any
	Member, Actor   string
	Address         string
	Limit           int           // records a page
	Events, Results []AuditChoice // the selects' options, "any" first
	Records         []AuditRecord // newest first
	Next            string        // the older records' URL; "" at the end
	First           string        // the newest records' URL, on a later page; "" on the first
	DownloadJSONL   string        // the filter's download URLs; "" when downloads are off
	DownloadCSV     string
}

// AuditChoice is an option of the audit page's selects.
type AuditChoice struct {
	Value, Label string
}

// AuditRecord is one record of the audit trail as the admin pages show it.
type AuditRecord struct {
	Time      string // formatted, UTC
	Event     string // a label in the page's language, or the event's name
	EventName string // the event's name, as stored
	Result    string // a label, or the result as stored
	Failure   bool   // a failure, refusal, error or lockout: shown as such
	Member    string
	MemberURL string // the member's admin page; "" without a member
	Actor     string // the admin who acted; "" when the member did
	ActorURL  string // the audit page filtered by that admin
	IP        string
	Browser   string
	Method    string       // a label, or the method as stored
	Details   []DetailPair // the other fields, sorted by key
}

// DetailPair is one of an audit record's other fields, shown "key=value"
// with a line break allowed after "=", so that a long value such as a
// time takes a line of its own rather than breaking in the middle.
type DetailPair struct{ Key, Value string }

// AdminCounts are the member list's counts.
type AdminCounts struct {
	Members, Seen, Enrolled, Locked int
	WebAuthn, TOTP, Email, SMS      int // enrolled with each method
	// ShowWebAuthn: passkeys are configured, or a member has one.
	ShowWebAuthn bool
}

// AdminMember is one line of the member list.
type AdminMember struct {
	ID       string
	Methods  []string // "totp", "email", "sms"
	LastSeen string   // formatted; "" when never seen on a protected path
	Locked   bool
	// Deadline is the earliest enrolment deadline of a member without a
	// second factor, formatted; "" for none. DeadlinePassed: enrolment is
	// required of them now.
	Deadline       string
	DeadlinePassed bool
}

// AdminPasskey is one of a member's passkeys or security keys on their
// admin page.
type AdminPasskey struct {
	ID, Name        string
	Added, LastUsed template.HTML // formatted (Day); LastUsed "" when never used
	// AAGUID is the authenticator's model as it reported it, "" when it
	// did not say.
	AAGUID string
	// Syncable: the passkey can be synced between devices; Synced: it
	// was backed up at its last use.
	Syncable, Synced bool
	// Unproven: it waits for an approver's confirmation before it opens
	// the admin pages.
	Unproven bool
}

// AdminDeadline is when a rule with an enrolment deadline requires a
// second factor of a member who has none.
type AdminDeadline struct {
	Paths  string // the rule's path patterns, space-separated
	At     string // formatted
	Passed bool   // required now, since At
}

// AdminMemberDetail is one member's admin page.
type AdminMemberDetail struct {
	ID           string
	Enrolled     bool
	Methods      []MethodOption // type, masked destination, added, last used
	HasRecovery  bool
	RecoveryLeft int
	Devices      []DeviceOption
	Networks     []NetworkOption // the ranges the member passed the second factor from, most recent first
	Passkeys     []AdminPasskey
	Activity     []ActivityItem
	FirstSeen    string // formatted; "" when never seen
	LastSeen     string
	LockedUntil  string // formatted; "" when not locked out
	SessionsEnd  string // sessions issued until then have ended (an admin's "end sessions"); "" for none
	HasRecord    bool   // the member has a second-factor record (actions other than unlock need one)
	// AppUnproven: the member's app waits for an admin's confirmation
	// before it opens the admin pages; CanConfirmApp: this admin may
	// confirm it (an approver, not the member).
	AppUnproven, CanConfirmApp bool
	// Deadlines are, for a member without a second factor, when each
	// rule with an enrolment deadline requires one, earliest first.
	Deadlines []AdminDeadline
	// PendingReset is the member's reset waiting for approval; nil for none.
	PendingReset *AdminResetRequest
	// Trail is the member's latest records in the audit trail, newest
	// first, without the admins' reading of them; TrailURL is the audit
	// page filtered by the member, "" when the trail is not available.
	Trail    []AuditRecord
	TrailURL string
}

// AdminResetRequest is a reset waiting for a second admin's approval, with
// what the admin looking at it may do.
type AdminResetRequest struct {
	ID, Member, Requester, Reason string
	Requested, Expires            string // formatted
	CanApprove                    bool   // an approver who is neither the requester nor the member
	CanWithdraw                   bool   // the requester or an approver
}

// AdminReconciled is a reconciliation's result.
type AdminReconciled struct {
	Enrolled, SeenNotEnrolled, NeverSeen []string
	IDs                                  string // the IDs as given, one a line, for the CSV download
}

// DeviceOption is one remembered device in the member's list.
type DeviceOption struct {
	ID       string        // opaque ID, posted back to forget the device
	Summary  string        // browser and system, "Chrome · Windows"; "" when unknown
	IP       string        // address it was remembered from
	Created  template.HTML // date and time, from When
	LastUsed template.HTML // date and time, from When
	Current  bool          // the browser showing the page
}

// NetworkOption is one address range a member passed the second factor
// from: where a rule rechecks remembered devices, a device used from
// another range asks for a code once.
type NetworkOption struct {
	Range string        // "192.0.2.0/24", "2001:db8:10::/48"
	Last  template.HTML // when the member last passed from it, from When
}

// T returns the translated catalog text for key in p.Lang, formatted with
// args (fmt.Sprintf) when args are given. A key missing from the page's
// language falls back to English; an unknown key returns the key itself.
func (p *Page) T(key string, args ...any) string {
	lang := "en"
	if p != nil {
		lang = p.Lang
	}
	text, ok := lookup(lang, key)
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(text, localize(lang, args)...)
	}
	return text
}

// pageNames are the pages Render knows, each from templates/<name>.html.
var pageNames = []string{
	"challenge", "enrol", "enrol_start", "enrol_email", "enrol_sms", "enrol_code", "enrol_webauthn",
	"methods", "recovery", "recovery_renew", "remind", "logout", "message",
	"admin_overview", "admin_members", "admin_member", "admin_reconcile", "admin_approvals",
	"admin_audit",
}

// Files shared by every page.
const (
	layoutFile   = "layout.html"
	partialsFile = "partials.html"
)

// templateFiles are the file names an override directory may contain.
func templateFiles() []string {
	files := []string{layoutFile, partialsFile}
	for _, n := range pageNames {
		files = append(files, n+".html")
	}
	return files
}

var funcs = template.FuncMap{
	"tr":                 func(p *Page, key string, args []any) string { return p.T(key, args...) },
	"trh":                func(p *Page, key string, args []any) template.HTML { return p.TH(key, args...) },
	"group":              groupKey,
	"countdownIntegrity": func() string { return countdownIntegrity },
	"recoveryIntegrity":  func() string { return recoveryIntegrity },
	"localtimeIntegrity": func() string { return localtimeIntegrity },
	"webauthnIntegrity":  func() string { return webauthnIntegrity },
	"args":               func(v ...any) []any { return v },
}

// groupKey splits a manual-entry key into blocks of four characters
// separated by spaces, ignoring whitespace already in it.
func groupKey(s string) string {
	s = strings.Join(strings.Fields(s), "")
	var b strings.Builder
	for i, r := range []rune(s) {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Renderer holds the parsed page templates. It is safe for concurrent use.
type Renderer struct {
	pages map[string]*template.Template
}

type source struct {
	name string // file name, e.g. "challenge.html"
	desc string // how errors name it: the path for an override
	text string
}

// New parses the embedded templates. If overrideDir != "", any file there
// named like an embedded template (e.g. "challenge.html", "layout.html")
// replaces the embedded one; other files in the directory are an error
// naming the file (names starting with "." are ignored), and so are parse
// errors. "" means embedded templates only.
func New(overrideDir string) (*Renderer, error) {
	sources := make(map[string]source)
	for _, name := range templateFiles() {
		b, err := embeddedTemplates.ReadFile("templates/" + name)
		if err != nil {
			return nil, fmt.Errorf("pages: embedded template %s: %w", name, err)
		}
		sources[name] = source{name: name, desc: "embedded " + name, text: string(b)}
	}
	if overrideDir != "" {
		if err := readOverrides(overrideDir, sources); err != nil {
			return nil, err
		}
	}

	r := &Renderer{pages: make(map[string]*template.Template, len(pageNames))}
	for _, name := range pageNames {
		t, err := build(sources, name+".html")
		if err != nil {
			return nil, err
		}
		r.pages[name] = t
	}
	return r, nil
}

func readOverrides(dir string, sources map[string]source) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pages: template directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if _, known := sources[name]; !known || e.IsDir() {
			return fmt.Errorf("pages: %s: not a known template (expected one of %s)",
				path, strings.Join(templateFiles(), ", "))
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("pages: %w", err)
		}
		sources[name] = source{name: name, desc: path, text: string(b)}
	}
	return nil
}

// build parses the layout, the shared pieces and one page into a template
// set, then checks it by rendering a sample page, so that a reference to a
// missing template or an HTML escaping problem surfaces now rather than as
// a failing page later.
func build(sources map[string]source, pageFile string) (*template.Template, error) {
	var t *template.Template
	for _, name := range []string{layoutFile, partialsFile, pageFile} {
		src := sources[name]
		var err error
		if t == nil {
			t, err = template.New(name).Funcs(funcs).Parse(src.text)
		} else {
			_, err = t.New(name).Parse(src.text)
		}
		if err != nil {
			return nil, fmt.Errorf("pages: parsing %s: %w", src.desc, err)
		}
	}
	for _, block := range []string{"title", "content"} {
		if t.Lookup(block) == nil {
			return nil, fmt.Errorf("pages: %s does not define the %q template", sources[pageFile].desc, block)
		}
	}
	err := t.ExecuteTemplate(&bytes.Buffer{}, layoutFile, samplePage())
	var escErr *template.Error
	if errors.As(err, &escErr) {
		// Only structural errors: an execution error may depend on the data.
		return nil, fmt.Errorf("pages: %s (with %s, %s): %w",
			sources[pageFile].desc, sources[layoutFile].desc, sources[partialsFile].desc, err)
	}
	return t, nil
}

func samplePage() *Page {
	return &Page{
		Lang: "en", SiteName: "example", Prefix: "/.2fa/", CSRF: "token", ReturnTo: "/",
		Error: "code_incorrect", ShowRemember: true, RememberDays: 30, Required: false,
		QRCode: "data:image/png;base64,", OTPAuthURI: "otpauth://totp/example", Secret: "ABCDEFGH",
		Issuer: "example", Account: "member", Title: "error_title", Message: "not_found",
		Status: http.StatusOK, Link: "/", LinkLabel: "continue",
		Method: "email", SentTo: "m***@example.com", CodeSent: true, ResendIn: 30, Suggest: []string{"totp", "email", "sms"},
		Methods:       []MethodOption{{Name: "totp", Usable: true, Default: true}, {Name: "sms", SentTo: "***1234"}},
		RecoveryCodes: []string{"7K3M-Q9TX-4HPA-2WRE"}, RecoveryDownload: "data:text/plain;charset=utf-8;base64,",
		RecoveryLeft: 1, HasRecovery: true, RecoveredOn: Day(time.Unix(0, 0)), Notice: "recovery_replaced",
		Member: "member", SignOut: "/.2fa/logout", FromSettings: true, LocalTimes: true, StepUp: true, TOTPPeriod: 30,
		RecoveryFile: "example-recovery-codes.txt", Passkey: true, PasskeyOnly: true, PasskeyRemember: true, PasskeyName: "Passkey",
		MaxPasskeyName: 64, FirstCodes: true,
		Passkeys: []PasskeyOption{{ID: "0123", Name: "YubiKey", Added: Day(time.Unix(0, 0)), LastUsed: Day(time.Unix(0, 0)), Kind: "passkey_kind_key", Kept: true}}, PasskeyAdd: true,
		Devices:  []DeviceOption{{ID: "ab12", Summary: "Chrome · Windows", IP: "192.0.2.1", Created: When(time.Unix(0, 0)), LastUsed: When(time.Unix(0, 0)), Current: true}},
		Networks: sampleNetworks, RecordsNetworks: true,
		Admin: &AdminPage{
			Actor: "admin", Role: "support", CanAct: true, Counts: &AdminCounts{}, Next: "/.2fa/admin/members?after=a",
			Overview: &AdminOverview{Range: 30, Ranges: []int{7, 30}, Days: []time.Time{time.Unix(0, 0)}, Seen: 1, Enrolled: 1,
				Coverage: []float64{100}, Latest: sampleAudit, LatestURL: "/.2fa/admin/audit"},
			Members: []AdminMember{{ID: "member", Methods: []string{"totp"}, LastSeen: "2026-11-20", Locked: true}},
			Member: &AdminMemberDetail{ID: "member", Enrolled: true, HasRecord: true, Methods: []MethodOption{{Name: "totp"}},
				Networks:     sampleNetworks,
				PendingReset: &AdminResetRequest{ID: "0123", Requester: "sam", CanApprove: true, CanWithdraw: true},
				Trail:        sampleAudit, TrailURL: "/.2fa/admin/audit?member=member"},
			Audit: &AdminAudit{Since: "2026-11-01", Event: "verify", Limit: 50, Events: []AuditChoice{{"", "any"}, {"verify", "Verify"}},
				Results: []AuditChoice{{"", "any"}}, Records: sampleAudit, Next: "/.2fa/admin/audit?after=a", First: "/.2fa/admin/audit",
				DownloadJSONL: "/.2fa/admin/audit/export?format=jsonl", DownloadCSV: "/.2fa/admin/audit/export?format=csv"},
			Reconciled: &AdminReconciled{Enrolled: []string{"a"}, SeenNotEnrolled: []string{"b"}, NeverSeen: []string{"c"}},
			Approval:   true, Pending: 1,
			Requests: []AdminResetRequest{{ID: "0123", Member: "member", Requester: "sam", Reason: "lost phone",
				Requested: "2026-11-20 10:00 UTC", Expires: "2026-11-21 10:00 UTC", CanApprove: true, CanWithdraw: true}},
		},
	}
}

var sampleNetworks = []NetworkOption{{Range: "192.0.2.0/24", Last: When(time.Unix(0, 0))}, {Range: "2001:db8:10::/48", Last: When(time.Unix(0, 0))}}

var sampleAudit = []AuditRecord{{Time: "2026-11-20 10:00:00 UTC", Event: "Code check", EventName: "verify", Result: "failure",
	Failure: true, Member: "member", MemberURL: "/.2fa/admin/member?id=member", Actor: "sam (support)", ActorURL: "/.2fa/admin/audit?actor=sam",
	IP: "192.0.2.1", Browser: "Chrome · Windows", Method: "totp", Details: []DetailPair{{Key: "reason", Value: "wrong"}}}}

// Render writes the named page ("challenge", "enrol", "enrol_start",
// "enrol_email", "enrol_sms", "enrol_code", "enrol_webauthn", "methods", "recovery",
// "recovery_renew", "remind", "logout", "message", "admin_members",
// "admin_member", "admin_reconcile", "admin_approvals", "admin_overview", "admin_audit") with the security
// headers and Content-Type text/html; charset=utf-8, then the status. The page is rendered into a buffer
// first, so a template error never produces half a page: on error Render
// writes a plain 500 and returns the error.
func (r *Renderer) Render(w http.ResponseWriter, status int, name string, p *Page, secure bool) error {
	h := w.Header()
	SetSecurityHeaders(h, secure)
	var t *template.Template
	if r != nil {
		t = r.pages[name]
	}
	var buf bytes.Buffer
	var err error
	switch {
	case t == nil:
		err = fmt.Errorf("pages: unknown page %q", name)
	case p == nil:
		err = fmt.Errorf("pages: rendering %s: nil page", name)
	default:
		page := *p // normalise a copy, never the caller's page
		page.PageName = name
		if page.Lang != "ja" {
			page.Lang = "en"
		}
		if page.Prefix == "" {
			page.Prefix = "/"
		}
		if strings.HasPrefix(name, "admin_") {
			// The admin templates read their data without nil checks.
			a := AdminPage{}
			if page.Admin != nil {
				a = *page.Admin
			}
			if a.Member == nil {
				a.Member = &AdminMemberDetail{}
			}
			if a.Overview == nil {
				a.Overview = &AdminOverview{}
			}
			if a.Audit == nil {
				a.Audit = &AdminAudit{}
			}
			page.Admin = &a
		}
		if name == "message" {
			if page.Title == "" {
				page.Title = "error_title"
			}
			if page.LinkLabel == "" {
				page.LinkLabel = "continue"
			}
		}
		if err = t.ExecuteTemplate(&buf, layoutFile, &page); err != nil {
			err = fmt.Errorf("pages: rendering %s: %w", name, err)
		}
	}
	if err != nil {
		h.Del("Content-Length")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("500 internal server error\n"))
		return err
	}
	if status == 0 {
		status = http.StatusOK
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	_, err = buf.WriteTo(w)
	return err
}

// csp allows the embedded stylesheet, the embedded scripts by their
// hashes, the QR code's data: URL, forms posting back to the gateway and
// the passkey script's fetch to the gateway (connect-src 'self'), and
// nothing else: no inline script or style. A browser that cannot match
// an external script by hash blocks it, and the pages work without it.
// (The recovery codes' data: download link is a navigation, which the CSP
// does not govern.)
var csp = "default-src 'none'; script-src '" + countdownIntegrity + "' '" + recoveryIntegrity + "' '" + localtimeIntegrity + "' '" + webauthnIntegrity + "'; " +
	"style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// SetSecurityHeaders sets the headers every gateway page carries: no
// caching, no framing, no sniffing, the referrer only to this site, a strict
// Content-Security-Policy and, when https, Strict-Transport-Security.
func SetSecurityHeaders(h http.Header, https bool) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", csp)
	if https {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// templateNames lists the embedded template files, for tests.
func templateNames() []string {
	names, _ := fs.Glob(embeddedTemplates, "templates/*.html")
	for i, n := range names {
		names[i] = strings.TrimPrefix(n, "templates/")
	}
	sort.Strings(names)
	return names
}
