package challenge

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"
)

// CredentialDetail is one passkey or security key as the admin page and
// the admin API show it: what the member named it, when it was added and
// last used, the authenticator's model and whether it can be synced.
// Never the credential itself (its ID and public key stay sealed).
type CredentialDetail struct {
	// ID is the gateway's name for the credential (random, hex), which an
	// admin's removal takes; not the authenticator's credential ID.
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Added    time.Time  `json:"added"`
	LastUsed *time.Time `json:"last_used,omitempty"`
	// AAGUID is the authenticator's model as it reported it; "" when it
	// did not say (all zeros, as most synced passkeys send with
	// attestation none).
	AAGUID     string   `json:"aaguid,omitempty"`
	Transports []string `json:"transports,omitempty"`
	// BackupEligible marks a passkey that can be synced between the
	// member's devices (a copy may live in a cloud account); BackedUp one
	// that was, at its last use.
	BackupEligible bool `json:"backup_eligible"`
	BackedUp       bool `json:"backed_up"`
	// SignCount is the authenticator's signature counter at the last
	// use; 0 for authenticators without one.
	SignCount uint32 `json:"sign_count"`
	// Unproven: added after a weaker factor; it opens the admin pages
	// only once an approver confirms it (ConfirmApp).
	Unproven bool `json:"unproven,omitempty"`
}

// zeroAAGUID is what an authenticator that names no model reports.
const zeroAAGUID = "00000000-0000-0000-0000-000000000000"

// credentialDetails lists the member's credentials for an admin, in the
// order they were added.
func credentialDetails(u *User) []CredentialDetail {
	out := []CredentialDetail{}
	for _, c := range u.WebAuthnCredentials() {
		d := CredentialDetail{ID: c.ID, Name: c.Name, Added: c.Added, Transports: slices.Clone(c.Transports),
			BackupEligible: c.BackupEligible, BackedUp: c.BackedUp, SignCount: c.SignCount, Unproven: c.Unproven}
		if c.AAGUID != zeroAAGUID {
			d.AAGUID = c.AAGUID
		}
		if !c.LastUsed.IsZero() {
			used := c.LastUsed
			d.LastUsed = &used
		}
		out = append(out, d)
	}
	return out
}

// ErrResetNeedsApproval refuses an admin's removal of a member's last
// second factor where resets need a second admin's approval
// (reset_approval): leaving the member with no factor is a reset, so it is
// requested as one. Recovery codes alone do not count as a factor, as they
// go with the last method.
var ErrResetNeedsApproval = errors.New("challenge: this is the member's last second factor and resets need a second admin's approval: request a reset instead")

// RemoveCredentialFor is an admin's removal of one of the member's
// passkeys or security keys (credential: CredentialDetail.ID), for a
// member who lost it or reports it stolen. As with a reset, which an
// admin may do to any member, the last method may go: the member then
// has no second factor and enrols again at their next visit, and their
// recovery codes go with it. Where resets need a second admin's approval
// (resetApproval), a removal that would leave no method is refused with
// ErrResetNeedsApproval and nothing changes: otherwise one admin alone
// could do what a reset needs two for. The factor epoch moves on, so every
// session and remembered device ends on every instance, and the removed
// key is refused at its next use. Audited as admin_passkey_removed with
// the admin and the reason (refused too); the member is told
// (MemberResult.Contact).
func (e *Engine) RemoveCredentialFor(ctx context.Context, actor, member, credential, why string, resetApproval bool) (MemberResult, error) {
	if member != "" && credential == "" {
		return MemberResult{}, &InputError{"credential", "required: the ID of the passkey or security key to remove"}
	}
	extra := []zap.Field{zap.String("method", MethodWebAuthn), zap.String("credential", shortID(credential))}
	return e.memberAction(ctx, "admin_passkey_removed", actor, member, why, extra, func(u *User, res *MemberResult) error {
		i, ok := u.credential(credential)
		if !ok {
			return &InputError{"credential", "the member has no passkey or security key with this ID"}
		}
		res.Passkey = u.WebAuthn.Credentials[i].Name
		res.Devices = len(u.Devices)
		u.WebAuthn.Credentials = slices.Delete(u.WebAuthn.Credentials, i, i+1)
		if resetApproval && !u.Enrolled() {
			return ErrResetNeedsApproval
		}
		dropMethods(u)
		if !u.Has(MethodWebAuthn) {
			res.Methods = []string{MethodWebAuthn}
		}
		return nil
	})
}
