package challenge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// Administrative actions: operator tooling that no member triggers. Each
// is audited with the acting admin (Caddy's admin API acts as "admin
// endpoint", having no member identity) and, where it changes a member's
// state, the reason the admin gave.

// InputError reports a bad argument to an administrative action, naming
// the field, so the admin API and the CLI can say which one to fix.
type InputError struct {
	Field   string
	Problem string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Problem }

// maxReason bounds the reason kept in the audit trail.
const maxReason = 500

func checkReason(reason string) error {
	switch r := strings.TrimSpace(reason); {
	case r == "":
		return &InputError{"reason", "required: say why, for the audit trail"}
	case len(r) > maxReason:
		return &InputError{"reason", fmt.Sprintf("at most %d bytes", maxReason)}
	}
	return nil
}

// RekeyResult counts what a rekey did.
type RekeyResult struct {
	// Records is how many member records were read.
	Records int `json:"records"`
	// Resealed is how many moved to the current key.
	Resealed int `json:"resealed"`
	// Remaining is how many still hold data under another key: those
	// under a key no longer configured (Unreadable), and any written
	// meanwhile under an older key by an instance not yet given the
	// current one.
	Remaining int `json:"remaining"`
	// Unreadable is how many hold data under a key no longer configured:
	// put it back in keys, after the current one, and rekey again.
	Unreadable int `json:"unreadable"`
}

// errNoRecord stops an update of a record that is gone: a rekey must not
// create an empty record in its place.
var errNoRecord = errors.New("challenge: no record")

// Rekey seals again under the current key every member record still
// holding data under an older one, so the older keys can be removed
// without waiting for every member to sign in. It first lists in the users
// index any record written before it existed, then reads every record: on
// a large store it takes a while, at one write per stale record.
func (e *Engine) Rekey(ctx context.Context, actor string) (RekeyResult, error) {
	res, err := e.rekey(ctx)
	fields := []zap.Field{zap.String("actor", actor), zap.Int("records", res.Records),
		zap.Int("resealed", res.Resealed), zap.Int("remaining", res.Remaining), zap.Int("unreadable", res.Unreadable)}
	if err != nil {
		e.Audit(Actor{}, "admin_rekey", "error", append(fields, zap.String("reason", reason(err)))...)
		return res, err
	}
	e.Audit(Actor{}, "admin_rekey", "success", fields...)
	return res, nil
}

func (e *Engine) rekey(ctx context.Context) (RekeyResult, error) {
	var res RekeyResult
	if err := e.IndexUsers(ctx); err != nil {
		return res, err
	}
	err := e.eachUser(ctx, func(u *User) error { return e.rekeyUser(ctx, u, &res) })
	return res, err
}

func (e *Engine) rekeyUser(ctx context.Context, u *User, res *RekeyResult) error {
	res.Records++
	if older, _ := e.keysOf(u); !older {
		e.observe(u)
		return nil
	}
	// A write with no change: updateUser re-seals what it can, through
	// the compare-and-swap that keeps a member's sign-in meanwhile.
	u, err := e.updateUser(ctx, u.ID, func(u *User) error {
		if u.Rev == 0 {
			return errNoRecord
		}
		return nil
	})
	if errors.Is(err, errNoRecord) {
		res.Records--
		return nil
	}
	if err != nil {
		return err
	}
	older, missing := e.keysOf(u)
	switch {
	case missing:
		res.Remaining++
		res.Unreadable++
	case older:
		res.Remaining++
	default:
		res.Resealed++
	}
	return nil
}

// UnlockResult says what an unlock found.
type UnlockResult struct {
	// WasLocked reports that a lockout was running.
	WasLocked bool `json:"was_locked"`
	// Failures is how many wrong codes in a row it cleared.
	Failures int64 `json:"failures"`
	// Contact is where to tell the member that a lockout was lifted:
	// "" when none was running, or when the notice waits for their next
	// visit (no address on record). Not part of the API's answer.
	Contact string `json:"-"`
}

// Unlock lifts the member's lockout at once, forgets the lockouts before
// it (the next one lasts Lockout again) and clears the count of wrong
// codes, so the member has every try again. The round is kept, as a right
// code keeps it: a guess that read an older round still lands on that
// round's full counter.
func (e *Engine) Unlock(ctx context.Context, actor, reason, member string) (UnlockResult, error) {
	if member == "" {
		return UnlockResult{}, &InputError{"member", "required: the member's ID"}
	}
	if err := checkReason(reason); err != nil {
		return UnlockResult{}, err
	}
	// The lockout's end, to take the member off the list of those locked
	// out; if it cannot be read, unlock fails alike.
	before, _ := e.readLock(ctx, lockKey(member))
	res, err := e.unlock(ctx, lockKey(member), accountMemory, func(round int64) []string {
		return []string{inRound(failKey(member), round)}
	})
	if err == nil {
		e.listLock(ctx, member, before.until, time.Time{})
		if res.WasLocked {
			res.Contact = e.unlockContact(ctx, member)
		}
	}
	e.auditAdmin(ctx, Actor{User: member}, "admin_unlock", actor, reason, res, err)
	return res, err
}

// unlockContact is where to tell the member that their lockout was lifted,
// or "" with the notice left for their next visit. Someone who talked
// support into lifting it may be guessing codes for the account.
func (e *Engine) unlockContact(ctx context.Context, member string) string {
	to := ""
	_, _ = e.updateUser(ctx, member, func(u *User) error {
		if u.Rev == 0 {
			return errNoRecord
		}
		if to = e.ContactEmail(u, ""); to != "" {
			return errNothingPending // nothing to write
		}
		u.addPending("admin_unlock", "", e.now())
		return nil
	})
	return to
}

// UnlockAddress lifts a client address's lockout at once and clears its
// count of wrong codes in the current window. IPv6 addresses are locked
// by /64, so this unlocks the address's /64.
func (e *Engine) UnlockAddress(ctx context.Context, actor, reason, ip string) (UnlockResult, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return UnlockResult{}, &InputError{"address", "not an IP address"}
	}
	if err := checkReason(reason); err != nil {
		return UnlockResult{}, err
	}
	ip = addr.String()
	res, err := e.unlock(ctx, addrLockKey(ip), e.cfg.FailureWindow+2*time.Minute, func(round int64) []string {
		win, _ := e.addressWindow(round)
		// The refunds go with the failures, or they would outnumber
		// the next ones.
		return []string{addrFailKey(ip) + win, addrOKKey(ip) + win}
	})
	e.auditAdmin(ctx, Actor{IP: ip}, "admin_unlock_address", actor, reason, res, err)
	return res, err
}

// unlock replaces the lock record at key with one of the same round that
// locks nothing and counts no lockout in a row, then deletes the round's
// counters (the first is the failure count reported).
func (e *Engine) unlock(ctx context.Context, key string, memory time.Duration, counters func(round int64) []string) (UnlockResult, error) {
	var res UnlockResult
	for range 20 {
		l, err := e.readLock(ctx, key)
		if err != nil {
			return res, err
		}
		keys := counters(l.round)
		if res.Failures, err = e.counter(ctx, keys[0]); err != nil {
			return res, err
		}
		res.WasLocked = l.until.After(e.now())
		if l.raw != nil {
			ok, err := e.store.CompareAndSwap(ctx, key, l.raw, lockState{round: l.round}.encode(), memory)
			if err != nil {
				return res, err
			}
			if !ok {
				continue // a lockout written meanwhile: lift that one
			}
		}
		return res, e.store.Delete(ctx, keys...)
	}
	return res, fmt.Errorf("%w: the lock record kept changing", store.ErrUnavailable)
}

type adminKey struct{}

// adminContext is who acts on an admin page: from where, in which role.
type adminContext struct{ ip, role string }

// WithAdmin returns ctx carrying the acting admin's client address and
// role: the admin actions given it add admin_ip and admin_role to their
// audit entries. The address is not the member's, so the member's
// activity never shows it.
func WithAdmin(ctx context.Context, ip, role string) context.Context {
	return context.WithValue(ctx, adminKey{}, adminContext{ip: ip, role: role})
}

// withAdminIP adds ctx's admin_ip and admin_role, if any, to an admin
// action's fields.
func withAdminIP(ctx context.Context, fields []zap.Field) []zap.Field {
	a, _ := ctx.Value(adminKey{}).(adminContext)
	if a.ip != "" {
		fields = append(fields, zap.String("admin_ip", a.ip))
	}
	if a.role != "" {
		fields = append(fields, zap.String("admin_role", a.role))
	}
	return fields
}

// AuditRead records that an admin read what the gateway knows of members
// (event admin_member_viewed, admin_members_searched, admin_reconcile):
// who, from where, and about whom where one member is named. Reading is
// not a change, but it is access to members' data that an audit answers
// for.
func (e *Engine) AuditRead(ctx context.Context, actor, event, member string, fields ...zap.Field) {
	e.Audit(Actor{User: member}, event, "success", withAdminIP(ctx, append([]zap.Field{zap.String("actor", actor)}, fields...))...)
}

func (e *Engine) auditAdmin(ctx context.Context, a Actor, event, actor, why string, res UnlockResult, err error) {
	fields := withAdminIP(ctx, []zap.Field{zap.String("actor", actor), zap.String("admin_reason", strings.TrimSpace(why)),
		zap.Bool("was_locked", res.WasLocked), zap.Int64("failures", res.Failures)})
	if err != nil {
		e.Audit(a, event, "error", append(fields, zap.String("reason", reason(err)))...)
		return
	}
	e.Audit(a, event, "success", fields...)
}

// MemberResult says what an admin action on a member's factors changed.
type MemberResult struct {
	// Methods lists the methods a reset removed, or webauthn when an
	// admin removed the member's last passkey.
	Methods []string `json:"methods,omitempty"`
	// Passkey is the name of the passkey or security key an admin
	// removed.
	Passkey string `json:"passkey,omitempty"`
	// Devices is how many remembered devices were forgotten.
	Devices int `json:"devices"`
	// Contact is where to send the member a security notice, read before
	// the change (a reset removes the email method): "" when unknown. Not
	// part of the API's answer.
	Contact string `json:"-"`
}

// Reset removes all of the member's methods, recovery codes and
// remembered devices and moves the factor epoch on, which ends every
// session: the member enrols again at their next visit.
func (e *Engine) Reset(ctx context.Context, actor, member, why string) (MemberResult, error) {
	return e.reset(ctx, actor, member, why)
}

// reset is Reset with more fields for its audit entry: an approved
// request's requester.
func (e *Engine) reset(ctx context.Context, actor, member, why string, extra ...zap.Field) (MemberResult, error) {
	return e.memberAction(ctx, "admin_reset", actor, member, why, extra, func(u *User, res *MemberResult) error {
		res.Methods = u.Methods()
		u.TOTP, u.Email, u.SMS, u.WebAuthn, u.Default, u.Recovery = nil, nil, nil, nil, "", nil
		u.Epoch++
		u.forgetDevices(res)
		return nil
	})
}

// errNoUnprovenApp refuses to confirm an app that needs no confirming.
var errNoUnprovenApp = &InputError{"member", "has no authenticator app waiting for an admin's confirmation, and no passkey"}

// ConfirmApp confirms the member's unproven app (TOTPMethod.Unproven) and
// passkeys (WebAuthnCredential.Unproven) for the admin pages, once the
// confirming admin has checked with the member, as for a reset, that they
// are theirs. The caller refuses a member confirming their own.
func (e *Engine) ConfirmApp(ctx context.Context, actor, member, why string) (MemberResult, error) {
	if member != "" && checkReason(why) == nil {
		// An app that needs no confirming is refused, not confirmed
		// again: a misspelt ID would pass silently.
		if u, err := e.record(ctx, member); err != nil {
			return MemberResult{}, err
		} else if u == nil || !u.FactorUnproven() {
			return MemberResult{}, errNoUnprovenApp
		}
	}
	return e.memberAction(ctx, "admin_app_confirmed", actor, member, why, nil, func(u *User, _ *MemberResult) error {
		if u.TOTP != nil {
			u.TOTP.Unproven = false
		}
		for i := range u.WebAuthnCredentials() {
			u.WebAuthn.Credentials[i].Unproven = false
		}
		return nil
	})
}

// ForgetDevices revokes every remembered device of the member, with the
// sessions they started; the member's other sessions go on.
func (e *Engine) ForgetDevices(ctx context.Context, actor, member, why string) (MemberResult, error) {
	return e.memberAction(ctx, "admin_devices", actor, member, why, nil, func(u *User, res *MemberResult) error {
		u.forgetDevices(res)
		return nil
	})
}

// EndSessions ends every second-factor session issued until now, in every
// browser; methods and remembered devices stay, so a remembered device
// starts a new session without a code.
func (e *Engine) EndSessions(ctx context.Context, actor, member, why string) (MemberResult, error) {
	return e.memberAction(ctx, "admin_sessions", actor, member, why, nil, func(u *User, _ *MemberResult) error {
		// Sessions carry their issue time in whole seconds, so one issued
		// in this second ends too; verifying again a second later passes.
		u.SessionsAfter = max(u.SessionsAfter, e.now().Unix())
		return nil
	})
}

// forgetDevices takes every device off the list, which ends them and their
// sessions on every instance; the caller deletes their records. The known
// ranges go too: a device remembered afterwards is asked for a code once
// more from anywhere but where the member next passes.
func (u *User) forgetDevices(res *MemberResult) {
	res.Devices = len(u.Devices)
	u.Devices = nil
	u.Networks = nil
}

// errNoMember refuses an admin action on a member with no record here: it
// would create one, and a misspelt ID would pass silently.
var errNoMember = &InputError{"member", "no second-factor record for this member ID here"}

// memberAction applies change to the member's record through updateUser,
// so every instance drops its copy at once (change notices), deletes the
// device records no longer listed, and audits the action with the admin,
// the reason and any extra fields. An error from change leaves the record
// as it was.
func (e *Engine) memberAction(ctx context.Context, event, actor, member, why string, extra []zap.Field, change func(u *User, res *MemberResult) error) (MemberResult, error) {
	if member == "" {
		return MemberResult{}, &InputError{"member", "required: the member's ID"}
	}
	if err := checkReason(why); err != nil {
		return MemberResult{}, err
	}
	var res MemberResult
	var devices []string
	_, err := e.updateUser(ctx, member, func(u *User) error {
		if u.Rev == 0 {
			return errNoMember
		}
		res = MemberResult{Contact: e.ContactEmail(u, "")}
		devices = devices[:0]
		for id := range u.Devices {
			devices = append(devices, id)
		}
		if err := change(u, &res); err != nil {
			return err
		}
		if res.Contact == "" {
			u.addPending(event, res.Passkey, e.now())
		}
		return nil
	})
	if err == nil {
		for _, id := range devices {
			if b, derr := hex.DecodeString(id); derr == nil && len(b) == 16 {
				// Unlisted, the device is refused already; deleting its
				// record only saves the space.
				_ = e.store.Delete(ctx, deviceKey(member, [16]byte(b)))
			}
		}
	}
	fields := withAdminIP(ctx, []zap.Field{zap.String("actor", actor), zap.String("admin_reason", strings.TrimSpace(why)),
		zap.Int("devices", res.Devices)})
	fields = append(fields, extra...)
	if len(res.Methods) > 0 {
		fields = append(fields, zap.Strings("methods", res.Methods))
	}
	switch {
	case errors.Is(err, ErrResetNeedsApproval):
		// A four-eyes rule, not a fault: refused, as the approvals are.
		e.Audit(Actor{User: member}, event, "refused", append(fields, zap.String("reason", "reset_approval"))...)
		return MemberResult{}, err
	case err != nil:
		e.Audit(Actor{User: member}, event, "error", append(fields, zap.String("reason", reason(err)))...)
		return MemberResult{}, err
	}
	e.Audit(Actor{User: member}, event, "success", fields...)
	return res, nil
}

// TakePending removes and returns the member's pending notices of admin
// actions, for the caller to send now that it knows where. Taken by
// compare-and-swap, so of two pages loading at once only one sends them.
func (e *Engine) TakePending(ctx context.Context, member string) ([]PendingNotice, error) {
	var taken []PendingNotice
	_, err := e.updateUser(ctx, member, func(u *User) error {
		if len(u.Pending) == 0 {
			return errNothingPending
		}
		taken, u.Pending = u.Pending, nil
		return nil
	})
	if errors.Is(err, errNothingPending) {
		return nil, nil
	}
	return taken, err
}

// addPending keeps a notice of an admin action for the member's next
// visit (name: the passkey it removed, if any), dropping the oldest
// beyond maxPending.
func (u *User) addPending(kind, name string, at time.Time) {
	u.Pending = append(u.Pending, PendingNotice{Kind: kind, Name: name, At: at.UTC()})
	u.Pending = u.Pending[max(0, len(u.Pending)-maxPending):]
}

// errNothingPending stops an update that has nothing to take.
var errNothingPending = errors.New("challenge: no pending notices")
