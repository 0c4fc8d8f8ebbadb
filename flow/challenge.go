package flow

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// The challenge: the code form for one of the member's methods, "try
// another way" for the others, and its verification.

func (f *Flow) challengePage(p *request) error {
	if err := p.e.Locked(p.r.Context(), f.actor(p.r, p.id.ID)); err != nil {
		if handled, err := f.engineError(p, err); handled {
			return err
		}
	}
	return f.showChallenge(p, p.user, p.r.URL.Query().Get("method"), http.StatusOK)
}

// stepUp reports whether the challenge is a member's fresh-code check
// before changing their settings: they are signed in with a live session
// and on their way to one of the gateway's own pages.
func (f *Flow) stepUp(p *request) bool {
	rt := p.page.ReturnTo
	return strings.HasPrefix(rt, f.cfg.Prefix) && !strings.HasPrefix(rt, f.cfg.Prefix+"admin/") && f.liveSession(p)
}

// showChallenge renders the challenge for one of the member's methods,
// with their other methods as "try another way". A passkey is offered
// first, in a section of its own that the page's script shows, above the
// code form of the member's other methods: without the script they see
// those as if they had no passkey. When a passkey is all they have here,
// the page has no code form, and says the passkey needs the script.
func (f *Flow) showChallenge(p *request, u *challenge.User, want string, status int) error {
	p.page.StepUp = f.stepUp(p)
	offered := f.offeredMethods(p, u)
	if len(offered) == 0 {
		// Every method the member has lost its sender in the config:
		// recovery codes are what is left.
		if u.Recovery != nil && u.Recovery.Left > 0 && p.recovery() {
			p.page.Method = challenge.MethodRecovery
			p.page.RecoveryLeft = u.Recovery.Left
			return f.render(p, status, "challenge")
		}
		return f.message(p.w, p.r, http.StatusServiceUnavailable, "title_unavailable", "method_unavailable", nil, "")
	}
	codes := offered
	if slices.Contains(offered, challenge.MethodWebAuthn) {
		p.page.Passkey = true
		codes = slices.DeleteFunc(slices.Clone(offered), func(m string) bool { return m == challenge.MethodWebAuthn })
	}
	method := challenge.MethodWebAuthn
	if len(codes) > 0 {
		method = codes[0]
	}
	if slices.Contains(codes, want) {
		method = want
	}
	if u.Recovery != nil && p.recovery() {
		p.page.RecoveryLeft = u.Recovery.Left
		if want == challenge.MethodRecovery && u.Recovery.Left > 0 {
			method = challenge.MethodRecovery
		}
	}
	p.page.Method = method
	p.page.PasskeyOnly = method == challenge.MethodWebAuthn
	for _, m := range codes {
		if m == method {
			continue
		}
		sentTo := p.e.Destination(u, m, identityEmail(p))
		p.page.Methods = append(p.page.Methods, pages.MethodOption{
			Name: m, SentTo: sentTo, Usable: m == challenge.MethodTOTP || sentTo != "",
		})
	}
	if method == challenge.MethodEmail || method == challenge.MethodSMS {
		p.page.SentTo = p.e.Destination(u, method, identityEmail(p))
		pending, err := p.e.PendingCode(p.r.Context(), f.actor(p.r, p.id.ID), p.csrf, challenge.PurposeVerify)
		if err == nil && pending.Method == method {
			p.page.CodeSent = true
			p.page.SentTo = pending.Masked
			p.page.ResendIn = secondsUntil(pending.ResendAt)
		}
		if method == challenge.MethodEmail {
			if src, ok := f.cfg.Email.(notify.Sourced); ok {
				p.page.SentFrom = src.FromAddress()
			}
		}
	}
	if p.page.Notice == "" && f.recheckingDevice(p, u) {
		p.page.Notice = "recheck_new_network"
	}
	f.offerRemember(p)
	return f.render(p, status, "challenge")
}

// recheckingDevice reports whether the member is asked for a code because
// their remembered device came from a range they have not passed the
// second factor from, on a path that rechecks: the browser holds their
// live device cookie, which would have passed them from a known range.
func (f *Flow) recheckingDevice(p *request, u *challenge.User) bool {
	if p.policy == nil || !p.policy.Recheck || p.policy.Remember <= 0 {
		return false
	}
	var d session.Device
	if !p.jar.Device(p.r, p.id.ID, &d) || clock.Now().Unix() >= d.Expires || !u.DeviceListed(d.ID) {
		// No device the member still has: nothing to say (nor, to
		// someone holding a revoked cookie, which ranges are known).
		return false
	}
	return !f.NetworkKnown(p.r, u, p.policy)
}

// offeredMethods lists the member's methods, default first, that the page
// being protected accepts. When it accepts none of them, all of the
// member's methods are offered: after verifying with one, the member is
// asked to add one the page accepts.
func (f *Flow) offeredMethods(p *request, u *challenge.User) []string {
	var accepted, usable []string
	for _, m := range u.Methods() {
		if !f.methodConfigured(m) {
			continue
		}
		usable = append(usable, m)
		if p.accepts(m) {
			accepted = append(accepted, m)
		}
	}
	if len(accepted) == 0 && len(usable) > 0 {
		if p.passkeysOnly() {
			// The member is asked to add a passkey next: say so.
			p.page.Notice = "not_allowed_here_passkey"
		} else {
			p.page.NotAllowedHere = true
		}
		return usable
	}
	return accepted
}

// passkeysOnly reports whether the page being protected accepts nothing
// but passkeys and security keys (methods webauthn, or admin_methods
// webauthn on the way to the admin pages).
func (p *request) passkeysOnly() bool {
	return p.policy != nil && slices.Equal(p.policy.Methods, []string{challenge.MethodWebAuthn})
}

func secondsUntil(t time.Time) int {
	d := t.Sub(clock.Now())
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// offerRemember offers "skip the code on this device" with the code form
// and with the passkey, each where the rule allows it after that method.
func (f *Flow) offerRemember(p *request) {
	if p.policy == nil || p.policy.Remember <= 0 {
		return
	}
	m := p.page.Method
	p.page.ShowRemember = m != challenge.MethodRecovery && m != challenge.MethodWebAuthn && p.accepts(m)
	p.page.PasskeyRemember = p.page.Passkey && p.accepts(challenge.MethodWebAuthn)
	if p.page.ShowRemember || p.page.PasskeyRemember {
		p.page.RememberDays = int((p.policy.Remember + 24*time.Hour - 1) / (24 * time.Hour))
	}
}

// verify checks a challenge code and, on success, starts a fresh
// second-factor session.
func (f *Flow) verify(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := f.actor(p.r, p.id.ID)
	method := p.r.PostForm.Get("method")
	if method == "" {
		method = challenge.MethodTOTP
	}
	st := p.user
	if method == challenge.MethodRecovery && p.recovery() {
		return f.verifyRecovery(p, st)
	}
	if !slices.Contains(f.offeredMethods(p, st), method) {
		p.page.Error = "method_unavailable"
		return f.showChallenge(p, st, "", http.StatusBadRequest)
	}
	var u *challenge.User
	var err error
	browser := f.withBrowser(p, &a)
	switch method {
	case challenge.MethodTOTP:
		u, err = p.e.VerifyTOTP(ctx, a, p.r.PostForm.Get("code"))
	case challenge.MethodEmail, challenge.MethodSMS:
		var sent string
		u, sent, err = p.e.VerifyCode(ctx, a, p.csrf, p.r.PostForm.Get("code"))
		if err == nil && sent != method {
			// The code went by the other channel: the session says how
			// the member really verified.
			method = sent
		}
	default:
		return f.message(p.w, p.r, http.StatusBadRequest, "error_title", "bad_request", nil, "")
	}
	if err != nil {
		if handled, err := f.engineError(p, err); handled {
			return err
		}
		st, serr := p.e.State(ctx, p.id.ID)
		if serr != nil {
			return f.unavailable(p, "state", serr)
		}
		if !st.Enrolled() {
			return seeOther(p, f.pageURL(p, "enrol"))
		}
		status, msg := codeError(err, method)
		p.page.Error = msg
		var drift *challenge.ClockDriftError
		if errors.As(err, &drift) {
			p.page.Error, p.page.ErrorArgs = clockDriftError(drift.Offset)
			p.page.ErrorHint = "clock_drift_advice"
		}
		return f.showChallenge(p, st, method, status)
	}
	now := clock.Now()
	f.verified(p, u, method, now)
	f.seenBrowser(p, u, method, true, browser)
	if p.r.PostForm.Get("remember") == "1" && p.policy != nil && p.policy.Remember > 0 && p.accepts(method) {
		f.rememberDevice(ctx, p, u, a, method, now)
	}
	if !p.accepts(method) {
		// Verified, but not in a way this page accepts: add one it does.
		return seeOther(p, f.pageURL(p, "enrol"))
	}
	return seeOther(p, p.page.ReturnTo)
}

// codeError maps a refused code to its status and message. Wrong,
// expired, used-up and replayed codes all get the same answer, so a
// guesser learns nothing about the code from it; for emailed and texted
// codes the message also suggests asking for a new one. The one
// exception, an app code right for another time (clockDriftError), tells
// only about a code already refused and counted toward the lockout.
func codeError(err error, method string) (int, string) {
	if errors.Is(err, challenge.ErrMalformed) {
		// Counted like a wrong code, but the member only mistyped.
		return http.StatusBadRequest, "code_malformed"
	}
	if method == challenge.MethodTOTP {
		return http.StatusUnauthorized, "code_incorrect"
	}
	return http.StatusUnauthorized, "code_rejected"
}

// clockDriftError is the message for an app code that was right for a
// time offset away: the wrong-code message with how far the phone's clock
// looks off, in whole minutes (at least 1), fast when offset is positive.
// It replaces code_incorrect rather than joining it, so the member reads
// one message that says both that the code failed and why.
func clockDriftError(offset time.Duration) (string, []any) {
	key := "code_clock_fast"
	if offset < 0 {
		key, offset = "code_clock_slow", -offset
	}
	minutes := max(1, int(offset.Round(time.Minute)/time.Minute))
	if minutes == 1 {
		key += "_one"
	}
	return key, []any{minutes}
}

// verified starts a new second-factor session after a code, never reusing
// an earlier one, so a value planted in the browser never becomes valid,
// and rotates the CSRF secret. method is the factor verified.
func (f *Flow) verified(p *request, u *challenge.User, method string, now time.Time) {
	f.verifiedBy(p, u, method, false, now)
}

// verifiedBy is verified after a passkey, saying whether the one used or
// added was unproven: a member may have several, and the session must
// not borrow the standing of another. (A member has one app, and
// replacing it ends its sessions, so the app's own flag is enough.)
func (f *Flow) verifiedBy(p *request, u *challenge.User, method string, unproven bool, now time.Time) {
	s := session.Session{
		User: p.id.ID, ID: session.NewID(), Binding: p.id.Binding, Method: method, Epoch: u.Epoch,
		Issued: now.Unix(), LastSeen: now.Unix(), Expires: now.Add(f.cfg.SessionLifetime).Unix(),
		Unproven: unproven,
	}
	p.jar.SetSession(p.w, p.r, &s, now)
	f.newCSRF(p)
}

// identityEmail is the identity's email address when it is a usable one.
func identityEmail(p *request) string {
	if p.id.Email == "" {
		return ""
	}
	addr, err := notify.ParseEmail(p.id.Email)
	if err != nil {
		return ""
	}
	return addr
}
