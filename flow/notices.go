package flow

import (
	"context"
	"net/http"
	"net/netip"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
)

// notice emails the member about a security event: a method added or
// removed, recovery codes used or renewed, a device remembered, a lockout.
// It sends in the background: a slow or failing mail server never holds
// up or undoes what the member did. Without an email sender or an address
// there is nobody to tell.
func (f *Flow) notice(p *request, u *challenge.User, d notify.NoticeData) {
	if f.cfg.Email == nil || u == nil {
		return
	}
	to := p.e.ContactEmail(u, identityEmail(p))
	if to == "" {
		return
	}
	d.Site = p.page.SiteName
	if d.When == "" {
		d.When = clock.Now().UTC().Format(noticeTime)
	}
	if !strings.HasPrefix(d.Kind, "admin_") {
		// An admin's action came from no request of the member's.
		a := f.actor(p.r, p.id.ID)
		d.IP = a.IP
		d.Browser = audit.Browser(a.UserAgent)
	}
	d.SettingsPath = f.cfg.Prefix + "methods"
	if f.cfg.SiteURL != "" {
		d.SettingsURL = f.cfg.SiteURL + f.cfg.Prefix + "methods"
	}
	if d.Method != "" {
		d.Method = p.page.T("method_name_" + d.Method)
	}
	msg, err := notify.Notice(p.page.Lang, d)
	if err != nil {
		f.logger.Error("composing a security notice", zap.String("kind", d.Kind), zap.Error(err))
		return
	}
	msg.To = to
	sender, logger, kind := f.cfg.Email, f.logger, d.Kind
	f.cfg.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, sendTimeout)
		defer cancel()
		if err := sender.Send(ctx, msg); err != nil {
			logger.Warn("sending a security notice failed", zap.String("kind", kind), zap.String("class", notify.Class(err)))
		}
	})
}

// noticeTime formats the time a notice gives.
const noticeTime = "2006-01-02 15:04 UTC"

// sendPending tells the member of admin actions on their factors that
// could not be told when they happened, their address following the
// member site's identity: now it is known. The notices are taken from the
// record first, so two pages loading at once send them once; if sending
// then fails they are lost, as a notice sent at once would be.
func (f *Flow) sendPending(p *request) {
	if f.cfg.Email == nil || p.e.ContactEmail(p.user, identityEmail(p)) == "" {
		return // kept until a visit that can tell them
	}
	taken, err := p.e.TakePending(p.r.Context(), p.id.ID)
	if err != nil {
		f.logger.Warn("taking pending notices", zap.Error(err))
		return
	}
	for _, n := range taken {
		f.notice(p, p.user, notify.NoticeData{Kind: n.Kind, Name: n.Name, When: n.At.UTC().Format(noticeTime)})
	}
}

// SendPending is sendPending for the Caddy layer, which meets the member
// on protected paths: a reset request ends no session, so the member may
// never load one of the gateway's pages before it is approved.
func (f *Flow) SendPending(r *http.Request, b *Backend, id *Identity, u *challenge.User) {
	f.sendPending(&request{r: r, e: b.Engine, id: *id, user: u, page: &pages.Page{
		Lang: pages.Language(r.Header.Get("Accept-Language")), SiteName: f.siteName(r), Prefix: f.cfg.Prefix}})
}

// seenBrowser records that this browser passed the second factor (by
// method) for the member and, the first time, tells the member by email,
// unless notices of new browsers are off or the request comes from a
// trusted network.
// The browser is told apart by a random token in a long-lived cookie. A
// verification given the browser (withBrowser) recorded it already, in
// its own write: then only the notice is left.
func (f *Flow) seenBrowser(p *request, u *challenge.User, method string, tell bool, b *challenge.Browser) {
	a := f.actor(p.r, p.id.ID)
	a.Network = f.recordedNetwork(p.r)
	first := b != nil && b.First
	if b == nil || !b.Recorded {
		var err error
		if first, err = p.e.SeenBrowser(p.r.Context(), a, p.jar.BrowserToken(p.w, p.r), method); err != nil {
			f.logger.Warn("recording the browser", zap.Error(err))
			return
		}
	}
	if first && tell && f.cfg.NewDeviceNotice && !f.trustedAddress(a.IP) {
		f.notice(p, u, notify.NoticeData{Kind: "new_device"})
	}
}

// withBrowser gives a verification the browser signing in, and the range
// it signs in from where ranges are recorded, so that its write of the
// member's record records them too (see challenge.Browser), and returns
// the browser for seenBrowser.
func (f *Flow) withBrowser(p *request, a *challenge.Actor) *challenge.Browser {
	a.Browser = &challenge.Browser{Token: p.jar.BrowserToken(p.w, p.r)}
	a.Network = f.recordedNetwork(p.r)
	return a.Browser
}

func (f *Flow) trustedAddress(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, n := range f.cfg.TrustedNetworks {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}
