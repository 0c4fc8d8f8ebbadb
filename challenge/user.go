package challenge

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/cache"
	"github.com/caddy-twofactor/twofactor/store"
)

// User is the durable second-factor record of one member.
type User struct {
	ID string `json:"id"`
	// Rev counts writes, so a slow reader never replaces a newer cached
	// record with an older one.
	Rev uint64 `json:"rev"`
	// Epoch increases whenever the user's factors are reset or replaced;
	// sessions and remembered devices from an older epoch stop working.
	Epoch   uint64      `json:"epoch"`
	Created time.Time   `json:"created"`
	TOTP    *TOTPMethod `json:"totp,omitempty"`
	Email   *CodeMethod `json:"email,omitempty"`
	SMS     *CodeMethod `json:"sms,omitempty"`
	// WebAuthn holds the member's passkeys and security keys.
	WebAuthn *WebAuthnMethod `json:"webauthn,omitempty"`
	// Default is the method the challenge page offers first.
	Default string `json:"default,omitempty"`
	// Recovery is the user's set of single-use recovery codes.
	Recovery *RecoveryCodes `json:"recovery,omitempty"`
	// RevokedSessions holds second-factor sessions ended by sign-out,
	// by session ID (hex), until their absolute expiry (Unix seconds).
	RevokedSessions map[string]int64 `json:"revoked_sessions,omitempty"`
	// Devices indexes the user's remembered devices, by device ID (hex),
	// with their expiry (Unix seconds), so they can be listed and revoked.
	Devices map[string]int64 `json:"devices,omitempty"`
	// Browsers holds the browsers that passed the second factor, by a
	// hash of their browser token, with when they last did (Unix
	// seconds), so a sign-in from a new one stands out.
	Browsers map[string]int64 `json:"browsers,omitempty"`
	// Networks holds the address ranges (NetworkOf in flow: an IPv4 /24,
	// an IPv6 /48) the member passed the second factor from, by their
	// text, with when they last did and by which methods: a remembered
	// device used from another range is asked for a code once, where a
	// rule rechecks. Kept only while some rule does; at most maxNetworks.
	Networks map[string]NetworkPass `json:"networks,omitempty"`
	// SessionsAfter ends every second-factor session issued at or before
	// it (Unix seconds): an admin's end-sessions, which leaves factors and
	// remembered devices as they are.
	SessionsAfter int64 `json:"sessions_after,omitempty"`
	// Pending holds the notices of admin actions not yet sent, for a
	// member whose address the record does not hold (it follows the
	// member site's identity): the pages send them at the member's next
	// visit, when the identity's address is known.
	Pending []PendingNotice `json:"pending,omitempty"`
	// StuckSince is when the member last lost the use of their usual
	// methods: an account lockout began, or they signed in with a
	// recovery code. Their next verification with another method ends it
	// and reports how long it took (recovered_after on the verify event).
	// The earliest start is kept while it runs.
	StuckSince time.Time `json:"stuck_since,omitzero"`
	// Grace holds, by path pattern of a rule with an enrolment deadline,
	// when the member's grace began there and when they were first held
	// back after it (see deadline.go). At most MaxGraceMarks entries.
	Grace map[string]GraceMark `json:"grace,omitempty"`
}

// PendingNotice is an admin action on the member's factors that the
// member has not been told of yet.
type PendingNotice struct {
	Kind string `json:"kind"` // admin_reset, admin_devices, admin_sessions, admin_reset_requested, admin_unlock, admin_passkey_removed
	// Name is the passkey's name for admin_passkey_removed.
	Name string    `json:"name,omitempty"`
	At   time.Time `json:"at"`
}

// maxPending bounds the notices kept for a member; the oldest go first.
const maxPending = 8

// TOTPMethod is an enrolled authenticator app.
type TOTPMethod struct {
	// Secret is the sealed key, bound to the user ID.
	Secret   []byte    `json:"secret"`
	Added    time.Time `json:"added"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// LastStep is the highest time step ever accepted. Codes for it or any
	// earlier step are refused, so a code works once.
	LastStep int64 `json:"last_step"`
	// Unproven marks an app added by a member who had had factors before,
	// without a code from an earlier app: after an email, SMS or recovery
	// code, or after a reset or the removal of their last method. A stolen
	// password with a mailbox does that much, so the admin pages refuse
	// such an app until another admin confirms it (ConfirmApp). A first
	// enrolment is trusted as every first enrolment is.
	Unproven bool `json:"unproven,omitempty"`
	// Hinted are the time steps ahead of the clock that a clock-drift
	// hint named as matching a wrong code: they are refused when their
	// time comes, so the hint cannot tell a guesser a code to use later.
	// Past steps are dropped; at most maxHinted are kept.
	Hinted []int64 `json:"hinted,omitempty"`
}

// maxHinted bounds TOTPMethod.Hinted. A member whose phone runs fast
// types at most a few codes before fixing it or being locked out.
const maxHinted = 16

// CodeMethod is an enrolled email address or phone number that receives
// one-time codes.
type CodeMethod struct {
	// Destination is the sealed address or E.164 number, bound to the user
	// ID. It is empty for email that follows the identity's address, so a
	// member who changes it at the member site gets codes at the new one.
	Destination  []byte    `json:"destination,omitempty"`
	FromIdentity bool      `json:"from_identity,omitempty"`
	Added        time.Time `json:"added"`
	LastUsed     time.Time `json:"last_used,omitzero"`
}

// Method names, as stored, configured and shown to the upstream.
const (
	MethodTOTP  = "totp"
	MethodEmail = "email"
	MethodSMS   = "sms"
	// MethodRecovery is a recovery code: it passes the challenge anywhere,
	// in place of whatever method is out of reach.
	MethodRecovery = "recovery"
)

// Enrolled reports whether the user has a second factor.
func (u *User) Enrolled() bool {
	return u != nil && (u.TOTP != nil || u.Email != nil || u.SMS != nil || u.hasWebAuthn())
}

// Has reports whether the user has enrolled the method.
func (u *User) Has(method string) bool {
	if u == nil {
		return false
	}
	switch method {
	case MethodTOTP:
		return u.TOTP != nil
	case MethodEmail:
		return u.Email != nil
	case MethodSMS:
		return u.SMS != nil
	case MethodWebAuthn:
		return u.hasWebAuthn()
	}
	return false
}

// Methods lists the enrolled methods, the default first, then passkeys
// and security keys (which cannot be phished), the authenticator app,
// and codes sent by email and SMS.
func (u *User) Methods() []string {
	var out []string
	if d := u.DefaultMethod(); d != "" {
		out = append(out, d)
	}
	for _, m := range methodOrder {
		if u.Has(m) && (len(out) == 0 || out[0] != m) {
			out = append(out, m)
		}
	}
	return out
}

// methodOrder ranks the methods, strongest first.
var methodOrder = [...]string{MethodWebAuthn, MethodTOTP, MethodEmail, MethodSMS}

// DefaultMethod is the user's chosen default, or the strongest enrolled
// method when the choice is unset or no longer enrolled.
func (u *User) DefaultMethod() string {
	if u.Has(u.Default) {
		return u.Default
	}
	for _, m := range methodOrder {
		if u.Has(m) {
			return m
		}
	}
	return ""
}

// factors names the user's factor epoch and methods. An enrolment records
// it when it starts and completes only if it is unchanged, so one started
// before the member enrolled (or was reset) cannot add a factor later
// without the step-up that adding one now requires.
func (u *User) factors() string {
	f := fmt.Sprintf("%d:%t:%t:%t", u.Epoch, u.TOTP != nil, u.Email != nil, u.SMS != nil)
	if u.hasWebAuthn() {
		// Only when present, so enrolments begun before WebAuthn existed
		// still finish.
		f += ":webauthn"
	}
	return f
}

func (u *User) codeMethod(method string) *CodeMethod {
	switch method {
	case MethodEmail:
		return u.Email
	case MethodSMS:
		return u.SMS
	}
	return nil
}

// MethodDates returns when the user added the method and last used it
// (zero if never), or false when it is not enrolled.
func (u *User) MethodDates(method string) (added, used time.Time, ok bool) {
	if method == MethodTOTP && u.TOTP != nil {
		return u.TOTP.Added, u.TOTP.LastUsed, true
	}
	if m := u.codeMethod(method); m != nil {
		return m.Added, m.LastUsed, true
	}
	if method == MethodWebAuthn && u.hasWebAuthn() {
		// The first added, and the latest use of any of them.
		for i, c := range u.WebAuthn.Credentials {
			if i == 0 || c.Added.Before(added) {
				added = c.Added
			}
			if c.LastUsed.After(used) {
				used = c.LastUsed
			}
		}
		return added, used, true
	}
	return time.Time{}, time.Time{}, false
}

// DeviceListed reports whether the remembered device with this ID is still
// on the user's list: forgetting a device, a recovery code or a change of
// factors takes it off, which ends the sessions it started too.
func (u *User) DeviceListed(id [16]byte) bool { return hasID(u.Devices, id) }

// SessionsEnded reports whether an admin ended the sessions issued at
// issued (Unix seconds). A comparison, for the hot path.
func (u *User) SessionsEnded(issued int64) bool { return issued <= u.SessionsAfter }

// SessionRevoked reports whether the session with this ID was signed out.
func (u *User) SessionRevoked(id [16]byte) bool { return hasID(u.RevokedSessions, id) }

// hasID looks an ID up in a map keyed by its hex form, without allocating:
// it runs on every protected request.
func hasID(m map[string]int64, id [16]byte) bool {
	if len(m) == 0 {
		return false
	}
	var buf [32]byte
	hex.Encode(buf[:], id[:])
	_, ok := m[string(buf[:])]
	return ok
}

// tag encodes a user ID for use inside store keys. It keeps one user's keys
// in one Redis Cluster hash slot ({...}) and keeps separators and braces in
// IDs from breaking the key structure.
func tag(userID string) string {
	return "{" + base64.RawURLEncoding.EncodeToString([]byte(userID)) + "}"
}

// usersPrefix begins the key of every user record, and of nothing else.
const usersPrefix = "user:"

func userKey(id string) string { return usersPrefix + tag(id) }

// loadUser reads the user's record from the store, returning the raw bytes
// for a later CompareAndSwap. A user never seen has an empty record and nil
// raw bytes.
func (e *Engine) loadUser(ctx context.Context, id string) (*User, []byte, error) {
	raw, err := e.store.Get(ctx, userKey(id))
	if errors.Is(err, store.ErrNotFound) {
		if err := e.Intact(ctx); err != nil {
			return nil, nil, err
		}
		return &User{ID: id}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	u, err := decodeUser(raw, id)
	if err != nil {
		return nil, nil, err
	}
	e.observe(u)
	return u, raw, nil
}

// decodeUser decodes the record stored under id's key.
func decodeUser(raw []byte, id string) (*User, error) {
	u := &User{}
	if err := json.Unmarshal(raw, u); err != nil {
		return nil, fmt.Errorf("user record %q: %w", id, err)
	}
	if u.ID != id {
		// A record copied under another user's key is never trusted.
		return nil, fmt.Errorf("user record for %q names %q", id, u.ID)
	}
	return u, nil
}

// updateUser applies change to the freshest record and writes it back
// atomically, retrying when another writer got there first. An error from
// change aborts without writing. Every write moves what the record holds
// under an older key to the current one, and moves the member's entries
// in the member list's indexes (listChange).
func (e *Engine) updateUser(ctx context.Context, id string, change func(u *User) error) (*User, error) {
	return e.writeUser(ctx, id, nil, change)
}

// userRead is a member's record as a sign-in's first round trip read it.
type userRead struct {
	u   *User
	raw []byte // nil: no record
}

// userFrom decodes the record a Get read; a user never seen has an empty
// record, once the store is known to be the one it was.
func (e *Engine) userFrom(ctx context.Context, id string, op *store.Op) (*userRead, error) {
	if !op.Found {
		if err := e.Intact(ctx); err != nil {
			return nil, err
		}
		return &userRead{u: &User{ID: id}}, nil
	}
	u, err := decodeUser(op.Value, id)
	if err != nil {
		return nil, err
	}
	e.observe(u)
	return &userRead{u: u, raw: op.Value}, nil
}

// writeUser is updateUser, starting from first (the record as read
// already; nil to read it).
func (e *Engine) writeUser(ctx context.Context, id string, first *userRead, change func(u *User) error) (*User, error) {
	for range 20 {
		r := first
		first = nil
		if r == nil {
			u, raw, err := e.loadUser(ctx, id)
			if err != nil {
				return nil, err
			}
			r = &userRead{u: u, raw: raw}
		}
		swapped, err := e.swapUser(ctx, r, change)
		if err != nil {
			return nil, err
		}
		if swapped {
			return r.u, nil
		}
	}
	return nil, fmt.Errorf("%w: user record %q kept changing", store.ErrUnavailable, id)
}

// swapUser applies change to r.u and swaps the result in for r.raw, in
// one round trip with the ops in with, which run before the swap whether
// or not change refuses. It reports whether the swap happened. The swap
// carries its change notice (announced).
func (e *Engine) swapUser(ctx context.Context, r *userRead, change func(u *User) error, with ...*store.Op) (bool, error) {
	u := r.u
	before := factsOf(u)
	if err := change(u); err != nil {
		if err := store.RunBatch(ctx, e.store, with...); err != nil {
			return false, err
		}
		return false, err
	}
	if u.Created.IsZero() {
		u.Created = e.now().UTC()
	}
	pruneRevoked(u, e.now())
	e.reseal(u)
	u.Rev++
	next, err := json.Marshal(u)
	if err != nil {
		return false, err
	}
	swap := e.announced(store.CompareAndSwapOp(userKey(u.ID), r.raw, next, 0), u)
	if err := store.RunBatch(ctx, e.store, append(slices.Clip(with), swap)...); err != nil {
		return false, err
	}
	if !swap.Swapped {
		return false, nil
	}
	e.wrote(u)
	// The member list's indexes follow what changed: nothing for most
	// writes (a sign-in), a few entries for an enrolment, a removal or
	// a reset.
	e.listChange(ctx, u.ID, before, factsOf(u), r.raw == nil)
	return true, nil
}

// wrote keeps u, which this engine has just written (its swap announced
// it), as the current record.
func (e *Engine) wrote(u *User) {
	e.observe(u)
	e.users.put(u, e.now(), e.cfg.CacheTTL, true)
	if e.cfg.Noticed != nil && e.notices != nil {
		e.cfg.Noticed(false)
	}
}

func pruneRevoked(u *User, now time.Time) {
	for id, until := range u.Devices {
		if until <= now.Unix() {
			delete(u.Devices, id)
		}
	}
	if len(u.Devices) == 0 {
		u.Devices = nil
	}
	for id, until := range u.RevokedSessions {
		if until <= now.Unix() {
			delete(u.RevokedSessions, id)
		}
	}
	if len(u.RevokedSessions) == 0 {
		u.RevokedSessions = nil
	}
}

// State returns the user's record for the per-request check, from memory
// when it is fresh enough (Config.CacheTTL). The returned record must not be
// modified.
func (e *Engine) State(ctx context.Context, id string) (*User, error) {
	now := e.now()
	if u, ok := e.users.get(id, now, e.cfg.CacheTTL); ok {
		return u, nil
	}
	u, _, err := e.loadUser(ctx, id)
	if err != nil {
		return nil, err
	}
	e.users.put(u, now, e.cfg.CacheTTL, false)
	return u, nil
}

// RevokeSession ends one second-factor session server-side (sign-out) until
// its absolute expiry.
func (e *Engine) RevokeSession(ctx context.Context, a Actor, id [16]byte, expires time.Time) error {
	if !expires.After(e.now()) {
		return nil
	}
	sid := hex.EncodeToString(id[:])
	_, err := e.updateUser(ctx, a.User, func(u *User) error {
		if u.RevokedSessions == nil {
			u.RevokedSessions = map[string]int64{}
		}
		u.RevokedSessions[sid] = expires.Unix()
		return nil
	})
	result := "success"
	if err != nil {
		result = "error"
	}
	e.Audit(a, "session_revoked", result)
	return err
}

// userCache keeps recently read user records so that the verified hot path
// needs no store round trip. It is bounded (UserCacheSize) and keeps the
// members read most: a site with more active members than the bound
// reads only its coldest members from the store, not everyone.
type userCache struct {
	c   *cache.Cache[string, cachedUser]
	now func() time.Time
	// lease, when the store's notices arrive in order, keeps copies
	// trusted past the TTL; nil otherwise.
	lease *lease
}

// cachedUser is a record read at a time, or, with u nil, a notice that the
// record reached revision rev: until a read returns at least that
// revision, nothing older is kept (a read that started before the change
// may finish after the notice).
type cachedUser struct {
	u   *User
	rev uint64
	at  time.Time
	// leased: kept within the TTL of its read, so no notice it must
	// yield to can have expired before it was kept; the lease may cover
	// it past the TTL.
	leased bool
}

// The bounds of the user records kept in memory (Config.CacheSize): the
// default, and the range allowed.
const (
	UserCacheSize = 100_000
	MinCacheSize  = 1_000
	MaxCacheSize  = 10_000_000
)

// newUserCache returns the cache; leased when the store's notices arrive
// in order. Copies are kept for ttl, or leaseMaxAge when leased; notices
// and the records this instance wrote are pinned for ttl only.
func newUserCache(size int, ttl time.Duration, leased bool, now func() time.Time) *userCache {
	c := &userCache{now: now}
	o := cache.Options{Size: size, TTL: ttl, Now: now}
	if leased {
		c.lease = newLease(now())
		o.TTL, o.PinnedTTL = leaseMaxAge, ttl
	}
	c.c = cache.New[string, cachedUser](o)
	return c
}

func (c *userCache) get(id string, now time.Time, ttl time.Duration) (*User, bool) {
	e, ok := c.c.Get(id)
	if !ok || e.u == nil || !(e.live(now, ttl) || e.leased && c.lease.covers(e.at, now, ttl)) {
		return nil, false
	}
	return e.u, true
}

// put keeps u, read at readAt (when the read began), unless a newer
// revision is known now: a notice that arrived while the read was on its
// way is later than readAt, and must still stand. A record this instance
// wrote is pinned for its TTL (written true), as a notice is: if room were
// made by evicting either, a read that began before the write could bring
// the older revision back.
func (c *userCache) put(u *User, readAt time.Time, ttl time.Duration, written bool) {
	now := c.now()
	c.c.Update(u.ID, written, func(old cachedUser, found bool) (cachedUser, bool) {
		if found && old.live(now, ttl) && old.newest() > u.Rev {
			return old, false
		}
		// A notice pinned while this read was on its way stands for ttl
		// from its arrival, which was after readAt: past readAt+ttl it
		// may be gone, and this copy is for the TTL alone (at most).
		return cachedUser{u: u, rev: u.Rev, at: readAt, leased: now.Sub(readAt) < ttl}, true
	})
}

// live: an entry older than the TTL says nothing any more (and a store
// restored from a backup counts revisions from lower again).
func (e cachedUser) live(now time.Time, ttl time.Duration) bool {
	return now.Sub(e.at) < ttl && !now.Before(e.at)
}

func (e cachedUser) newest() uint64 {
	if e.u != nil {
		return e.u.Rev
	}
	return e.rev
}

// changed records that another instance wrote revision rev of a record.
// The notice is pinned until it expires, so no stream of other members
// can push it out before the slower read it guards against arrives.
func (c *userCache) changed(id string, rev uint64, now time.Time, ttl time.Duration) {
	c.c.Update(id, true, func(old cachedUser, found bool) (cachedUser, bool) {
		if found && old.live(now, ttl) && old.newest() >= rev {
			// This copy is that write or a later one: pin it, so no
			// flood of other members makes room for an older read.
			return old, true
		}
		return cachedUser{rev: rev, at: now}, true
	})
}

// restarted forgets every copy when the subscription to notices starts
// again at now: notices sent in between are lost.
func (c *userCache) restarted(now time.Time) {
	if c.lease != nil {
		c.lease.subscribed(now)
	}
	c.c.Clear()
}

// changesChannel carries "<revision> <user ID>" for every user record
// written, on stores shared between instances.
const changesChannel = "changes"

// announced has swap, the write of u's record, tell the other instances
// that u was written, on a store shared with them: the notice goes in the
// swap's own atomic step, so no write goes unannounced whatever happens
// to this process after it. That is what lets them keep their copies
// past Config.CacheTTL (see lease).
func (e *Engine) announced(swap *store.Op, u *User) *store.Op {
	if e.notices == nil {
		return swap
	}
	return swap.Announce(changesChannel, []byte(strconv.FormatUint(u.Rev, 10)+" "+u.ID))
}

// CheckNotices publishes a notice that followers ignore, so a store that
// refuses them (a Redis user without the channel's permission) is found
// at start rather than by revocations arriving late. Nil on stores that
// are not shared.
func (e *Engine) CheckNotices(ctx context.Context) error {
	if n, ok := e.store.(store.Notifier); ok {
		return n.Publish(ctx, changesChannel, []byte("check"))
	}
	return nil
}

// FollowChanges keeps this engine's copies of user records in step with
// writes made by other instances, until ctx ends, so a revocation on one
// instance takes effect on all of them within a store round trip. On a
// store that is not shared it returns at once.
func (e *Engine) FollowChanges(ctx context.Context) {
	n := e.notices
	if n == nil {
		return
	}
	l := e.users.lease
	var beats sync.WaitGroup
	if l != nil {
		beats.Go(func() { e.beating(ctx, l) })
	}
	n.Subscribe(ctx, changesChannel, func(msg []byte) {
		text := string(msg)
		if l.received(text) {
			return
		}
		rev, id, ok := strings.Cut(text, " ")
		r, err := strconv.ParseUint(rev, 10, 64)
		if ok && err == nil {
			e.users.changed(id, r, e.now(), e.cfg.CacheTTL)
			if e.cfg.Noticed != nil {
				e.cfg.Noticed(true)
			}
		}
	}, func() { e.users.restarted(e.now()) })
	beats.Wait()
}

// SetDefault makes method, which the user must have, the one the challenge
// page offers first.
func (e *Engine) SetDefault(ctx context.Context, a Actor, method string) (*User, error) {
	u, err := e.updateUser(ctx, a.User, func(u *User) error {
		if !u.Has(method) {
			return ErrNotEnrolled
		}
		u.Default = method
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.Audit(a, "default_method", "success", zap.String("method", method))
	return u, nil
}

// ErrLastMethod reports that removing the method would leave the user
// without a second factor where one is required.
var ErrLastMethod = errors.New("challenge: cannot remove the last method")

// RemoveMethod disables one of the user's methods. Removing the last one
// is refused unless allowLast; then the recovery codes go too. The factor
// epoch moves on, so sessions and remembered devices from before end: the
// caller starts a new session for the member who asked.
func (e *Engine) RemoveMethod(ctx context.Context, a Actor, method string, allowLast bool) (*User, error) {
	u, err := e.updateUser(ctx, a.User, func(u *User) error {
		if !u.Has(method) {
			return ErrNotEnrolled
		}
		if len(u.Methods()) == 1 && !allowLast {
			return ErrLastMethod
		}
		switch method {
		case MethodTOTP:
			u.TOTP = nil
		case MethodEmail:
			u.Email = nil
		case MethodSMS:
			u.SMS = nil
		case MethodWebAuthn:
			u.WebAuthn = nil
		}
		dropMethods(u)
		return nil
	})
	if err != nil {
		e.Audit(a, "method_removed", "refused", zap.String("method", method), zap.String("reason", reason(err)))
		return nil, err
	}
	e.Audit(a, "method_removed", "success", zap.String("method", method), zap.Bool("enrolled", u.Enrolled()))
	return u, nil
}

// trimSmallest deletes the entries with the smallest values (the oldest
// or soonest to expire) until at most max remain, and returns their keys.
func trimSmallest(m map[string]int64, max int) []string {
	return trimSmallestBy(m, max, func(v int64) int64 { return v })
}

// trimSmallestBy is trimSmallest for values ordered by by.
func trimSmallestBy[V any](m map[string]V, max int, by func(V) int64) []string {
	var dropped []string
	for len(m) > max {
		smallest, at := "", int64(0)
		for k, v := range m {
			if smallest == "" || by(v) < at {
				smallest, at = k, by(v)
			}
		}
		delete(m, smallest)
		dropped = append(dropped, smallest)
	}
	return dropped
}

// maxNetworks bounds the ranges remembered per user; the longest unused
// go first. 20 ranges add about a kilobyte to a record.
const maxNetworks = 20

// NetworkPass is when a member last passed the second factor from a
// range (Unix seconds), and with which methods.
type NetworkPass struct {
	Last    int64    `json:"last"`
	Methods []string `json:"methods,omitempty"`
}

// KnownNetwork reports whether the member passed the second factor from
// the range p with a method accepts reports true for (nil: any), so a
// path that accepts only passkeys is not satisfied by an emailed code
// from the range. The zero Prefix (an address that could not be
// determined) is never known. Without allocating, like hasID: the
// handler asks it of sessions begun from a remembered device.
func (u *User) KnownNetwork(p netip.Prefix, accepts func(method string) bool) bool {
	if len(u.Networks) == 0 || !p.IsValid() {
		return false
	}
	var buf [64]byte
	pass, ok := u.Networks[string(p.AppendTo(buf[:0]))]
	if !ok || accepts == nil {
		return ok
	}
	for _, m := range pass.Methods {
		if accepts(m) {
			return true
		}
	}
	return false
}

// KnownNetwork is a range a member passed the second factor from, when
// they last did, and by which methods.
type KnownNetwork struct {
	Range   string    `json:"range"`
	Last    time.Time `json:"last"`
	Methods []string  `json:"methods"`
}

// KnownNetworks lists the ranges the member passed the second factor
// from, the most recent first.
func (u *User) KnownNetworks() []KnownNetwork {
	if len(u.Networks) == 0 {
		return nil
	}
	out := make([]KnownNetwork, 0, len(u.Networks))
	for r, pass := range u.Networks {
		out = append(out, KnownNetwork{Range: r, Last: time.Unix(pass.Last, 0).UTC(), Methods: slices.Clone(pass.Methods)})
	}
	slices.SortFunc(out, func(x, y KnownNetwork) int {
		if c := y.Last.Compare(x.Last); c != 0 {
			return c
		}
		return strings.Compare(x.Range, y.Range)
	})
	return out
}

// seeNetwork records, inside a write, that the member passed the second
// factor from the range p now by method; the zero Prefix records nothing.
func seeNetwork(u *User, p netip.Prefix, method string, now time.Time) {
	if !p.IsValid() {
		return
	}
	if u.Networks == nil {
		u.Networks = map[string]NetworkPass{}
	}
	key := p.String()
	pass := u.Networks[key]
	pass.Last = now.Unix()
	if method != "" && !slices.Contains(pass.Methods, method) {
		pass.Methods = append(slices.Clip(pass.Methods), method)
	}
	u.Networks[key] = pass
	trimSmallestBy(u.Networks, maxNetworks, func(p NetworkPass) int64 { return p.Last })
}

// maxBrowsers bounds the browsers remembered per user; the longest unseen
// go first.
const maxBrowsers = 50

// SeenBrowser records that the browser holding token passed the second
// factor by method (one just added), from the actor's range
// (Actor.Network) if given, and reports
// whether it had never done so before. A verification given the browser
// (Actor.Browser) records both with its own write instead.
func (e *Engine) SeenBrowser(ctx context.Context, a Actor, token, method string) (bool, error) {
	b := &Browser{Token: token}
	_, err := e.updateUser(ctx, a.User, func(u *User) error {
		e.seeBrowser(u, b)
		seeNetwork(u, a.Network, method, e.now())
		return nil
	})
	if err != nil {
		return false, err
	}
	if b.First {
		e.Audit(a, "new_browser", "success")
	}
	return b.First, nil
}

// Browser is the browser a member signs in from, told apart by the
// random token it keeps in a cookie. Given to a verification
// (Actor.Browser), it is recorded as SeenBrowser records it, in the
// verification's own write of the member's record, which saves the
// sign-in a write of its own; the verification then sets Recorded, and
// First when the browser had never passed the second factor before.
type Browser struct {
	Token           string
	First, Recorded bool
}

// seeBrowser records b in u, inside a write.
func (e *Engine) seeBrowser(u *User, b *Browser) {
	sum := sha256.Sum256([]byte("browser\x00" + b.Token))
	key := hex.EncodeToString(sum[:16])
	_, seen := u.Browsers[key]
	b.First = !seen
	if u.Browsers == nil {
		u.Browsers = map[string]int64{}
	}
	u.Browsers[key] = e.now().Unix()
	trimSmallest(u.Browsers, maxBrowsers)
}
