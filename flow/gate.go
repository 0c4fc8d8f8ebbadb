package flow

import (
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/session"
)

// What the Caddy layer's hot path shares with the pages: whether a session
// is live, and where to send a member who needs a page.

// SessionLive reports whether s is a live second-factor session for this
// member, this member-site session and the member's current factors.
func (f *Flow) SessionLive(s *session.Session, id *Identity, u *challenge.User, now time.Time) bool {
	t := now.Unix()
	return s.User == id.ID &&
		s.Binding == id.Binding &&
		t < s.Expires &&
		t < s.Issued+int64(f.cfg.SessionLifetime/time.Second) &&
		t-s.LastSeen < int64((f.cfg.SessionIdle+f.refreshEvery())/time.Second) &&
		s.LastSeen <= t+60 &&
		u.Enrolled() &&
		s.Epoch == u.Epoch &&
		!u.SessionRevoked(s.ID) &&
		!u.SessionsEnded(s.Issued) &&
		(!s.Remembered || u.DeviceListed(s.ID))
}

// refreshEvery is how often a live session's last use is written back
// to its cookie: a quarter of SessionIdle, at most a minute, so that
// re-sealing the cookie is rare on the hot path. The idle limit is
// counted from that last write plus this much, so a member whose requests
// come less than SessionIdle apart is never asked again.
func (f *Flow) refreshEvery() time.Duration {
	return min(time.Minute, f.cfg.SessionIdle/4)
}

// SessionRefreshDue reports whether the session's last use should be
// written back now.
func (f *Flow) SessionRefreshDue(s *session.Session, now time.Time) bool {
	return now.Unix()-s.LastSeen >= int64(f.refreshEvery()/time.Second)
}

// IsNavigation reports whether a redirect to a page makes sense: the
// browser is loading a page, not posting a form or fetching data for a
// script. Browsers say which with Sec-Fetch-Mode; other clients get pages.
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	mode := r.Header.Get("Sec-Fetch-Mode")
	return mode == "" || mode == "navigate"
}

// NeedSecondFactor sends a page load to the challenge or enrolment page
// (page), and refuses other requests with 401: a page for clients that
// take pages, a *Refusal for scripts.
func (f *Flow) NeedSecondFactor(w http.ResponseWriter, r *http.Request, page string) error {
	return f.needPage(w, r, page, "second_factor_required")
}

// NeedRecoveryRenewal holds back a member who used a recovery code until
// they have replaced the set (RenewalDue): page loads go to the renewal
// step, other requests get 401.
func (f *Flow) NeedRecoveryRenewal(w http.ResponseWriter, r *http.Request) error {
	return f.needPage(w, r, "recovery", "recovery_renew_required")
}

// RenewalDue reports whether the member used a recovery code and has not
// replaced the set since. It holds for every session of theirs, not only
// the one the code began: a session minted by enrolling a new method, or
// a sign-in in another browser, must not reach protected paths with the
// rest of a set that was relied on either. Sessions and remembered
// devices from before the code was used ended with it (UseRecoveryCode
// bumps the epoch and clears the devices), so no timestamp is compared:
// instances whose clocks differ could not get that wrong.
func RenewalDue(u *challenge.User) bool {
	return u.MustRenewRecovery()
}

func (f *Flow) needPage(w http.ResponseWriter, r *http.Request, page, msg string) error {
	if IsNavigation(r) {
		return f.RedirectToPage(w, r, page)
	}
	w.Header().Set("Cache-Control", "no-store")
	return f.message(w, r, http.StatusUnauthorized, "title_challenge", msg, nil, f.cfg.Prefix+page)
}

// RedirectToPage redirects to one of the gateway's pages, carrying the
// current path as return_to.
func (f *Flow) RedirectToPage(w http.ResponseWriter, r *http.Request, page string) error {
	target := f.cfg.Prefix + page + "?return_to=" + url.QueryEscape(r.URL.RequestURI())
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}
