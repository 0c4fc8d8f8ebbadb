package flow

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/session"
)

// Sign-out, which the member site links to after its own.

// logoutPage asks the member to confirm signing out of the site. The form
// carries on the return_to the page was opened with or, without one, the
// site's own sign-out (logout_url) if known; "back" leads to the site's
// top page, never to return_to, which is often the site's own sign-out.
func (f *Flow) logoutPage(p *request) error {
	if p.r.URL.Query().Get("return_to") == "" {
		p.page.ReturnTo = f.cfg.LogoutURL
	}
	p.page.Link = f.cfg.TopPage
	return f.render(p, http.StatusOK, "logout")
}

// logout ends the second-factor session server-side and forgets this
// browser's remembered device, so the next visit asks for a code again.
// With a return_to posted (the sign-out page carries the one it was opened
// with), the member goes on there: to the member site's own sign-out, say;
// without, they see that they are signed out.
func (f *Flow) logout(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := f.actor(p.r, p.id.ID)
	var s session.Session
	if p.jar.Session(p.r, p.id.ID, &s) {
		if err := p.e.RevokeSession(ctx, a, s.ID, time.Unix(s.Expires, 0)); err != nil {
			return f.unavailable(p, "logout", err)
		}
	}
	var d session.Device
	if p.jar.Device(p.r, p.id.ID, &d) {
		if err := p.e.ForgetDevice(ctx, a, d.ID); err != nil {
			return f.unavailable(p, "logout", err)
		}
	}
	p.jar.EndSession(p.w, p.r)
	p.jar.ForgetDevice(p.w, p.r)
	f.newCSRF(p)
	if c := f.logger.Check(zap.DebugLevel, "signed out"); c != nil {
		c.Write(zap.String("user", p.id.ID))
	}
	if p.r.PostForm.Get("return_to") != "" {
		return seeOther(p, p.page.ReturnTo)
	}
	if f.cfg.LogoutURL != "" {
		return seeOther(p, f.cfg.LogoutURL)
	}
	// The site's sign-out is unknown: this browser's verification has
	// ended, and the site's own sign-out finishes the job.
	return f.message(p.w, p.r, http.StatusOK, "title_signed_out", "signed_out", nil, f.cfg.TopPage)
}
