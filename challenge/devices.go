package challenge

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// ErrDeviceUnknown reports a remembered-device token with no live record:
// revoked, expired, from an earlier factor epoch, or never issued.
var ErrDeviceUnknown = errors.New("challenge: device not remembered")

// Device is the server-side record of a remembered device. The cookie only
// names it; revoking the record ends it at once.
type Device struct {
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used"`
	Expires   time.Time `json:"expires"`
	UserAgent string    `json:"user_agent"`
	IP        string    `json:"ip"`
	// Epoch is the user's factor epoch when the device was remembered.
	Epoch uint64 `json:"epoch"`
	// Method is the factor verified when the device was remembered; the
	// device stands in for it, and only where that method is accepted.
	// Records from before methods were recorded were all TOTP.
	Method string `json:"method,omitempty"`
}

func deviceKey(user string, id [16]byte) string {
	return "device:" + tag(user) + ":" + hex.EncodeToString(id[:])
}

// maxUserAgent keeps records small whatever the client sends.
const maxUserAgent = 256

// maxDevices bounds the remembered devices per user; the one expiring
// soonest goes first.
const maxDevices = 50

// RememberDevice records a device for the actor for ttl and returns its
// expiry. The user must have verified method just before.
func (e *Engine) RememberDevice(ctx context.Context, a Actor, id [16]byte, ttl time.Duration, method string) (time.Time, error) {
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return time.Time{}, err
	}
	if !u.Enrolled() {
		return time.Time{}, ErrNotEnrolled
	}
	now := e.now().UTC()
	ua := a.UserAgent
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	d := Device{
		ID: hex.EncodeToString(id[:]), Created: now, LastUsed: now, Expires: now.Add(ttl),
		UserAgent: ua, IP: a.IP, Epoch: u.Epoch, Method: method,
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return time.Time{}, err
	}
	if err := e.store.Set(ctx, deviceKey(a.User, id), raw, ttl); err != nil {
		return time.Time{}, err
	}
	var dropped []string
	_, err = e.updateUser(ctx, a.User, func(u *User) error {
		if u.Devices == nil {
			u.Devices = map[string]int64{}
		}
		u.Devices[d.ID] = d.Expires.Unix()
		dropped = trimSmallest(u.Devices, maxDevices)
		return nil
	})
	if err != nil {
		// Unlisted, the device could not be revoked from the settings.
		_ = e.store.Delete(ctx, deviceKey(a.User, id))
		return time.Time{}, err
	}
	for _, old := range dropped {
		if b, err := hex.DecodeString(old); err == nil && len(b) == 16 {
			_ = e.store.Delete(ctx, deviceKey(a.User, [16]byte(b)))
		}
	}
	e.Audit(a, "device_remembered", "success", zap.String("device", d.ID[:8]), zap.Time("expires", d.Expires))
	return d.Expires, nil
}

// UseDevice accepts a remembered device in place of a code when its record
// is live, from the user's current factor epoch, and no older than maxAge
// (the path's own remember-device limit, which may be shorter than the one
// the device was remembered under). It returns the method the device
// stands in for.
func (e *Engine) UseDevice(ctx context.Context, a Actor, id [16]byte, maxAge time.Duration) (*User, string, error) {
	return e.UseDeviceFor(ctx, a, id, maxAge, nil, false)
}

// UseDeviceFor is UseDevice on a path that accepts only the methods
// accepts reports true for (nil: any): a device remembered after another
// method is refused there (ErrDeviceUnknown), audited as such and not
// marked used, and stays good where its method is accepted. With recheck,
// a device used from a range the member never passed the second factor
// from by a method accepts allows (Actor.Network not in User.Networks;
// the zero Prefix never is) is
// refused the same way, with reason new_network: the member is asked for
// a code once, which makes the range known, and the device stays good.
func (e *Engine) UseDeviceFor(ctx context.Context, a Actor, id [16]byte, maxAge time.Duration, accepts func(method string) bool, recheck bool) (*User, string, error) {
	key := deviceKey(a.User, id)
	raw, err := e.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		e.Audit(a, "device_used", "refused", zap.String("reason", "unknown"))
		return nil, "", ErrDeviceUnknown
	}
	if err != nil {
		return nil, "", err
	}
	var d Device
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, "", ErrDeviceUnknown
	}
	// Read the record itself, not the cache: a reset on another instance
	// must end remembered devices at once.
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, "", err
	}
	now := e.now()
	if now.Sub(d.Created) > maxAge {
		e.Audit(a, "device_used", "refused", zap.String("reason", "too_old_for_path"))
		return nil, "", ErrDeviceUnknown
	}
	if _, listed := u.Devices[d.ID]; !u.Enrolled() || d.Epoch != u.Epoch || !now.Before(d.Expires) || !listed {
		_ = e.store.Delete(ctx, key)
		e.Audit(a, "device_used", "refused", zap.String("reason", "stale"))
		return nil, "", ErrDeviceUnknown
	}
	method := d.Method
	if method == "" {
		method = MethodTOTP
	}
	if !u.Has(method) {
		e.Audit(a, "device_used", "refused", zap.String("reason", "method_removed"))
		return nil, "", ErrDeviceUnknown
	}
	if accepts != nil && !accepts(method) {
		e.Audit(a, "device_used", "refused", zap.String("device", d.ID[:8]), zap.String("method", method),
			zap.String("reason", "method_not_accepted"))
		return nil, "", ErrDeviceUnknown
	}
	if recheck && !u.KnownNetwork(a.Network, accepts) {
		network := "unknown"
		if a.Network.IsValid() {
			network = a.Network.String()
		}
		if e.recheckDue(a.User, d.ID, network, now) {
			e.Audit(a, "device_used", "refused", zap.String("device", d.ID[:8]), zap.String("network", network),
				zap.String("reason", "new_network"))
		}
		return nil, "", ErrDeviceUnknown
	}
	d.LastUsed = now.UTC()
	if next, err := json.Marshal(d); err == nil {
		// Last-used is informational; losing a race to a revocation must
		// not bring the record back, hence the compare-and-swap.
		_, _ = e.store.CompareAndSwap(ctx, key, raw, next, d.Expires.Sub(now))
	}
	e.Audit(a, "device_used", "success", zap.String("device", d.ID[:8]), zap.String("method", method))
	return u, method, nil
}

// ForgetDevice deletes a remembered device record: its cookie stops
// working at once.
func (e *Engine) ForgetDevice(ctx context.Context, a Actor, id [16]byte) error {
	if err := e.store.Delete(ctx, deviceKey(a.User, id)); err != nil {
		return err
	}
	hexID := hex.EncodeToString(id[:])
	if _, err := e.updateUser(ctx, a.User, func(u *User) error {
		delete(u.Devices, hexID)
		return nil
	}); err != nil {
		return err
	}
	e.Audit(a, "device_forgotten", "success", zap.String("device", hexID[:8]))
	return nil
}

// Devices lists the user's live remembered devices, newest first.
func (e *Engine) Devices(ctx context.Context, user string) ([]Device, error) {
	u, _, err := e.loadUser(ctx, user)
	if err != nil {
		return nil, err
	}
	var out []Device
	for hexID := range u.Devices {
		var id [16]byte
		if b, err := hex.DecodeString(hexID); err != nil || len(b) != len(id) {
			continue
		} else {
			copy(id[:], b)
		}
		raw, err := e.store.Get(ctx, deviceKey(user, id))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var d Device
		if json.Unmarshal(raw, &d) != nil || d.Epoch != u.Epoch || !e.now().Before(d.Expires) {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// ForgetAllDevices revokes every remembered device of the user, and
// forgets the ranges they passed the second factor from (User.Networks),
// as an admin's forget-devices does.
func (e *Engine) ForgetAllDevices(ctx context.Context, a Actor) error {
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return err
	}
	for hexID := range u.Devices {
		var id [16]byte
		if b, err := hex.DecodeString(hexID); err == nil && len(b) == len(id) {
			copy(id[:], b)
			if err := e.ForgetDevice(ctx, a, id); err != nil {
				return err
			}
		}
	}
	if len(u.Networks) == 0 {
		return nil
	}
	_, err = e.updateUser(ctx, a.User, func(u *User) error {
		u.Networks = nil
		return nil
	})
	return err
}

// recheckAuditEvery spaces the audit (and the count, device_rechecks_total)
// of one device refused from one new range on one instance: a page that
// keeps polling while its member owes the code, or someone trying a
// stolen cookie, would otherwise write an event on every request.
const recheckAuditEvery = time.Hour

// maxRechecksNoted bounds the refusals remembered for recheckDue; past it
// the least seen are forgotten, which costs each one more event.
const maxRechecksNoted = 10_000

// recheckDue reports whether the refusal of device from network is to be
// audited now, and notes it if so.
func (e *Engine) recheckDue(user, device, network string, now time.Time) bool {
	due := false
	e.rechecked.Update(user+"\x00"+device+"\x00"+network, false, func(last int64, found bool) (int64, bool) {
		if found && now.Unix()-last < int64(recheckAuditEvery/time.Second) {
			return last, false
		}
		due = true
		return now.Unix(), true
	})
	return due
}
