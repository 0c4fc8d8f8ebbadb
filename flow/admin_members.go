package flow

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
)

// The admin pages: the member list (admin/members) with its counts,
// search, filters and paging; one member's page with its actions. Every route here has an
// admin role guard and the admin step-up (routes.go).

// adminPageSize is a page of the member list.
const adminPageSize = 50

// maxSearch bounds the search box.
const maxSearch = 256

const (
	adminStamp = "2006-01-02 15:04 UTC"
	adminDay   = "2006-01-02"
)

// adminPage starts the admin pages' data for the signed-in admin.
func (f *Flow) adminPage(p *request) *pages.AdminPage {
	a := &pages.AdminPage{Actor: p.id.ID, Role: p.id.Role, CanAct: roleRank(p.id.Role) >= roleRank(RoleSupport)}
	p.page.Admin = a
	// Admin pages return to themselves, not to a member page.
	p.page.ReturnTo = f.cfg.Prefix + "admin/"
	return a
}

// membersFilter reads the list's filter and order, naming the field of a
// bad value.
func membersFilter(q url.Values) (challenge.MembersFilter, string) {
	var mf challenge.MembersFilter
	switch v := q.Get("filter"); v {
	case "", "all":
	case "enrolled", "not_enrolled":
		b := v == "enrolled"
		mf.Enrolled = &b
	case "locked":
		mf.Locked = true
	case challenge.MethodWebAuthn, challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS:
		mf.Method = v
	default:
		return mf, "filter"
	}
	switch v := q.Get("order"); v {
	case "", "id":
		mf.Order = "id"
	case "last_seen":
		mf.Order = v
	default:
		return mf, "order"
	}
	mf.Search = strings.TrimSpace(q.Get("q"))
	if len(mf.Search) > maxSearch || !utf8.ValidString(mf.Search) {
		return mf, "q"
	}
	if after := q.Get("after"); len(after) > 1024 || !utf8.ValidString(after) {
		return mf, "after"
	}
	return mf, ""
}

func (f *Flow) adminMembersPage(p *request) error {
	return f.showMembers(p, http.StatusOK)
}

// showMembers renders the member list for the request's query.
func (f *Flow) showMembers(p *request, status int) error {
	a := f.adminPage(p)
	q := p.r.URL.Query()
	a.Search, a.Filter, a.Order = q.Get("q"), q.Get("filter"), q.Get("order")
	mf, bad := membersFilter(q)
	if !strings.Contains(mf.Search, "@") {
		mf.Search = f.memberID(mf.Search) // an ID prefix, folded as IDs are
	}
	if bad != "" {
		p.page.Error, p.page.ErrorArgs = "admin_bad_field", []any{bad}
		a.Search, a.Filter, a.Order = "", "", ""
		return f.render(p, http.StatusBadRequest, "admin_members")
	}
	if a.Filter == "all" {
		a.Filter = ""
	}
	a.Order = mf.Order
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	if f.cfg.FlushSeen != nil {
		// Members this instance saw a moment ago are listed too.
		f.cfg.FlushSeen(ctx)
	}
	after := q.Get("after")
	list, err := p.e.Members(ctx, after, adminPageSize, mf)
	if err != nil {
		return f.adminEngineError(p, "members", err)
	}
	if mf.Search != "" && after == "" {
		// Who looked for whom: the kind of search, not the address.
		p.e.AuditRead(ctx, p.adminActor(), "admin_members_searched", "",
			zap.Bool("by_email", strings.Contains(mf.Search, "@")), zap.Int("found", len(list.Members)))
	}
	for _, m := range list.Members {
		am := pages.AdminMember{ID: m.ID, Methods: m.Methods, Locked: m.LockedUntil != nil}
		if m.LastSeen != nil {
			am.LastSeen = m.LastSeen.UTC().Format(adminDay)
		}
		if len(m.Deadlines) > 0 {
			am.Deadline, am.DeadlinePassed = m.Deadlines[0].At.UTC().Format(adminDay), m.Deadlines[0].Passed
		}
		a.Members = append(a.Members, am)
	}
	if list.Next != "" {
		next := url.Values{"after": {list.Next}}
		for _, k := range []string{"q", "filter", "order"} {
			if v := q.Get(k); v != "" {
				next.Set(k, v)
			}
		}
		a.Next = f.membersURL() + "?" + next.Encode()
	}
	if after == "" {
		c, err := p.e.CountMembers(ctx)
		if err != nil {
			return f.adminEngineError(p, "counts", err)
		}
		a.Counts = &pages.AdminCounts{Members: c.Members, Seen: c.Seen, Enrolled: c.Enrolled, Locked: c.Locked,
			WebAuthn: c.ByMethod[challenge.MethodWebAuthn], TOTP: c.ByMethod[challenge.MethodTOTP],
			Email: c.ByMethod[challenge.MethodEmail], SMS: c.ByMethod[challenge.MethodSMS]}
		a.Counts.ShowWebAuthn = a.Counts.WebAuthn > 0 || f.methodConfigured(challenge.MethodWebAuthn)
		if a.Approval = f.cfg.ResetApproval > 0; a.Approval {
			pending, err := p.e.ResetRequests(ctx)
			if err != nil {
				return f.adminEngineError(p, "reset requests", err)
			}
			a.Pending = len(pending)
		}
	}
	if q.Get("unlocked") == "address" {
		p.page.Notice = "admin_address_unlocked"
	}
	return f.render(p, status, "admin_members")
}

// adminEngineError shows a bad input on the page it came from, and the
// unavailable page for the rest.
func (f *Flow) adminEngineError(p *request, stage string, err error) error {
	var in *challenge.InputError
	if errors.As(err, &in) {
		return f.message(p.w, p.r, http.StatusBadRequest, "error_title", "admin_bad_field", []any{in.Field}, f.membersURL())
	}
	return f.unavailable(p, stage, err)
}

func (f *Flow) adminMemberPage(p *request) error {
	return f.showMember(p, f.memberID(p.r.URL.Query().Get("id")), http.StatusOK)
}

// showMember renders one member's page.
func (f *Flow) showMember(p *request, id string, status int) error {
	a := f.adminPage(p)
	if id == "" || !utf8.ValidString(id) || len(id) > 1024 {
		return f.message(p.w, p.r, http.StatusBadRequest, "error_title", "admin_bad_field", []any{"id"}, f.membersURL())
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	d, err := p.e.Member(ctx, id)
	if errors.Is(err, challenge.ErrNoMember) {
		return f.message(p.w, p.r, http.StatusNotFound, "title_not_found", "admin_no_member", nil, f.membersURL())
	}
	if err != nil {
		return f.adminEngineError(p, "member", err)
	}
	// Every page that shows a member's data, whatever the route: the page
	// itself, and an action's refusal shown on it.
	p.e.AuditRead(ctx, p.adminActor(), "admin_member_viewed", id)
	m := &pages.AdminMemberDetail{ID: d.ID, Enrolled: d.Enrolled, RecoveryLeft: d.RecoveryLeft, FirstSeen: day(d.FirstSeen), LastSeen: day(d.LastSeen)}
	if d.LockedUntil != nil {
		m.LockedUntil = d.LockedUntil.UTC().Format(adminStamp)
	}
	for _, dl := range d.Deadlines {
		m.Deadlines = append(m.Deadlines, pages.AdminDeadline{Paths: strings.Join(dl.Paths, " "), At: dl.At.UTC().Format(adminStamp), Passed: dl.Passed})
	}
	u, err := p.e.State(ctx, id)
	if err != nil && !errors.Is(err, challenge.ErrKeyMissing) {
		return f.unavailable(p, "state", err)
	}
	if u != nil {
		m.HasRecord = u.Rev > 0
		m.AppUnproven = u.FactorUnproven()
		m.CanConfirmApp = m.AppUnproven && id != p.id.ID && roleRank(p.id.Role) >= roleRank(RoleApprover)
		m.HasRecovery = u.Recovery != nil
		if u.SessionsAfter > 0 {
			m.SessionsEnd = time.Unix(u.SessionsAfter, 0).UTC().Format(adminStamp)
		}
	}
	for _, md := range d.MethodDetails {
		opt := pages.MethodOption{Name: md.Method, SentTo: md.Destination, Added: pages.Day(md.Added), Usable: true}
		if md.LastUsed != nil {
			opt.LastUsed = pages.Day(*md.LastUsed)
		}
		m.Methods = append(m.Methods, opt)
	}
	for _, c := range d.Credentials {
		pk := pages.AdminPasskey{ID: c.ID, Name: c.Name, Added: pages.Day(c.Added), AAGUID: c.AAGUID,
			Synced: c.BackedUp, Syncable: c.BackupEligible, Unproven: c.Unproven}
		if c.LastUsed != nil {
			pk.LastUsed = pages.Day(*c.LastUsed)
		}
		m.Passkeys = append(m.Passkeys, pk)
	}
	for _, dv := range d.DeviceList {
		m.Devices = append(m.Devices, pages.DeviceOption{ID: dv.ID, Summary: audit.Browser(dv.UserAgent), IP: dv.IP,
			Created: pages.When(dv.Created), LastUsed: pages.When(dv.LastUsed)})
	}
	m.Networks = networkOptions(d.Networks)
	p.page.RecordsNetworks = f.cfg.RecordNetworks
	m.Activity = activityItems(p.page, d.Activity)
	if err := f.memberPendingReset(p, m); err != nil {
		return f.unavailable(p, "reset request", err)
	}
	if err := f.memberTrail(p, m); err != nil {
		// The page's actions matter more than its history: shown
		// without the section, with the reason in the log.
		f.logger.Warn("admin member page: reading the audit trail", zap.String("member", id), zap.Error(err))
	}
	a.Member = m
	a.Approval = f.cfg.ResetApproval > 0
	if a.Reason == "" {
		a.Reason = p.r.PostForm.Get("reason")
	}
	if done := adminNotices[p.r.URL.Query().Get("done")]; done != "" {
		p.page.Notice = "admin_done_" + done
	}
	return f.render(p, status, "admin_member")
}

func day(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(adminDay)
}

// adminNotices are the notices after each action, by the done parameter.
var adminNotices = map[string]string{
	"unlock": "unlock", "forget-devices": "devices", "end-sessions": "sessions", "reset": "reset", "confirm-app": "app_confirmed",
	"requested": "requested", "approved": "approved", "withdrawn": "withdrawn", "remove-passkey": "passkey_removed",
}

// memberActionInput reads and checks an action form's member and reason;
// a bad one is shown on the member's page (or the list, with no member).
func (f *Flow) memberActionInput(p *request) (member, reason string, done bool, err error) {
	member = f.memberID(p.r.PostForm.Get("member"))
	reason = strings.TrimSpace(p.r.PostForm.Get("reason"))
	if member == "" {
		return "", "", true, f.message(p.w, p.r, http.StatusBadRequest, "error_title", "admin_bad_field", []any{"member"}, f.membersURL())
	}
	if msg := reasonProblem(reason); msg != "" {
		p.page.Error = msg
		return "", "", true, f.showMember(p, member, http.StatusBadRequest)
	}
	return member, reason, false, nil
}

// maxReasonLength is the engine's bound on a reason, in bytes, checked
// first so the page can say so.
const maxReasonLength = 500

func reasonProblem(reason string) string {
	switch {
	case reason == "":
		return "admin_reason_required"
	case len(reason) > maxReasonLength:
		return "admin_reason_too_long"
	}
	return ""
}

// adminUnlock lifts the member's lockout at once.
func (f *Flow) adminUnlock(p *request) error {
	member, reason, done, err := f.memberActionInput(p)
	if done {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	res, err := p.e.Unlock(ctx, p.adminActor(), reason, member)
	if err != nil {
		return f.adminActionError(p, member, "unlock", err)
	}
	if f.cfg.AdminNotice != nil {
		f.cfg.AdminNotice(res.Contact, notify.NoticeData{Kind: "admin_unlock"})
	}
	return seeOther(p, f.memberURL(member)+"&done=unlock")
}

// adminConfirmApp confirms a member's unproven app for the admin pages:
// an approver's action, never on their own app.
func (f *Flow) adminConfirmApp(p *request) error {
	member, reason, done, err := f.memberActionInput(p)
	if done {
		return err
	}
	if member == p.id.ID {
		p.page.Error = "admin_confirm_own_app"
		return f.showMember(p, member, http.StatusForbidden)
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	res, err := p.e.ConfirmApp(ctx, p.adminActor(), member, reason)
	if err != nil {
		return f.adminActionError(p, member, "confirm-app", err)
	}
	if f.cfg.AdminNotice != nil {
		f.cfg.AdminNotice(res.Contact, notify.NoticeData{Kind: "admin_app_confirmed"})
	}
	return seeOther(p, f.memberURL(member)+"&done=confirm-app")
}

// memberAction is an action on a member's factors that the member is told
// of by email: forget devices, end sessions, reset.
type memberAction func(e *challenge.Engine, p *request, member, reason string) (challenge.MemberResult, error)

func (f *Flow) adminMemberAction(p *request, name, kind string, act memberAction) error {
	member, reason, done, err := f.memberActionInput(p)
	if done {
		return err
	}
	res, err := act(p.e, p, member, reason)
	if err != nil {
		return f.adminActionError(p, member, name, err)
	}
	if f.cfg.AdminNotice != nil {
		f.cfg.AdminNotice(res.Contact, notify.NoticeData{Kind: kind})
	}
	return seeOther(p, f.memberURL(member)+"&done="+name)
}

func (f *Flow) adminForgetDevices(p *request) error {
	return f.adminMemberAction(p, "forget-devices", "admin_devices", func(e *challenge.Engine, p *request, member, reason string) (challenge.MemberResult, error) {
		ctx, cancel := withTimeout(p.r)
		defer cancel()
		return e.ForgetDevices(ctx, p.adminActor(), member, reason)
	})
}

func (f *Flow) adminEndSessions(p *request) error {
	return f.adminMemberAction(p, "end-sessions", "admin_sessions", func(e *challenge.Engine, p *request, member, reason string) (challenge.MemberResult, error) {
		ctx, cancel := withTimeout(p.r)
		defer cancel()
		return e.EndSessions(ctx, p.adminActor(), member, reason)
	})
}

// adminReset removes all of the member's factors, only with the box
// ticked that says the member's identity was confirmed: whoever signs in
// with the password next can enrol. Where resets need a second admin's
// approval (reset_approval), this is where the request is made instead.
func (f *Flow) adminReset(p *request) error {
	if p.r.PostForm.Get("confirm") != "yes" {
		if member := p.r.PostForm.Get("member"); member != "" {
			p.page.Error = "admin_confirm_reset"
			return f.showMember(p, member, http.StatusBadRequest)
		}
	}
	if f.cfg.ResetApproval > 0 {
		return f.adminRequestReset(p)
	}
	return f.adminMemberAction(p, "reset", "admin_reset", func(e *challenge.Engine, p *request, member, reason string) (challenge.MemberResult, error) {
		ctx, cancel := withTimeout(p.r)
		defer cancel()
		return e.Reset(ctx, p.adminActor(), member, reason)
	})
}

// adminRemovePasskey removes one of the member's passkeys or security
// keys (a lost or stolen one): it stops working at once on every
// instance, with every session and remembered device of the member. The
// member is told, naming it. Where resets need approval, the member's last
// factor is not removed this way: the page says to request a reset.
func (f *Flow) adminRemovePasskey(p *request) error {
	member, reason, done, err := f.memberActionInput(p)
	if done {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	res, err := p.e.RemoveCredentialFor(ctx, p.adminActor(), member, p.r.PostForm.Get("credential"), reason, f.cfg.ResetApproval > 0)
	if err != nil {
		return f.adminActionError(p, member, "remove-passkey", err)
	}
	if f.cfg.AdminNotice != nil {
		f.cfg.AdminNotice(res.Contact, notify.NoticeData{Kind: "admin_passkey_removed", Name: res.Passkey})
	}
	return seeOther(p, f.memberURL(member)+"&done=remove-passkey")
}

// adminActionError shows an action's refusal on the member's page.
func (f *Flow) adminActionError(p *request, member, action string, err error) error {
	if errors.Is(err, challenge.ErrResetNeedsApproval) {
		p.page.Error = "admin_passkey_last_needs_approval"
		return f.showMember(p, member, http.StatusConflict)
	}
	var in *challenge.InputError
	if errors.As(err, &in) {
		p.page.Error, p.page.ErrorArgs = "admin_bad_field", []any{in.Field}
		if in.Field == "member" {
			p.page.Error, p.page.ErrorArgs = "admin_no_record", nil
		}
		return f.showMember(p, member, http.StatusBadRequest)
	}
	return f.unavailable(p, "admin "+action, err)
}

// adminUnlockAddress lifts a client address's lockout, from the list page.
func (f *Flow) adminUnlockAddress(p *request) error {
	addr := strings.TrimSpace(p.r.PostForm.Get("address"))
	reason := strings.TrimSpace(p.r.PostForm.Get("reason"))
	msg := reasonProblem(reason)
	if addr == "" {
		msg = "admin_address_invalid"
	}
	if msg == "" {
		ctx, cancel := withTimeout(p.r)
		defer cancel()
		_, err := p.e.UnlockAddress(ctx, p.adminActor(), reason, addr)
		var in *challenge.InputError
		switch {
		case errors.As(err, &in) && in.Field == "address":
			msg = "admin_address_invalid"
		case err != nil:
			return f.adminEngineError(p, "unlock address", err)
		default:
			return seeOther(p, f.membersURL()+"?unlocked=address")
		}
	}
	p.page.Error = msg
	p.r.URL.RawQuery = ""
	return f.showMembers(p, http.StatusBadRequest)
}
