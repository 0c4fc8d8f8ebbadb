package flow

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/pages"
	"github.com/caddy-twofactor/twofactor/session"
)

// Remembered devices: "don't ask again on this device", its use on
// protected paths, and the member's list of them.

// rememberDevice records this browser as a remembered device after a
// verification with method.
func (f *Flow) rememberDevice(ctx context.Context, p *request, u *challenge.User, a challenge.Actor, method string, now time.Time) {
	id := session.NewID()
	expires, err := p.e.RememberDevice(ctx, a, id, p.policy.Remember, method)
	if err != nil {
		// The member is verified; failing to remember only means being
		// asked again next time.
		f.logger.Warn("remembering device", zap.Error(err))
		return
	}
	d := session.Device{User: p.id.ID, ID: id, Expires: expires.Unix()}
	p.jar.SetDevice(p.w, p.r, &d, now)
	f.notice(p, u, notify.NoticeData{Kind: "device_remembered"})
}

// UseRememberedDevice starts a session from a remembered-device cookie
// that belongs to this member, is still on record and was remembered after
// a method pol accepts. It reports whether it did.
func (f *Flow) UseRememberedDevice(w http.ResponseWriter, r *http.Request, b *Backend, id *Identity, pol *Policy, now time.Time) (bool, error) {
	var d session.Device
	if !b.Jar.Device(r, id.ID, &d) || now.Unix() >= d.Expires {
		// No device, another member's, or a stale cookie: they are asked
		// for a code like anyone else.
		return false, nil
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	// A device remembered after a method these paths do not accept (the
	// app, where only passkeys are) is refused here and still good where
	// that method is.
	a := f.actor(r, id.ID)
	if pol.Recheck {
		// A range the member has not passed the second factor from is
		// asked for a code once; the verification makes it known.
		a.Network = f.requestNetwork(r)
		if !a.Network.IsValid() {
			f.noClientAddress(now)
		}
	}
	u, method, err := b.Engine.UseDeviceFor(ctx, a, d.ID, pol.Remember, pol.Allows, pol.Recheck)
	if errors.Is(err, challenge.ErrDeviceUnknown) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The session carries the device's ID, so forgetting the device ends
	// the session too.
	s := session.Session{
		User: id.ID, ID: d.ID, Binding: id.Binding, Method: method, Epoch: u.Epoch, Remembered: true,
		Issued: now.Unix(), LastSeen: now.Unix(), Expires: now.Add(f.cfg.SessionLifetime).Unix(),
	}
	b.Jar.SetSession(w, r, &s, now)
	return true, nil
}

// requestNetwork is the range the request comes from (NetworkOf), the
// zero Prefix when its address cannot be determined.
func (f *Flow) requestNetwork(r *http.Request) netip.Prefix {
	return NetworkOf(f.cfg.ClientAddr(r))
}

// recordedNetwork is the range a verification records as known for the
// member (challenge.Actor.Network): the request's, when some rule
// rechecks remembered devices (Config.RecordNetworks), otherwise none.
func (f *Flow) recordedNetwork(r *http.Request) netip.Prefix {
	if !f.cfg.RecordNetworks {
		return netip.Prefix{}
	}
	return f.requestNetwork(r)
}

// NetworkKnown reports whether the member has passed the second factor
// from the range the request comes from, by a method pol accepts. An
// address that cannot be determined is never known. For the handler,
// which sends a session begun from a remembered device, carried to a
// range the member has not passed from, back to the device check on
// rules that recheck.
func (f *Flow) NetworkKnown(r *http.Request, u *challenge.User, pol *Policy) bool {
	return u.KnownNetwork(f.requestNetwork(r), pol.Allows)
}

// noClientAddress logs, at most once an hour, that a recheck found no
// client address: such requests are never from a known range, so their
// members are asked for a code every time.
func (f *Flow) noClientAddress(now time.Time) {
	if ok, held := f.noAddressLimit.allow("recheck", now, time.Hour); ok {
		f.logger.Warn("recheck_new_network found no client address it could trust, so it asks for a code every time: "+
			"requests over a unix socket need trusted_proxies_unix, and through a trusted proxy trusted_proxies_strict",
			zap.Int("since_last", held))
	}
}

// networkOptions are the ranges a member passed the second factor from
// (User.KnownNetworks), for the settings and admin member pages.
func networkOptions(known []challenge.KnownNetwork) []pages.NetworkOption {
	out := make([]pages.NetworkOption, 0, len(known))
	for _, n := range known {
		out = append(out, pages.NetworkOption{Range: n.Range, Last: pages.When(n.Last)})
	}
	return out
}

// listDevices puts the member's remembered devices on the page, marking
// the one the request comes from.
func (f *Flow) listDevices(p *request) error {
	devices, err := p.e.Devices(p.r.Context(), p.id.ID)
	if err != nil {
		return err
	}
	current := ""
	var d session.Device
	if p.jar.Device(p.r, p.id.ID, &d) {
		current = hex.EncodeToString(d.ID[:])
	}
	for _, d := range devices {
		p.page.Devices = append(p.page.Devices, pages.DeviceOption{
			ID: d.ID, Summary: audit.Browser(d.UserAgent), IP: d.IP,
			Created: pages.When(d.Created), LastUsed: pages.When(d.LastUsed), Current: d.ID == current,
		})
	}
	return nil
}

// forgetDevices revokes one remembered device, or all of them: their
// cookies stop working at once.
func (f *Flow) forgetDevices(p *request) error {
	ctx, cancel := withTimeout(p.r)
	defer cancel()
	a := f.actor(p.r, p.id.ID)
	if p.r.PostForm.Get("all") == "1" {
		if err := p.e.ForgetAllDevices(ctx, a); err != nil {
			return f.unavailable(p, "devices", err)
		}
		return seeOther(p, f.pageURL(p, "methods")+"&forgot=all")
	}
	b, err := hex.DecodeString(p.r.PostForm.Get("device"))
	if err != nil || len(b) != 16 {
		return f.message(p.w, p.r, http.StatusBadRequest, "error_title", "bad_request", nil, "")
	}
	if err := p.e.ForgetDevice(ctx, a, [16]byte(b)); err != nil {
		return f.unavailable(p, "devices", err)
	}
	return seeOther(p, f.pageURL(p, "methods")+"&forgot=1")
}
