package twofactor

import (
	"context"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/session"
)

// notice emails the member about a security event: a method added or
// removed, recovery codes used or renewed, a device remembered, a lockout.
// It sends in the background: a slow or failing mail server never holds
// up or undoes what the member did. Without an email sender or an address
// there is nobody to tell.
func (h *Handler) notice(p *pageRequest, u *challenge.User, d notify.NoticeData) {
	if h.app.email == nil || u == nil {
		return
	}
	to := h.engine.ContactEmail(u, h.identityEmail(p))
	if to == "" {
		return
	}
	d.Site = p.page.SiteName
	d.When = clock.Now().UTC().Format("2006-01-02 15:04 UTC")
	a := actor(p.r, p.id.ID)
	d.IP = a.IP
	d.Browser = deviceSummary(a.UserAgent)
	d.SettingsPath = h.Prefix + "methods"
	if h.SiteURL != "" {
		d.SettingsURL = h.SiteURL + h.Prefix + "methods"
	}
	if d.Method != "" {
		d.Method = p.page.T("method_name_" + d.Method)
	}
	msg, err := notify.Notice(p.page.Lang, d)
	if err != nil {
		h.logger.Error("composing a security notice", zap.String("kind", d.Kind), zap.Error(err))
		return
	}
	msg.To = to
	sender, logger, kind := h.app.email, h.logger, d.Kind
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		defer cancel()
		if err := sender.Send(ctx, msg); err != nil {
			logger.Warn("sending a security notice failed", zap.String("kind", kind), zap.String("class", notify.Class(err)))
		}
	}()
}

// browserTokenAge is how long the cookie that tells browsers apart lasts:
// browsers keep cookies at most 400 days.
const browserTokenAge = 400 * 24 * time.Hour

// seenBrowser records that this browser passed the second factor for the
// member and, the first time, tells the member by email, unless notices
// of new browsers are off or the request comes from a trusted network.
// The browser is told apart by a random token in a long-lived cookie.
func (h *Handler) seenBrowser(p *pageRequest, u *challenge.User, tell bool) {
	token, ok := cookieValue(p.r, session.Name(session.BrowserCookie, p.secure))
	if !ok || len(token) < 43 || len(token) > 64 {
		token = session.NewSecret()
		setCookie(p.w, session.BrowserCookie, token, int(browserTokenAge/time.Second), p.secure)
	}
	a := actor(p.r, p.id.ID)
	first, err := h.engine.SeenBrowser(p.r.Context(), a, token)
	if err != nil {
		h.logger.Warn("recording the browser", zap.Error(err))
		return
	}
	if first && tell && h.NewDeviceNotice != "off" && !h.trustedAddress(a.IP) {
		h.notice(p, u, notify.NoticeData{Kind: "new_device"})
	}
}

func (h *Handler) trustedAddress(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, n := range h.trusted {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}
