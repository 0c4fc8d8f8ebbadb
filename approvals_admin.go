package twofactor

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/notify"
)

// Four-eyes resets on the admin API and the CLI: with reset_approval on, a
// reset asked through the admin endpoint is a pending request, listed,
// approved or withdrawn under /two-factor/approvals. The admin endpoint is
// one requester, "admin endpoint": it cannot approve its own requests (an
// approver on the admin page must), and it may approve those made on the
// page.

// The range of reset_approval: long enough for a second admin to be
// reached, short enough that a forgotten request does not linger.
const (
	minResetApproval = 10 * time.Minute
	maxResetApproval = 168 * time.Hour
)

// PendingReset is the answer (202 Accepted) of POST
// /two-factor/members/reset under reset_approval: the request waiting for
// an approver.
type PendingReset struct {
	// Pending is true: nothing changed yet.
	Pending bool `json:"pending"`
	challenge.ResetRequest
}

// handleReset resets at once, or with reset_approval on, records a request
// for an approver.
func (a *AdminAPI) handleReset(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	window := time.Duration(app.ResetApproval)
	if window == 0 {
		return a.memberAction("admin_reset", (*challenge.Engine).Reset)(w, r, app, engine)
	}
	var req MemberRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	pending, err := engine.RequestReset(r.Context(), challenge.Admin{ID: adminActor}, app.memberID(req.Member), req.Reason, window)
	if err != nil {
		return approvalError(err)
	}
	app.adminNotice(pending.Contact, notify.NoticeData{Kind: "admin_reset_requested"})
	return writeJSONStatus(w, http.StatusAccepted, PendingReset{Pending: true, ResetRequest: pending})
}

// ApprovalsResponse is the answer of GET /two-factor/approvals.
type ApprovalsResponse struct {
	// ResetApproval is the window of a request ("24h0m0s"), or "off".
	ResetApproval string `json:"reset_approval"`
	// Requests are the pending ones, oldest first.
	Requests []challenge.ResetRequest `json:"requests"`
}

func (a *AdminAPI) handleApprovals(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	list, err := engine.ResetRequests(r.Context())
	if err != nil {
		return apiError(err)
	}
	res := ApprovalsResponse{ResetApproval: "off", Requests: list}
	if app.ResetApproval != 0 {
		res.ResetApproval = time.Duration(app.ResetApproval).String()
	}
	if res.Requests == nil {
		res.Requests = []challenge.ResetRequest{}
	}
	return writeJSON(w, res)
}

// ApprovalRequest is the body of POST /two-factor/approvals/approve and
// /withdraw: the request's ID, and why (required to withdraw, optional to
// approve).
type ApprovalRequest struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// ApprovalResponse is the answer of POST /two-factor/approvals/approve
// (with Result: what the reset removed) and /withdraw.
type ApprovalResponse struct {
	Request challenge.ResetRequest  `json:"request"`
	Result  *challenge.MemberResult `json:"result,omitempty"`
}

func (a *AdminAPI) handleApprove(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	var body ApprovalRequest
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	req, res, err := engine.ApproveReset(r.Context(), challenge.Admin{ID: adminActor}, body.ID, body.Reason)
	if err != nil {
		return approvalError(err)
	}
	app.adminNotice(res.Contact, notify.NoticeData{Kind: "admin_reset"})
	return writeJSON(w, ApprovalResponse{Request: req, Result: &res})
}

func (a *AdminAPI) handleWithdraw(w http.ResponseWriter, r *http.Request, _ *App, engine *challenge.Engine) error {
	var body ApprovalRequest
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	req, err := engine.WithdrawReset(r.Context(), challenge.Admin{ID: adminActor}, body.ID, body.Reason)
	if err != nil {
		return approvalError(err)
	}
	return writeJSON(w, ApprovalResponse{Request: req})
}

// approvalError maps the four-eyes errors to the API's answers, naming the
// field at fault.
func approvalError(err error) error {
	switch {
	case errors.Is(err, challenge.ErrSameAdmin):
		return caddy.APIError{HTTPStatus: http.StatusForbidden, Err: errors.New(
			"id: this reset was requested through the admin endpoint, which cannot approve it too; an approver on the admin page must")}
	case errors.Is(err, challenge.ErrOwnReset):
		return caddy.APIError{HTTPStatus: http.StatusForbidden, Err: errors.New(
			"member: an admin cannot request, approve or withdraw a reset of their own second factor")}
	case errors.Is(err, challenge.ErrNoRequest):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New(
			"id: no pending reset request with this ID (unknown, expired, withdrawn or already approved)")}
	case errors.Is(err, challenge.ErrResetPending):
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	}
	return apiError(err)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return writeJSON(w, v)
}

// approvalsCommand is `caddy two-factor approvals list|approve|withdraw`.
func approvalsCommand() *cobra.Command {
	approvals := &cobra.Command{
		Use:   "approvals",
		Short: "Lists, approves or withdraws resets waiting for a second admin (reset_approval)",
	}
	approvals.AddCommand(adminCommand(&cobra.Command{
		Use:   "list",
		Short: "Lists the pending reset requests, oldest first",
		Args:  cobra.NoArgs,
	}, cmdApprovalsList))
	approve := adminCommand(&cobra.Command{
		Use:   "approve <id> [--reason <text>]",
		Short: "Approves a pending reset request: the member's factors are reset at once",
		Long: `
Approves the pending reset request <id> (from approvals list): the member's
methods, recovery codes and remembered devices are removed and every session
ends, on every instance at once; they enrol again at their next visit. The
admin endpoint cannot approve a request it made (members reset through the
admin API or this CLI): an approver on the admin page must. --reason is
optional and goes to the audit trail beside the request's.
`,
		Args: cobra.MaximumNArgs(1),
	}, cmdApprovalsApprove)
	approve.Flags().String("reason", "", "Why, for the audit trail (optional)")
	approvals.AddCommand(approve)
	withdraw := adminCommand(&cobra.Command{
		Use:   "withdraw <id> --reason <text>",
		Short: "Withdraws a pending reset request; nothing changes for the member",
		Args:  cobra.MaximumNArgs(1),
	}, cmdApprovalsWithdraw)
	withdraw.Flags().String("reason", "", "Why, for the audit trail (required)")
	approvals.AddCommand(withdraw)
	return approvals
}

func cmdApprovalsList(fl caddycmd.Flags) (int, error) {
	var res ApprovalsResponse
	if code, err := callAdmin(fl, http.MethodGet, "/two-factor/approvals", nil, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Reset approval: %s; pending requests: %d\n", res.ResetApproval, len(res.Requests))
	if len(res.Requests) == 0 {
		return exitOK, nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nID\tMEMBER\tREQUESTER\tREQUESTED\tEXPIRES\tREASON")
	for _, q := range res.Requests {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", q.ID, q.Member, q.Requester, when(&q.Requested), when(&q.Expires), q.Reason)
	}
	tw.Flush()
	return exitOK, nil
}

func cmdApprovalsApprove(fl caddycmd.Flags) (int, error) {
	var res ApprovalResponse
	body := ApprovalRequest{ID: fl.Arg(0), Reason: fl.String("reason")}
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/approvals/approve", body, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Request %s approved (requested by %s).\n%s: %s\n", res.Request.ID, res.Request.Requester,
		res.Request.Member, resetDone)
	return exitOK, nil
}

func cmdApprovalsWithdraw(fl caddycmd.Flags) (int, error) {
	var res ApprovalResponse
	body := ApprovalRequest{ID: fl.Arg(0), Reason: fl.String("reason")}
	if code, err := callAdmin(fl, http.MethodPost, "/two-factor/approvals/withdraw", body, &res); err != nil || fl.Bool("json") {
		return code, err
	}
	fmt.Printf("Request %s withdrawn: %s's reset will not happen; nothing changed for them.\n", res.Request.ID, res.Request.Member)
	return exitOK, nil
}

// printPendingReset tells the operator that a reset is waiting for an
// approver, and how to go on.
func printPendingReset(p PendingReset) {
	fmt.Printf("%s: reset requested, pending approval: nothing changed yet.\n", p.Member)
	fmt.Printf("Request ID: %s (expires %s)\n", p.ID, when(&p.Expires))
	fmt.Println("An approver on the admin page must approve it; the admin endpoint cannot approve its own request.")
	fmt.Printf("To withdraw it: caddy two-factor approvals withdraw %s --reason <text>\n", p.ID)
}
