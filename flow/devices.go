package flow

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
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
	u, method, err := b.Engine.UseDeviceFor(ctx, f.actor(r, id.ID), d.ID, pol.Remember, pol.Allows)
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
