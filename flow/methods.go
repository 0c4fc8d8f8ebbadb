package flow

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// The member's settings: their methods, the default, disabling one, and
// (on the same page) devices, recovery codes and recent activity. Every
// route here has the stepUp guard.

func (f *Flow) methodsPage(p *request) error {
	return f.showMethods(p, p.user, http.StatusOK)
}

func (f *Flow) showMethods(p *request, u *challenge.User, status int) error {
	def := u.DefaultMethod()
	// The only method where one is required cannot go: say so instead of
	// offering a form the server refuses.
	kept := f.cfg.RequiresEnrolment && len(u.Methods()) == 1
	for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		added, used, ok := u.MethodDates(m)
		if !ok {
			if f.methodConfigured(m) {
				p.page.CanAdd = true
			}
			continue
		}
		opt := pages.MethodOption{Name: m, Default: m == def, Added: pages.Day(added), Usable: f.methodConfigured(m), Kept: kept}
		if !used.IsZero() {
			opt.LastUsed = pages.Day(used)
		}
		if m != challenge.MethodTOTP {
			opt.SentTo = p.e.Destination(u, m, identityEmail(p))
			opt.Usable = opt.Usable && opt.SentTo != ""
		}
		p.page.Methods = append(p.page.Methods, opt)
	}
	f.listPasskeys(p, u)
	p.page.Enrolled = true
	p.page.FromSettings = true
	f.suggestSecond(p, u)
	if err := f.listDevices(p); err != nil {
		return f.unavailable(p, "devices", err)
	}
	p.page.Networks = networkOptions(u.KnownNetworks())
	p.page.RecordsNetworks = f.cfg.RecordNetworks
	if err := f.listActivity(p); err != nil {
		return f.unavailable(p, "activity", err)
	}
	if u.Recovery != nil {
		p.page.HasRecovery = true
		p.page.RecoveryLeft = u.Recovery.Left
	}
	if at, ok := u.RecoveredAt(); ok {
		p.page.RecoveredOn = pages.Day(at)
	}
	q := p.r.URL.Query()
	switch added := q.Get("added"); {
	case added != "" && u.Recovery != nil && u.Recovery.Left < challenge.RecoveryCodeCount:
		p.page.Notice = "new_codes_offered"
	case added != "" && u.Has(added):
		p.page.Notice, p.page.NoticeDone = addedNotice(added), true
	case q.Get("removed") == challenge.MethodWebAuthn:
		p.page.Notice = "passkey_removed"
	case q.Get("removed") != "":
		p.page.Notice = "method_removed"
	case q.Get("renamed") == challenge.MethodWebAuthn:
		p.page.Notice, p.page.NoticeDone = "passkey_renamed", true
	case q.Get("forgot") == "all":
		p.page.Notice = "devices_forgotten"
	case q.Get("forgot") != "":
		p.page.Notice = "devices_forgotten_one"
	}
	return f.render(p, status, "methods")
}

// listPasskeys puts the member's passkeys and security keys on the
// settings page, with the last one kept (no "Remove") by the rule
// RemoveCredential applies.
func (f *Flow) listPasskeys(p *request, u *challenge.User) {
	creds := u.WebAuthnCredentials()
	kept := f.cfg.RequiresEnrolment && len(u.Methods()) == 1 && len(creds) == 1
	for _, c := range creds {
		opt := pages.PasskeyOption{ID: c.ID, Name: c.Name, Added: pages.Day(c.Added), Kind: passkeyKind(c), Kept: kept}
		if !c.LastUsed.IsZero() {
			opt.LastUsed = pages.Day(c.LastUsed)
		}
		p.page.Passkeys = append(p.page.Passkeys, opt)
	}
	p.page.MaxPasskeyName = challenge.MaxCredentialName
	p.page.PasskeyAdd = f.canEnrol(p, u, challenge.MethodWebAuthn)
}

// passkeyKind is the catalog key saying what a credential is, from what
// the authenticator reported: a passkey synced between devices, one kept
// on a device, one on a phone used nearby, or a security key; "" when it
// said nothing.
func passkeyKind(c challenge.WebAuthnCredential) string {
	switch {
	case c.BackupEligible:
		return "passkey_kind_synced"
	case slices.Contains(c.Transports, "internal"):
		return "passkey_kind_device"
	case slices.Contains(c.Transports, "hybrid"):
		return "passkey_kind_phone"
	case slices.ContainsFunc(c.Transports, func(t string) bool { return t == "usb" || t == "nfc" || t == "ble" }):
		return "passkey_kind_key"
	}
	return ""
}

// setDefault makes one of the member's methods the first one offered.
func (f *Flow) setDefault(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	method := p.r.PostForm.Get("method")
	if !p.user.Has(method) {
		p.page.Error = "method_unavailable"
		return f.showMethods(p, p.user, http.StatusBadRequest)
	}
	if _, err := p.e.SetDefault(ctx, f.actor(p.r, p.id.ID), method); err != nil {
		return f.unavailable(p, "default", err)
	}
	return seeOther(p, f.pageURL(p, "methods"))
}

// removeMethod disables one of the member's methods, only with the
// confirmation box ticked. The last method cannot go where any protected
// path requires a second factor. Other browsers' sessions and remembered
// devices end; this browser gets a new session, the member having just
// proved themselves.
func (f *Flow) removeMethod(p *request) error {
	u := p.user
	method := p.r.PostForm.Get("method")
	if !u.Has(method) {
		p.page.Error = "method_unavailable"
		return f.showMethods(p, u, http.StatusBadRequest)
	}
	if p.r.PostForm.Get("confirm") != "yes" {
		p.page.Error = "confirm_remove"
		return f.showMethods(p, u, http.StatusBadRequest)
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	next, err := p.e.RemoveMethod(ctx, f.actor(p.r, p.id.ID), method, !f.cfg.RequiresEnrolment)
	if errors.Is(err, challenge.ErrLastMethod) {
		p.page.Error = "last_method"
		return f.showMethods(p, u, http.StatusConflict)
	}
	if err != nil {
		return f.unavailable(p, "remove", err)
	}
	// Told at the address known before the change, which may be the one
	// just removed.
	f.notice(p, u, notify.NoticeData{Kind: "method_removed", Method: method})
	return f.removed(p, next, method)
}

// removed goes on after a method or passkey was removed: without a
// second factor left, the session ends; otherwise the same session under
// the new epoch (a change is not a new code, so the step-up window and
// the session's lifetime run on unchanged), back to the settings page.
func (f *Flow) removed(p *request, next *challenge.User, method string) error {
	if !next.Enrolled() {
		p.jar.EndSession(p.w, p.r)
		return seeOther(p, p.page.ReturnTo)
	}
	s := *p.session
	s.ID = session.NewID()
	s.Epoch = next.Epoch
	p.jar.SetSession(p.w, p.r, &s, clock.Now())
	return seeOther(p, f.pageURL(p, "methods")+"&removed="+url.QueryEscape(method))
}

// listActivity puts the member's recent security events on the page.
func (f *Flow) listActivity(p *request) error {
	events, err := p.e.RecentActivity(p.r.Context(), p.id.ID)
	if err != nil {
		return err
	}
	p.page.Activity = activityItems(p.page, events)
	return nil
}

// activityItems are a member's events as a page lists them.
func activityItems(page *pages.Page, events []challenge.Activity) []pages.ActivityItem {
	var items []pages.ActivityItem
	for _, ev := range events {
		item := pages.ActivityItem{
			When: pages.When(ev.Time), IP: ev.IP, Browser: audit.Browser(ev.UserAgent),
			Failure: securityFailure(ev.Event, ev.Result), Count: ev.Count,
		}
		method := ev.Method
		if method != "" {
			method = page.T("method_name_" + method)
		}
		item.What, item.WhatArgs = activityText(ev, method)
		items = append(items, item)
	}
	return items
}

// addedNotice is the confirmation of a method just added.
func addedNotice(method string) string { return "method_added_" + method }

// securityFailure reports whether an event of the member's activity is a
// failure that may be someone else's doing: a wrong code at sign-in, a
// lockout, a passkey or security key that may have been copied. The page shows those as failures; the member's own refused
// changes and mistyped set-up codes are not.
func securityFailure(event, result string) bool {
	return (event == "verify" && result == "failure") || event == "lockout" || event == "webauthn_counter_regressed"
}

// activityText names an event of the member's activity (every event
// challenge.ActivityEvents lists, whatever its result), with method the
// method's name in the page's language.
func activityText(ev challenge.Activity, method string) (string, []any) {
	ok := ev.Result == "success"
	withMethod := func(key string) (string, []any) {
		if method == "" {
			return key + "_any", nil
		}
		return key, []any{method}
	}
	switch ev.Event {
	case "verify":
		switch ev.Result {
		case "success":
			return withMethod("activity_verified")
		case "failure":
			return withMethod("activity_failed")
		}
		return "activity_verify_error", nil
	case "enrol_confirm":
		if ok {
			return withMethod("activity_added")
		}
		return withMethod("activity_setup_failed")
	case "method_removed":
		if ok {
			return withMethod("activity_removed")
		}
		return withMethod("activity_remove_refused")
	case "recovery_codes_generated":
		if ev.Replaced {
			return "activity_codes_replaced", nil
		}
		return "activity_codes", nil
	case "device_remembered":
		return "activity_remembered", nil
	case "device_forgotten":
		return "activity_forgotten", nil
	case "lockout":
		if ev.Result == "address_locked" {
			return "activity_address_locked", nil
		}
		return "activity_locked", nil
	case "session_revoked":
		if ok {
			return "activity_signed_out", nil
		}
		return "activity_sign_out_error", nil
	case "new_browser":
		return "activity_new_browser", nil
	case "network_skip":
		return "activity_network_skip", nil
	case "default_method":
		return withMethod("activity_default")
	case "admin_unlock":
		return "activity_unlocked", nil
	case "admin_reset":
		return "activity_admin_reset", nil
	case "admin_reset_requested":
		return "activity_admin_reset_requested", nil
	case "admin_reset_withdrawn":
		return "activity_admin_reset_withdrawn", nil
	case "admin_devices":
		return "activity_admin_devices", nil
	case "admin_sessions":
		return "activity_admin_sessions", nil
	case "admin_app_confirmed":
		return "activity_admin_app_confirmed", nil
	case "admin_passkey_removed":
		return "activity_admin_passkey_removed", nil
	case "webauthn_registered":
		if ok {
			return "activity_webauthn_added", nil
		}
		return "activity_webauthn_add_failed", nil
	case "webauthn_removed":
		if ok {
			return "activity_webauthn_removed", nil
		}
		return "activity_webauthn_remove_refused", nil
	case "webauthn_renamed":
		if ok {
			return "activity_webauthn_renamed", nil
		}
		return "activity_webauthn_rename_refused", nil
	case "webauthn_counter_regressed":
		return "activity_webauthn_cloned", nil
	}
	return "activity_other", nil
}

// suggestSecond fills Suggest for a member with one method: the methods
// the site offers that they have not added, the app first for a member
// who gets codes by email or SMS (it works without a signal or an inbox),
// and for an app user the channels, which still work when the phone is
// lost. Where the member came from a protected path, only the methods
// that path accepts are offered: a second way in that the path refuses
// would not get them in there.
func (f *Flow) suggestSecond(p *request, u *challenge.User) {
	if len(u.Methods()) != 1 {
		return
	}
	for _, m := range []string{challenge.MethodWebAuthn, challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		if !u.Has(m) && f.methodConfigured(m) && p.accepts(m) {
			p.page.Suggest = append(p.page.Suggest, m)
		}
	}
}
