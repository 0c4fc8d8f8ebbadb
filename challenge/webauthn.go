package challenge

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
)

// Passkeys and security keys (WebAuthn) as a second factor, through
// github.com/go-webauthn/webauthn. The member is known from the first
// factor, so every ceremony names its credentials (allowCredentials): no
// discoverable sign-in, and a credential is only ever checked against the
// member who holds it.
//
// A ceremony is two calls: Begin* returns the options for the browser's
// navigator.credentials call and keeps the library's session data in the
// store, under a key of the member and the browser's flow token, for
// WebAuthnConfig.ChallengeTTL; Finish* takes that state by
// compare-and-swap to nothing before it looks at the response, so a
// challenge is answered once, in the browser that asked, by the member it
// was made for, on whichever instance the response reaches.

// MethodWebAuthn is a passkey or security key.
const MethodWebAuthn = "webauthn"

// MaxWebAuthnCredentials bounds the credentials one member may register:
// a few security keys and passkeys on a few devices, not a store to fill.
const MaxWebAuthnCredentials = 10

// MaxCredentialName bounds a credential's name, in characters.
const MaxCredentialName = 64

// maxWebAuthnStarts bounds the sign-in ceremonies a member may begin
// within ChallengeTTL: each one is a store write.
const maxWebAuthnStarts = 20

// maxWebAuthnResponse bounds the browser's response examined at all. A
// real one is a few kilobytes; attestation certificate chains stay well
// under this.
const maxWebAuthnResponse = 64 << 10

var (
	// ErrWebAuthnOff reports that WebAuthn is not configured.
	ErrWebAuthnOff = errors.New("challenge: passkeys and security keys are not configured")
	// ErrCredentialRefused reports a registration or sign-in response
	// that does not verify: wrong origin or relying party, no user
	// presence, no user verification where it is required, a bad
	// signature, a credential that is not the member's. For a sign-in it
	// counted toward the failure limits like a wrong code.
	ErrCredentialRefused = errors.New("challenge: passkey or security key response refused")
	// ErrCounterRegressed reports an assertion whose signature counter is
	// not above the stored one: possibly a cloned authenticator. It is an
	// ErrCredentialRefused.
	ErrCounterRegressed = fmt.Errorf("%w: signature counter went backwards (possibly a cloned authenticator)", ErrCredentialRefused)
	// ErrAuthenticatorNotAllowed reports a registration by an
	// authenticator whose AAGUID is not on WebAuthnConfig.AAGUIDs.
	ErrAuthenticatorNotAllowed = errors.New("challenge: this kind of security key or passkey is not allowed here")
	// ErrTooManyCredentials reports a registration beyond
	// MaxWebAuthnCredentials.
	ErrTooManyCredentials = fmt.Errorf("challenge: at most %d passkeys and security keys per member", MaxWebAuthnCredentials)
	// ErrCredentialUnknown reports a credential ID the member does not
	// have (removed, or never theirs).
	ErrCredentialUnknown = errors.New("challenge: no such passkey or security key")
)

// WebAuthnMethod is a member's passkeys and security keys.
type WebAuthnMethod struct {
	// Handle is the member's WebAuthn user handle: random, so a
	// discoverable credential carries nothing about the member; the same
	// for all their credentials, new with every first one.
	Handle      []byte               `json:"handle"`
	Credentials []WebAuthnCredential `json:"credentials"`
}

// WebAuthnCredential is one registered passkey or security key. What the
// pages list is in the clear; the credential itself (its ID and public
// key) is sealed, bound to the member and to ID.
type WebAuthnCredential struct {
	// ID names the credential on pages and in forms: random, hex, not the
	// authenticator's credential ID.
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Added    time.Time `json:"added"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// AAGUID names the authenticator's model (UUID form), as it reported
	// it; all zeros when it did not say.
	AAGUID     string   `json:"aaguid,omitempty"`
	Transports []string `json:"transports,omitempty"`
	// BackupEligible marks a passkey that can be synced between devices;
	// BackedUp one that is.
	BackupEligible bool `json:"backup_eligible,omitempty"`
	BackedUp       bool `json:"backed_up,omitempty"`
	// SignCount is the authenticator's signature counter at the last
	// use; 0 for authenticators without one (most synced passkeys).
	SignCount uint32 `json:"sign_count,omitempty"`
	// Unproven marks a credential added as TOTPMethod.Unproven marks an
	// app: by a member who had had factors before, without a session
	// verified with a proven app or passkey (see User.Proven). Where the
	// admin pages accept passkeys, it opens them only once another admin
	// confirms it (ConfirmApp).
	Unproven bool `json:"unproven,omitempty"`
	// Sealed is the library's credential record (credential ID, public
	// key, flags, attestation), as JSON, sealed.
	Sealed []byte `json:"sealed"`
}

func credentialAAD(user, id string) []byte { return secretAAD("webauthn-credential:"+id, user) }

// WebAuthnCredentials returns the member's credentials, for the pages;
// nil when none. The slice is the record's: do not modify it.
func (u *User) WebAuthnCredentials() []WebAuthnCredential {
	if u == nil || u.WebAuthn == nil {
		return nil
	}
	return u.WebAuthn.Credentials
}

func (u *User) hasWebAuthn() bool { return u.WebAuthn != nil && len(u.WebAuthn.Credentials) > 0 }

// Proven reports whether the member has a factor of method that shows
// more than a stolen password with a mailbox or phone would: an app that
// is not Unproven, or a passkey that is not. Codes sent by email or SMS
// and recovery codes never do. A session verified with method proves as
// much only when it was not verified by an unproven one
// (session.Session.Unproven, Actor.StepUpUnproven).
func (u *User) Proven(method string) bool {
	switch method {
	case MethodTOTP:
		return u.TOTP != nil && !u.TOTP.Unproven
	case MethodWebAuthn:
		return slices.ContainsFunc(u.WebAuthnCredentials(), func(c WebAuthnCredential) bool { return !c.Unproven })
	}
	return false
}

// FactorUnproven reports whether the member has a factor waiting for an
// admin's confirmation (ConfirmApp): an app or a passkey.
func (u *User) FactorUnproven() bool {
	return u.TOTP != nil && u.TOTP.Unproven ||
		slices.ContainsFunc(u.WebAuthnCredentials(), func(c WebAuthnCredential) bool { return c.Unproven })
}

func (u *User) credential(id string) (int, bool) {
	for i, c := range u.WebAuthnCredentials() {
		if subtle.ConstantTimeCompare([]byte(c.ID), []byte(id)) == 1 {
			return i, true
		}
	}
	return -1, false
}

// WebAuthnEnabled reports whether passkeys and security keys are
// configured.
func (e *Engine) WebAuthnEnabled() bool { return e.wa != nil }

// newWebAuthn makes the library's relying party from the configuration,
// which Validate has checked; nil when WebAuthn is off.
func newWebAuthn(c WebAuthnConfig) (*webauthn.WebAuthn, map[uuid.UUID]bool, error) {
	if !c.Enabled() {
		return nil, nil, nil
	}
	uv := protocol.VerificationPreferred
	if c.UserVerification == UVRequired {
		uv = protocol.VerificationRequired
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  c.RPID,
		RPDisplayName:         c.RPName,
		RPOrigins:             c.Origins,
		AttestationPreference: protocol.ConveyancePreference(c.Attestation),
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: uv,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: c.ChallengeTTL, TimeoutUVD: c.ChallengeTTL},
			Registration: webauthn.TimeoutConfig{Timeout: c.ChallengeTTL, TimeoutUVD: c.ChallengeTTL},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn: %w", err)
	}
	var allowed map[uuid.UUID]bool
	if len(c.AAGUIDs) > 0 {
		allowed = map[uuid.UUID]bool{}
		for _, a := range c.AAGUIDs {
			allowed[uuid.MustParse(a)] = true
		}
	}
	return wa, allowed, nil
}

// waUser is a member as the library sees it.
type waUser struct {
	handle []byte
	name   string
	creds  []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte                         { return w.handle }
func (w *waUser) WebAuthnName() string                       { return w.name }
func (w *waUser) WebAuthnDisplayName() string                { return w.name }
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

// libraryUser opens the member's credentials for the library, in the
// order of u.WebAuthn.Credentials. A credential no configured key opens
// fails the whole call: never a silently shorter list.
func (e *Engine) libraryUser(u *User, name string) (*waUser, error) {
	w := &waUser{name: name}
	if u.WebAuthn == nil {
		return w, nil
	}
	w.handle = u.WebAuthn.Handle
	for _, c := range u.WebAuthn.Credentials {
		lc, err := e.openCredential(u.ID, &c)
		if err != nil {
			return nil, err
		}
		w.creds = append(w.creds, *lc)
	}
	return w, nil
}

func (e *Engine) openCredential(user string, c *WebAuthnCredential) (*webauthn.Credential, error) {
	plain, err := open(e.secret, c.Sealed, credentialAAD(user, c.ID))
	if err != nil {
		return nil, err
	}
	var lc webauthn.Credential
	if err := json.Unmarshal(plain, &lc); err != nil {
		return nil, fmt.Errorf("challenge: webauthn credential %s of %q: %w", c.ID, user, err)
	}
	// The counter and backup state move with every use; the clear copy is
	// the one kept up to date.
	lc.Authenticator.SignCount = c.SignCount
	lc.Flags.BackupState = c.BackedUp
	return &lc, nil
}

// ceremony is a begun ceremony's state, kept in the store.
type ceremony struct {
	Kind    string               `json:"kind"` // "register" or "login"
	Session webauthn.SessionData `json:"session"`
	Expires int64                `json:"expires"` // Unix milliseconds
	// Factors is User.factors when a registration began: one begun
	// before the member enrolled, or was reset, cannot finish after.
	Factors string `json:"factors,omitempty"`
	// Handle is the user handle a first registration chose.
	Handle []byte `json:"handle,omitempty"`
}

const (
	ceremonyRegister = "register"
	ceremonyLogin    = "login"
)

// minFlowToken is the shortest flow token a ceremony is bound to: an
// empty or guessable one would bind it to the member alone, and any of
// their browsers could answer it.
const minFlowToken = 16

// errNoFlow refuses a ceremony without a browser's flow token: a
// caller's bug, never a member's doing.
var errNoFlow = errors.New("challenge: a passkey ceremony needs the browser's flow token")

// ceremonyKey binds the state to the member, the kind of ceremony and the
// browser's flow token (hashed: the store never holds the token).
func ceremonyKey(user, kind, flow string) string {
	return "webauthn:" + tag(user) + ":" + kind + ":" + hex.EncodeToString(flowHash(flow))
}

func (e *Engine) putCeremony(ctx context.Context, a Actor, flow string, c ceremony) error {
	if len(flow) < minFlowToken {
		return errNoFlow
	}
	ttl := e.cfg.WebAuthn.ChallengeTTL
	c.Expires = e.now().Add(ttl).UnixMilli()
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return e.store.Set(ctx, ceremonyKey(a.User, c.Kind, flow), raw, ttl)
}

// takeCeremony removes and returns the state of the ceremony the flow
// began. Of two finishes at once, one gets it; a replay, another browser,
// another member or a late answer gets ErrExpired.
func (e *Engine) takeCeremony(ctx context.Context, a Actor, kind, flow string) (*ceremony, error) {
	if len(flow) < minFlowToken {
		return nil, ErrExpired
	}
	key := ceremonyKey(a.User, kind, flow)
	raw, err := e.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrExpired
	}
	if err != nil {
		return nil, err
	}
	ok, err := e.store.CompareAndSwap(ctx, key, raw, nil, 0)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrExpired
	}
	return e.ceremonyFrom(raw, kind)
}

// ceremonyFrom decodes a ceremony's state taken from the store, refusing
// one of another kind or past its time.
func (e *Engine) ceremonyFrom(raw []byte, kind string) (*ceremony, error) {
	var c ceremony
	if err := json.Unmarshal(raw, &c); err != nil || c.Kind != kind || e.now().UnixMilli() >= c.Expires {
		return nil, ErrExpired
	}
	return &c, nil
}

// CheckCredentialName trims a credential's name and checks it: 1 to
// MaxCredentialName characters, no control characters. The error is an
// *InputError naming the field "name".
func CheckCredentialName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch n := utf8.RuneCountInString(name); {
	case !utf8.ValidString(name):
		return "", &InputError{"name", "is not valid text"}
	case n == 0:
		return "", &InputError{"name", "is required"}
	case n > MaxCredentialName:
		return "", &InputError{"name", fmt.Sprintf("must be at most %d characters (it has %d)", MaxCredentialName, n)}
	case strings.ContainsFunc(name, isControl):
		return "", &InputError{"name", "must not contain control or invisible formatting characters"}
	}
	return name, nil
}

// BeginRegistration starts registering a passkey or security key for the
// member, bound to flow (a token only the asking browser holds). account
// is the name the authenticator shows for the member (their email
// address or ID). It returns the options for navigator.credentials.create
// as JSON ({"publicKey": {...}}): resident key preferred, user
// verification as configured, the member's credentials excluded. The
// caller decides whether the member may add a method now (step-up), as
// for StartTOTP.
func (e *Engine) BeginRegistration(ctx context.Context, a Actor, flow, account string) ([]byte, error) {
	if e.wa == nil {
		return nil, ErrWebAuthnOff
	}
	n, err := e.store.Increment(ctx, "enrolstart:"+tag(a.User), e.cfg.EnrolTTL)
	if err != nil {
		return nil, err
	}
	if n > maxEnrolStarts {
		e.Audit(a, "enrol_start", "refused", zap.String("method", MethodWebAuthn), zap.String("reason", "too_often"))
		return nil, &LimitedError{Until: e.now().Add(e.cfg.EnrolTTL), Limit: LimitEnrolStarts}
	}
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, err
	}
	if len(u.WebAuthnCredentials()) >= MaxWebAuthnCredentials {
		return nil, ErrTooManyCredentials
	}
	if account == "" {
		account = a.User
	}
	w, err := e.libraryUser(u, account)
	if err != nil {
		return nil, err
	}
	if len(w.handle) == 0 {
		w.handle = make([]byte, 32)
		if _, err := rand.Read(w.handle); err != nil {
			return nil, err
		}
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range w.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, session, err := e.wa.BeginRegistration(w, webauthn.WithExclusions(exclude))
	if err != nil {
		return nil, err
	}
	options, err := json.Marshal(creation)
	if err != nil {
		return nil, err
	}
	c := ceremony{Kind: ceremonyRegister, Session: *session, Factors: u.factors(), Handle: w.handle}
	if err := e.putCeremony(ctx, a, flow, c); err != nil {
		return nil, err
	}
	e.Audit(a, "enrol_start", "success", zap.String("method", MethodWebAuthn))
	return options, nil
}

// FinishRegistration checks the browser's response to the registration
// flow began (the PublicKeyCredential as JSON, as the page posts it) and
// adds the credential under name. A refused response is
// ErrCredentialRefused, ErrAuthenticatorNotAllowed or ErrExpired; a bad
// name an *InputError, checked before the ceremony is used up.
func (e *Engine) FinishRegistration(ctx context.Context, a Actor, flow, name string, body []byte) (*User, *WebAuthnCredential, error) {
	if e.wa == nil {
		return nil, nil, ErrWebAuthnOff
	}
	name, err := CheckCredentialName(name)
	if err != nil {
		return nil, nil, err
	}
	fail := func(cause error, fields ...zap.Field) (*User, *WebAuthnCredential, error) {
		e.Audit(a, "webauthn_registered", "failure", append(fields, refusal(cause)...)...)
		return nil, nil, cause
	}
	c, err := e.takeCeremony(ctx, a, ceremonyRegister, flow)
	if err != nil {
		return fail(err)
	}
	if len(body) > maxWebAuthnResponse {
		return fail(ErrCredentialRefused)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return fail(refused(err))
	}
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, nil, err
	}
	w, err := e.libraryUser(u, a.User)
	if err != nil {
		return nil, nil, err
	}
	if len(w.handle) == 0 {
		w.handle = c.Handle
	}
	lc, err := e.wa.CreateCredential(w, c.Session, parsed)
	if err != nil {
		return fail(refused(err))
	}
	aaguid, _ := uuid.FromBytes(lc.Authenticator.AAGUID)
	if e.aaguids != nil && !e.aaguids[aaguid] {
		return fail(ErrAuthenticatorNotAllowed, zap.String("aaguid", aaguid.String()))
	}
	if len(lc.ID) > maxCredentialID {
		return fail(fmt.Errorf("%w: credential ID of %d bytes", ErrCredentialRefused, len(lc.ID)))
	}
	keep(lc)
	sealedPlain, err := json.Marshal(lc)
	if err != nil {
		return nil, nil, err
	}
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, nil, err
	}
	now := e.now().UTC()
	cred := WebAuthnCredential{
		ID: hex.EncodeToString(idb[:]), Name: name, Added: now, AAGUID: aaguid.String(),
		BackupEligible: lc.Flags.BackupEligible, BackedUp: lc.Flags.BackupState,
		SignCount: lc.Authenticator.SignCount,
	}
	for _, t := range lc.Transport {
		cred.Transports = append(cred.Transports, string(t))
	}
	cred.Sealed = e.secret.Seal(nil, sealedPlain, credentialAAD(a.User, cred.ID))
	u, err = e.updateUser(ctx, a.User, func(u *User) error {
		if u.factors() != c.Factors {
			return ErrExpired
		}
		if len(u.WebAuthnCredentials()) >= MaxWebAuthnCredentials {
			return ErrTooManyCredentials
		}
		// Epoch moves on with every first factor, reset and removal of
		// the last method: above 0, the member had factors before.
		cred.Unproven = u.Epoch > 0 && !a.stepUpProven(u)
		for _, have := range u.WebAuthnCredentials() {
			old, err := e.openCredential(u.ID, &have)
			if err != nil {
				return err
			}
			if bytes.Equal(old.ID, lc.ID) {
				return fmt.Errorf("%w: already registered", ErrCredentialRefused)
			}
		}
		firstFactor(u)
		if u.WebAuthn == nil {
			u.WebAuthn = &WebAuthnMethod{Handle: c.Handle}
		}
		u.WebAuthn.Credentials = append(u.WebAuthn.Credentials, cred)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	e.Audit(a, "webauthn_registered", "success", zap.String("method", MethodWebAuthn), zap.String("credential", cred.ID[:8]),
		zap.String("aaguid", cred.AAGUID), zap.Bool("backup_eligible", cred.BackupEligible), zap.Int("credentials", len(u.WebAuthn.Credentials)),
		zap.Bool("unproven", cred.Unproven))
	return u, &cred, nil
}

// BeginLogin starts a sign-in with one of the member's passkeys or
// security keys, bound to flow. It returns the options for
// navigator.credentials.get as JSON ({"publicKey": {...}}), listing the
// member's credentials. It refuses while the member or address is locked
// out (*LockedError), and a member without credentials (ErrNotEnrolled).
func (e *Engine) BeginLogin(ctx context.Context, a Actor, flow string) ([]byte, error) {
	if e.wa == nil {
		return nil, ErrWebAuthnOff
	}
	if err := e.checkLocks(ctx, a); err != nil {
		return nil, err
	}
	n, err := e.store.Increment(ctx, "webauthnstart:"+tag(a.User), e.cfg.WebAuthn.ChallengeTTL)
	if err != nil {
		return nil, err
	}
	if n > maxWebAuthnStarts {
		e.Audit(a, "webauthn_start", "refused", zap.String("method", MethodWebAuthn), zap.String("reason", "too_often"))
		return nil, &LimitedError{Until: e.now().Add(e.cfg.WebAuthn.ChallengeTTL), Limit: LimitWebAuthnStarts}
	}
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, err
	}
	if !u.hasWebAuthn() {
		return nil, ErrNotEnrolled
	}
	w, err := e.libraryUser(u, a.User)
	if err != nil {
		return nil, err
	}
	assertion, session, err := e.wa.BeginLogin(w)
	if err != nil {
		return nil, err
	}
	options, err := json.Marshal(assertion)
	if err != nil {
		return nil, err
	}
	if err := e.putCeremony(ctx, a, flow, ceremony{Kind: ceremonyLogin, Session: *session}); err != nil {
		return nil, err
	}
	return options, nil
}

// FinishLogin checks the browser's answer to the sign-in flow began (the
// PublicKeyCredential as JSON) and returns the member's record and the
// credential used. Every answer counts toward the failure limits before
// it is checked, and a wrong one stays counted, as a wrong code does;
// refusals are ErrCredentialRefused (ErrCounterRegressed among them),
// ErrExpired (no live challenge for this member and browser) or a
// *LockedError.
func (e *Engine) FinishLogin(ctx context.Context, a Actor, flow string, body []byte) (*User, *WebAuthnCredential, error) {
	if e.wa == nil {
		return nil, nil, ErrWebAuthnOff
	}
	method := zap.String("method", MethodWebAuthn)
	// The ceremony is read with the locks and taken with the count: of
	// two finishes at once, one gets it.
	var read, take *store.Op
	var reads []*store.Op
	if len(flow) >= minFlowToken {
		read = store.GetOp(ceremonyKey(a.User, ceremonyLogin, flow))
		reads = append(reads, read)
	}
	s, err := e.startSignIn(ctx, a, true, reads, func() []*store.Op {
		if read == nil || !read.Found {
			return nil
		}
		take = store.CompareAndSwapOp(read.Key, read.Value, nil, 0)
		return []*store.Op{take}
	})
	if err != nil {
		e.Audit(a, "verify", "failure", method, zap.String("reason", reason(err)))
		return nil, nil, err
	}
	s.method = MethodWebAuthn
	fail := func(cause error, fields ...zap.Field) (*User, *WebAuthnCredential, error) {
		s.audit(ctx, "verify", "failure", append(append([]zap.Field{method}, refusal(cause)...), fields...)...)
		if err := s.failed(ctx); err != nil {
			return nil, nil, err
		}
		return nil, nil, cause
	}
	if take == nil || !take.Swapped {
		return fail(ErrExpired)
	}
	c, err := e.ceremonyFrom(take.Old, ceremonyLogin)
	if err != nil {
		return fail(err)
	}
	if len(body) > maxWebAuthnResponse {
		return fail(ErrCredentialRefused)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return fail(refused(err))
	}
	// The record itself, not the cache: a credential removed on another
	// instance must stop working at once.
	r, err := s.record(ctx)
	if err != nil {
		return nil, nil, err
	}
	u := r.u
	if !u.hasWebAuthn() {
		return fail(ErrNotEnrolled)
	}
	w, err := e.libraryUser(u, a.User)
	if err != nil {
		e.Audit(a, "verify", "error", method, zap.String("reason", "secret_unreadable"))
		return nil, nil, err
	}
	lc, err := e.wa.ValidateLogin(w, c.Session, parsed)
	if err != nil {
		return fail(refused(err))
	}
	i := slices.IndexFunc(w.creds, func(x webauthn.Credential) bool { return bytes.Equal(x.ID, lc.ID) })
	if i < 0 {
		return fail(ErrCredentialRefused)
	}
	id := u.WebAuthn.Credentials[i].ID
	if e.aaguids != nil {
		// A credential registered before the list was set, or with a
		// model since taken off it, no longer signs in.
		if aaguid, err := uuid.Parse(u.WebAuthn.Credentials[i].AAGUID); err != nil || !e.aaguids[aaguid] {
			return fail(ErrAuthenticatorNotAllowed, zap.String("credential", shortID(id)))
		}
	}
	count := parsed.Response.AuthenticatorData.Counter
	backedUp := parsed.Response.AuthenticatorData.Flags.HasBackupState()
	var used WebAuthnCredential
	var stored uint32
	recovered := int64(-1)
	u, err = e.writeUser(ctx, a.User, r, s.seen(func(u *User) error {
		j, ok := u.credential(id)
		if !ok {
			return ErrCredentialUnknown // removed meanwhile
		}
		cr := &u.WebAuthn.Credentials[j]
		// Checked here, against the freshest record, so two instances
		// accepting the same counter cannot both win.
		if stored = cr.SignCount; counterRegressed(stored, count) {
			return ErrCounterRegressed
		}
		cr.SignCount = count
		cr.BackedUp = backedUp
		cr.LastUsed = e.now().UTC()
		used = *cr
		recovered = e.unstuck(u)
		return nil
	}))
	switch {
	case errors.Is(err, ErrCounterRegressed):
		e.Audit(a, "webauthn_counter_regressed", "refused", method, zap.String("credential", id[:8]),
			zap.Uint32("stored", stored), zap.Uint32("presented", count), zap.String("note", "possibly a cloned authenticator"))
		return fail(err, zap.String("credential", id[:8]))
	case errors.Is(err, ErrCredentialUnknown):
		return fail(fmt.Errorf("%w: %w", ErrCredentialRefused, err))
	case err != nil:
		return nil, nil, err
	}
	s.succeeded(ctx, nil, "verify", recoveredField([]zap.Field{method, zap.String("credential", id[:8])}, recovered)...)
	return u, &used, nil
}

// counterRegressed applies WebAuthn's signature counter rule (§7.2 step
// 21): when either counter is non-zero, the new one must be greater.
// Authenticators without a counter send 0 every time.
func counterRegressed(stored, presented uint32) bool {
	return (stored != 0 || presented != 0) && presented <= stored
}

// maxCredentialID is the longest credential ID WebAuthn allows (§5.1).
const maxCredentialID = 1023

// knownTransports are the transports a credential may be listed with;
// at most one of each is kept.
var knownTransports = []protocol.AuthenticatorTransport{
	protocol.USB, protocol.NFC, protocol.BLE, protocol.SmartCard, protocol.Hybrid, protocol.Internal,
}

// keep trims a new credential to what its sign-ins need: the attestation
// as received (client data, attestation object, authenticator data) is
// checked once and not kept, since with "none" nothing signs it and a
// client could pad it to fill the member's record; transports are kept
// only when known, each once.
func keep(lc *webauthn.Credential) {
	lc.Attestation.ClientDataJSON = nil
	lc.Attestation.ClientDataHash = nil
	lc.Attestation.AuthenticatorData = nil
	lc.Attestation.Object = nil
	var ts []protocol.AuthenticatorTransport
	for _, t := range lc.Transport {
		if slices.Contains(knownTransports, t) && !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	lc.Transport = ts
}

// RenameCredential renames one of the member's credentials.
func (e *Engine) RenameCredential(ctx context.Context, a Actor, id, name string) (*User, error) {
	name, err := CheckCredentialName(name)
	if err != nil {
		return nil, err
	}
	u, err := e.updateUser(ctx, a.User, func(u *User) error {
		i, ok := u.credential(id)
		if !ok {
			return ErrCredentialUnknown
		}
		u.WebAuthn.Credentials[i].Name = name
		return nil
	})
	if err != nil {
		e.Audit(a, "webauthn_renamed", "refused", zap.String("reason", webauthnReason(err)))
		return nil, err
	}
	e.Audit(a, "webauthn_renamed", "success", zap.String("credential", shortID(id)))
	return u, nil
}

// RemoveCredential removes one of the member's credentials; its next
// assertion fails. Removing the member's last method is refused unless
// allowLast, as RemoveMethod does; then the recovery codes go too. The
// factor epoch moves on, so sessions and remembered devices from before
// end: a lost key must not leave a session it opened behind.
func (e *Engine) RemoveCredential(ctx context.Context, a Actor, id string, allowLast bool) (*User, error) {
	u, err := e.updateUser(ctx, a.User, func(u *User) error {
		i, ok := u.credential(id)
		if !ok {
			return ErrCredentialUnknown
		}
		if len(u.WebAuthn.Credentials) == 1 && len(u.Methods()) == 1 && !allowLast {
			return ErrLastMethod
		}
		u.WebAuthn.Credentials = slices.Delete(u.WebAuthn.Credentials, i, i+1)
		dropMethods(u)
		return nil
	})
	if err != nil {
		e.Audit(a, "webauthn_removed", "refused", zap.String("reason", webauthnReason(err)))
		return nil, err
	}
	e.Audit(a, "webauthn_removed", "success", zap.String("credential", shortID(id)),
		zap.Int("credentials", len(u.WebAuthnCredentials())), zap.Bool("enrolled", u.Enrolled()))
	return u, nil
}

// dropMethods tidies the record after a method or credential went: an
// empty WebAuthn method goes, a default no longer enrolled is forgotten,
// recovery codes go with the last method, and the factor epoch moves on.
func dropMethods(u *User) {
	if u.WebAuthn != nil && len(u.WebAuthn.Credentials) == 0 {
		u.WebAuthn = nil
	}
	if !u.Has(u.Default) {
		u.Default = ""
	}
	if !u.Enrolled() {
		u.Recovery = nil
	}
	u.Epoch++
	u.Devices = nil
}

func shortID(id string) string { return id[:min(len(id), 8)] }

// maxRefusalDetail bounds the library's words kept with a refusal: they
// may quote what the client sent (an extension's name, say).
const maxRefusalDetail = 128

// refused wraps the library's reason for refusing a response, kept for
// the audit trail (errors.Is(err, ErrCredentialRefused) holds), cut to
// maxRefusalDetail bytes.
func refused(err error) error {
	detail := err.Error()
	var pe *protocol.Error
	if errors.As(err, &pe) {
		detail = pe.Type + ": " + pe.Details
	}
	if len(detail) > maxRefusalDetail {
		detail = strings.ToValidUTF8(detail[:maxRefusalDetail], "") + "…"
	}
	return fmt.Errorf("%w: %s", ErrCredentialRefused, detail)
}

// refusal is the audit fields of a refusal: the reason, and for a
// response the library refused, what it said (fixed texts, such as
// "Error validating origin"), so an operator can tell a wrong origin
// from a bad signature.
func refusal(err error) []zap.Field {
	fields := []zap.Field{zap.String("reason", webauthnReason(err))}
	if errors.Is(err, ErrCredentialRefused) && err != ErrCredentialRefused && !errors.Is(err, ErrCounterRegressed) {
		fields = append(fields, zap.String("detail", strings.TrimPrefix(err.Error(), ErrCredentialRefused.Error()+": ")))
	}
	return fields
}

// webauthnReason names the reason of a refusal for the audit trail.
func webauthnReason(err error) string {
	switch {
	case errors.Is(err, ErrCounterRegressed):
		return "counter_regressed"
	case errors.Is(err, ErrAuthenticatorNotAllowed):
		return "authenticator_not_allowed"
	case errors.Is(err, ErrTooManyCredentials):
		return "too_many_credentials"
	case errors.Is(err, ErrCredentialUnknown):
		return "unknown_credential"
	case errors.Is(err, ErrCredentialRefused):
		return "refused"
	}
	return reason(err)
}
