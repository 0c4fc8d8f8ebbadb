package flow

import (
	"context"
	"net/netip"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/notify"
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
	d.When = clock.Now().UTC().Format("2006-01-02 15:04 UTC")
	a := f.actor(p.r, p.id.ID)
	d.IP = a.IP
	d.Browser = DeviceSummary(a.UserAgent)
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

// seenBrowser records that this browser passed the second factor for the
// member and, the first time, tells the member by email, unless notices
// of new browsers are off or the request comes from a trusted network.
// The browser is told apart by a random token in a long-lived cookie.
func (f *Flow) seenBrowser(p *request, u *challenge.User, tell bool) {
	token := p.jar.BrowserToken(p.w, p.r)
	a := f.actor(p.r, p.id.ID)
	first, err := p.e.SeenBrowser(p.r.Context(), a, token)
	if err != nil {
		f.logger.Warn("recording the browser", zap.Error(err))
		return
	}
	if first && tell && f.cfg.NewDeviceNotice && !f.trustedAddress(a.IP) {
		f.notice(p, u, notify.NoticeData{Kind: "new_device"})
	}
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
