package twofactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
)

// The admin API: routes under /two-factor/ on Caddy's admin endpoint, which
// Caddy keeps on localhost by default (or behind its remote-admin mTLS).
// There is no member identity there, so actions are audited as the
// operator, adminActor.

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// adminActor names whoever acts through the admin endpoint in the audit
// trail.
const adminActor = "admin endpoint"

// maxAdminBody bounds a request body to the admin routes.
const maxAdminBody = 64 << 10

// AdminAPI is the admin.api.two_factor module: key rotation, unlocking and
// statistics for the running two_factor app.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.two_factor",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/two-factor/stats", Handler: a.route(http.MethodGet, a.handleStats)},
		{Pattern: "/two-factor/rekey", Handler: a.route(http.MethodPost, a.handleRekey)},
		{Pattern: "/two-factor/members/unlock", Handler: a.route(http.MethodPost, a.handleUnlock)},
		{Pattern: "/two-factor/members/reset", Handler: a.route(http.MethodPost, a.handleReset)},
		{Pattern: "/two-factor/members/forget-devices", Handler: a.route(http.MethodPost, a.memberAction("admin_devices", (*challenge.Engine).ForgetDevices))},
		{Pattern: "/two-factor/members/confirm-app", Handler: a.route(http.MethodPost, a.memberAction("admin_app_confirmed", (*challenge.Engine).ConfirmApp))},
		{Pattern: "/two-factor/members/end-sessions", Handler: a.route(http.MethodPost, a.memberAction("admin_sessions", (*challenge.Engine).EndSessions))},
		{Pattern: "/two-factor/members/remove-passkey", Handler: a.route(http.MethodPost, a.handleRemovePasskey)},
		{Pattern: "/two-factor/members", Handler: a.route(http.MethodGet, a.handleMembers)},
		{Pattern: "/two-factor/members/reconcile", Handler: a.route(http.MethodPost, a.handleReconcile)},
		{Pattern: "/two-factor/approvals", Handler: a.route(http.MethodGet, a.handleApprovals)},
		{Pattern: "/two-factor/approvals/approve", Handler: a.route(http.MethodPost, a.handleApprove)},
		{Pattern: "/two-factor/approvals/withdraw", Handler: a.route(http.MethodPost, a.handleWithdraw)},
		{Pattern: "/two-factor/export", Handler: a.route(http.MethodGet, a.handleExport)},
		{Pattern: "/two-factor/import", Handler: a.route(http.MethodPost, a.handleImport)},
		{Pattern: "/two-factor/figures", Handler: a.route(http.MethodGet, a.handleFigures)},
		{Pattern: "/two-factor/audit", Handler: a.route(http.MethodGet, a.handleAudit)},
		{Pattern: "/two-factor/audit/export", Handler: a.route(http.MethodGet, a.handleAuditExport)},
		{Pattern: "/two-factor/audit/verify", Handler: a.route(http.MethodGet, a.handleAuditVerify)},
	}
}

// adminHandler serves one admin route for the running app.
type adminHandler func(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error

// route checks the method and finds the running app for h.
func (a *AdminAPI) route(method string, h adminHandler) caddy.AdminHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != method {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed; use %s", method)}
		}
		app, engine, err := a.running(r)
		if err != nil {
			return err
		}
		return h(w, r, app, engine)
	}
}

// running finds the two_factor app of the config running now. It is looked
// up per request, not in Provision: admin modules are loaded for every
// config, and asking for the app there would create one where none is used.
func (a *AdminAPI) running(r *http.Request) (*App, *challenge.Engine, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("two_factor")
	if err != nil {
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusNotFound,
			Err: errors.New("two_factor: no two_factor app in the running config")}
	}
	tf := app.(*App)
	b := tf.backend(r.Context())
	if b == nil {
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable,
			Err: errors.New("two_factor: the store is unavailable or its data cannot be trusted; see Caddy's log")}
	}
	return tf, b.Engine, nil
}

// StatsResponse is the answer of GET /two-factor/stats.
type StatsResponse struct {
	// StaleRecords is how many member records hold data under a key other
	// than the current one; the older keys are needed until it is 0.
	StaleRecords int `json:"stale_records"`
	// UnreadableRecords is how many of them are under a key no longer
	// configured.
	UnreadableRecords int `json:"unreadable_records"`
	// StaleCountComplete reports that every record was counted (at start,
	// or by a rekey); until then the counts cover the records seen so far.
	StaleCountComplete bool `json:"stale_count_complete"`
	// Keys is how many keys are configured.
	Keys int `json:"keys"`
}

func (a *AdminAPI) handleStats(w http.ResponseWriter, _ *http.Request, app *App, engine *challenge.Engine) error {
	s := engine.StaleRecords()
	return writeJSON(w, StatsResponse{StaleRecords: s.Count, UnreadableRecords: s.Missing,
		StaleCountComplete: s.Complete, Keys: app.keyCount()})
}

func (a *AdminAPI) handleRekey(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	if err := decodeBody(r, &struct{}{}); err != nil {
		return err
	}
	res, err := engine.Rekey(r.Context(), adminActor)
	if err != nil {
		return caddy.APIError{HTTPStatus: statusOf(err), Err: fmt.Errorf("rekey: %w", err)}
	}
	app.noteStale(engine)
	return writeJSON(w, res)
}

// UnlockRequest is the body of POST /two-factor/members/unlock: a member
// or a client address, and why.
type UnlockRequest struct {
	Member  string `json:"member,omitempty"`
	Address string `json:"address,omitempty"`
	Reason  string `json:"reason"`
}

func (a *AdminAPI) handleUnlock(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	var req UnlockRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	switch {
	case req.Member == "" && req.Address == "":
		return badField("member", "required: a member ID (or an address instead)")
	case req.Member != "" && req.Address != "":
		return badField("address", "give member or address, not both")
	}
	var res challenge.UnlockResult
	var err error
	if req.Member != "" {
		res, err = engine.Unlock(r.Context(), adminActor, req.Reason, app.memberID(req.Member))
	} else {
		res, err = engine.UnlockAddress(r.Context(), adminActor, req.Reason, req.Address)
	}
	if err != nil {
		return apiError(err)
	}
	app.adminNotice(res.Contact, notify.NoticeData{Kind: "admin_unlock"})
	return writeJSON(w, res)
}

// MemberRequest is the body of POST /two-factor/members/reset,
// /forget-devices and /end-sessions: the member, and why.
type MemberRequest struct {
	Member string `json:"member"`
	Reason string `json:"reason"`
}

// memberAction serves an engine action on one member's factors.
func (a *AdminAPI) memberAction(kind string, act func(*challenge.Engine, context.Context, string, string, string) (challenge.MemberResult, error)) adminHandler {
	return func(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
		var req MemberRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		res, err := act(engine, r.Context(), adminActor, app.memberID(req.Member), req.Reason)
		if err != nil {
			return apiError(err)
		}
		app.adminNotice(res.Contact, notify.NoticeData{Kind: kind})
		return writeJSON(w, res)
	}
}

// PasskeyRequest is the body of POST /two-factor/members/remove-passkey:
// the member, which of their passkeys or security keys (its id in the
// member's credentials), and why.
type PasskeyRequest struct {
	Member     string `json:"member"`
	Credential string `json:"credential"`
	Reason     string `json:"reason"`
}

// handleRemovePasskey removes one of a member's passkeys or security
// keys, and tells the member, naming it. With reset_approval on, removing
// the member's last factor is refused (409): that is a reset, which needs
// a second admin.
func (a *AdminAPI) handleRemovePasskey(w http.ResponseWriter, r *http.Request, app *App, engine *challenge.Engine) error {
	var req PasskeyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	res, err := engine.RemoveCredentialFor(r.Context(), adminActor, app.memberID(req.Member), req.Credential, req.Reason, app.ResetApproval != 0)
	if errors.Is(err, challenge.ErrResetNeedsApproval) {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: errors.New(
			"credential: this is the member's last second factor, and resets need a second admin's approval (reset_approval): request a reset instead (POST /two-factor/members/reset)")}
	}
	if err != nil {
		return apiError(err)
	}
	app.adminNotice(res.Contact, notify.NoticeData{Kind: "admin_passkey_removed", Name: res.Passkey})
	return writeJSON(w, res)
}

// memberID is a member ID given to the admin endpoint as the handlers
// compare IDs: folded where they fold them.
func (a *App) memberID(id string) string {
	if f := a.idFolder(); f != nil {
		return f(id)
	}
	return id
}

// idFolder is foldID where every handler folds member IDs, else nil.
func (a *App) idFolder() func(string) string {
	if a.foldIDs.Load() && !a.exactIDs.Load() {
		return foldID
	}
	return nil
}

// noticeSite is what an admin's notice to a member names: the first
// two_factor handler's site, as the admin endpoint serves no site.
type noticeSite struct{ name, url, prefix string }

// adminNotice tells the member by email, in the background, that an admin
// changed their factors (d.Kind, and d.Name for a passkey), where an
// address is known (the enrolled one, read before the change) and email
// is configured.
func (a *App) adminNotice(to string, d notify.NoticeData) {
	site := a.site.Load()
	if a.email == nil || to == "" || site == nil {
		return
	}
	kind := d.Kind
	d.Site, d.When, d.SettingsPath = site.name, clock.Now().UTC().Format("2006-01-02 15:04 UTC"), site.prefix+"methods"
	if site.url != "" {
		d.SettingsURL = site.url + site.prefix + "methods"
	}
	msg, err := notify.Notice("en", d)
	if err != nil {
		a.logger.Error("composing a security notice", zap.String("kind", kind), zap.Error(err))
		return
	}
	msg.To = to
	sender, logger := a.email, a.logger
	a.bg.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := sender.Send(ctx, msg); err != nil {
			logger.Warn("sending a security notice failed", zap.String("kind", kind), zap.String("class", notify.Class(err)))
		}
	})
}

// decodeBody reads a JSON object into v, refusing unknown fields so a
// misspelt one is named rather than ignored. An empty body is an empty
// object.
func decodeBody(r *http.Request, v any) error {
	return decodeBodyUpTo(r, v, maxAdminBody)
}

// decodeBodyUpTo is decodeBody for a body of up to limit bytes.
func decodeBodyUpTo(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return badField(typeErr.Field, "must be a "+typeErr.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badField(name, "unknown field")
	}
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: not a JSON object: %v", err)}
}

func badField(field, problem string) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: &challenge.InputError{Field: field, Problem: problem}}
}

// apiError maps an engine error to the admin API's answer.
func apiError(err error) error {
	var in *challenge.InputError
	if errors.As(err, &in) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	return caddy.APIError{HTTPStatus: statusOf(err), Err: err}
}

func statusOf(err error) int {
	if errors.Is(err, challenge.ErrUnreadable) || errors.Is(err, challenge.ErrWrongKey) {
		return http.StatusInternalServerError
	}
	return http.StatusServiceUnavailable // the store, which recovers by itself
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
