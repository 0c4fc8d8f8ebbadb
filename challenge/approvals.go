package challenge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// The four-eyes reset: with reset_approval on, an admin's reset becomes a
// request that takes effect only when another admin approves it within a
// window. A reset hands the account to whoever holds the password next, so
// one admin talked into it by a caller posing as the member is not enough.

// Errors of the four-eyes reset, which the admin API and pages map to
// their answers.
var (
	// ErrSameAdmin refuses an approval by the admin who made the request.
	ErrSameAdmin = errors.New("challenge: the admin who requested a reset cannot approve it")
	// ErrOwnReset refuses a request, an approval or a withdrawal by the member whose
	// factors would be reset.
	ErrOwnReset = errors.New("challenge: an admin cannot request, approve or withdraw a reset of their own second factor")
	// ErrNoRequest reports a request that is unknown, expired, withdrawn
	// or already approved.
	ErrNoRequest = errors.New("challenge: no pending reset request with this ID (unknown, expired, withdrawn or already approved)")
	// ErrResetPending refuses a second request for a member while one is
	// pending; RequestReset returns the pending one with it.
	ErrResetPending = errors.New("challenge: a reset of this member is already pending")
)

// ResetRequest is a reset waiting for a second admin's approval.
type ResetRequest struct {
	// ID names the request: 128 random bits in hex.
	ID string `json:"id"`
	// Member is whose factors the reset removes.
	Member string `json:"member"`
	// Requester is the admin who asked ("admin endpoint" for the admin
	// API).
	Requester string `json:"requester"`
	// Reason is the requester's, kept for the reset's audit entry.
	Reason    string    `json:"reason"`
	Requested time.Time `json:"requested"`
	// Expires is when the request lapses unless approved.
	Expires time.Time `json:"expires"`
	// Contact is where to tell the member that a reset was requested,
	// set by RequestReset only: "" when unknown. Neither stored nor part
	// of the API's answer.
	Contact string `json:"-"`
}

// resetRequestsIndex lists the pending requests, oldest first: each entry
// is the request time in zero-padded nanoseconds, a space and the ID.
const resetRequestsIndex = "reset_requests"

// resetListPage is how many index entries ResetRequests reads at once.
const resetListPage = 100

func resetRequestKey(id string) string { return "resetreq:" + id }

// resetPendingKey holds the ID of the member's pending request: one at a
// time per member.
func resetPendingKey(member string) string { return "resetpending:" + tag(member) }

func (r ResetRequest) indexEntry() string {
	return fmt.Sprintf("%020d %s", r.Requested.UnixNano(), r.ID)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// validRequestID keeps what a caller passes as an ID from reaching the
// store as an arbitrary key.
func validRequestID(id string) bool {
	b, err := hex.DecodeString(id)
	return err == nil && len(b) == 16 && strings.ToLower(id) == id
}

// Admin is an admin acting on a reset request: ID is what the four-eyes
// rules compare with the requester and the member, Label names the admin
// in the audit trail and the member's activity, such as "sam (support)"
// ("" for the ID). A role that changes between request and approval
// therefore changes nothing of who may approve.
type Admin struct {
	ID, Label string
}

func (a Admin) label() string {
	if a.Label == "" {
		return a.ID
	}
	return a.Label
}

// RequestReset asks for a reset of member's factors that takes effect when
// an approver other than requester, and not the member, approves it within
// window. A member has one pending request at a time: a second one gets
// ErrResetPending (naming member) with the pending request.
func (e *Engine) RequestReset(ctx context.Context, requester Admin, member, why string, window time.Duration) (ResetRequest, error) {
	req, err := e.requestReset(ctx, requester.ID, member, why, window)
	fields := withAdminIP(ctx, []zap.Field{zap.String("actor", requester.label()), zap.String("admin_reason", strings.TrimSpace(why))})
	if err != nil {
		if errors.Is(err, ErrResetPending) {
			fields = append(fields, zap.String("pending_request", req.ID))
		}
		e.auditApproval(member, "admin_reset_requested", err, fields...)
		return req, err
	}
	e.auditApproval(member, "admin_reset_requested", nil, append(fields,
		zap.String("request", req.ID), zap.Time("expires", req.Expires))...)
	return req, nil
}

func (e *Engine) requestReset(ctx context.Context, requester, member, why string, window time.Duration) (ResetRequest, error) {
	switch {
	case member == "":
		return ResetRequest{}, &InputError{"member", "required: the member's ID"}
	case requester == "":
		return ResetRequest{}, &InputError{"requester", "required: who asks"}
	case window <= 0:
		return ResetRequest{}, &InputError{"reset_approval", "not set: resets need no approval"}
	case requester == member:
		return ResetRequest{}, ErrOwnReset
	}
	if err := checkReason(why); err != nil {
		return ResetRequest{}, err
	}
	u, _, err := e.loadUser(ctx, member)
	if err != nil {
		return ResetRequest{}, err
	}
	if u.Rev == 0 {
		return ResetRequest{}, errNoMember
	}
	now := e.now().UTC()
	req := ResetRequest{ID: newRequestID(), Member: member, Requester: requester, Reason: strings.TrimSpace(why),
		Requested: now, Expires: now.Add(window)}
	raw, err := json.Marshal(req)
	if err != nil {
		return ResetRequest{}, err
	}
	// The record first, then the member's slot: the slot then only ever
	// names a request that exists, so a slot naming none is stale.
	if err := e.store.Set(ctx, resetRequestKey(req.ID), raw, window); err != nil {
		return ResetRequest{}, err
	}
	slot := resetPendingKey(member)
	for range 10 {
		old, err := e.store.Get(ctx, slot)
		switch {
		case errors.Is(err, store.ErrNotFound):
			old = nil
		case err != nil:
			e.dropRequest(ctx, req.ID)
			return ResetRequest{}, err
		default:
			pending, _, perr := e.loadRequest(ctx, string(old))
			if perr == nil {
				e.dropRequest(ctx, req.ID)
				return pending, &pendingError{pending}
			}
			if !errors.Is(perr, ErrNoRequest) {
				e.dropRequest(ctx, req.ID)
				return ResetRequest{}, perr
			}
		}
		ok, err := e.store.CompareAndSwap(ctx, slot, old, []byte(req.ID), window)
		if err != nil {
			e.dropRequest(ctx, req.ID)
			return ResetRequest{}, err
		}
		if !ok {
			continue // another request or its end meanwhile: look again
		}
		if err := e.store.IndexPut(ctx, resetRequestsIndex, req.indexEntry()); err != nil {
			_, _ = e.store.CompareAndSwap(ctx, slot, []byte(req.ID), nil, 0)
			e.dropRequest(ctx, req.ID)
			return ResetRequest{}, err
		}
		if req.Contact = e.ContactEmail(u, ""); req.Contact == "" {
			// Told at the member's next visit to the pages instead: a
			// request they did not make is what they most need to hear
			// of. The request stands whatever happens to the notice.
			_, _ = e.updateUser(ctx, member, func(u *User) error {
				if u.Rev == 0 {
					return errNoRecord
				}
				u.addPending("admin_reset_requested", "", now)
				return nil
			})
		}
		return req, nil
	}
	e.dropRequest(ctx, req.ID)
	return ResetRequest{}, fmt.Errorf("%w: the member's pending reset kept changing", store.ErrUnavailable)
}

// pendingError is ErrResetPending naming the member field and the request
// pending.
type pendingError struct{ pending ResetRequest }

func (e *pendingError) Error() string {
	return fmt.Sprintf("member: a reset of this member is already pending (request %s, until %s); approve or withdraw it",
		e.pending.ID, e.pending.Expires.UTC().Format(time.RFC3339))
}

func (e *pendingError) Is(target error) bool { return target == ErrResetPending }

// dropRequest deletes a request record that was never made pending.
func (e *Engine) dropRequest(ctx context.Context, id string) {
	_ = e.store.Delete(ctx, resetRequestKey(id))
}

// loadRequest reads a live request and its stored bytes, for the
// compare-and-swap that claims it.
func (e *Engine) loadRequest(ctx context.Context, id string) (ResetRequest, []byte, error) {
	if !validRequestID(id) {
		return ResetRequest{}, nil, ErrNoRequest
	}
	raw, err := e.store.Get(ctx, resetRequestKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return ResetRequest{}, nil, ErrNoRequest
	}
	if err != nil {
		return ResetRequest{}, nil, err
	}
	var req ResetRequest
	if err := json.Unmarshal(raw, &req); err != nil || req.ID != id {
		return ResetRequest{}, nil, ErrNoRequest
	}
	// The store expires it too, by its own clock.
	if !e.now().Before(req.Expires) {
		return ResetRequest{}, nil, ErrNoRequest
	}
	return req, raw, nil
}

// claimRequest deletes the request if it is still the one read, so that of
// two admins acting at once, on any instances, exactly one goes on.
func (e *Engine) claimRequest(ctx context.Context, req ResetRequest, raw []byte) error {
	ok, err := e.store.CompareAndSwap(ctx, resetRequestKey(req.ID), raw, nil, 0)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNoRequest
	}
	// Its listing and the member's slot go with it; left over, both are
	// read as stale.
	_ = e.store.IndexDelete(ctx, resetRequestsIndex, req.indexEntry())
	_, _ = e.store.CompareAndSwap(ctx, resetPendingKey(req.Member), []byte(req.ID), nil, 0)
	return nil
}

// restoreRequest puts back a claimed request whose reset failed, so it can
// be approved again once the store is back. Best effort.
func (e *Engine) restoreRequest(ctx context.Context, req ResetRequest, raw []byte) {
	left := req.Expires.Sub(e.now())
	if left <= 0 {
		return
	}
	if ok, err := e.store.CompareAndSwap(ctx, resetRequestKey(req.ID), nil, raw, left); err != nil || !ok {
		return
	}
	_, _ = e.store.CompareAndSwap(ctx, resetPendingKey(req.Member), nil, []byte(req.ID), left)
	_ = e.store.IndexPut(ctx, resetRequestsIndex, req.indexEntry())
}

// ApproveReset approves the pending request id and resets the member's
// factors at once, audited as an admin_reset by approver naming the
// requester. why is optional here (the request has one), checked if given.
// The approver must be neither the requester (ErrSameAdmin) nor the member
// (ErrOwnReset); a request approved, withdrawn or expired is ErrNoRequest.
func (e *Engine) ApproveReset(ctx context.Context, approver Admin, id, why string) (ResetRequest, MemberResult, error) {
	req, res, err := e.approveReset(ctx, approver, id, why)
	fields := withAdminIP(ctx, []zap.Field{zap.String("actor", approver.label()), zap.String("admin_reason", strings.TrimSpace(why)),
		zap.String("request", id)})
	if req.ID != "" {
		fields = append(fields, zap.String("requester", req.Requester), zap.String("request_reason", req.Reason))
	}
	e.auditApproval(req.Member, "admin_reset_approved", err, fields...)
	return req, res, err
}

func (e *Engine) approveReset(ctx context.Context, approver Admin, id, why string) (ResetRequest, MemberResult, error) {
	if err := checkApprovalInput(approver.ID, id, why, false); err != nil {
		return ResetRequest{}, MemberResult{}, err
	}
	req, raw, err := e.loadRequest(ctx, id)
	if err != nil {
		return ResetRequest{}, MemberResult{}, err
	}
	switch {
	case approver.ID == req.Requester:
		return req, MemberResult{}, ErrSameAdmin
	case approver.ID == req.Member:
		return req, MemberResult{}, ErrOwnReset
	}
	if err := e.claimRequest(ctx, req, raw); err != nil {
		return req, MemberResult{}, err
	}
	extra := []zap.Field{zap.String("requester", req.Requester), zap.String("request", req.ID)}
	if r := strings.TrimSpace(why); r != "" {
		extra = append(extra, zap.String("approval_reason", r))
	}
	res, err := e.reset(ctx, approver.label(), req.Member, req.Reason, extra...)
	if err != nil {
		var in *InputError
		if !errors.As(err, &in) {
			e.restoreRequest(context.WithoutCancel(ctx), req, raw)
		}
		return req, MemberResult{}, err
	}
	return req, res, nil
}

// WithdrawReset withdraws the pending request id. The caller lets only its
// requester or an approver do so; the engine refuses the member
// (ErrOwnReset) and records who did, and why (required).
func (e *Engine) WithdrawReset(ctx context.Context, by Admin, id, why string) (ResetRequest, error) {
	req, err := e.withdrawReset(ctx, by.ID, id, why)
	fields := withAdminIP(ctx, []zap.Field{zap.String("actor", by.label()), zap.String("admin_reason", strings.TrimSpace(why)),
		zap.String("request", id)})
	if req.ID != "" {
		fields = append(fields, zap.String("requester", req.Requester))
	}
	e.auditApproval(req.Member, "admin_reset_withdrawn", err, fields...)
	return req, err
}

func (e *Engine) withdrawReset(ctx context.Context, by, id, why string) (ResetRequest, error) {
	if err := checkApprovalInput(by, id, why, true); err != nil {
		return ResetRequest{}, err
	}
	req, raw, err := e.loadRequest(ctx, id)
	if err != nil {
		return ResetRequest{}, err
	}
	if by == req.Member {
		// An admin whose own reset is asked for could otherwise hold it
		// off for ever.
		return req, ErrOwnReset
	}
	return req, e.claimRequest(ctx, req, raw)
}

func checkApprovalInput(actor, id, why string, reasonRequired bool) error {
	switch {
	case actor == "":
		return &InputError{"actor", "required: who acts"}
	case id == "":
		return &InputError{"id", "required: the request's ID"}
	}
	if reasonRequired || strings.TrimSpace(why) != "" {
		return checkReason(why)
	}
	return nil
}

// ResetRequestByID returns the pending request id, or ErrNoRequest.
func (e *Engine) ResetRequestByID(ctx context.Context, id string) (ResetRequest, error) {
	req, _, err := e.loadRequest(ctx, id)
	return req, err
}

// MemberResetRequest returns the member's pending request, or
// ErrNoRequest when none is pending.
func (e *Engine) MemberResetRequest(ctx context.Context, member string) (ResetRequest, error) {
	id, err := e.store.Get(ctx, resetPendingKey(member))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ResetRequest{}, ErrNoRequest
	case err != nil:
		return ResetRequest{}, err
	}
	req, _, err := e.loadRequest(ctx, string(id))
	if err == nil && req.Member != member {
		return ResetRequest{}, ErrNoRequest
	}
	return req, err
}

// ResetRequests lists the pending requests, oldest first. Index entries
// whose request is gone (approved, withdrawn, expired) are removed on the
// way.
func (e *Engine) ResetRequests(ctx context.Context) ([]ResetRequest, error) {
	var list []ResetRequest
	after := ""
	for {
		entries, err := e.store.IndexPage(ctx, resetRequestsIndex, after, resetListPage)
		if err != nil {
			return nil, err
		}
		var gone []string
		for _, entry := range entries {
			_, id, _ := strings.Cut(entry, " ")
			req, _, err := e.loadRequest(ctx, id)
			switch {
			case errors.Is(err, ErrNoRequest):
				gone = append(gone, entry)
			case err != nil:
				return nil, err
			default:
				list = append(list, req)
			}
		}
		if len(gone) > 0 {
			_ = e.store.IndexDelete(ctx, resetRequestsIndex, gone...)
		}
		if len(entries) < resetListPage {
			return list, nil
		}
		after = entries[len(entries)-1]
	}
}

// auditApproval writes a four-eyes event for member: success, refused (a
// four-eyes rule or a bad argument) or error.
func (e *Engine) auditApproval(member, event string, err error, fields ...zap.Field) {
	var in *InputError
	switch {
	case err == nil:
		e.Audit(Actor{User: member}, event, "success", fields...)
	case errors.Is(err, ErrSameAdmin):
		e.Audit(Actor{User: member}, event, "refused", append(fields, zap.String("reason", "same_admin"))...)
	case errors.Is(err, ErrOwnReset):
		e.Audit(Actor{User: member}, event, "refused", append(fields, zap.String("reason", "own_reset"))...)
	case errors.Is(err, ErrNoRequest):
		e.Audit(Actor{User: member}, event, "refused", append(fields, zap.String("reason", "no_request"))...)
	case errors.Is(err, ErrResetPending):
		e.Audit(Actor{User: member}, event, "refused", append(fields, zap.String("reason", "pending"))...)
	case errors.As(err, &in):
		e.Audit(Actor{User: member}, event, "refused", append(fields, zap.String("reason", "invalid_"+in.Field))...)
	default:
		e.Audit(Actor{User: member}, event, "error", append(fields, zap.String("reason", reason(err)))...)
	}
}
