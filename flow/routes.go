package flow

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// guard is a condition a route declares and the router checks before the
// route's page code runs. A route declares every guard it needs; the zero
// set is refused, so no route can be added without thinking about them.
type guard uint16

const (
	// signedIn: someone is signed in at the member site. Otherwise a page
	// that says to sign in first (401).
	signedIn guard = 1 << iota
	// csrfToken: the form carries this browser's CSRF token for this
	// member, and the browser says it comes from this origin. Otherwise
	// 403. Every POST declares it.
	csrfToken
	// enrolled: the member has a second factor. Otherwise on to enrolment.
	enrolled
	// stepUp: a second-factor session verified with a code (not a
	// remembered device) within step_up. Otherwise on to the challenge,
	// and back here after it.
	stepUp
	// mayEnrol: an enrolment may go on: the member has no second factor
	// yet, or has a session as stepUp asks. A stolen password alone cannot
	// add a method to an enrolled member.
	mayEnrol
	// stepUpOrRenewal: stepUp, except while the member's recovery codes
	// are due for renewal (RenewalDue), when a live session verified with
	// a code counts however long ago that was. The renewal step declares
	// it: nothing else is open to such a session, and a member who signed
	// in with their last recovery code has nothing left to step up with.
	// With no renewal due it is stepUp, so it never lets a session make
	// codes that stepUp would refuse.
	stepUpOrRenewal
	// adminView, adminSupport, adminApprove: the member is an admin with
	// at least this role (admin.go). Every route under admin/ declares
	// exactly one, and no other route any. Otherwise 403, on a page that
	// says nothing of the admin pages to a member who is no admin.
	adminView
	adminSupport
	adminApprove
	// adminStepUp: a session verified with one of the admin methods
	// (Config.AdminMethods), not from
	// a remembered device, within step_up. Otherwise on to a challenge
	// offering only those methods, and back. Every admin route declares
	// it, so every action asks again once step_up has passed.
	adminStepUp
)

// adminRoles are the guards naming an admin route's minimum role.
const adminRoles = adminView | adminSupport | adminApprove

var guardNames = []struct {
	g    guard
	name string
}{
	{signedIn, "signed in"}, {csrfToken, "CSRF token"}, {enrolled, "enrolled"},
	{stepUp, "step-up"}, {mayEnrol, "may enrol"}, {stepUpOrRenewal, "step-up or renewal"},
	{adminView, "admin viewer"}, {adminSupport, "admin support"}, {adminApprove, "admin approver"},
	{adminStepUp, "admin step-up"},
}

func (g guard) String() string {
	var names []string
	for _, n := range guardNames {
		if g&n.g != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, "+")
}

// route is one page and method under the prefix.
type route struct {
	method string // GET (HEAD too) or POST
	path   string // below the prefix, such as "methods/remove"
	guards guard
	serve  func(*Flow, *request) error
}

// routes is every page the gateway serves. Pages of one group share a
// file: challenge.go, codes.go, enrol.go, methods.go, devices.go,
// recovery.go, remind.go, logout.go, admin*.go.
var routes = []route{
	{"GET", "challenge", signedIn | enrolled, (*Flow).challengePage},
	{"POST", "challenge", signedIn | csrfToken | enrolled, (*Flow).verify},
	{"POST", "challenge/send", signedIn | csrfToken | enrolled, (*Flow).sendChallengeCode},
	{"POST", "challenge/not-arrived", signedIn | csrfToken | enrolled, (*Flow).reportNotArrived},

	{"GET", "enrol", signedIn | mayEnrol, (*Flow).enrolStartPage},
	{"POST", "enrol", signedIn | csrfToken | mayEnrol, (*Flow).enrolStart},
	{"POST", "enrol/confirm", signedIn | csrfToken | mayEnrol, (*Flow).enrolConfirm},
	{"GET", "enrol/email", signedIn | mayEnrol, (*Flow).enrolEmailPage},
	{"POST", "enrol/email", signedIn | csrfToken | mayEnrol, (*Flow).enrolEmail},
	{"GET", "enrol/sms", signedIn | mayEnrol, (*Flow).enrolSMSPage},
	{"POST", "enrol/sms", signedIn | csrfToken | mayEnrol, (*Flow).enrolSMS},
	{"GET", "enrol/code", signedIn | mayEnrol, (*Flow).enrolCodePage},
	{"POST", "enrol/code", signedIn | csrfToken | mayEnrol, (*Flow).enrolCodeConfirm},
	{"POST", "enrol/resend", signedIn | csrfToken | mayEnrol, (*Flow).enrolResend},
	{"GET", "enrol/webauthn", signedIn | mayEnrol, (*Flow).enrolWebAuthnPage},

	{"GET", "methods", signedIn | enrolled | stepUp, (*Flow).methodsPage},
	{"POST", "methods/default", signedIn | csrfToken | enrolled | stepUp, (*Flow).setDefault},
	{"POST", "methods/remove", signedIn | csrfToken | enrolled | stepUp, (*Flow).removeMethod},
	{"POST", "methods/recovery", signedIn | csrfToken | enrolled | stepUp, (*Flow).newRecoveryCodes},
	{"POST", "methods/devices", signedIn | csrfToken | enrolled | stepUp, (*Flow).forgetDevices},

	{"POST", "webauthn/login/begin", signedIn | csrfToken | enrolled, (*Flow).webAuthnLoginBegin},
	{"POST", "webauthn/login/finish", signedIn | csrfToken | enrolled, (*Flow).webAuthnLoginFinish},
	{"POST", "webauthn/register/begin", signedIn | csrfToken | mayEnrol, (*Flow).webAuthnRegisterBegin},
	{"POST", "webauthn/register/finish", signedIn | csrfToken | mayEnrol, (*Flow).webAuthnRegisterFinish},
	{"POST", "webauthn/rename", signedIn | csrfToken | enrolled | stepUp, (*Flow).webAuthnRename},
	{"POST", "webauthn/remove", signedIn | csrfToken | enrolled | stepUp, (*Flow).webAuthnRemove},

	{"GET", "recovery", signedIn | enrolled | stepUpOrRenewal, (*Flow).renewRecoveryPage},
	{"POST", "recovery", signedIn | csrfToken | enrolled | stepUpOrRenewal, (*Flow).newRecoveryCodes},

	{"GET", "remind", signedIn, (*Flow).remindPage},
	{"POST", "remind", signedIn | csrfToken, (*Flow).remindLater},

	{"GET", "logout", signedIn, (*Flow).logoutPage},
	{"POST", "logout", signedIn | csrfToken, (*Flow).logout},

	{"GET", "admin/", signedIn | adminView | adminStepUp, (*Flow).adminOverviewPage},
	{"GET", "admin/members", signedIn | adminView | adminStepUp, (*Flow).adminMembersPage},
	{"POST", "admin/unlock-address", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminUnlockAddress},
	{"GET", "admin/member", signedIn | adminView | adminStepUp, (*Flow).adminMemberPage},
	{"POST", "admin/member/unlock", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminUnlock},
	{"POST", "admin/member/forget-devices", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminForgetDevices},
	{"POST", "admin/member/end-sessions", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminEndSessions},
	{"POST", "admin/member/reset", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminReset},
	{"POST", "admin/member/remove-passkey", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminRemovePasskey},
	{"POST", "admin/member/confirm-app", signedIn | csrfToken | adminApprove | adminStepUp, (*Flow).adminConfirmApp},
	{"GET", "admin/reconcile", signedIn | adminView | adminStepUp, (*Flow).adminReconcilePage},
	// Reconciling reads and changes nothing: a viewer may.
	{"POST", "admin/reconcile", signedIn | csrfToken | adminView | adminStepUp, (*Flow).adminReconcile},
	{"GET", "admin/approvals", signedIn | adminView | adminStepUp, (*Flow).adminApprovalsPage},
	{"POST", "admin/approvals/approve", signedIn | csrfToken | adminApprove | adminStepUp, (*Flow).adminApprove},
	// Support may withdraw its own requests; adminWithdraw lets only the
	// requester or an approver.
	{"POST", "admin/approvals/withdraw", signedIn | csrfToken | adminSupport | adminStepUp, (*Flow).adminWithdraw},
	{"GET", "admin/audit", signedIn | adminView | adminStepUp, (*Flow).adminAuditPage},
	{"GET", "admin/audit/export", signedIn | adminView | adminStepUp, (*Flow).adminAuditExport},
}

// router finds a route by path and method.
type router map[string]map[string]*route

// newRouter indexes table, refusing routes whose guards are missing or
// inconsistent: a programming error, caught by any test that builds a Flow.
func newRouter(table []route) router {
	rt := router{}
	for i := range table {
		r := &table[i]
		switch {
		case r.guards == 0:
			panic(fmt.Sprintf("flow: route %s %s declares no guards", r.method, r.path))
		case r.guards&signedIn == 0:
			panic(fmt.Sprintf("flow: route %s %s: every page needs a signed-in member", r.method, r.path))
		case r.method == http.MethodPost && r.guards&csrfToken == 0:
			panic(fmt.Sprintf("flow: route POST %s lacks the CSRF guard", r.path))
		case r.method != http.MethodPost && r.guards&csrfToken != 0:
			panic(fmt.Sprintf("flow: route %s %s: only posts carry a CSRF token", r.method, r.path))
		case r.method != http.MethodGet && r.method != http.MethodPost:
			panic(fmt.Sprintf("flow: route %s %s: only GET and POST", r.method, r.path))
		case r.guards&stepUpOrRenewal != 0 && r.guards&(stepUp|mayEnrol) != 0:
			panic(fmt.Sprintf("flow: route %s %s: step-up or renewal is instead of step-up, not beside it", r.method, r.path))
		case r.guards&stepUpOrRenewal != 0 && r.guards&enrolled == 0:
			panic(fmt.Sprintf("flow: route %s %s: step-up or renewal needs an enrolled member", r.method, r.path))
		}
		if err := checkAdminGuards(r); err != nil {
			panic(fmt.Sprintf("flow: route %s %s: %v", r.method, r.path, err))
		}
		if rt[r.path] == nil {
			rt[r.path] = map[string]*route{}
		}
		if rt[r.path][r.method] != nil {
			panic(fmt.Sprintf("flow: route %s %s given twice", r.method, r.path))
		}
		rt[r.path][r.method] = r
	}
	return rt
}

// maxFormBytes bounds what a page form may post.
const maxFormBytes = 16 << 10

// parseForm reads a post's form, within maxFormBytes or, for the routes
// in largeForms, their own bound (multipart forms too, for uploads).
func (f *Flow) parseForm(p *request, rt *route) (bool, error) {
	r := p.r
	limit, large := largeForms[rt.path]
	switch {
	case jsonRoutes[rt.path]:
		// The body is the script's JSON, read by the route itself.
		r.Body = http.MaxBytesReader(p.w, r.Body, maxWebAuthnBody)
		return false, nil
	case !large:
		limit = maxFormBytes
	}
	r.Body = http.MaxBytesReader(p.w, r.Body, limit)
	var err error
	if large && strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		err = r.ParseMultipartForm(limit)
	} else {
		err = r.ParseForm()
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) && large:
		return true, f.message(p.w, r, http.StatusRequestEntityTooLarge, "error_title", "form_too_large", []any{limit >> 20}, "")
	case err != nil:
		return true, f.message(p.w, r, http.StatusBadRequest, "error_title", "bad_request", nil, "")
	}
	return false, nil
}

// Serve handles a request under the prefix; nothing here is ever passed to
// the upstream. It returns a *Refusal for a refused client that is not
// loading a page, for the caller to answer.
func (f *Flow) Serve(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.URL.Path, f.cfg.Prefix)
	pages.SetSecurityHeaders(w.Header(), r.TLS != nil)
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if static, ok := strings.CutPrefix(name, "static/"); ok && method == http.MethodGet {
		pages.ServeStatic(w, r, static)
		return nil
	}
	if name == "admin" && method == http.MethodGet {
		// The admin pages' address as typed, without the slash: the
		// overview. Its guards apply there.
		target := f.cfg.Prefix + "admin/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return nil
	}
	byMethod, ok := f.router[name]
	if !ok {
		return f.message(w, r, http.StatusNotFound, "title_not_found", "not_found", nil, f.cfg.TopPage)
	}
	rt, ok := byMethod[method]
	if !ok {
		var allow []string
		if byMethod[http.MethodGet] != nil {
			allow = append(allow, "GET", "HEAD")
		}
		if byMethod[http.MethodPost] != nil {
			allow = append(allow, "POST")
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return f.message(w, r, http.StatusMethodNotAllowed, "error_title", "method_not_allowed", nil, "")
	}
	b := f.cfg.Backend(r.Context())
	if b == nil {
		return f.Unavailable(w, r, "store", ErrNotReady)
	}
	p := &request{w: w, r: r, e: b.Engine, jar: b.Jar, backend: b}
	if done, err := f.guard(p, rt); done {
		return err
	}
	return rt.serve(f, p)
}

// guard applies the route's guards in order, filling in the request as it
// goes. It returns true when the request has been answered.
func (f *Flow) guard(p *request, rt *route) (bool, error) {
	r := p.r
	var err error
	if p.id, err = f.cfg.Identify(r); err != nil {
		return true, f.Unavailable(p.w, r, "identity", err)
	}
	if p.id.ID == "" {
		link := f.cfg.TopPage
		if f.cfg.LoginURL != "" {
			link = f.cfg.LoginURL
		}
		return true, f.message(p.w, r, http.StatusUnauthorized, "title_sign_in", "sign_in_first", nil, link)
	}
	if rt.guards&adminRoles != 0 {
		if !f.adminAllowed(p, rt) {
			return true, nil
		}
		// The engine's admin actions audit where the admin acts from, and
		// in which role.
		p.r = r.WithContext(challenge.WithAdmin(r.Context(), f.cfg.ClientIP(r), p.id.Role))
		r = p.r
	}
	if rt.method == http.MethodPost {
		if done, err := f.parseForm(p, rt); done {
			return true, err
		}
	}
	p.csrf = p.jar.CSRFSecret(r)
	if rt.guards&csrfToken != 0 {
		token := r.PostForm.Get("csrf")
		if jsonRoutes[rt.path] {
			token = r.Header.Get(csrfHeader)
		}
		if !sameOrigin(r) || p.csrf == "" || !p.jar.CSRFValid(p.csrf, p.id.ID, token) {
			p.e.Audit(f.actor(r, p.id.ID), "csrf_refused", "refused", zap.String("page", rt.path))
			return true, f.message(p.w, r, http.StatusForbidden, "error_title", "csrf_failed", nil, "")
		}
	}

	returnTo, from := r.URL.Query().Get("return_to"), r.URL.Query().Get("from")
	if rt.method == http.MethodPost && !jsonRoutes[rt.path] {
		returnTo, from = r.PostForm.Get("return_to"), r.PostForm.Get("from")
	}
	if returnTo = SafeReturnPath(returnTo); returnTo == "" {
		returnTo = f.cfg.TopPage
	}
	p.policy = f.cfg.PolicyFor(r, returnTo)
	if strings.HasPrefix(returnTo, f.cfg.Prefix+"admin/") {
		// On the way to an admin page: the challenge offers only the
		// methods admin pages accept, and no remembering.
		p.policy = &f.adminPolicy
	}
	p.page = &pages.Page{
		Lang:     pages.Language(r.Header.Get("Accept-Language")),
		SiteName: f.siteName(r),
		Prefix:   f.cfg.Prefix,
		ReturnTo: returnTo,
		// Who is signing in, and the way out, for the pages that show it.
		Member:       p.id.ID,
		SignOut:      f.signOutURL(),
		SiteSignOut:  f.cfg.LogoutURL != "",
		FromSettings: from == "settings",
	}
	if p.csrf == "" {
		f.newCSRF(p)
	} else {
		p.page.CSRF = p.jar.CSRFToken(p.csrf, p.id.ID)
	}

	if rt.guards&(enrolled|stepUp|mayEnrol|stepUpOrRenewal|adminStepUp) == 0 {
		return false, nil
	}
	if p.user, err = p.e.State(r.Context(), p.id.ID); err != nil {
		return true, f.unavailable(p, "state", err)
	}
	if len(p.user.Pending) > 0 && f.liveSession(p) {
		f.sendPending(p)
	}
	if rt.guards&adminStepUp != 0 {
		return f.adminStepUp(p, rt)
	}
	if rt.guards&enrolled != 0 && !p.user.Enrolled() {
		return true, goTo(p, rt, f.pageURL(p, "enrol"), "not_enrolled")
	}
	guarded := f.adminGuarded(p)
	if guarded && strings.HasPrefix(p.page.ReturnTo, f.cfg.Prefix) && !strings.HasPrefix(p.page.ReturnTo, f.cfg.Prefix+"admin/") {
		// An admin on the way to their own settings: the challenge offers
		// only their proven factors, as step-up there asks for one.
		pol := f.guardPolicy
		pol.Methods = slices.DeleteFunc(slices.Clone(pol.Methods), func(m string) bool { return !p.user.Proven(m) })
		p.policy = &pol
	}
	needStepUp := rt.guards&(stepUp|stepUpOrRenewal) != 0 || (rt.guards&mayEnrol != 0 && p.user.Enrolled())
	if needStepUp {
		// From the record just loaded: once the set is replaced, stepUp
		// again. Two posts already past here may both make a set, like a
		// double click; the later stands, and the session gets no more
		// than the renewal it was due.
		renewal := rt.guards&stepUpOrRenewal != 0 && RenewalDue(p.user)
		s, ok := f.stepUpSession(p, renewal)
		if !ok || (guarded && !renewal && !sessionProven(p.user, s)) || !passkeyStepUp(p, rt, s) {
			return true, f.toChallenge(p, rt)
		}
		p.session = s
	}
	return false, nil
}

// adminGuarded reports whether the member's own factors are guarded as
// the admin pages are: an admin who has a proven app or passkey changes
// methods, recovery codes and devices only with a session verified by
// one (sessionProven), whichever admin_methods names. Otherwise an email
// or SMS code or a recovery code, which a stolen password with a mailbox
// or phone passes, could replace or remove the app, or plant a passkey
// that then guards the settings against their owner. The renewal of
// recovery codes after one was used stays open to that session: new codes
// give no way into the admin pages, and an admin who lost the app must be
// able to renew before another admin resets them.
func (f *Flow) adminGuarded(p *request) bool {
	return p.id.Role != "" && slices.ContainsFunc(f.guardPolicy.Methods, p.user.Proven)
}

// sessionProven reports whether s was verified by an app or passkey of
// the member's that shows more than a stolen password with a mailbox or
// phone would (challenge.User.Proven), and not by one unproven then.
func sessionProven(u *challenge.User, s *session.Session) bool {
	return !s.Unproven && u.Proven(s.Method)
}

// passkeyStepUp reports whether s may add, rename or remove passkeys of
// a member who has one: only a session verified by a passkey, or by a
// recovery code for a member who lost theirs. Otherwise one code phished
// from the member (the app's, or one sent by email or SMS) would add the
// attacker's passkey and open the paths that accept only passkeys.
func passkeyStepUp(p *request, rt *route, s *session.Session) bool {
	if !passkeyRoute(p, rt) || !p.user.Has(challenge.MethodWebAuthn) {
		return true
	}
	return s.Method == challenge.MethodWebAuthn || s.Method == challenge.MethodRecovery
}

// passkeyRoute reports whether the request adds, renames or removes
// passkeys: their own routes, and the removal of the method as a whole,
// which would otherwise clear them all and make the next one a first.
func passkeyRoute(p *request, rt *route) bool {
	switch {
	case strings.HasPrefix(rt.path, "webauthn/login/"):
		return false
	case strings.HasPrefix(rt.path, "webauthn/"), rt.path == "enrol/webauthn":
		return true
	}
	return rt.path == "methods/remove" && p.r.PostForm.Get("method") == challenge.MethodWebAuthn
}

// toChallenge sends a member who needs a recent code to the challenge,
// and back afterwards: to the page itself, or after a post to the page of
// its group (methods/remove → methods).
func (f *Flow) toChallenge(p *request, rt *route) error {
	back := rt.path
	if rt.method == http.MethodPost {
		back, _, _ = strings.Cut(rt.path, "/")
		if back == "webauthn" {
			// Passkeys are added, renamed and removed from the
			// settings page.
			back = "methods"
		}
	}
	back = f.cfg.Prefix + back + "?return_to=" + url.QueryEscape(p.page.ReturnTo)
	return goTo(p, rt, f.cfg.Prefix+"challenge?return_to="+url.QueryEscape(back), "step_up_required")
}

// newCSRF gives the browser a fresh CSRF secret. It is also rotated after
// every successful verification, so a secret planted before sign-in is
// worthless afterwards.
func (f *Flow) newCSRF(p *request) {
	p.csrf = p.jar.NewCSRFSecret(p.w, p.r)
	if p.page != nil {
		p.page.CSRF = p.jar.CSRFToken(p.csrf, p.id.ID)
	}
}

// liveSession reports whether the request has a live second-factor
// session: pending notices go only to a member past the second factor.
func (f *Flow) liveSession(p *request) bool {
	var s session.Session
	return p.jar.Session(p.r, p.id.ID, &s) && f.SessionLive(&s, &p.id, p.user, clock.Now())
}

// stepUpSession returns the request's live session when it was verified
// with a code (not a remembered device) within the step-up window, or at
// any time when anyTime (the renewal step, while one is due).
func (f *Flow) stepUpSession(p *request, anyTime bool) (*session.Session, bool) {
	s := new(session.Session)
	now := clock.Now()
	if !p.jar.Session(p.r, p.id.ID, s) || s.Remembered ||
		(!anyTime && now.Unix()-s.Issued >= int64(f.cfg.StepUp.Seconds())) || !f.SessionLive(s, &p.id, p.user, now) {
		return nil, false
	}
	return s, true
}
