package twofactor

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// Pages for codes sent by email and SMS, and for the member's list of
// methods.

// sendTimeout bounds a request that sends a code: the senders' own
// timeouts (10s by default) plus the store work around them.
const sendTimeout = 30 * time.Second

// identityEmail is the identity's email address when it is a usable one.
func (h *Handler) identityEmail(p *pageRequest) string {
	if p.id.Email == "" {
		return ""
	}
	addr, err := notify.ParseEmail(p.id.Email)
	if err != nil {
		return ""
	}
	return addr
}

// deliver composes a code message in the member's language and hands it
// to the configured sender.
func (h *Handler) deliver(p *pageRequest) challenge.Deliver {
	lang, site := p.page.Lang, p.page.SiteName
	return func(ctx context.Context, d challenge.Delivery) error {
		data := notify.CodeData{Site: site, Code: d.Code, TTL: d.TTL, Purpose: d.Purpose}
		var (
			msg    notify.Message
			sender notify.Sender
			err    error
		)
		if d.Method == challenge.MethodSMS {
			msg, err = notify.CodeSMS(lang, data)
			sender = h.app.sms
		} else {
			msg, err = notify.CodeEmail(lang, data)
			sender = h.app.email
		}
		if err != nil {
			return err
		}
		if sender == nil {
			return &notify.Error{Class: notify.ClassOther, Err: errors.New("no sender configured for " + d.Method)}
		}
		msg.To = d.To
		err = sender.Send(ctx, msg)
		if err != nil {
			// The class only: providers' error texts name the recipient.
			h.logger.Warn("sending a code failed", zap.String("method", d.Method),
				zap.String("class", notify.Class(err)))
		}
		return err
	}
}

// limited shows the page for a send or enrolment limit, saying when to
// try again.
func (h *Handler) limited(p *pageRequest, l *challenge.LimitedError) error {
	wait := l.Until.Sub(clock.Now())
	if wait < time.Second {
		wait = time.Second
	}
	seconds := int((wait + time.Second - 1) / time.Second)
	minutes := (seconds + 59) / 60
	p.w.Header().Set("Retry-After", strconv.Itoa(seconds))
	back := strings.TrimPrefix(p.r.URL.Path, h.Prefix)
	if i := strings.IndexByte(back, '/'); i > 0 {
		back = back[:i] // challenge/send → challenge, enrol/sms → enrol
	}
	link := h.pageURL(p, back)
	switch l.Limit {
	case challenge.LimitCooldown:
		if m := p.r.PostForm.Get("method"); m != "" && back == "challenge" {
			link += "&method=" + url.QueryEscape(m)
		} else if back == "enrol" {
			link = h.pageURL(p, "enrol/code")
		}
		return h.renderMessage(p.w, p.r, http.StatusTooManyRequests, "title_wait", "resend_wait", []any{seconds}, link)
	case challenge.LimitSMSSite:
		return h.renderMessage(p.w, p.r, http.StatusTooManyRequests, "title_too_many", "sms_unavailable", []any{minutes}, link)
	case challenge.LimitEnrolStarts:
		return h.renderMessage(p.w, p.r, http.StatusTooManyRequests, "title_too_many", "too_many_attempts", []any{minutes}, "")
	}
	return h.renderMessage(p.w, p.r, http.StatusTooManyRequests, "title_too_many", "too_many_codes", []any{minutes}, link)
}

// sendChallengeCode sends a sign-in code by email or SMS, then shows the
// page that asks for it (post, redirect, get).
func (h *Handler) sendChallengeCode(p *pageRequest) error {
	ctx, cancel := context.WithTimeout(p.r.Context(), sendTimeout)
	defer cancel()
	u, err := h.engine.State(ctx, p.id.ID)
	if err != nil {
		return h.unavailable(p.w, p.r, "state", err)
	}
	if !u.Enrolled() {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	method := p.r.PostForm.Get("method")
	if (method != challenge.MethodEmail && method != challenge.MethodSMS) || !slices.Contains(h.offeredMethods(p, u), method) {
		p.page.Error = "method_unavailable"
		return h.showChallenge(p, u, "", http.StatusBadRequest)
	}
	req := challenge.CodeRequest{Method: method, Purpose: challenge.PurposeVerify, Flow: p.csrf, To: h.identityEmail(p)}
	_, err = h.engine.SendCode(ctx, actor(p.r, p.id.ID), req, h.deliver(p))
	if err != nil {
		if status, msg, ok := sendError(err); ok {
			p.page.Error = msg
			return h.showChallenge(p, u, method, status)
		}
		if errors.Is(err, challenge.ErrNotEnrolled) {
			return h.seeOther(p, h.pageURL(p, "challenge"))
		}
		_, err = h.engineError(p, err)
		return err
	}
	return h.seeOther(p, h.pageURL(p, "challenge")+"&method="+method)
}

// sendError maps a failed send that the page explains itself.
func sendError(err error) (int, string, bool) {
	var delivery *challenge.DeliveryError
	switch {
	case errors.As(err, &delivery):
		return http.StatusServiceUnavailable, "send_failed", true
	case errors.Is(err, challenge.ErrNoDestination):
		return http.StatusBadRequest, "no_email_address", true
	}
	return 0, "", false
}

func (h *Handler) enrolEmailPage(p *pageRequest) error {
	u, ok, err := h.enrolGuard(p)
	if !ok {
		return err
	}
	if !h.canEnrol(p, u, challenge.MethodEmail) {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	return h.showEnrolEmail(p, http.StatusOK)
}

func (h *Handler) showEnrolEmail(p *pageRequest, status int) error {
	p.page.Method = challenge.MethodEmail
	if addr := h.identityEmail(p); addr != "" {
		p.page.SentTo = notify.MaskEmail(addr)
	}
	return h.render(p, status, "enrol_email")
}

// canEnrol reports whether the member may add method for the page they
// are going to.
func (h *Handler) canEnrol(p *pageRequest, u *challenge.User, method string) bool {
	return !u.Has(method) && h.app.methodConfigured(method) && p.accepts(method)
}

// enrolEmail sends a confirmation code to the identity's address or, when
// the identity has none, to the address the member typed.
func (h *Handler) enrolEmail(p *pageRequest) error {
	u, ok, err := h.enrolGuard(p)
	if !ok {
		return err
	}
	if !h.canEnrol(p, u, challenge.MethodEmail) {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	req := challenge.CodeRequest{Method: challenge.MethodEmail, Purpose: challenge.PurposeEnrol, Flow: p.csrf}
	if addr := h.identityEmail(p); addr != "" {
		req.To, req.FromIdentity = addr, true
	} else {
		input := p.r.PostForm.Get("address")
		addr, err := notify.ParseEmail(input)
		if err != nil {
			p.page.Error = "email_invalid"
			p.page.Address = input
			return h.showEnrolEmail(p, http.StatusBadRequest)
		}
		req.To = addr
		p.page.Address = addr
	}
	return h.sendEnrolCode(p, req, h.showEnrolEmail)
}

func (h *Handler) enrolSMSPage(p *pageRequest) error {
	u, ok, err := h.enrolGuard(p)
	if !ok {
		return err
	}
	if !h.canEnrol(p, u, challenge.MethodSMS) {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	p.page.Address = p.id.Phone
	return h.showEnrolSMS(p, http.StatusOK)
}

func (h *Handler) showEnrolSMS(p *pageRequest, status int) error {
	p.page.Method = challenge.MethodSMS
	p.page.Region = h.app.PhoneRegion
	p.page.Regions = strings.Join(h.app.PhoneCountries, ", ")
	return h.render(p, status, "enrol_sms")
}

// enrolSMS normalises the number the member typed and sends it a
// confirmation code.
func (h *Handler) enrolSMS(p *pageRequest) error {
	u, ok, err := h.enrolGuard(p)
	if !ok {
		return err
	}
	if !h.canEnrol(p, u, challenge.MethodSMS) {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	input := p.r.PostForm.Get("phone")
	p.page.Address = input
	number, err := notify.ParsePhone(input, h.app.PhoneRegion, h.app.PhoneCountries)
	if err != nil {
		var country *notify.PhoneCountryError
		switch {
		case errors.As(err, &country):
			p.page.Error = "phone_country"
			p.page.ErrorArgs = []any{strings.Join(h.app.PhoneCountries, ", ")}
			h.engine.Audit(actor(p.r, p.id.ID), "enrol_start", "refused",
				zap.String("method", "sms"), zap.String("reason", "region"), zap.String("region", country.Region))
		case errors.Is(err, notify.ErrPhoneNotMobile):
			p.page.Error = "phone_not_mobile"
		default:
			p.page.Error = "phone_invalid"
		}
		return h.showEnrolSMS(p, http.StatusBadRequest)
	}
	req := challenge.CodeRequest{Method: challenge.MethodSMS, Purpose: challenge.PurposeEnrol, Flow: p.csrf, To: number}
	return h.sendEnrolCode(p, req, h.showEnrolSMS)
}

// sendEnrolCode sends the confirmation code, or shows the form again
// through retry when sending failed.
func (h *Handler) sendEnrolCode(p *pageRequest, req challenge.CodeRequest, retry func(*pageRequest, int) error) error {
	ctx, cancel := context.WithTimeout(p.r.Context(), sendTimeout)
	defer cancel()
	_, err := h.engine.SendCode(ctx, actor(p.r, p.id.ID), req, h.deliver(p))
	if err != nil {
		if status, msg, ok := sendError(err); ok {
			p.page.Error = msg
			return retry(p, status)
		}
		if errors.Is(err, challenge.ErrAlreadyEnrolled) {
			return h.seeOther(p, h.pageURL(p, "methods"))
		}
		_, err = h.engineError(p, err)
		return err
	}
	return h.seeOther(p, h.pageURL(p, "enrol/code"))
}

// enrolCodePage asks for the code sent to the new address or number.
func (h *Handler) enrolCodePage(p *pageRequest) error {
	return h.showEnrolCode(p, http.StatusOK)
}

func (h *Handler) showEnrolCode(p *pageRequest, status int) error {
	pending, err := h.engine.PendingCode(p.r.Context(), actor(p.r, p.id.ID), p.csrf, challenge.PurposeEnrol)
	if errors.Is(err, challenge.ErrCodeExpired) {
		if status == http.StatusOK {
			return h.seeOther(p, h.pageURL(p, "enrol"))
		}
		return h.pickerError(p, status, p.page.Error)
	}
	if err != nil {
		return h.unavailable(p.w, p.r, "state", err)
	}
	p.page.Method = pending.Method
	p.page.SentTo = pending.Masked
	p.page.CodeSent = true
	p.page.ResendIn = secondsUntil(pending.ResendAt)
	return h.render(p, status, "enrol_code")
}

// enrolCodeConfirm completes an email or SMS enrolment.
func (h *Handler) enrolCodeConfirm(p *pageRequest) error {
	if _, ok, err := h.enrolGuard(p); !ok {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	u, method, err := h.engine.ConfirmCode(ctx, actor(p.r, p.id.ID), p.csrf, p.r.PostForm.Get("code"))
	if err != nil {
		if handled, err := h.engineError(p, err); handled {
			return err
		}
		if errors.Is(err, challenge.ErrAlreadyEnrolled) {
			return h.seeOther(p, h.pageURL(p, "methods"))
		}
		status, msg := codeError(err, challenge.MethodEmail)
		p.page.Error = msg
		if errors.Is(err, challenge.ErrCodeExpired) || errors.Is(err, challenge.ErrCodeVoid) {
			return h.pickerError(p, status, msg)
		}
		return h.showEnrolCode(p, status)
	}
	return h.enrolled(p, u, method)
}

// enrolResend sends a new code to the address or number being confirmed.
func (h *Handler) enrolResend(p *pageRequest) error {
	if _, ok, err := h.enrolGuard(p); !ok {
		return err
	}
	ctx, cancel := context.WithTimeout(p.r.Context(), sendTimeout)
	defer cancel()
	_, err := h.engine.ResendEnrolment(ctx, actor(p.r, p.id.ID), p.csrf, h.deliver(p))
	switch {
	case err == nil:
		return h.seeOther(p, h.pageURL(p, "enrol/code"))
	case errors.Is(err, challenge.ErrCodeExpired):
		return h.pickerError(p, http.StatusConflict, "enrol_expired")
	}
	if status, msg, ok := sendError(err); ok {
		p.page.Error = msg
		return h.showEnrolCode(p, status)
	}
	_, err = h.engineError(p, err)
	return err
}

// methodsPage lists the member's methods. Like adding one, it needs a
// session verified with a code.
func (h *Handler) methodsPage(p *pageRequest) error {
	u, ok, err := h.methodsGuard(p)
	if !ok {
		return err
	}
	return h.showMethods(p, u, http.StatusOK)
}

func (h *Handler) methodsGuard(p *pageRequest) (*challenge.User, bool, error) {
	u, err := h.engine.State(p.r.Context(), p.id.ID)
	if err != nil {
		return nil, false, h.unavailable(p.w, p.r, "state", err)
	}
	if !u.Enrolled() {
		return nil, false, h.seeOther(p, h.pageURL(p, "enrol"))
	}
	s, ok := h.verifiedSession(p, u)
	if !ok {
		back := h.Prefix + "methods?return_to=" + url.QueryEscape(p.page.ReturnTo)
		return nil, false, h.seeOther(p, h.Prefix+"challenge?return_to="+url.QueryEscape(back))
	}
	p.session = s
	return u, true, nil
}

func (h *Handler) showMethods(p *pageRequest, u *challenge.User, status int) error {
	def := u.DefaultMethod()
	for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		added, used, ok := methodDates(u, m)
		if !ok {
			if h.app.methodConfigured(m) {
				p.page.CanAdd = true
			}
			continue
		}
		opt := pages.MethodOption{Name: m, Default: m == def, Added: added.Format(time.DateOnly), Usable: h.app.methodConfigured(m)}
		if !used.IsZero() {
			opt.LastUsed = used.Format(time.DateOnly)
		}
		if m != challenge.MethodTOTP {
			opt.SentTo = h.engine.Destination(u, m, h.identityEmail(p))
			opt.Usable = opt.Usable && opt.SentTo != ""
		}
		p.page.Methods = append(p.page.Methods, opt)
	}
	p.page.Enrolled = true
	if err := h.listDevices(p); err != nil {
		return h.unavailable(p.w, p.r, "devices", err)
	}
	if err := h.listActivity(p); err != nil {
		return h.unavailable(p.w, p.r, "activity", err)
	}
	if u.Recovery != nil {
		p.page.HasRecovery = true
		p.page.RecoveryLeft = u.Recovery.Left
	}
	q := p.r.URL.Query()
	switch {
	case q.Get("used") == challenge.MethodRecovery && u.Recovery != nil:
		p.page.Notice = "used_recovery_code"
		p.page.NoticeArgs = []any{u.Recovery.Left}
	case q.Get("added") != "" && u.Recovery != nil && u.Recovery.Left < challenge.RecoveryCodeCount:
		p.page.Notice = "new_codes_offered"
	case q.Get("removed") != "":
		p.page.Notice = "method_removed"
	case q.Get("forgot") != "":
		p.page.Notice = "devices_forgotten"
	}
	return h.render(p, status, "methods")
}

func methodDates(u *challenge.User, method string) (added, used time.Time, ok bool) {
	switch method {
	case challenge.MethodTOTP:
		if u.TOTP != nil {
			return u.TOTP.Added, u.TOTP.LastUsed, true
		}
	case challenge.MethodEmail:
		if u.Email != nil {
			return u.Email.Added, u.Email.LastUsed, true
		}
	case challenge.MethodSMS:
		if u.SMS != nil {
			return u.SMS.Added, u.SMS.LastUsed, true
		}
	}
	return time.Time{}, time.Time{}, false
}

// setDefault makes one of the member's methods the first one offered.
func (h *Handler) setDefault(p *pageRequest) error {
	u, ok, err := h.methodsGuard(p)
	if !ok {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	method := p.r.PostForm.Get("method")
	if !u.Has(method) {
		p.page.Error = "method_unavailable"
		return h.showMethods(p, u, http.StatusBadRequest)
	}
	if _, err := h.engine.SetDefault(ctx, actor(p.r, p.id.ID), method); err != nil {
		return h.unavailable(p.w, p.r, "default", err)
	}
	return h.seeOther(p, h.pageURL(p, "methods"))
}

// enrolled starts the session after a new method is confirmed. After the
// member's first method comes their set of recovery codes, shown once; a
// member who has used some (changing phones, say) is offered a new set.
func (h *Handler) enrolled(p *pageRequest, u *challenge.User, method string) error {
	h.verified(p, u, method, clock.Now())
	h.notice(p, u, notify.NoticeData{Kind: "method_added", Method: method})
	h.seenBrowser(p, u, false)
	if u.Recovery != nil {
		if u.Recovery.Left < challenge.RecoveryCodeCount {
			return h.seeOther(p, h.pageURL(p, "methods")+"&added="+url.QueryEscape(method))
		}
		return h.seeOther(p, p.page.ReturnTo)
	}
	codes, err := h.engine.GenerateRecoveryCodes(p.r.Context(), actor(p.r, p.id.ID))
	if err != nil {
		// The member is enrolled; the methods page can make codes later.
		h.logger.Error("generating recovery codes", zap.Error(err))
		return h.seeOther(p, p.page.ReturnTo)
	}
	return h.showRecoveryCodes(p, codes)
}

// newRecoveryCodes replaces the member's recovery codes from the methods
// page.
func (h *Handler) newRecoveryCodes(p *pageRequest) error {
	u, ok, err := h.methodsGuard(p)
	if !ok {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	codes, err := h.engine.GenerateRecoveryCodes(ctx, actor(p.r, p.id.ID))
	if err != nil {
		return h.unavailable(p.w, p.r, "recovery", err)
	}
	if u.Recovery != nil {
		p.page.Notice = "recovery_replaced"
	}
	h.notice(p, u, notify.NoticeData{Kind: "recovery_generated"})
	return h.showRecoveryCodes(p, codes)
}

// showRecoveryCodes shows a new set of codes, with a text file of them to
// download. The page is no-store like every gateway page; the codes are
// never shown again.
func (h *Handler) showRecoveryCodes(p *pageRequest, codes []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n\n", p.page.SiteName, p.id.ID)
	for _, c := range codes {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	p.page.RecoveryCodes = codes
	p.page.RecoveryDownload = template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(b.String())))
	return h.render(p, http.StatusOK, "recovery")
}

// removeMethod disables one of the member's methods, only with the
// confirmation box ticked. The last method cannot go where any protected
// path requires a second factor. Other browsers' sessions and remembered
// devices end; this browser gets a new session, the member having just
// proved themselves.
func (h *Handler) removeMethod(p *pageRequest) error {
	u, ok, err := h.methodsGuard(p)
	if !ok {
		return err
	}
	method := p.r.PostForm.Get("method")
	if !u.Has(method) {
		p.page.Error = "method_unavailable"
		return h.showMethods(p, u, http.StatusBadRequest)
	}
	if p.r.PostForm.Get("confirm") != "yes" {
		p.page.Error = "confirm_remove"
		return h.showMethods(p, u, http.StatusBadRequest)
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	next, err := h.engine.RemoveMethod(ctx, actor(p.r, p.id.ID), method, !h.requiresEnrolment())
	if errors.Is(err, challenge.ErrLastMethod) {
		p.page.Error = "last_method"
		return h.showMethods(p, u, http.StatusConflict)
	}
	if err != nil {
		return h.unavailable(p.w, p.r, "remove", err)
	}
	// Told at the address known before the change, which may be the one
	// just removed.
	h.notice(p, u, notify.NoticeData{Kind: "method_removed", Method: method})
	if !next.Enrolled() {
		setCookie(p.w, session.SessionCookie, "", -1, p.secure)
		return h.seeOther(p, p.page.ReturnTo)
	}
	// The same session under the new epoch: a change is not a new code,
	// so the step-up window and the session's lifetime run on unchanged.
	s := *p.session
	s.ID = session.NewID()
	s.Epoch = next.Epoch
	h.setSessionCookie(p.w, &s, p.secure, clock.Now())
	return h.seeOther(p, h.pageURL(p, "methods")+"&removed="+url.QueryEscape(method))
}

// requiresEnrolment reports whether any protected path requires a second
// factor.
func (h *Handler) requiresEnrolment() bool {
	for _, rule := range h.Protect {
		if !rule.optional {
			return true
		}
	}
	return false
}

// listDevices puts the member's remembered devices on the page, marking
// the one the request comes from.
func (h *Handler) listDevices(p *pageRequest) error {
	devices, err := h.engine.Devices(p.r.Context(), p.id.ID)
	if err != nil {
		return err
	}
	current := ""
	if v, ok := cookieValue(p.r, session.Name(session.DeviceCookie, p.secure)); ok {
		var d session.Device
		if h.codec.DecodeDevice(v, &d) == nil && d.User == p.id.ID {
			current = hex.EncodeToString(d.ID[:])
		}
	}
	const stamp = "2006-01-02 15:04"
	for _, d := range devices {
		p.page.Devices = append(p.page.Devices, pages.DeviceOption{
			ID: d.ID, Summary: deviceSummary(d.UserAgent), IP: d.IP,
			Created: d.Created.Format(stamp), LastUsed: d.LastUsed.Format(stamp), Current: d.ID == current,
		})
	}
	return nil
}

// forgetDevices revokes one remembered device, or all of them: their
// cookies stop working at once.
func (h *Handler) forgetDevices(p *pageRequest) error {
	if _, ok, err := h.methodsGuard(p); !ok {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := actor(p.r, p.id.ID)
	if p.r.PostForm.Get("all") == "1" {
		if err := h.engine.ForgetAllDevices(ctx, a); err != nil {
			return h.unavailable(p.w, p.r, "devices", err)
		}
		return h.seeOther(p, h.pageURL(p, "methods")+"&forgot=all")
	}
	b, err := hex.DecodeString(p.r.PostForm.Get("device"))
	if err != nil || len(b) != 16 {
		return h.renderMessage(p.w, p.r, http.StatusBadRequest, "error_title", "bad_request", nil, "")
	}
	if err := h.engine.ForgetDevice(ctx, a, [16]byte(b)); err != nil {
		return h.unavailable(p.w, p.r, "devices", err)
	}
	return h.seeOther(p, h.pageURL(p, "methods")+"&forgot=1")
}

// listActivity puts the member's recent security events on the page.
func (h *Handler) listActivity(p *pageRequest) error {
	events, err := h.engine.RecentActivity(p.r.Context(), p.id.ID)
	if err != nil {
		return err
	}
	for _, ev := range events {
		item := pages.ActivityItem{
			When: ev.Time.Format("2006-01-02 15:04 UTC"), IP: ev.IP, Browser: deviceSummary(ev.UserAgent),
			Failure: ev.Result != "success", Count: ev.Count,
		}
		method := ev.Method
		if method != "" {
			method = p.page.T("method_name_" + method)
		}
		item.What, item.WhatArgs = activityText(ev.Event, ev.Result, method)
		p.page.Activity = append(p.page.Activity, item)
	}
	return nil
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
	}
	return "activity_other", nil
}
