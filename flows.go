package twofactor

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// maxFormBytes bounds what a page form may post.
const maxFormBytes = 16 << 10

// pageRequest is one request to the gateway's own pages.
type pageRequest struct {
	w      http.ResponseWriter
	r      *http.Request
	id     identity
	secure bool
	csrf   string // the browser's CSRF cookie secret
	page   *pages.Page
	rule   *Rule // the rule protecting ReturnTo, if any
	// session is the verified session the settings guard found, if any.
	session *session.Session
}

// required reports whether enrolment can be put off for where the member
// is going; paths no rule covers are treated as required.
func (p *pageRequest) required() bool { return p.rule == nil || !p.rule.optional }

type pageRoute struct {
	get  func(h *Handler, p *pageRequest) error
	post func(h *Handler, p *pageRequest) error
}

var pageRoutes = map[string]pageRoute{
	"challenge":        {get: (*Handler).challengePage, post: (*Handler).verify},
	"challenge/send":   {post: (*Handler).sendChallengeCode},
	"enrol":            {get: (*Handler).enrolStartPage, post: (*Handler).enrolStart},
	"enrol/confirm":    {post: (*Handler).enrolConfirm},
	"enrol/email":      {get: (*Handler).enrolEmailPage, post: (*Handler).enrolEmail},
	"enrol/sms":        {get: (*Handler).enrolSMSPage, post: (*Handler).enrolSMS},
	"enrol/code":       {get: (*Handler).enrolCodePage, post: (*Handler).enrolCodeConfirm},
	"enrol/resend":     {post: (*Handler).enrolResend},
	"methods":          {get: (*Handler).methodsPage},
	"methods/default":  {post: (*Handler).setDefault},
	"methods/recovery": {post: (*Handler).newRecoveryCodes},
	"methods/remove":   {post: (*Handler).removeMethod},
	"methods/devices":  {post: (*Handler).forgetDevices},
	"remind":           {get: (*Handler).remindPage, post: (*Handler).remindLater},
	"logout":           {get: (*Handler).logoutPage, post: (*Handler).logout},
}

// servePage handles every request under the prefix. Nothing here is ever
// passed to the upstream.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.URL.Path, h.Prefix)
	pages.SetSecurityHeaders(w.Header(), r.TLS != nil)
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if static, ok := strings.CutPrefix(name, "static/"); ok && read {
		pages.ServeStatic(w, r, static)
		return nil
	}
	route, ok := pageRoutes[name]
	if !ok {
		return h.renderMessage(w, r, http.StatusNotFound, "title_not_found", "not_found", nil, h.TopPage)
	}
	if !h.app.Ready() {
		return h.unavailable(w, r, "store", errNotReady)
	}
	var handle func(*Handler, *pageRequest) error
	switch {
	case read && route.get != nil:
		handle = route.get
	case r.Method == http.MethodPost && route.post != nil:
		handle = route.post
	default:
		allow := []string{}
		if route.get != nil {
			allow = append(allow, "GET", "HEAD")
		}
		if route.post != nil {
			allow = append(allow, "POST")
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return h.renderMessage(w, r, http.StatusMethodNotAllowed, "error_title", "method_not_allowed", nil, "")
	}

	id, err := h.source.resolve(r)
	if err != nil {
		return h.unavailable(w, r, "identity", err)
	}
	if id.ID == "" {
		link := h.TopPage
		if h.LoginURL != "" {
			link = h.LoginURL
		}
		return h.renderMessage(w, r, http.StatusUnauthorized, "title_sign_in", "sign_in_first", nil, link)
	}

	p := &pageRequest{w: w, r: r, id: id, secure: r.TLS != nil}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			return h.renderMessage(w, r, http.StatusBadRequest, "error_title", "bad_request", nil, "")
		}
	}
	if c, err := r.Cookie(session.Name(session.CSRFCookie, p.secure)); err == nil && len(c.Value) >= 43 && len(c.Value) <= 64 {
		p.csrf = c.Value
	}
	if r.Method == http.MethodPost {
		if !sameOrigin(r) || p.csrf == "" || !h.app.csrf.Valid(p.csrf, id.ID, r.PostForm.Get("csrf")) {
			h.engine.Audit(actor(r, id.ID), "csrf_refused", "refused", zap.String("page", name))
			return h.renderMessage(w, r, http.StatusForbidden, "error_title", "csrf_failed", nil, "")
		}
	}
	if p.csrf == "" {
		h.newCSRF(p)
	}

	returnTo := r.URL.Query().Get("return_to")
	if r.Method == http.MethodPost {
		returnTo = r.PostForm.Get("return_to")
	}
	returnTo = safeReturnPath(returnTo)
	if returnTo == "" {
		returnTo = h.TopPage
	}
	p.rule = h.ruleForPath(r, returnTo)
	p.page = &pages.Page{
		Lang:     pages.Language(r.Header.Get("Accept-Language")),
		SiteName: h.siteName(r),
		Prefix:   h.Prefix,
		CSRF:     h.app.csrf.Token(p.csrf, id.ID),
		ReturnTo: returnTo,
	}
	return handle(h, p)
}

// newCSRF gives the browser a fresh CSRF secret. It is also rotated after
// every successful verification, so a secret planted before sign-in is
// worthless afterwards.
func (h *Handler) newCSRF(p *pageRequest) {
	p.csrf = session.NewSecret()
	setCookie(p.w, session.CSRFCookie, p.csrf, 0, p.secure)
	if p.page != nil {
		p.page.CSRF = h.app.csrf.Token(p.csrf, p.id.ID)
	}
}

// setCookie sets one of the gateway's cookies: host-only, whole site,
// HttpOnly, SameSite=Lax, and Secure with the __Host- prefix over HTTPS.
// maxAge 0 makes a browser-session cookie, negative deletes it.
func setCookie(w http.ResponseWriter, base, value string, maxAge int, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name: session.Name(base, secure), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

// sameOrigin is the defence in depth behind the CSRF token: browsers say
// where a form post comes from.
func sameOrigin(r *http.Request) bool {
	fetchSite := r.Header.Get("Sec-Fetch-Site")
	switch fetchSite {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == "null" {
		// Privacy settings (a no-referrer policy, for one) make browsers
		// send "null"; Sec-Fetch-Site, which pages cannot forge, still
		// tells.
		return fetchSite == "same-origin"
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}

func (h *Handler) siteName(r *http.Request) string {
	if h.SiteName != "" {
		return h.SiteName
	}
	host := r.Host
	if hst, _, err := net.SplitHostPort(host); err == nil {
		host = hst
	}
	return host
}

func (h *Handler) render(p *pageRequest, status int, name string) error {
	if err := h.pages.Render(p.w, status, name, p.page, p.secure); err != nil {
		h.logger.Error("rendering page", zap.String("page", name), zap.Error(err))
	}
	return nil
}

// renderMessage shows a message page (errors, lockout, sign-out).
func (h *Handler) renderMessage(w http.ResponseWriter, r *http.Request, status int, title, msg string, args []any, link string) error {
	page := &pages.Page{
		Lang:        pages.Language(r.Header.Get("Accept-Language")),
		SiteName:    h.siteName(r),
		Prefix:      h.Prefix,
		Title:       title,
		Message:     msg,
		MessageArgs: args,
		Status:      status,
		Link:        link,
	}
	if link != "" {
		page.LinkLabel = "continue"
	}
	if err := h.pages.Render(w, status, "message", page, r.TLS != nil); err != nil {
		h.logger.Error("rendering page", zap.String("page", "message"), zap.Error(err))
	}
	return nil
}

func (h *Handler) seeOther(p *pageRequest, target string) error {
	p.w.Header().Set("Cache-Control", "no-store")
	p.w.Header().Set("Location", target)
	p.w.WriteHeader(http.StatusSeeOther)
	return nil
}

// pageURL is a gateway page carrying the current return_to.
func (h *Handler) pageURL(p *pageRequest, page string) string {
	return h.Prefix + page + "?return_to=" + url.QueryEscape(p.page.ReturnTo)
}

// locked shows the lockout page. The same page is shown whether or not the
// code would have been right, so a locked-out guesser learns nothing.
func (h *Handler) locked(p *pageRequest, until time.Time, title, msg string) error {
	minutes := int((until.Sub(clock.Now()) + time.Minute - 1) / time.Minute)
	if minutes < 1 {
		minutes = 1
	}
	p.w.Header().Set("Retry-After", strconv.Itoa(minutes*60))
	return h.renderMessage(p.w, p.r, http.StatusTooManyRequests, title, msg, []any{minutes}, "")
}

// engineError maps an engine error to a page, when it is one the member
// should see; it returns false for errors the caller handles.
func (h *Handler) engineError(p *pageRequest, err error) (bool, error) {
	var locked *challenge.LockedError
	var limited *challenge.LimitedError
	switch {
	case errors.As(err, &locked):
		if locked.Started {
			if u, serr := h.engine.State(p.r.Context(), p.id.ID); serr == nil {
				h.notice(p, u, notify.NoticeData{Kind: "lockout"})
			}
		}
		return true, h.locked(p, locked.Until, "title_locked", "locked")
	case errors.As(err, &limited):
		return true, h.limited(p, limited)
	case errors.Is(err, challenge.ErrCodeInvalid), errors.Is(err, challenge.ErrMalformed),
		errors.Is(err, challenge.ErrNotEnrolled), errors.Is(err, challenge.ErrExpired),
		errors.Is(err, challenge.ErrAlreadyEnrolled), errors.Is(err, challenge.ErrCodeExpired),
		errors.Is(err, challenge.ErrCodeVoid), errors.Is(err, challenge.ErrNoDestination):
		return false, nil
	}
	return true, h.unavailable(p.w, p.r, "engine", err)
}

func (h *Handler) challengePage(p *pageRequest) error {
	u, err := h.engine.State(p.r.Context(), p.id.ID)
	if err != nil {
		return h.unavailable(p.w, p.r, "state", err)
	}
	if !u.Enrolled() {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	if err := h.engine.Locked(p.r.Context(), actor(p.r, p.id.ID)); err != nil {
		if handled, err := h.engineError(p, err); handled {
			return err
		}
	}
	return h.showChallenge(p, u, p.r.URL.Query().Get("method"), http.StatusOK)
}

// showChallenge renders the challenge for one of the member's methods,
// with their other methods as "try another way".
func (h *Handler) showChallenge(p *pageRequest, u *challenge.User, want string, status int) error {
	offered := h.offeredMethods(p, u)
	if len(offered) == 0 {
		// Every method the member has lost its sender in the config:
		// recovery codes are what is left.
		if u.Recovery != nil && u.Recovery.Left > 0 {
			p.page.Method = challenge.MethodRecovery
			p.page.RecoveryLeft = u.Recovery.Left
			return h.render(p, status, "challenge")
		}
		return h.renderMessage(p.w, p.r, http.StatusServiceUnavailable, "title_unavailable", "method_unavailable", nil, "")
	}
	method := offered[0]
	if slices.Contains(offered, want) {
		method = want
	}
	if u.Recovery != nil {
		p.page.RecoveryLeft = u.Recovery.Left
		if want == challenge.MethodRecovery && u.Recovery.Left > 0 {
			method = challenge.MethodRecovery
		}
	}
	p.page.Method = method
	for _, m := range offered {
		if m == method {
			continue
		}
		sentTo := h.engine.Destination(u, m, h.identityEmail(p))
		p.page.Methods = append(p.page.Methods, pages.MethodOption{
			Name: m, SentTo: sentTo, Usable: m == challenge.MethodTOTP || sentTo != "",
		})
	}
	if method == challenge.MethodEmail || method == challenge.MethodSMS {
		p.page.SentTo = h.engine.Destination(u, method, h.identityEmail(p))
		pending, err := h.engine.PendingCode(p.r.Context(), actor(p.r, p.id.ID), p.csrf, challenge.PurposeVerify)
		if err == nil && pending.Method == method {
			p.page.CodeSent = true
			p.page.SentTo = pending.Masked
			p.page.ResendIn = secondsUntil(pending.ResendAt)
		}
	}
	h.offerRemember(p)
	return h.render(p, status, "challenge")
}

// offeredMethods lists the member's methods, default first, that the page
// being protected accepts. When it accepts none of them, all of the
// member's methods are offered: after verifying with one, the member is
// asked to add one the page accepts.
func (h *Handler) offeredMethods(p *pageRequest, u *challenge.User) []string {
	var accepted, usable []string
	for _, m := range u.Methods() {
		if !h.app.methodConfigured(m) {
			continue
		}
		usable = append(usable, m)
		if p.accepts(m) {
			accepted = append(accepted, m)
		}
	}
	if len(accepted) == 0 && len(usable) > 0 {
		p.page.NotAllowedHere = true
		return usable
	}
	return accepted
}

// accepts reports whether the page being protected accepts method. Pages
// no rule covers accept any method the site can send.
func (p *pageRequest) accepts(method string) bool {
	if p.rule == nil {
		return true
	}
	return p.rule.allows(method)
}

func secondsUntil(t time.Time) int {
	d := t.Sub(clock.Now())
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

func (h *Handler) offerRemember(p *pageRequest) {
	if p.rule != nil && p.rule.remember > 0 && p.page.Method != challenge.MethodRecovery && p.accepts(p.page.Method) {
		p.page.ShowRemember = true
		p.page.RememberDays = int((p.rule.remember + 24*time.Hour - 1) / (24 * time.Hour))
	}
}

// verify checks a challenge code and, on success, starts a fresh
// second-factor session.
func (h *Handler) verify(p *pageRequest) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := actor(p.r, p.id.ID)
	method := p.r.PostForm.Get("method")
	if method == "" {
		method = challenge.MethodTOTP
	}
	st, err := h.engine.State(ctx, p.id.ID)
	if err != nil {
		return h.unavailable(p.w, p.r, "state", err)
	}
	if !st.Enrolled() {
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	if method == challenge.MethodRecovery {
		return h.verifyRecovery(p, st)
	}
	if !slices.Contains(h.offeredMethods(p, st), method) {
		p.page.Error = "method_unavailable"
		return h.showChallenge(p, st, "", http.StatusBadRequest)
	}
	var u *challenge.User
	switch method {
	case challenge.MethodTOTP:
		u, err = h.engine.VerifyTOTP(ctx, a, p.r.PostForm.Get("code"))
	case challenge.MethodEmail, challenge.MethodSMS:
		var sent string
		u, sent, err = h.engine.VerifyCode(ctx, a, p.csrf, p.r.PostForm.Get("code"))
		if err == nil && sent != method {
			// The code went by the other channel: the session says how
			// the member really verified.
			method = sent
		}
	default:
		return h.renderMessage(p.w, p.r, http.StatusBadRequest, "error_title", "bad_request", nil, "")
	}
	if err != nil {
		if handled, err := h.engineError(p, err); handled {
			return err
		}
		st, serr := h.engine.State(ctx, p.id.ID)
		if serr != nil {
			return h.unavailable(p.w, p.r, "state", serr)
		}
		if !st.Enrolled() {
			return h.seeOther(p, h.pageURL(p, "enrol"))
		}
		status, msg := codeError(err, method)
		p.page.Error = msg
		return h.showChallenge(p, st, method, status)
	}
	now := clock.Now()
	h.verified(p, u, method, now)
	h.seenBrowser(p, u, true)
	if p.r.PostForm.Get("remember") == "1" && p.rule != nil && p.rule.remember > 0 && p.accepts(method) {
		id := session.NewID()
		expires, err := h.engine.RememberDevice(ctx, a, id, p.rule.remember, method)
		if err != nil {
			// The member is verified; failing to remember only means
			// being asked again next time.
			h.logger.Warn("remembering device", zap.Error(err))
		} else {
			d := session.Device{User: p.id.ID, ID: id, Expires: expires.Unix()}
			setCookie(p.w, session.DeviceCookie, h.codec.EncodeDevice(&d), int(d.Expires-now.Unix()), p.secure)
			h.notice(p, u, notify.NoticeData{Kind: "device_remembered"})
		}
	}
	if !p.accepts(method) {
		// Verified, but not in a way this page accepts: add one it does.
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	return h.seeOther(p, p.page.ReturnTo)
}

// verifyRecovery passes the challenge with a recovery code, then takes the
// member to their methods, since something is usually out of reach.
func (h *Handler) verifyRecovery(p *pageRequest, st *challenge.User) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	u, err := h.engine.UseRecoveryCode(ctx, actor(p.r, p.id.ID), p.r.PostForm.Get("code"))
	if err != nil {
		if handled, err := h.engineError(p, err); handled {
			return err
		}
		status, msg := codeError(err, challenge.MethodTOTP)
		if errors.Is(err, challenge.ErrMalformed) {
			msg = "recovery_malformed"
		}
		p.page.Error = msg
		return h.showChallenge(p, st, challenge.MethodRecovery, status)
	}
	h.verified(p, u, challenge.MethodRecovery, clock.Now())
	h.notice(p, u, notify.NoticeData{Kind: "recovery_used", Left: u.Recovery.Left})
	h.seenBrowser(p, u, false)
	return h.seeOther(p, h.pageURL(p, "methods")+"&used=recovery")
}

// codeError maps a refused code to its status and message. Wrong,
// expired, used-up and replayed codes all get the same answer, so a
// guesser learns nothing about the code from it; for emailed and texted
// codes the message also suggests asking for a new one.
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

// startSession issues a new second-factor session, never reusing an
// earlier one, so a value planted in the browser never becomes valid.
// method is the factor verified.
func (h *Handler) startSession(w http.ResponseWriter, id *identity, u *challenge.User, method string, secure bool, now time.Time) {
	s := session.Session{
		User: id.ID, ID: session.NewID(), Binding: id.Binding, Method: method, Epoch: u.Epoch,
		Issued: now.Unix(), LastSeen: now.Unix(), Expires: now.Add(h.lifetime).Unix(),
	}
	h.setSessionCookie(w, &s, secure, now)
}

// startDeviceSession issues a session from a remembered device standing in
// for method. It carries the device's ID, so forgetting the device ends
// the session too.
func (h *Handler) startDeviceSession(w http.ResponseWriter, id *identity, u *challenge.User, device [16]byte, method string, secure bool, now time.Time) {
	s := session.Session{
		User: id.ID, ID: device, Binding: id.Binding, Method: method, Epoch: u.Epoch, Remembered: true,
		Issued: now.Unix(), LastSeen: now.Unix(), Expires: now.Add(h.lifetime).Unix(),
	}
	h.setSessionCookie(w, &s, secure, now)
}

// verified starts the session after a code and rotates the CSRF secret.
func (h *Handler) verified(p *pageRequest, u *challenge.User, method string, now time.Time) {
	h.startSession(p.w, &p.id, u, method, p.secure, now)
	h.newCSRF(p)
}

func (h *Handler) setSessionCookie(w http.ResponseWriter, s *session.Session, secure bool, now time.Time) {
	setCookie(w, session.SessionCookie, h.codec.EncodeSession(s), int(s.Expires-now.Unix()), secure)
}

// useRememberedDevice starts a session from a remembered-device cookie that
// belongs to this member and is still on record.
func (h *Handler) useRememberedDevice(w http.ResponseWriter, r *http.Request, id *identity, rule *Rule, secure bool, now time.Time) (bool, error) {
	v, ok := cookieValue(r, session.Name(session.DeviceCookie, secure))
	if !ok {
		return false, nil
	}
	var d session.Device
	if h.codec.DecodeDevice(v, &d) != nil || d.User != id.ID || now.Unix() >= d.Expires {
		// Another member's device, or a stale cookie: they are asked
		// for a code like anyone else.
		return false, nil
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	u, method, err := h.engine.UseDevice(ctx, actor(r, id.ID), d.ID, rule.remember)
	if errors.Is(err, challenge.ErrDeviceUnknown) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !rule.allows(method) {
		// Remembered after a method these paths do not accept.
		return false, nil
	}
	h.startDeviceSession(w, id, u, d.ID, method, secure, now)
	return true, nil
}

// enrolStartPage is the method picker: the first second factor, or
// another one for a member who has just verified.
func (h *Handler) enrolStartPage(p *pageRequest) error {
	u, ok, err := h.enrolGuard(p)
	if !ok {
		return err
	}
	return h.showPicker(p, u, http.StatusOK)
}

// showPicker lists the methods the member can add that the page being
// protected accepts, the authenticator app first.
func (h *Handler) showPicker(p *pageRequest, u *challenge.User, status int) error {
	for _, m := range []string{challenge.MethodTOTP, challenge.MethodEmail, challenge.MethodSMS} {
		if !u.Has(m) && h.app.methodConfigured(m) && p.accepts(m) {
			p.page.Methods = append(p.page.Methods, pages.MethodOption{Name: m, Usable: true})
		}
	}
	if len(p.page.Methods) == 0 {
		return h.seeOther(p, h.pageURL(p, "methods"))
	}
	p.page.Enrolled = u.Enrolled()
	p.page.Required = p.required() || u.Enrolled()
	return h.render(p, status, "enrol_start")
}

// pickerError shows the method picker again with an error.
func (h *Handler) pickerError(p *pageRequest, status int, msg string) error {
	u, err := h.engine.State(p.r.Context(), p.id.ID)
	if err != nil {
		return h.unavailable(p.w, p.r, "state", err)
	}
	p.page.Error = msg
	return h.showPicker(p, u, status)
}

// enrolGuard lets a member set up a method: anyone without a second
// factor, and members with one only within the step-up window of entering
// a code (not on a remembered device), so a stolen password cannot add a
// method.
func (h *Handler) enrolGuard(p *pageRequest) (*challenge.User, bool, error) {
	u, err := h.engine.State(p.r.Context(), p.id.ID)
	if err != nil {
		return nil, false, h.unavailable(p.w, p.r, "state", err)
	}
	if _, ok := h.verifiedSession(p, u); u.Enrolled() && !ok {
		back := p.r.URL.Path
		if p.r.Method != http.MethodGet {
			back = h.Prefix + "enrol"
		}
		target := h.Prefix + "challenge?return_to=" + url.QueryEscape(back+"?return_to="+url.QueryEscape(p.page.ReturnTo))
		return nil, false, h.seeOther(p, target)
	}
	return u, true, nil
}

// verifiedSession returns the request's live session when it was verified
// with a code (not a remembered device) within the step-up window, as
// adding or changing methods requires.
func (h *Handler) verifiedSession(p *pageRequest, u *challenge.User) (*session.Session, bool) {
	v, ok := cookieValue(p.r, session.Name(session.SessionCookie, p.secure))
	if !ok {
		return nil, false
	}
	var s session.Session
	now := clock.Now()
	if h.codec.DecodeSessionOf(v, p.id.ID, &s) != nil || s.Remembered ||
		now.Unix()-s.Issued >= int64(h.stepUp/time.Second) || !h.sessionValid(&s, &p.id, u, now) {
		return nil, false
	}
	return &s, true
}

// enrolStart creates a pending authenticator secret and shows its QR code.
// It is a POST: creating a secret changes state.
func (h *Handler) enrolStart(p *pageRequest) error {
	if _, ok, err := h.enrolGuard(p); !ok {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	account := p.id.Email
	if account == "" {
		account = p.id.ID
	}
	start := h.engine.StartTOTP
	if p.r.PostForm.Get("replace") == "1" {
		// A new phone for the app: the old one works until this one is
		// confirmed.
		start = h.engine.StartTOTPReplacement
	}
	en, err := start(ctx, actor(p.r, p.id.ID), p.page.SiteName, account, p.csrf)
	if errors.Is(err, challenge.ErrAlreadyEnrolled) || errors.Is(err, challenge.ErrNotEnrolled) {
		return h.seeOther(p, h.pageURL(p, "methods"))
	}
	if err != nil {
		_, err = h.engineError(p, err)
		return err
	}
	return h.showEnrolment(p, en, http.StatusOK)
}

func (h *Handler) showEnrolment(p *pageRequest, en *challenge.Enrolment, status int) error {
	p.page.Required = p.required()
	p.page.QRCode = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(en.QRCode))
	p.page.OTPAuthURI = template.URL(en.URI)
	p.page.Secret = en.Secret
	p.page.Issuer = en.Issuer
	p.page.Account = en.Account
	return h.render(p, status, "enrol")
}

// enrolConfirm completes enrolment with the first code from the app.
func (h *Handler) enrolConfirm(p *pageRequest) error {
	if _, ok, err := h.enrolGuard(p); !ok {
		return err
	}
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := actor(p.r, p.id.ID)
	u, err := h.engine.ConfirmTOTP(ctx, a, p.csrf, p.r.PostForm.Get("code"))
	switch {
	case err == nil:
		return h.enrolled(p, u, challenge.MethodTOTP)
	case errors.Is(err, challenge.ErrAlreadyEnrolled):
		return h.seeOther(p, p.page.ReturnTo)
	case errors.Is(err, challenge.ErrExpired):
		return h.pickerError(p, http.StatusConflict, "enrol_expired")
	}
	if handled, err := h.engineError(p, err); handled {
		return err
	}
	en, perr := h.engine.PendingTOTP(ctx, a, p.csrf)
	if perr != nil {
		return h.pickerError(p, http.StatusConflict, "enrol_expired")
	}
	p.page.Error = "code_incorrect"
	return h.showEnrolment(p, en, http.StatusUnauthorized)
}

// reminderDue reports whether a member without a second factor should see
// the set-up reminder now.
func (h *Handler) reminderDue(r *http.Request, user string, now time.Time) bool {
	v, ok := cookieValue(r, session.Name(session.ReminderCookie, r.TLS != nil))
	if !ok {
		return true
	}
	var rem session.Reminder
	if h.codec.DecodeReminder(v, &rem) != nil || rem.User != user {
		return true
	}
	return now.Unix() >= rem.Until
}

// remindPage shows the set-up reminder and starts its interval at once, so
// the member sees it at most once per interval whatever they click.
func (h *Handler) remindPage(p *pageRequest) error {
	u, err := h.engine.State(p.r.Context(), p.id.ID)
	if err != nil {
		return h.unavailable(p.w, p.r, "state", err)
	}
	if u.Enrolled() {
		return h.seeOther(p, p.page.ReturnTo)
	}
	if !p.required() {
		h.snoozeReminder(p)
	}
	return h.render(p, http.StatusOK, "remind")
}

func (h *Handler) snoozeReminder(p *pageRequest) {
	interval := defaultReminder
	if p.rule != nil {
		interval = p.rule.reminder
	}
	rem := session.Reminder{User: p.id.ID, Until: clock.Now().Add(interval).Unix()}
	setCookie(p.w, session.ReminderCookie, h.codec.EncodeReminder(&rem), int(interval/time.Second), p.secure)
}

// remindLater is the reminder's "later" button.
func (h *Handler) remindLater(p *pageRequest) error {
	if p.required() && p.rule != nil {
		// Required paths cannot be put off.
		return h.seeOther(p, h.pageURL(p, "enrol"))
	}
	h.snoozeReminder(p)
	h.engine.Audit(actor(p.r, p.id.ID), "enrol_reminder", "later")
	return h.seeOther(p, p.page.ReturnTo)
}

func (h *Handler) logoutPage(p *pageRequest) error {
	return h.render(p, http.StatusOK, "logout")
}

// logout ends the second-factor session server-side and forgets this
// browser's remembered device, so the next visit asks for a code again.
func (h *Handler) logout(p *pageRequest) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := actor(p.r, p.id.ID)
	if c, err := p.r.Cookie(session.Name(session.SessionCookie, p.secure)); err == nil {
		var s session.Session
		if h.codec.DecodeSession(c.Value, &s) == nil && s.User == p.id.ID {
			if err := h.engine.RevokeSession(ctx, a, s.ID, time.Unix(s.Expires, 0)); err != nil {
				return h.unavailable(p.w, p.r, "logout", err)
			}
		}
	}
	if c, err := p.r.Cookie(session.Name(session.DeviceCookie, p.secure)); err == nil {
		var d session.Device
		if h.codec.DecodeDevice(c.Value, &d) == nil && d.User == p.id.ID {
			if err := h.engine.ForgetDevice(ctx, a, d.ID); err != nil {
				return h.unavailable(p.w, p.r, "logout", err)
			}
		}
	}
	setCookie(p.w, session.SessionCookie, "", -1, p.secure)
	setCookie(p.w, session.DeviceCookie, "", -1, p.secure)
	h.newCSRF(p)
	if c := h.logger.Check(zapcore.DebugLevel, "signed out"); c != nil {
		c.Write(zap.String("user", p.id.ID))
	}
	return h.renderMessage(p.w, p.r, http.StatusOK, "title_signed_out", "signed_out", nil, p.page.ReturnTo)
}
