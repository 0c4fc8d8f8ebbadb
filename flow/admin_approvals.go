package flow

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
)

// The four-eyes reset on the admin pages (reset_approval): a support
// admin's reset becomes a request (adminReset), listed on the approvals
// page and on the member's page, where an approver other than the
// requester, and never the member, approves it, and the requester or an
// approver withdraws it. The engine keeps the rules; here they decide
// which buttons an admin sees, and its refusals become messages.

// adminIdentity is the admin acting, for the engine's four-eyes rules:
// compared by ID, named with their role in the audit trail.
func (p *request) adminIdentity() challenge.Admin {
	return challenge.Admin{ID: p.id.ID, Label: p.adminActor()}
}

// resetRequestView is a request as the admin p sees it, with the actions
// open to them.
func resetRequestView(p *request, q challenge.ResetRequest) pages.AdminResetRequest {
	approver := roleRank(p.id.Role) >= roleRank(RoleApprover)
	return pages.AdminResetRequest{
		ID: q.ID, Member: q.Member, Requester: q.Requester, Reason: q.Reason,
		Requested:   pages.KeepTogether(q.Requested.UTC().Format(adminStamp)),
		Expires:     pages.KeepTogether(q.Expires.UTC().Format(adminStamp)),
		CanApprove:  approver && p.id.ID != q.Requester && p.id.ID != q.Member,
		CanWithdraw: (approver || p.id.ID == q.Requester) && p.id.ID != q.Member,
	}
}

func (f *Flow) adminApprovalsPage(p *request) error {
	if done := adminNotices[p.r.URL.Query().Get("done")]; done != "" {
		p.page.Notice = "admin_done_" + done
	}
	return f.showApprovals(p, http.StatusOK)
}

// showApprovals renders the pending requests, oldest first.
func (f *Flow) showApprovals(p *request, status int) error {
	a := f.adminPage(p)
	a.Approval = f.cfg.ResetApproval > 0
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	list, err := p.e.ResetRequests(ctx)
	if err != nil {
		return f.unavailable(p, "reset requests", err)
	}
	for _, q := range list {
		a.Requests = append(a.Requests, resetRequestView(p, q))
	}
	if a.Reason == "" {
		a.Reason = p.r.PostForm.Get("reason")
	}
	return f.render(p, status, "admin_approvals")
}

// approvalInput reads an approval form: the request's ID, the reason, and
// whether the form was on the member's page (to show the result there).
type approvalInput struct {
	id, reason string
	member     string // the member page the form was on; "" for the approvals page
}

func readApprovalInput(p *request) approvalInput {
	return approvalInput{
		id:     strings.TrimSpace(p.r.PostForm.Get("id")),
		reason: strings.TrimSpace(p.r.PostForm.Get("reason")),
		member: p.r.PostForm.Get("member"),
	}
}

// approvalRefused shows a refusal on the page the form was on, with msg
// (a catalog key) and status.
func (f *Flow) approvalRefused(p *request, in approvalInput, status int, msg string) error {
	p.page.Error = msg
	if in.member != "" {
		return f.showMember(p, in.member, status)
	}
	return f.showApprovals(p, status)
}

// approvalError maps the engine's four-eyes errors to messages; anything
// else is the unavailable page.
func (f *Flow) approvalError(p *request, in approvalInput, stage string, err error) error {
	var bad *challenge.InputError
	switch {
	case errors.Is(err, challenge.ErrSameAdmin):
		return f.approvalRefused(p, in, http.StatusForbidden, "admin_approval_same_admin")
	case errors.Is(err, challenge.ErrOwnReset):
		return f.approvalRefused(p, in, http.StatusForbidden, "admin_approval_own_reset")
	case errors.Is(err, challenge.ErrNoRequest):
		return f.approvalRefused(p, in, http.StatusNotFound, "admin_approval_no_request")
	case errors.Is(err, challenge.ErrResetPending):
		return f.approvalRefused(p, in, http.StatusConflict, "admin_approval_pending")
	case errors.As(err, &bad) && bad.Field == "reason":
		return f.approvalRefused(p, in, http.StatusBadRequest, reasonProblem(in.reason))
	case errors.As(err, &bad):
		p.page.ErrorArgs = []any{bad.Field}
		return f.approvalRefused(p, in, http.StatusBadRequest, "admin_bad_field")
	}
	return f.unavailable(p, stage, err)
}

// approvalDoneURL is where an approval action goes on success: the
// member's page when the form was there, else the approvals page.
func (f *Flow) approvalDoneURL(in approvalInput, member, done string) string {
	if in.member != "" {
		return f.memberURL(member) + "&done=" + done
	}
	return f.cfg.Prefix + "admin/approvals?done=" + done
}

// adminApprove approves a pending reset: the member's factors are reset
// at once and the member told by email.
func (f *Flow) adminApprove(p *request) error {
	in := readApprovalInput(p)
	if in.reason != "" && len(in.reason) > maxReasonLength {
		return f.approvalRefused(p, in, http.StatusBadRequest, "admin_reason_too_long")
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	req, res, err := p.e.ApproveReset(ctx, p.adminIdentity(), in.id, in.reason)
	if err != nil {
		return f.approvalError(p, in, "approve reset", err)
	}
	if f.cfg.AdminNotice != nil {
		f.cfg.AdminNotice(res.Contact, notify.NoticeData{Kind: "admin_reset"})
	}
	return seeOther(p, f.approvalDoneURL(in, req.Member, "approved"))
}

// adminWithdraw withdraws a pending reset: only its requester or an
// approver may, with a reason.
func (f *Flow) adminWithdraw(p *request) error {
	in := readApprovalInput(p)
	if msg := reasonProblem(in.reason); msg != "" {
		return f.approvalRefused(p, in, http.StatusBadRequest, msg)
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	req, err := p.e.ResetRequestByID(ctx, in.id)
	if err != nil {
		return f.approvalError(p, in, "withdraw reset", err)
	}
	// The member of the request is refused by the engine, which audits it.
	if !resetRequestView(p, req).CanWithdraw && p.id.ID != req.Member {
		return f.approvalRefused(p, in, http.StatusForbidden, "admin_withdraw_not_allowed")
	}
	if req, err = p.e.WithdrawReset(ctx, p.adminIdentity(), in.id, in.reason); err != nil {
		return f.approvalError(p, in, "withdraw reset", err)
	}
	return seeOther(p, f.approvalDoneURL(in, req.Member, "withdrawn"))
}

// adminRequestReset records a reset request instead of resetting, where
// resets need a second admin's approval; the member is told by email.
func (f *Flow) adminRequestReset(p *request) error {
	member, reason, done, err := f.memberActionInput(p)
	if done {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	req, err := p.e.RequestReset(ctx, p.adminIdentity(), member, reason, f.cfg.ResetApproval)
	if err != nil {
		var in *challenge.InputError
		if errors.As(err, &in) {
			return f.adminActionError(p, member, "request reset", err)
		}
		return f.approvalError(p, approvalInput{member: member, reason: reason}, "request reset", err)
	}
	if f.cfg.AdminNotice != nil {
		f.cfg.AdminNotice(req.Contact, notify.NoticeData{Kind: "admin_reset_requested"})
	}
	return seeOther(p, f.memberURL(member)+"&done=requested")
}

// memberPendingReset fills in the member page's pending reset, where
// resets need approval or a request is left from when they did.
func (f *Flow) memberPendingReset(p *request, m *pages.AdminMemberDetail) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	q, err := p.e.MemberResetRequest(ctx, m.ID)
	switch {
	case errors.Is(err, challenge.ErrNoRequest):
		return nil
	case err != nil:
		return err
	}
	v := resetRequestView(p, q)
	m.PendingReset = &v
	return nil
}
