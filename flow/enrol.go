package flow

import (
	"context"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
)

// Enrolment: the method picker, the authenticator app by QR code, and an
// email address or phone number confirmed with a code. The mayEnrol guard
// has already let the member in: no second factor yet, or a recent code.

// enrolStartPage is the method picker: the first second factor, or
// another one for a member who has just verified.
func (f *Flow) enrolStartPage(p *request) error {
	return f.showPicker(p, p.user, http.StatusOK)
}

// showPicker lists the methods the member can add that the page being
// protected accepts: a passkey or security key first (it cannot be
// phished), then the authenticator app.
func (f *Flow) showPicker(p *request, u *challenge.User, status int) error {
	for _, m := range []string{challenge.MethodWebAuthn, challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		if f.canEnrol(p, u, m) {
			p.page.Methods = append(p.page.Methods, pages.MethodOption{Name: m, Usable: true})
		}
	}
	if len(p.page.Methods) == 0 {
		return seeOther(p, f.pageURL(p, "methods"))
	}
	p.page.Enrolled = u.Enrolled()
	// "Required" only where a rule requires a second factor: a path no
	// rule covers (no return_to) requires nothing to put off, and an
	// enrolled member adding a method is not being made to enrol.
	p.page.Required = p.ruleRequires() || u.Enrolled()
	p.page.TOTPPeriod = f.totpSeconds()
	f.deadlinePassed(p, u)
	return f.render(p, status, "enrol_start")
}

// pickerError shows the method picker again with an error.
func (f *Flow) pickerError(p *request, status int, msg string) error {
	u, err := p.e.State(p.r.Context(), p.id.ID)
	if err != nil {
		return f.unavailable(p, "state", err)
	}
	p.page.Error = msg
	return f.showPicker(p, u, status)
}

// canEnrol reports whether the member may add method for the page they
// are going to. Passkeys are added one by one, up to the most allowed.
func (f *Flow) canEnrol(p *request, u *challenge.User, method string) bool {
	if method == challenge.MethodWebAuthn {
		return f.methodConfigured(method) && p.accepts(method) && len(u.WebAuthnCredentials()) < challenge.MaxWebAuthnCredentials
	}
	return !u.Has(method) && f.methodConfigured(method) && p.accepts(method)
}

// enrolWebAuthnPage is the form that names a new passkey or security key;
// the page's script registers it through the webauthn/register routes.
func (f *Flow) enrolWebAuthnPage(p *request) error {
	if !f.canEnrol(p, p.user, challenge.MethodWebAuthn) {
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	p.page.Method = challenge.MethodWebAuthn
	p.page.Enrolled = p.user.Enrolled()
	p.page.MaxPasskeyName = challenge.MaxCredentialName
	p.page.PasskeyName = p.page.T("passkey_default_name")
	// "Passkey on Windows": the system the member registers from, when
	// the browser says, so that a second one reads differently.
	if _, system, ok := strings.Cut(audit.Browser(p.r.UserAgent()), " · "); ok {
		p.page.PasskeyName = p.page.T("passkey_default_name_on", system)
	}
	return f.render(p, http.StatusOK, "enrol_webauthn")
}

// enrolStart creates a pending authenticator secret and shows its QR code.
// It is a POST: creating a secret changes state.
func (f *Flow) enrolStart(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	account := p.id.Email
	if account == "" {
		account = p.id.ID
	}
	start := p.e.StartTOTP
	if p.r.PostForm.Get("replace") == "1" {
		// A new phone for the app: the old one works until this one is
		// confirmed.
		start = p.e.StartTOTPReplacement
	}
	en, err := start(ctx, f.actor(p.r, p.id.ID), p.page.SiteName, account, p.csrf)
	if errors.Is(err, challenge.ErrAlreadyEnrolled) || errors.Is(err, challenge.ErrNotEnrolled) {
		return seeOther(p, f.pageURL(p, "methods"))
	}
	if err != nil {
		_, err = f.engineError(p, err)
		return err
	}
	return f.showEnrolment(p, en, http.StatusOK)
}

func (f *Flow) showEnrolment(p *request, en *challenge.Enrolment, status int) error {
	p.page.Required = p.ruleRequires() || p.user.Enrolled()
	f.deadlinePassed(p, p.user)
	p.page.QRCode = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(en.QRCode))
	p.page.OTPAuthURI = template.URL(en.URI)
	p.page.Secret = en.Secret
	p.page.Issuer = en.Issuer
	p.page.Account = en.Account
	return f.render(p, status, "enrol")
}

// stepUpActor tells the engine how the request's session was verified,
// so that a factor added on it is no more proven than that session.
func stepUpActor(p *request, a *challenge.Actor) {
	if p.session != nil {
		a.StepUp, a.StepUpUnproven = p.session.Method, p.session.Unproven
	}
}

// enrolConfirm completes enrolment with the first code from the app.
func (f *Flow) enrolConfirm(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := f.actor(p.r, p.id.ID)
	stepUpActor(p, &a)
	u, err := p.e.ConfirmTOTP(ctx, a, p.csrf, p.r.PostForm.Get("code"))
	switch {
	case err == nil:
		return f.enrolled(p, u, challenge.MethodTOTP)
	case errors.Is(err, challenge.ErrAlreadyEnrolled):
		return seeOther(p, p.page.ReturnTo)
	case errors.Is(err, challenge.ErrExpired):
		return f.pickerError(p, http.StatusConflict, "enrol_expired")
	}
	if handled, err := f.engineError(p, err); handled {
		return err
	}
	en, perr := p.e.PendingTOTP(ctx, a, p.csrf)
	if perr != nil {
		return f.pickerError(p, http.StatusConflict, "enrol_expired")
	}
	p.page.Error = "code_incorrect"
	return f.showEnrolment(p, en, http.StatusUnauthorized)
}

func (f *Flow) enrolEmailPage(p *request) error {
	if !f.canEnrol(p, p.user, challenge.MethodEmail) {
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	return f.showEnrolEmail(p, http.StatusOK)
}

func (f *Flow) showEnrolEmail(p *request, status int) error {
	p.page.Method = challenge.MethodEmail
	if addr := identityEmail(p); addr != "" {
		p.page.SentTo = notify.MaskEmail(addr)
	}
	return f.render(p, status, "enrol_email")
}

// enrolEmail sends a confirmation code to the identity's address or, when
// the identity has none, to the address the member typed.
func (f *Flow) enrolEmail(p *request) error {
	if !f.canEnrol(p, p.user, challenge.MethodEmail) {
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	req := challenge.CodeRequest{Method: challenge.MethodEmail, Purpose: challenge.PurposeEnrol, Flow: p.csrf}
	if addr := identityEmail(p); addr != "" {
		req.To, req.FromIdentity = addr, true
	} else {
		input := p.r.PostForm.Get("address")
		addr, err := notify.ParseEmail(input)
		if err != nil {
			p.page.Error = "email_invalid"
			p.page.Address = input
			return f.showEnrolEmail(p, http.StatusBadRequest)
		}
		req.To = addr
		p.page.Address = addr
	}
	return f.sendEnrolCode(p, req, f.showEnrolEmail)
}

func (f *Flow) enrolSMSPage(p *request) error {
	if !f.canEnrol(p, p.user, challenge.MethodSMS) {
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	p.page.Address = p.id.Phone
	return f.showEnrolSMS(p, http.StatusOK)
}

func (f *Flow) showEnrolSMS(p *request, status int) error {
	p.page.Method = challenge.MethodSMS
	p.page.Region = f.cfg.PhoneRegion
	p.page.Regions = strings.Join(f.cfg.PhoneCountries, ", ")
	return f.render(p, status, "enrol_sms")
}

// enrolSMS normalises the number the member typed and sends it a
// confirmation code.
func (f *Flow) enrolSMS(p *request) error {
	if !f.canEnrol(p, p.user, challenge.MethodSMS) {
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	input := p.r.PostForm.Get("phone")
	p.page.Address = input
	number, err := notify.ParsePhone(input, f.cfg.PhoneRegion, f.cfg.PhoneCountries)
	if err != nil {
		var country *notify.PhoneCountryError
		switch {
		case errors.As(err, &country):
			p.page.Error = "phone_country"
			p.page.ErrorArgs = []any{strings.Join(f.cfg.PhoneCountries, ", ")}
			p.e.Audit(f.actor(p.r, p.id.ID), "enrol_start", "refused",
				zap.String("method", "sms"), zap.String("reason", "region"), zap.String("region", country.Region))
		case errors.Is(err, notify.ErrPhoneNotMobile):
			p.page.Error = "phone_not_mobile"
		default:
			p.page.Error = "phone_invalid"
		}
		return f.showEnrolSMS(p, http.StatusBadRequest)
	}
	req := challenge.CodeRequest{Method: challenge.MethodSMS, Purpose: challenge.PurposeEnrol, Flow: p.csrf, To: number}
	return f.sendEnrolCode(p, req, f.showEnrolSMS)
}

// sendEnrolCode sends the confirmation code, or shows the form again
// through retry when sending failed.
func (f *Flow) sendEnrolCode(p *request, req challenge.CodeRequest, retry func(*request, int) error) error {
	ctx, cancel := context.WithTimeout(p.r.Context(), sendTimeout)
	defer cancel()
	_, err := p.e.SendCode(ctx, f.actor(p.r, p.id.ID), req, f.deliver(p))
	if err != nil {
		if status, msg, ok := sendError(err); ok {
			p.page.Error = msg
			return retry(p, status)
		}
		if errors.Is(err, challenge.ErrAlreadyEnrolled) {
			return seeOther(p, f.pageURL(p, "methods"))
		}
		_, err = f.engineError(p, err)
		return err
	}
	return seeOther(p, f.pageURL(p, "enrol/code"))
}

// enrolCodePage asks for the code sent to the new address or number.
func (f *Flow) enrolCodePage(p *request) error {
	return f.showEnrolCode(p, http.StatusOK)
}

func (f *Flow) showEnrolCode(p *request, status int) error {
	pending, err := p.e.PendingCode(p.r.Context(), f.actor(p.r, p.id.ID), p.csrf, challenge.PurposeEnrol)
	if errors.Is(err, challenge.ErrCodeExpired) {
		if status == http.StatusOK {
			return seeOther(p, f.pageURL(p, "enrol"))
		}
		return f.pickerError(p, status, p.page.Error)
	}
	if err != nil {
		return f.unavailable(p, "state", err)
	}
	p.page.Method = pending.Method
	p.page.SentTo = pending.Masked
	p.page.CodeSent = true
	p.page.ResendIn = secondsUntil(pending.ResendAt)
	return f.render(p, status, "enrol_code")
}

// enrolCodeConfirm completes an email or SMS enrolment.
func (f *Flow) enrolCodeConfirm(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	u, method, err := p.e.ConfirmCode(ctx, f.actor(p.r, p.id.ID), p.csrf, p.r.PostForm.Get("code"))
	if err != nil {
		if handled, err := f.engineError(p, err); handled {
			return err
		}
		if errors.Is(err, challenge.ErrAlreadyEnrolled) {
			return seeOther(p, f.pageURL(p, "methods"))
		}
		status, msg := codeError(err, challenge.MethodEmail)
		p.page.Error = msg
		if errors.Is(err, challenge.ErrCodeExpired) || errors.Is(err, challenge.ErrCodeVoid) {
			return f.pickerError(p, status, msg)
		}
		return f.showEnrolCode(p, status)
	}
	return f.enrolled(p, u, method)
}

// enrolResend sends a new code to the address or number being confirmed.
func (f *Flow) enrolResend(p *request) error {
	ctx, cancel := context.WithTimeout(p.r.Context(), sendTimeout)
	defer cancel()
	_, err := p.e.ResendEnrolment(ctx, f.actor(p.r, p.id.ID), p.csrf, f.deliver(p))
	switch {
	case err == nil:
		return seeOther(p, f.pageURL(p, "enrol/code"))
	case errors.Is(err, challenge.ErrCodeExpired):
		return f.pickerError(p, http.StatusConflict, "enrol_expired")
	}
	if status, msg, ok := sendError(err); ok {
		p.page.Error = msg
		return f.showEnrolCode(p, status)
	}
	_, err = f.engineError(p, err)
	return err
}

// enrolled starts the session after a new method is confirmed, and says
// so. After the member's first method comes their set of recovery codes,
// shown once. A method added from the settings page leads back there, as
// does one added by a member who has used recovery codes (changing
// phones, say), who is offered a new set; otherwise a confirmation leads
// on to where the member was going. Which of these never depends on the
// page's language.
func (f *Flow) enrolled(p *request, u *challenge.User, method string) error {
	f.verified(p, u, method, clock.Now())
	f.notice(p, u, notify.NoticeData{Kind: "method_added", Method: method})
	f.seenBrowser(p, u, method, false, nil)
	if u.Recovery != nil {
		if back, ok := f.addedBack(p, u, method); ok {
			return seeOther(p, back)
		}
		return f.message(p.w, p.r, http.StatusOK, "title_method_added", addedNotice(method), nil, p.page.ReturnTo)
	}
	codes, err := p.e.GenerateRecoveryCodes(p.r.Context(), f.actor(p.r, p.id.ID))
	if err != nil {
		// The member is enrolled; the methods page can make codes later.
		f.logger.Error("generating recovery codes", zap.Error(err))
		return seeOther(p, p.page.ReturnTo)
	}
	f.suggestSecond(p, u)
	p.page.Notice, p.page.NoticeDone = addedNotice(method), true
	return f.showRecoveryCodes(p, codes)
}

// addedBack is the settings page, saying what was added, for a member
// who added a method from there or has used recovery codes (and is
// offered a new set there); ok is false for the others. u has recovery
// codes.
func (f *Flow) addedBack(p *request, u *challenge.User, method string) (back string, ok bool) {
	if !p.page.FromSettings && u.Recovery.Left >= challenge.RecoveryCodeCount {
		return "", false
	}
	p.page.FromSettings = false
	return f.pageURL(p, "methods") + "&added=" + url.QueryEscape(method), true
}

// ruleRequires reports whether a rule requires a second factor where the
// member is going (unlike required, not for paths no rule covers).
func (p *request) ruleRequires() bool { return p.policy != nil && p.required() }

// totpSeconds is how long an authenticator code lasts, for the pages.
func (f *Flow) totpSeconds() int {
	if f.cfg.TOTPPeriod <= 0 {
		return 30
	}
	return int(f.cfg.TOTPPeriod / time.Second)
}
