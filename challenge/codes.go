package challenge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/store"
)

// One-time codes sent by email or SMS. A user has at most one outstanding
// code: sending another replaces it, so a resend voids the previous code.
// The store keeps an HMAC of the code bound to the user, a random challenge
// ID, the purpose and the method, never the code itself; the record is also
// bound to the browser flow that asked for it, so a code is only good in
// the browser it was requested from.

// Purposes of a code.
const (
	PurposeVerify = "verify" // passing the challenge with an enrolled method
	PurposeEnrol  = "enrol"  // confirming a new address or number
)

// codeDigits is the length of emailed and texted codes.
const codeDigits = 6

var (
	// ErrCodeExpired reports that there is no live code for this browser:
	// it expired, was used, or was never sent.
	ErrCodeExpired = errors.New("challenge: code expired or already used")
	// ErrCodeVoid reports that a code took too many wrong tries and can no
	// longer be used.
	ErrCodeVoid = errors.New("challenge: code void after too many tries")
	// ErrNoDestination reports that there is nowhere to send the code, for
	// example email that follows the identity when the identity has none.
	ErrNoDestination = errors.New("challenge: no address to send the code to")
)

// DeliveryError reports that the sender could not deliver a code. Class is
// a notify error class; nothing was consumed, so the user may try again or
// use another method.
type DeliveryError struct {
	Class string
	Err   error
}

func (e *DeliveryError) Error() string { return "challenge: code not delivered: " + e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// Delivery is one code to send.
type Delivery struct {
	Method  string
	Purpose string
	To      string // address or E.164 number
	Code    string
	TTL     time.Duration
}

// Deliver sends a code. The HTTP layer supplies it, composing the message
// in the member's language.
type Deliver func(ctx context.Context, d Delivery) error

// CodeRequest asks for a code to be sent.
type CodeRequest struct {
	Method  string // MethodEmail or MethodSMS
	Purpose string // PurposeVerify or PurposeEnrol
	// Flow is a token only the requesting browser holds; the code works
	// only with it.
	Flow string
	// To is, for enrolment, the new address or number (already
	// normalised); for verification, the identity's current email
	// address, used when the user's email method follows the identity.
	To string
	// FromIdentity records, for an email enrolment, that To is the
	// identity's address and should be followed rather than stored.
	FromIdentity bool
}

// PendingCode describes the outstanding code, for the page that asks for
// it.
type PendingCode struct {
	Method   string
	Purpose  string
	Masked   string // where it went, masked: a•••@example.com, +81 •• •••• 5678
	Expires  time.Time
	ResendAt time.Time
}

type codeRecord struct {
	ID           []byte `json:"id"`
	Purpose      string `json:"purpose"`
	Method       string `json:"method"`
	Hash         []byte `json:"hash"`
	Flow         []byte `json:"flow"`
	Dest         []byte `json:"dest,omitempty"` // sealed; enrolment only
	FromIdentity bool   `json:"from_identity,omitempty"`
	Factors      string `json:"factors,omitempty"` // enrolment: User.factors when it started
	Masked       string `json:"masked"`
	Sent         int64  `json:"sent"`
	Expires      int64  `json:"expires"`
	Tries        int    `json:"tries"`
}

func codeKey(user string) string { return "code:" + tag(user) }

func cooldownKey(user, method string) string { return "sendwait:" + tag(user) + ":" + method }

func destAAD(method, user string) []byte { return secretAAD(method+"-destination", user) }

// codeHash binds the code to everything it is for. Fields are length
// prefixed, so no choice of IDs can make two inputs collide.
func (e *Engine) codeHash(user string, rec *codeRecord, code string) []byte {
	m := hmac.New(sha256.New, e.codes)
	var buf []byte
	for _, f := range [][]byte{[]byte(user), rec.ID, []byte(rec.Purpose), []byte(rec.Method), []byte(code)} {
		buf = binary.AppendUvarint(buf[:0], uint64(len(f)))
		m.Write(buf)
		m.Write(f)
	}
	return m.Sum(nil)
}

func (e *Engine) codeTTL(method string) time.Duration {
	if method == MethodSMS {
		return e.cfg.SMSCodeTTL
	}
	return e.cfg.EmailCodeTTL
}

// Mask returns the masked form of an address or number for pages and the
// audit trail.
func Mask(method, to string) string {
	if method == MethodSMS {
		return notify.MaskPhone(to)
	}
	return notify.MaskEmail(to)
}

// Destination returns where codes for the user's method go, masked, or ""
// when there is nowhere to send them (email following an identity that has
// no address).
func (e *Engine) Destination(u *User, method, identityEmail string) string {
	m := u.codeMethod(method)
	if m == nil {
		return ""
	}
	to, err := e.destination(u.ID, method, m, identityEmail)
	if err != nil {
		return ""
	}
	return Mask(method, to)
}

// ContactEmail returns the address to send the user security notices to:
// the identity's address, else the one enrolled for codes; "" when there
// is none.
func (e *Engine) ContactEmail(u *User, identityEmail string) string {
	if identityEmail != "" {
		return identityEmail
	}
	if u.Email == nil {
		return ""
	}
	to, err := e.destination(u.ID, MethodEmail, u.Email, "")
	if err != nil {
		return ""
	}
	return to
}

func (e *Engine) destination(user, method string, m *CodeMethod, identityEmail string) (string, error) {
	if m.FromIdentity {
		if identityEmail == "" {
			return "", ErrNoDestination
		}
		return identityEmail, nil
	}
	to, err := open(e.dests, m.Destination, destAAD(method, user))
	if err != nil {
		return "", err
	}
	return string(to), nil
}

// SendCode sends a new code, replacing any outstanding one, after checking
// the lockout and every send limit. When delivery fails nothing is used
// up: the cooldown is released and an earlier code stays valid.
func (e *Engine) SendCode(ctx context.Context, a Actor, req CodeRequest, deliver Deliver) (*PendingCode, error) {
	if req.Method != MethodEmail && req.Method != MethodSMS {
		return nil, fmt.Errorf("challenge: no codes are sent for method %q", req.Method)
	}
	if err := e.checkLocks(ctx, a); err != nil {
		return nil, err
	}
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, err
	}
	rec := codeRecord{Purpose: req.Purpose, Method: req.Method, Flow: flowHash(req.Flow)}
	var to string
	switch req.Purpose {
	case PurposeVerify:
		m := u.codeMethod(req.Method)
		if m == nil {
			return nil, ErrNotEnrolled
		}
		if to, err = e.destination(a.User, req.Method, m, req.To); err != nil {
			return nil, err
		}
	case PurposeEnrol:
		if u.Has(req.Method) {
			return nil, ErrAlreadyEnrolled
		}
		if req.To == "" {
			return nil, ErrNoDestination
		}
		to = req.To
		rec.Factors = u.factors()
		rec.FromIdentity = req.FromIdentity && req.Method == MethodEmail
		rec.Dest = e.dests.Seal(nil, []byte(to), destAAD(req.Method, a.User))
	default:
		return nil, fmt.Errorf("challenge: unknown code purpose %q", req.Purpose)
	}
	return e.send(ctx, a, &rec, to, deliver)
}

// ResendEnrolment sends a new code to the address or number being
// confirmed by this browser, so the member need not type it again.
func (e *Engine) ResendEnrolment(ctx context.Context, a Actor, flow string, deliver Deliver) (*PendingCode, error) {
	rec, _, err := e.pendingCode(ctx, a.User, flow, PurposeEnrol)
	if err != nil {
		return nil, err
	}
	to, err := open(e.dests, rec.Dest, destAAD(rec.Method, a.User))
	if err != nil {
		return nil, err
	}
	if err := e.checkLocks(ctx, a); err != nil {
		return nil, err
	}
	u, _, err := e.loadUser(ctx, a.User)
	if err != nil {
		return nil, err
	}
	if u.Has(rec.Method) || u.factors() != rec.Factors {
		return nil, ErrCodeExpired
	}
	next := codeRecord{
		Purpose: PurposeEnrol, Method: rec.Method, Flow: rec.Flow, Dest: rec.Dest,
		FromIdentity: rec.FromIdentity, Factors: rec.Factors,
	}
	return e.send(ctx, a, &next, string(to), deliver)
}

func (e *Engine) send(ctx context.Context, a Actor, rec *codeRecord, to string, deliver Deliver) (*PendingCode, error) {
	fields := []zap.Field{zap.String("method", rec.Method), zap.String("purpose", rec.Purpose)}
	slot, err := e.takeSendSlot(ctx, a, rec.Method, rec.Purpose, to)
	if err != nil {
		var limited *LimitedError
		if errors.As(err, &limited) {
			e.Audit(a, "code_send", "refused", append(fields, zap.String("reason", limited.Limit))...)
		}
		return nil, err
	}
	code, err := randomCode()
	if err != nil {
		slot.giveBack()
		return nil, err
	}
	now := e.now()
	ttl := e.codeTTL(rec.Method)
	rec.ID = make([]byte, 16)
	if _, err := rand.Read(rec.ID); err != nil {
		slot.giveBack()
		return nil, err
	}
	rec.Hash = e.codeHash(a.User, rec, code)
	rec.Masked = Mask(rec.Method, to)
	rec.Sent = now.Unix()
	rec.Expires = now.Add(ttl).Unix()
	raw, err := json.Marshal(rec)
	if err != nil {
		slot.giveBack()
		return nil, err
	}
	if err := deliver(ctx, Delivery{Method: rec.Method, Purpose: rec.Purpose, To: to, Code: code, TTL: ttl}); err != nil {
		class := notify.Class(err)
		slot.failed(class)
		e.Audit(a, "code_send", "failure", append(fields, zap.String("to", rec.Masked), zap.String("error_class", class))...)
		return nil, &DeliveryError{Class: class, Err: err}
	}
	if err := e.store.Set(ctx, codeKey(a.User), raw, ttl); err != nil {
		return nil, err
	}
	e.Audit(a, "code_send", "success", append(fields, zap.String("to", rec.Masked))...)
	return e.describe(rec), nil
}

func (e *Engine) describe(rec *codeRecord) *PendingCode {
	sent := time.Unix(rec.Sent, 0)
	return &PendingCode{
		Method: rec.Method, Purpose: rec.Purpose, Masked: rec.Masked,
		Expires: time.Unix(rec.Expires, 0), ResendAt: sent.Add(e.cfg.ResendCooldown),
	}
}

// randomCode returns codeDigits uniformly random decimal digits.
func randomCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%06d", n.Int64()), nil
}

// PendingCode returns the live code this browser asked for with purpose,
// or ErrCodeExpired.
func (e *Engine) PendingCode(ctx context.Context, a Actor, flow, purpose string) (*PendingCode, error) {
	rec, _, err := e.pendingCode(ctx, a.User, flow, purpose)
	if err != nil {
		return nil, err
	}
	return e.describe(rec), nil
}

func (e *Engine) pendingCode(ctx context.Context, user, flow, purpose string) (*codeRecord, []byte, error) {
	raw, err := e.store.Get(ctx, codeKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrCodeExpired
	}
	if err != nil {
		return nil, nil, err
	}
	var rec codeRecord
	if json.Unmarshal(raw, &rec) != nil || rec.Purpose != purpose ||
		subtle.ConstantTimeCompare(rec.Flow, flowHash(flow)) != 1 || e.now().Unix() >= rec.Expires {
		return nil, nil, ErrCodeExpired
	}
	return &rec, raw, nil
}

// VerifyCode passes the challenge with the code this browser asked for. It
// returns the user and the method the code was sent by.
func (e *Engine) VerifyCode(ctx context.Context, a Actor, flow, code string) (*User, string, error) {
	var u *User
	recovered := int64(-1)
	s, rec, err := e.consumeCode(ctx, a, flow, PurposeVerify, code, func(s *signIn, rec *codeRecord, take *store.Op) (err error) {
		u, err = s.write(ctx, take, func(u *User) error {
			m := u.codeMethod(rec.Method)
			if m == nil {
				return ErrNotEnrolled // removed since the code was sent
			}
			m.LastUsed = e.now().UTC()
			recovered = e.unstuck(u)
			return nil
		})
		return err
	})
	if err != nil {
		if rec != nil {
			s.audit(ctx, "verify", "failure", zap.String("method", rec.Method), zap.String("reason", reason(err)))
		}
		return nil, "", err
	}
	// The code is used up: the sign-in stands even if clearing the
	// failure count fails.
	s.succeeded(ctx, codeUsed(a, rec), "verify", recoveredField([]zap.Field{zap.String("method", rec.Method)}, recovered)...)
	return u, rec.Method, nil
}

// sameEnrolment reports whether u has the method rec enrols, to the same
// address or number.
func sameEnrolment(u *User, rec *codeRecord) bool {
	m := u.codeMethod(rec.Method)
	return m != nil && m.FromIdentity == rec.FromIdentity && (rec.FromIdentity || bytes.Equal(m.Destination, rec.Dest))
}

// codeUsed ends the resend cooldown of a code that was used: it spaces
// out resends of an unused code; once the code is used, the next one may
// follow at once.
func codeUsed(a Actor, rec *codeRecord) []*store.Op {
	return []*store.Op{store.DeleteOp(cooldownKey(a.User, rec.Method))}
}

// ConfirmCode completes an email or SMS enrolment with the code sent to the
// new address or number. It returns the user and the method added.
func (e *Engine) ConfirmCode(ctx context.Context, a Actor, flow, code string) (*User, string, error) {
	var u *User
	s, rec, err := e.consumeCode(ctx, a, flow, PurposeEnrol, code, func(s *signIn, rec *codeRecord, take *store.Op) (err error) {
		u, err = s.write(ctx, take, func(u *User) error {
			if u.Has(rec.Method) {
				if take.Swapped && sameEnrolment(u, rec) {
					// This submission took the code; its twin wrote
					// the enrolment first (see signIn.write).
					return nil
				}
				return ErrAlreadyEnrolled
			}
			if u.factors() != rec.Factors {
				return ErrCodeExpired
			}
			now := e.now().UTC()
			m := &CodeMethod{Added: now, LastUsed: now, FromIdentity: rec.FromIdentity}
			if !rec.FromIdentity {
				m.Destination = rec.Dest
			}
			firstFactor(u)
			if rec.Method == MethodEmail {
				u.Email = m
			} else {
				u.SMS = m
			}
			return nil
		})
		return err
	})
	if err != nil {
		if rec != nil {
			s.audit(ctx, "enrol_confirm", "failure", zap.String("method", rec.Method), zap.String("reason", reason(err)))
		}
		return nil, "", err
	}
	s.succeeded(ctx, codeUsed(a, rec), "enrol_confirm", zap.String("method", rec.Method), zap.String("to", rec.Masked))
	return u, rec.Method, nil
}

// consumeCode checks a submitted code against the outstanding one. The
// guess is counted toward the account lockout before anything is compared;
// the code itself allows Config.CodeAttempts tries. A right code is taken
// (deleted) by compare-and-swap, so of parallel submissions exactly one
// wins: write gets the take op and must send it, with the member's
// record, in one round trip (signIn.write). When the take loses, the code
// changed under us and is looked at again. (Two browsers cannot share a
// code, so that is the one browser submitting twice at once: the take
// and the record's swap go together, and the submission whose take lost
// may still have swapped in its record. It then announces that record
// and looks again, finding the code gone; the submission that took the
// code writes again on that record and is the one that succeeds.) It returns the
// verification and, once the code was right and taken, the code's
// record; an error with a record is write's.
func (e *Engine) consumeCode(ctx context.Context, a Actor, flow, purpose, input string,
	write func(s *signIn, rec *codeRecord, take *store.Op) error) (*signIn, *codeRecord, error) {
	event := "verify"
	if purpose == PurposeEnrol {
		event = "enrol_confirm"
	}
	code, malformed := NormalizeCode(input, codeDigits)
	key := codeKey(a.User)
	var read *store.Op
	var reads []*store.Op
	if malformed == nil {
		read = store.GetOp(key)
		reads = append(reads, read)
	}
	s, err := e.startSignIn(ctx, a, malformed == nil, reads, nil)
	if err != nil {
		e.Audit(a, event, "failure", zap.String("reason", reason(err)))
		return nil, nil, err
	}
	fail := func(method string, cause error) (*signIn, *codeRecord, error) {
		s.audit(ctx, event, "failure", zap.String("method", method), zap.String("reason", reason(cause)))
		if err := s.failed(ctx); err != nil {
			return nil, nil, err
		}
		return nil, nil, cause
	}
	if malformed != nil {
		return fail("", ErrMalformed)
	}
	for range 20 {
		if read == nil {
			read = store.GetOp(key)
			if err := store.RunBatch(ctx, e.store, read); err != nil {
				return nil, nil, err
			}
		}
		raw, found := read.Value, read.Found
		read = nil
		if !found {
			return fail("", ErrCodeExpired)
		}
		var rec codeRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			_, _ = e.store.CompareAndSwap(ctx, key, raw, nil, 0)
			return fail("", ErrCodeExpired)
		}
		if rec.Purpose != purpose || subtle.ConstantTimeCompare(rec.Flow, flowHash(flow)) != 1 {
			// Asked for in another browser or for another purpose.
			return fail(rec.Method, ErrCodeExpired)
		}
		now := e.now()
		if now.Unix() >= rec.Expires || rec.Tries >= e.cfg.CodeAttempts {
			_, _ = e.store.CompareAndSwap(ctx, key, raw, nil, 0)
			if rec.Tries >= e.cfg.CodeAttempts {
				return fail(rec.Method, ErrCodeVoid)
			}
			return fail(rec.Method, ErrCodeExpired)
		}
		if hmac.Equal(e.codeHash(a.User, &rec, code), rec.Hash) {
			take := store.CompareAndSwapOp(key, raw, nil, 0)
			s.method = rec.Method
			err := write(s, &rec, take)
			if take.Swapped {
				return s, &rec, err
			}
			if err != nil && errors.Is(err, store.ErrUnavailable) {
				return nil, nil, err
			}
			continue // changed under us; look again
		}
		rec.Tries++
		var next []byte
		if rec.Tries < e.cfg.CodeAttempts {
			if next, err = json.Marshal(rec); err != nil {
				return nil, nil, err
			}
		}
		ok, err := e.store.CompareAndSwap(ctx, key, raw, next, time.Unix(rec.Expires, 0).Sub(now))
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		if next == nil {
			return fail(rec.Method, ErrCodeVoid)
		}
		return fail(rec.Method, ErrCodeInvalid)
	}
	return nil, nil, fmt.Errorf("%w: code record kept changing", store.ErrUnavailable)
}

// failedSendWait is how long a member waits to retry after a send failed
// (at most the configured cooldown): long enough that nobody can hammer
// the provider, short enough that a retry or another method is prompt.
const failedSendWait = 10 * time.Second

// sendSlot is one send allowed by the limits, not yet done.
type sendSlot struct {
	e        *Engine
	ctx      context.Context
	coolKey  string
	coolVal  []byte
	now      time.Time
	refunds  []string // refund counters of the caps counted so far
	ttl      time.Duration
	released bool
}

// takeSendSlot takes the resend cooldown for the user and method with one
// compare-and-swap, so parallel requests make one send, then counts the
// send against the hourly caps. Codes to confirm a new address or number
// are counted apart from sign-in codes to that destination, so nobody can
// use up a member's own allowance by enrolling the member's number.
func (e *Engine) takeSendSlot(ctx context.Context, a Actor, method, purpose, to string) (*sendSlot, error) {
	now := e.now()
	coolKey := cooldownKey(a.User, method)
	until := now.Add(e.cfg.ResendCooldown)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(until.Unix()))
	ok, err := e.store.CompareAndSwap(ctx, coolKey, nil, v[:], e.cfg.ResendCooldown)
	if err != nil {
		return nil, err
	}
	if !ok {
		held, err := e.cooldownEnd(ctx, coolKey)
		if err != nil {
			return nil, err
		}
		if !held.After(now) {
			held = until
		}
		return nil, &LimitedError{Until: held, Limit: LimitCooldown}
	}

	// Caps count per clock hour, so the page can say exactly when sending
	// works again. A send that does not go out is refunded through a
	// second counter, since counters only go up: the member's allowance is
	// spent on codes that went out. Attempts, refunded or not, have a cap
	// of their own, so failures cannot be used to call the provider
	// without end.
	hour := now.Unix() / 3600
	window := ":" + strconv.FormatInt(hour, 10)
	next := time.Unix((hour+1)*3600, 0)
	slot := &sendSlot{e: e, ctx: context.WithoutCancel(ctx), coolKey: coolKey, coolVal: v[:], now: now, ttl: next.Sub(now) + time.Minute}
	type cap struct {
		key    string
		max    int
		limit  string
		refund bool
	}
	caps := []cap{
		{"sendtries:" + tag(a.User) + window, 3 * e.cfg.SendsPerUser, LimitUser, false},
		{"sends:" + tag(a.User) + window, e.cfg.SendsPerUser, LimitUser, true},
		{"sendto:" + purpose + ":" + e.destinationID(to) + window, e.cfg.SendsPerDestination, LimitDestination, true},
	}
	if e.cfg.SendsPerAddress > 0 && a.IP != "" {
		bucket := addressBucket(a.IP)
		caps = append(caps,
			cap{"sendiptries:" + bucket + window, 3 * e.cfg.SendsPerAddress, LimitAddress, false},
			cap{"sendip:" + bucket + window, e.cfg.SendsPerAddress, LimitAddress, true})
	}
	if method == MethodSMS {
		caps = append(caps, cap{"smssite" + window, e.cfg.SMSPerHour, LimitSMSSite, true})
	}
	for _, c := range caps {
		var refunds int64
		if c.refund {
			// Refunds first: each was written after its own increment,
			// so every refund read here is matched by an increment in
			// n, and parallel sends can only err towards refusing.
			if refunds, err = e.counter(ctx, c.key+":refund"); err != nil {
				slot.giveBack()
				return nil, err
			}
		}
		n, err := e.store.Increment(ctx, c.key, slot.ttl)
		if err != nil {
			slot.giveBack()
			return nil, err
		}
		if c.refund {
			slot.refunds = append(slot.refunds, c.key+":refund")
		}
		if n-refunds > int64(c.max) {
			slot.giveBack()
			if c.limit == LimitSMSSite {
				e.smsLimitReached(ctx, c.max, window, next, slot.ttl)
			}
			return nil, &LimitedError{Until: next, Limit: c.limit}
		}
	}
	return slot, nil
}

// giveBack returns everything: nothing was sent.
func (s *sendSlot) giveBack() {
	s.refund()
	s.setCooldown(nil, 0)
}

// failed settles a send the provider did not take. Failures that may have
// reached the member (a timeout) or that the member may cause at will (a
// number that opted out, or that the provider refuses) stay counted; the
// member may retry after a short wait.
func (s *sendSlot) failed(class string) {
	switch class {
	case notify.ClassTimeout, notify.ClassOptedOut, notify.ClassInvalid:
	default:
		s.refund()
	}
	wait := min(failedSendWait, s.e.cfg.ResendCooldown)
	until := s.now.Add(wait)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(until.Unix()))
	if left := until.Sub(s.e.now()); left > 0 {
		s.setCooldown(v[:], left)
	} else {
		s.setCooldown(nil, 0)
	}
}

func (s *sendSlot) refund() {
	if s.released {
		return
	}
	s.released = true
	for _, key := range s.refunds {
		_, _ = s.e.store.Increment(s.ctx, key, s.ttl)
	}
}

// setCooldown replaces this send's cooldown, only if it is still the one
// this send took: a slow send must not touch a cooldown taken after it.
func (s *sendSlot) setCooldown(value []byte, ttl time.Duration) {
	_, _ = s.e.store.CompareAndSwap(s.ctx, s.coolKey, s.coolVal, value, ttl)
}

// counter reads a counter, zero when it does not exist.
func (e *Engine) counter(ctx context.Context, key string) (int64, error) {
	op := store.GetOp(key)
	if err := store.RunBatch(ctx, e.store, op); err != nil {
		return 0, err
	}
	return counterValue(op)
}

// counterValue is the count a Get of a counter read, zero when there was
// none.
func counterValue(op *store.Op) (int64, error) {
	if !op.Found {
		return 0, nil
	}
	return strconv.ParseInt(string(op.Value), 10, 64)
}

// smsLimitReached raises the alarm once per hour: SMS pumping or a real
// surge needs an operator either way.
func (e *Engine) smsLimitReached(ctx context.Context, limit int, window string, until time.Time, ttl time.Duration) {
	first, err := e.store.CompareAndSwap(ctx, "smsalert"+window, nil, []byte{1}, ttl)
	if err == nil && first {
		e.audit.Error("site-wide SMS limit reached", zap.String("event", "sms_site_limit"),
			zap.Int("limit", limit), zap.Time("until", until))
	}
}

// destinationID names an address or number in limit counters without
// writing it to the store in the clear.
func (e *Engine) destinationID(to string) string {
	m := hmac.New(sha256.New, e.destID)
	m.Write([]byte(strings.ToLower(to)))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// cooldownEnd reads when the resend cooldown at key ends; zero when there
// is none.
func (e *Engine) cooldownEnd(ctx context.Context, key string) (time.Time, error) {
	v, err := e.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil || len(v) != 8 {
		return time.Time{}, err
	}
	return readTime(v), nil
}
