package flow

import (
	"errors"
	"net/http"
	"net/url"
	"time"

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
	for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		added, used, ok := u.MethodDates(m)
		if !ok {
			if f.methodConfigured(m) {
				p.page.CanAdd = true
			}
			continue
		}
		opt := pages.MethodOption{Name: m, Default: m == def, Added: added.Format(time.DateOnly), Usable: f.methodConfigured(m)}
		if !used.IsZero() {
			opt.LastUsed = used.Format(time.DateOnly)
		}
		if m != challenge.MethodTOTP {
			opt.SentTo = p.e.Destination(u, m, identityEmail(p))
			opt.Usable = opt.Usable && opt.SentTo != ""
		}
		p.page.Methods = append(p.page.Methods, opt)
	}
	p.page.Enrolled = true
	f.suggestSecond(p, u)
	if err := f.listDevices(p); err != nil {
		return f.unavailable(p, "devices", err)
	}
	if err := f.listActivity(p); err != nil {
		return f.unavailable(p, "activity", err)
	}
	if u.Recovery != nil {
		p.page.HasRecovery = true
		p.page.RecoveryLeft = u.Recovery.Left
	}
	if at, ok := u.RecoveredAt(); ok {
		p.page.RecoveredOn = at.Format(time.DateOnly)
	}
	q := p.r.URL.Query()
	switch {
	case q.Get("added") != "" && u.Recovery != nil && u.Recovery.Left < challenge.RecoveryCodeCount:
		p.page.Notice = "new_codes_offered"
	case q.Get("removed") != "":
		p.page.Notice = "method_removed"
	case q.Get("forgot") != "":
		p.page.Notice = "devices_forgotten"
	}
	return f.render(p, status, "methods")
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
	if !next.Enrolled() {
		p.jar.EndSession(p.w, p.r)
		return seeOther(p, p.page.ReturnTo)
	}
	// The same session under the new epoch: a change is not a new code,
	// so the step-up window and the session's lifetime run on unchanged.
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
			When: ev.Time.Format("2006-01-02 15:04 UTC"), IP: ev.IP, Browser: audit.Browser(ev.UserAgent),
			Failure: ev.Result != "success", Count: ev.Count,
		}
		method := ev.Method
		if method != "" {
			method = page.T("method_name_" + method)
		}
		item.What, item.WhatArgs = activityText(ev.Event, ev.Result, method)
		items = append(items, item)
	}
	return items
}

// activityText names an event for the member.
func activityText(event, result, method string) (string, []any) {
	ok := result == "success"
	switch {
	case event == "verify" && ok:
		return "activity_verified", []any{method}
	case event == "verify" && method != "":
		return "activity_failed", []any{method}
	case event == "enrol_confirm" && ok:
		return "activity_added", []any{method}
	case event == "method_removed" && ok:
		return "activity_removed", []any{method}
	case event == "recovery_codes_generated":
		return "activity_codes", nil
	case event == "device_remembered":
		return "activity_remembered", nil
	case event == "device_forgotten":
		return "activity_forgotten", nil
	case event == "lockout":
		return "activity_locked", nil
	case event == "session_revoked":
		return "activity_signed_out", nil
	case event == "new_browser":
		return "activity_new_browser", nil
	case event == "default_method":
		return "activity_default", []any{method}
	case event == "admin_unlock" && ok:
		return "activity_unlocked", nil
	case event == "admin_reset" && ok:
		return "activity_admin_reset", nil
	case event == "admin_reset_requested" && ok:
		return "activity_admin_reset_requested", nil
	case event == "admin_reset_withdrawn" && ok:
		return "activity_admin_reset_withdrawn", nil
	case event == "admin_devices" && ok:
		return "activity_admin_devices", nil
	case event == "admin_sessions" && ok:
		return "activity_admin_sessions", nil
	case event == "admin_app_confirmed" && ok:
		return "activity_admin_app_confirmed", nil
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
	for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		if !u.Has(m) && f.methodConfigured(m) && p.accepts(m) {
			p.page.Suggest = append(p.page.Suggest, m)
		}
	}
}
