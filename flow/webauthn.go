package flow

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
)

// Passkeys and security keys: the JSON routes the pages' script calls
// around navigator.credentials, and the settings page's rename and remove
// forms. The ceremony is bound to the browser by its CSRF secret, as a
// code sent by email or SMS is: another browser, even the same member's,
// has no ceremony to finish.
//
// The script posts the PublicKeyCredential as the body and everything
// else in the query: return_to, from, remember=1 (sign-in) and name
// (registration). The CSRF token goes in the X-CSRF-Token header.
// Answers are JSON: {"redirect": "<path>"} on success, the options for a
// begin, or {"error": "<message key>"} with the status.

// csrfHeader carries the CSRF token of a JSON post.
const csrfHeader = "X-CSRF-Token"

// maxWebAuthnBody bounds a JSON post: a registration with an attestation
// certificate chain stays well under it.
const maxWebAuthnBody = 96 << 10

// jsonRoutes are the routes whose posts are JSON, not forms.
var jsonRoutes = map[string]bool{
	"webauthn/login/begin": true, "webauthn/login/finish": true,
	"webauthn/register/begin": true, "webauthn/register/finish": true,
}

// writeJSON answers a JSON route, never cached.
func writeJSON(p *request, status int, v any) error {
	h := p.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	p.w.WriteHeader(status)
	return json.NewEncoder(p.w).Encode(v)
}

// jsonError answers a JSON route's refusal with a message key the page
// shows.
func jsonError(p *request, status int, key string) error {
	return writeJSON(p, status, map[string]string{"error": key})
}

// jsonRedirect is a JSON route's success: where the script goes next.
func jsonRedirect(p *request, target string) error {
	return writeJSON(p, http.StatusOK, map[string]string{"redirect": target})
}

// goTo sends the member on to target: a redirect for a page or form, a
// refusal naming target for a JSON route (step-up, enrolment first).
func goTo(p *request, rt *route, target, key string) error {
	if jsonRoutes[rt.path] {
		return writeJSON(p, http.StatusForbidden, map[string]string{"error": key, "redirect": target})
	}
	return seeOther(p, target)
}

// webAuthnError answers what the engine refused in a ceremony. Locks and
// limits carry their wait in Retry-After and their reason as the
// gateway's other refusals do; refused responses all get the same key,
// so an attacker learns no more than "no".
func (f *Flow) webAuthnError(p *request, err error) error {
	var locked *challenge.LockedError
	var limited *challenge.LimitedError
	var input *challenge.InputError
	switch {
	case errors.As(err, &locked):
		f.lockoutNotice(p, locked)
		retryAfter(p.w, locked.Until)
		return jsonError(p, http.StatusTooManyRequests, "locked")
	case errors.As(err, &limited):
		retryAfter(p.w, limited.Until)
		return jsonError(p, http.StatusTooManyRequests, "too_many_attempts")
	case errors.As(err, &input):
		return writeJSON(p, http.StatusBadRequest, map[string]string{"error": "passkey_name_invalid", "field": input.Field})
	case errors.Is(err, challenge.ErrExpired):
		return jsonError(p, http.StatusGone, "passkey_expired")
	case errors.Is(err, challenge.ErrAuthenticatorNotAllowed):
		return jsonError(p, http.StatusForbidden, "passkey_not_allowed")
	case errors.Is(err, challenge.ErrTooManyCredentials):
		return jsonError(p, http.StatusConflict, "too_many_passkeys")
	case errors.Is(err, challenge.ErrCredentialRefused):
		return jsonError(p, http.StatusUnauthorized, "passkey_refused")
	case errors.Is(err, challenge.ErrNotEnrolled), errors.Is(err, challenge.ErrWebAuthnOff):
		return jsonError(p, http.StatusConflict, "method_unavailable")
	case errors.Is(err, challenge.ErrKeyMissing):
		f.logger.Error("a member's passkeys are sealed with a key no longer configured", zap.Error(err))
	default:
		f.logger.Error("second factor unavailable", zap.String("stage", "webauthn"), zap.Error(err))
	}
	p.w.Header().Set("Retry-After", "30")
	return jsonError(p, http.StatusServiceUnavailable, "unavailable")
}

// webAuthnStep runs one step of a ceremony: refused when passkeys are not
// offered for where the member is going, with the posted credential read
// for a finish (nil for a begin), within the store's timeout.
func (f *Flow) webAuthnStep(p *request, offered, finish bool, step func(context.Context, challenge.Actor, []byte) error) error {
	if !offered {
		return jsonError(p, http.StatusConflict, "method_unavailable")
	}
	var body []byte
	if finish {
		var err error
		if body, err = io.ReadAll(p.r.Body); err != nil || len(body) == 0 {
			return jsonError(p, http.StatusBadRequest, "bad_request")
		}
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	return step(ctx, f.actor(p.r, p.id.ID), body)
}

// webAuthnOptions answers a begun ceremony's options for the browser's
// navigator.credentials call.
func (f *Flow) webAuthnOptions(p *request, options []byte, err error) error {
	if err != nil {
		return f.webAuthnError(p, err)
	}
	return writeJSON(p, http.StatusOK, json.RawMessage(options))
}

// webAuthnOffered reports whether the member may sign in with a passkey
// for where they are going.
func (f *Flow) webAuthnOffered(p *request) bool {
	return slices.Contains(f.offeredMethods(p, p.user), challenge.MethodWebAuthn)
}

// webAuthnMayRegister reports whether a passkey may be added for where
// the member is going. The mayEnrol guard has let the member in.
func (f *Flow) webAuthnMayRegister(p *request) bool {
	return f.methodConfigured(challenge.MethodWebAuthn) && p.accepts(challenge.MethodWebAuthn)
}

// webAuthnLoginBegin answers the options for navigator.credentials.get.
func (f *Flow) webAuthnLoginBegin(p *request) error {
	return f.webAuthnStep(p, f.webAuthnOffered(p), false, func(ctx context.Context, a challenge.Actor, _ []byte) error {
		options, err := p.e.BeginLogin(ctx, a, p.csrf)
		return f.webAuthnOptions(p, options, err)
	})
}

// webAuthnLoginFinish checks the assertion and, as a right code does,
// starts a fresh second-factor session.
func (f *Flow) webAuthnLoginFinish(p *request) error {
	return f.webAuthnStep(p, f.webAuthnOffered(p), true, func(ctx context.Context, a challenge.Actor, body []byte) error {
		browser := f.withBrowser(p, &a)
		u, cred, err := p.e.FinishLogin(ctx, a, p.csrf, body)
		if err != nil {
			return f.webAuthnError(p, err)
		}
		method := challenge.MethodWebAuthn
		now := clock.Now()
		f.verifiedBy(p, u, method, cred.Unproven, now)
		f.seenBrowser(p, u, method, true, browser)
		if p.r.URL.Query().Get("remember") == "1" && p.policy != nil && p.policy.Remember > 0 && p.accepts(method) {
			f.rememberDevice(ctx, p, u, a, method, now)
		}
		if !p.accepts(method) {
			return jsonRedirect(p, f.pageURL(p, "enrol"))
		}
		return jsonRedirect(p, p.page.ReturnTo)
	})
}

// webAuthnRegisterBegin answers the options for
// navigator.credentials.create.
func (f *Flow) webAuthnRegisterBegin(p *request) error {
	return f.webAuthnStep(p, f.webAuthnMayRegister(p), false, func(ctx context.Context, a challenge.Actor, _ []byte) error {
		// The name the authenticator shows for the account (and its
		// display name): the identity's email address, else the ID.
		account := identityEmail(p)
		if account == "" {
			account = p.id.ID
		}
		options, err := p.e.BeginRegistration(ctx, a, p.csrf, account)
		return f.webAuthnOptions(p, options, err)
	})
}

// webAuthnRegisterFinish adds the passkey under the name the member gave
// and starts a fresh session with it. After a member's first method comes
// their set of recovery codes, made by the recovery page's post (shown
// once, in its answer); a passkey added from the settings page leads back
// there; otherwise on to where the member was going.
func (f *Flow) webAuthnRegisterFinish(p *request) error {
	return f.webAuthnStep(p, f.webAuthnMayRegister(p), true, func(ctx context.Context, a challenge.Actor, body []byte) error {
		stepUpActor(p, &a)
		u, cred, err := p.e.FinishRegistration(ctx, a, p.csrf, p.r.URL.Query().Get("name"), body)
		if err != nil {
			return f.webAuthnError(p, err)
		}
		method := challenge.MethodWebAuthn
		f.verifiedBy(p, u, method, cred.Unproven, clock.Now())
		f.notice(p, u, notify.NoticeData{Kind: "passkey_added", Name: cred.Name})
		f.seenBrowser(p, u, method, false, nil)
		next := p.page.ReturnTo
		if u.Recovery == nil {
			next = f.pageURL(p, "recovery")
		} else if back, ok := f.addedBack(p, u, method); ok {
			next = back
		}
		// The credential's ID (the gateway's, not the authenticator's)
		// names it in the settings page's rename and remove forms.
		return writeJSON(p, http.StatusOK, map[string]string{"redirect": next, "credential": cred.ID, "name": cred.Name})
	})
}

// webAuthnRename renames one of the member's passkeys (settings page).
func (f *Flow) webAuthnRename(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	_, err := p.e.RenameCredential(ctx, f.actor(p.r, p.id.ID), p.r.PostForm.Get("credential"), p.r.PostForm.Get("name"))
	var input *challenge.InputError
	switch {
	case errors.As(err, &input):
		p.page.Error = "passkey_name_invalid"
		return f.showMethods(p, p.user, http.StatusBadRequest)
	case errors.Is(err, challenge.ErrCredentialUnknown):
		p.page.Error = "method_unavailable"
		return f.showMethods(p, p.user, http.StatusBadRequest)
	case err != nil:
		return f.unavailable(p, "rename", err)
	}
	return seeOther(p, f.pageURL(p, "methods")+"&renamed="+challenge.MethodWebAuthn)
}

// webAuthnRemove removes one of the member's passkeys, only with the
// confirmation box ticked and, as for other methods, never the last
// method where a second factor is required. Other browsers' sessions and
// remembered devices end; this browser keeps its session under the new
// epoch. The member is told by email, naming the passkey: a removal they
// did not make (a thief with the password and an open session) stands
// out. A rename changes nothing that verifies, so it is audited only.
func (f *Flow) webAuthnRemove(p *request) error {
	if p.r.PostForm.Get("confirm") != "yes" {
		p.page.Error = "confirm_remove"
		return f.showMethods(p, p.user, http.StatusBadRequest)
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	id := p.r.PostForm.Get("credential")
	next, err := p.e.RemoveCredential(ctx, f.actor(p.r, p.id.ID), id, !f.cfg.RequiresEnrolment)
	switch {
	case errors.Is(err, challenge.ErrLastMethod):
		p.page.Error = "last_method"
		return f.showMethods(p, p.user, http.StatusConflict)
	case errors.Is(err, challenge.ErrCredentialUnknown):
		p.page.Error = "method_unavailable"
		return f.showMethods(p, p.user, http.StatusBadRequest)
	case err != nil:
		return f.unavailable(p, "remove", err)
	}
	// Told at the address known before the change, named as it was.
	f.notice(p, p.user, notify.NoticeData{Kind: "passkey_removed", Name: credentialName(p.user, id)})
	return f.removed(p, next, challenge.MethodWebAuthn)
}

// credentialName is the name of the member's credential with this ID, ""
// when none.
func credentialName(u *challenge.User, id string) string {
	for _, c := range u.WebAuthnCredentials() {
		if c.ID == id {
			return c.Name
		}
	}
	return ""
}
