package challenge

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/notify"
	"github.com/caddy-twofactor/twofactor/store"
)

// Test destinations. User IDs never look like them, so a scan for the
// clear address or number cannot match a user field by accident.
const (
	aliceMail  = "alice.liddell@example.com"
	bobMail    = "bob.builder@example.org"
	alicePhone = "+819012345678"
	bobPhone   = "+14155550123"
)

// outbox is a capturing Deliver. It records every call, delivered or not,
// can fail every delivery with a set error, and can hold deliveries until a
// gate is closed (for concurrency tests).
type outbox struct {
	mu    sync.Mutex
	calls []Delivery
	ok    int
	fail  error
	gate  chan struct{}
}

func (o *outbox) deliver(_ context.Context, d Delivery) error {
	o.mu.Lock()
	gate := o.gate
	o.mu.Unlock()
	if gate != nil {
		<-gate
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, d)
	if o.fail != nil {
		return o.fail
	}
	o.ok++
	return nil
}

func (o *outbox) setFail(err error) {
	o.mu.Lock()
	o.fail = err
	o.mu.Unlock()
}

// count is the number of Deliver calls, delivered or not.
func (o *outbox) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.calls)
}

func (o *outbox) delivered() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ok
}

func (o *outbox) last() Delivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.calls) == 0 {
		return Delivery{}
	}
	return o.calls[len(o.calls)-1]
}

func (o *outbox) all() []Delivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.calls)
}

type codeFixture struct {
	*fixture
	ob *outbox
}

func newCodeFixture(t *testing.T, cfg Config) *codeFixture {
	t.Helper()
	return &codeFixture{fixture: newFixture(t, cfg), ob: &outbox{}}
}

// send sends a code, failing the test unless it was delivered, and returns
// the delivery.
func (f *codeFixture) send(a Actor, req CodeRequest) (*PendingCode, Delivery) {
	f.t.Helper()
	n := f.ob.count()
	pc, err := f.e.SendCode(ctx, a, req, f.ob.deliver)
	if err != nil {
		f.t.Fatalf("SendCode(%s, %+v): %v", a.User, req, err)
	}
	if f.ob.count() != n+1 {
		f.t.Fatalf("SendCode(%s, %+v): %d deliveries, want 1", a.User, req, f.ob.count()-n)
	}
	d := f.ob.last()
	if d.Method != req.Method || d.Purpose != req.Purpose || len(d.Code) != codeDigits {
		f.t.Fatalf("delivery %+v for request %+v", d, req)
	}
	return pc, d
}

// sendVerify sends a challenge code by method for flow and returns it.
// identity is the identity's current address (CodeRequest.To).
func (f *codeFixture) sendVerify(a Actor, method, flow, identity string) string {
	f.t.Helper()
	_, d := f.send(a, CodeRequest{Method: method, Purpose: PurposeVerify, Flow: flow, To: identity})
	return d.Code
}

// sendVerifyNot is sendVerify, sending again (after the cooldown) in the
// one-in-a-million case that the new code equals avoid.
func (f *codeFixture) sendVerifyNot(a Actor, method, flow, identity, avoid string) string {
	f.t.Helper()
	for {
		c := f.sendVerify(a, method, flow, identity)
		if c != avoid {
			return c
		}
		f.clk.Advance(f.e.cfg.ResendCooldown)
	}
}

// enrolCode enrols method for the actor through the real API (send, then
// confirm with the delivered code) and moves the clock past the cooldown.
func (f *codeFixture) enrolCode(a Actor, method, to string, fromIdentity bool) *User {
	f.t.Helper()
	flow := "enrol-" + method + "-" + a.User
	_, d := f.send(a, CodeRequest{Method: method, Purpose: PurposeEnrol, Flow: flow, To: to, FromIdentity: fromIdentity})
	if d.To != to {
		f.t.Fatalf("enrolment code went to %q, want %q", d.To, to)
	}
	u, m, err := f.e.ConfirmCode(ctx, a, flow, d.Code)
	if err != nil || m != method || !u.Has(method) {
		f.t.Fatalf("ConfirmCode %s: %v %q %+v", method, err, m, u)
	}
	f.clk.Advance(f.e.cfg.ResendCooldown)
	return u
}

// nextHour moves the clock to the start of the next clock hour.
func (f *codeFixture) nextHour() time.Time {
	t := time.Unix((f.clk.Now().Unix()/3600+1)*3600, 0)
	f.clk.Set(t)
	return t
}

// hourEnd is the next clock-hour boundary, when hourly caps reset.
func (f *codeFixture) hourEnd() time.Time {
	return time.Unix((f.clk.Now().Unix()/3600+1)*3600, 0)
}

func (f *codeFixture) failures(user string) string {
	v, err := f.st.Get(ctx, failKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return "0"
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return string(v)
}

func (f *codeFixture) codeRecord(user string) *codeRecord {
	f.t.Helper()
	raw, err := f.st.Get(ctx, codeKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var rec codeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		f.t.Fatal(err)
	}
	return &rec
}

func wantLimited(t *testing.T, err error, limit string, until time.Time) {
	t.Helper()
	var l *LimitedError
	if !errors.As(err, &l) {
		t.Fatalf("got %v, want LimitedError %s", err, limit)
	}
	if l.Limit != limit || !l.Until.Equal(until) {
		t.Fatalf("got limit %q until %v, want %q until %v", l.Limit, l.Until.UTC(), limit, until.UTC())
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// containsCode reports whether s holds code as a number of its own, not as
// part of a longer run of digits such as a Unix timestamp.
func containsCode(s, code string) bool {
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], code)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(code)
		if (j == 0 || !isDigit(s[j-1])) && (end == len(s) || !isDigit(s[end])) {
			return true
		}
		i = j + 1
	}
	return false
}

// clearDestinations are forms of the test addresses and numbers that must
// never be written anywhere but the outgoing message.
var clearDestinations = []string{aliceMail, bobMail, alicePhone, bobPhone, alicePhone[1:], bobPhone[1:], "9012345678", "4155550123"}

// auditText returns every audit entry as text: message and all fields.
func (f *codeFixture) auditText() []string {
	var out []string
	for _, e := range f.audit.All() {
		var b strings.Builder
		b.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		out = append(out, b.String())
	}
	return out
}

func TestCodeEnrolEmailAndSMS(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	start := f.clk.Now()

	pc, d := f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "fe", To: aliceMail})
	if d.To != aliceMail || d.TTL != 10*time.Minute {
		t.Fatalf("delivery %+v", d)
	}
	if pc.Method != MethodEmail || pc.Purpose != PurposeEnrol || pc.Masked != "a•••@example.com" ||
		!pc.Expires.Equal(start.Add(10*time.Minute)) || !pc.ResendAt.Equal(start.Add(time.Minute)) {
		t.Fatalf("pending %+v", pc)
	}
	if again, err := f.e.PendingCode(ctx, a, "fe", PurposeEnrol); err != nil || *again != *pc {
		t.Fatalf("PendingCode: %v %+v", err, again)
	}
	if _, err := f.e.PendingCode(ctx, a, "fe", PurposeVerify); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("PendingCode for another purpose: %v", err)
	}
	if _, err := f.e.PendingCode(ctx, a, "other", PurposeEnrol); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("PendingCode for another flow: %v", err)
	}
	if u, _ := f.e.State(ctx, "alice"); u.Enrolled() || u.Has(MethodEmail) {
		t.Fatal("enrolled before confirmation")
	}

	u, m, err := f.e.ConfirmCode(ctx, a, "fe", d.Code)
	if err != nil || m != MethodEmail {
		t.Fatalf("confirm: %v %q", err, m)
	}
	if u.Email == nil || u.Email.FromIdentity || len(u.Email.Destination) == 0 || u.Epoch != 1 ||
		!u.Email.Added.Equal(start.UTC()) || !u.Email.LastUsed.Equal(start.UTC()) {
		t.Fatalf("user after email enrolment: %+v %+v", u, u.Email)
	}
	if strings.Contains(string(u.Email.Destination), aliceMail) {
		t.Fatal("address stored in the clear")
	}
	if plain, err := f.e.dests.Open(nil, u.Email.Destination, destAAD(MethodEmail, "alice")); err != nil || string(plain) != aliceMail {
		t.Fatalf("sealed destination opens to %q, %v", plain, err)
	}
	if got := u.Methods(); !slices.Equal(got, []string{MethodEmail}) || u.DefaultMethod() != MethodEmail {
		t.Fatalf("methods %v default %q", got, u.DefaultMethod())
	}
	// A stored address is used whatever the identity's address is now.
	if got := f.e.Destination(u, MethodEmail, "someone.else@example.net"); got != "a•••@example.com" {
		t.Fatalf("Destination = %q", got)
	}
	if _, err := f.e.PendingCode(ctx, a, "fe", PurposeEnrol); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("code still pending after use: %v", err)
	}

	// The second method does not start a new epoch.
	f.clk.Advance(time.Minute)
	pc, d = f.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "fs", To: alicePhone})
	if d.To != alicePhone || d.TTL != 5*time.Minute || pc.Masked != Mask(MethodSMS, alicePhone) ||
		strings.Contains(pc.Masked, "9012") || !strings.HasSuffix(pc.Masked, "5678") {
		t.Fatalf("sms enrolment: %+v %+v", d, pc)
	}
	u, m, err = f.e.ConfirmCode(ctx, a, "fs", d.Code)
	if err != nil || m != MethodSMS || u.SMS == nil || u.Epoch != 1 || u.Email == nil {
		t.Fatalf("sms confirm: %v %q %+v", err, m, u)
	}
	if got := u.Methods(); !slices.Equal(got, []string{MethodEmail, MethodSMS}) {
		t.Fatalf("methods %v", got)
	}
	if got := f.e.Destination(u, MethodSMS, ""); got != Mask(MethodSMS, alicePhone) {
		t.Fatalf("sms Destination = %q", got)
	}
	if got := f.e.Destination(u, MethodTOTP, ""); got != "" {
		t.Fatalf("totp Destination = %q", got)
	}

	// Enrolling a method again is refused before anything is sent.
	f.clk.Advance(time.Minute)
	n := f.ob.count()
	for _, method := range []string{MethodEmail, MethodSMS} {
		_, err := f.e.SendCode(ctx, a, CodeRequest{Method: method, Purpose: PurposeEnrol, Flow: "x", To: bobMail}, f.ob.deliver)
		if !errors.Is(err, ErrAlreadyEnrolled) {
			t.Fatalf("enrolling %s again: %v", method, err)
		}
	}
	if f.ob.count() != n {
		t.Fatal("code sent for an already enrolled method")
	}

	// Verification texts the enrolled number, whatever To says.
	pc, d = f.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v", To: bobPhone})
	if d.To != alicePhone || pc.Purpose != PurposeVerify {
		t.Fatalf("verify sms: %+v", d)
	}
	if _, m, err := f.e.VerifyCode(ctx, a, "v", d.Code); err != nil || m != MethodSMS {
		t.Fatalf("verify: %v %q", err, m)
	}
	if f.count("enrol_confirm", "result", "success") != 2 {
		t.Fatal("enrolments not audited")
	}
}

// Email that follows the identity stores no address: codes go to the
// address the identity has when they are sent.
func TestCodeEmailFromIdentity(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	u := f.enrolCode(a, MethodEmail, "alice@old.example", true)
	if !u.Email.FromIdentity || len(u.Email.Destination) != 0 || u.Epoch != 1 {
		t.Fatalf("email method %+v", u.Email)
	}
	if got := f.e.Destination(u, MethodEmail, "alice@new.example"); got != "a•••@new.example" {
		t.Fatalf("Destination = %q", got)
	}
	if got := f.e.Destination(u, MethodEmail, ""); got != "" {
		t.Fatalf("Destination without identity address = %q", got)
	}

	pc, d := f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v", To: "alice@new.example"})
	if d.To != "alice@new.example" || pc.Masked != "a•••@new.example" {
		t.Fatalf("code went to %q (%q), want the identity's current address", d.To, pc.Masked)
	}
	if _, m, err := f.e.VerifyCode(ctx, a, "v", d.Code); err != nil || m != MethodEmail {
		t.Fatalf("verify: %v", err)
	}

	// With no identity address there is nowhere to send it; that uses up
	// neither the cooldown nor a delivery.
	f.clk.Advance(time.Minute)
	n := f.ob.count()
	_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	if !errors.Is(err, ErrNoDestination) || f.ob.count() != n {
		t.Fatalf("no identity address: %v, %d deliveries", err, f.ob.count()-n)
	}
	f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v", To: "alice@newer.example"})

	// An enrolment needs somewhere to send to.
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "s"}, f.ob.deliver)
	if !errors.Is(err, ErrNoDestination) {
		t.Fatalf("enrolment without destination: %v", err)
	}
	// FromIdentity means nothing for SMS: the number is stored.
	f.clk.Advance(time.Minute)
	u = f.enrolCode(a, MethodSMS, alicePhone, true)
	if u.SMS.FromIdentity || len(u.SMS.Destination) == 0 || u.Epoch != 1 {
		t.Fatalf("sms method %+v", u.SMS)
	}
}

func TestCodeMethodsOrderAndDefault(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrol("alice") // TOTP first: epoch 1
	u := f.enrolCode(a, MethodSMS, alicePhone, false)
	u = f.enrolCode(a, MethodEmail, aliceMail, false)
	if u.Epoch != 1 {
		t.Fatalf("epoch %d after adding methods, want 1", u.Epoch)
	}
	if got := u.Methods(); !slices.Equal(got, []string{MethodTOTP, MethodEmail, MethodSMS}) || u.DefaultMethod() != MethodTOTP {
		t.Fatalf("methods %v default %q", got, u.DefaultMethod())
	}
	for _, tc := range []struct {
		def  string
		want []string
	}{
		{MethodSMS, []string{MethodSMS, MethodTOTP, MethodEmail}},
		{MethodEmail, []string{MethodEmail, MethodTOTP, MethodSMS}},
		{MethodTOTP, []string{MethodTOTP, MethodEmail, MethodSMS}},
	} {
		u, err := f.e.SetDefault(ctx, a, tc.def)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Methods(); !slices.Equal(got, tc.want) || u.DefaultMethod() != tc.def || u.Default != tc.def {
			t.Fatalf("default %s: methods %v default %q", tc.def, got, u.DefaultMethod())
		}
		if s, _ := f.e.State(ctx, "alice"); s.Default != tc.def {
			t.Fatalf("default %s not stored", tc.def)
		}
	}
	if f.count("default_method", "result", "success") != 3 {
		t.Fatal("default changes not audited")
	}

	b := Actor{User: "bob", IP: "192.0.2.2"}
	f.enrolCode(b, MethodSMS, bobPhone, false)
	for _, m := range []string{MethodTOTP, MethodEmail, "bogus", ""} {
		if _, err := f.e.SetDefault(ctx, b, m); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("SetDefault(%q) without the method: %v", m, err)
		}
	}
	if u, _ := f.e.State(ctx, "bob"); u.Default != "" || !slices.Equal(u.Methods(), []string{MethodSMS}) {
		t.Fatalf("bob %+v methods %v", u, u.Methods())
	}

	// A default that is no longer enrolled falls back to the strongest.
	u = &User{Email: &CodeMethod{}, SMS: &CodeMethod{}, Default: MethodTOTP}
	if u.DefaultMethod() != MethodEmail || !slices.Equal(u.Methods(), []string{MethodEmail, MethodSMS}) {
		t.Fatalf("stale default: %q %v", u.DefaultMethod(), u.Methods())
	}
	if (&User{}).DefaultMethod() != "" || len((&User{}).Methods()) != 0 || (*User)(nil).Has(MethodSMS) || u.Has("bogus") {
		t.Fatal("empty user has methods")
	}
}

func TestCodeVerifyHappyPath(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.clk.Advance(time.Hour)

	c := f.sendVerify(a, MethodEmail, "v", "")
	for range 4 {
		if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("wrong code: %v", err)
		}
	}
	if n := f.failures("alice"); n != "4" {
		t.Fatalf("failure count %s, want 4", n)
	}
	f.clk.Advance(10 * time.Second)
	u, m, err := f.e.VerifyCode(ctx, a, "v", c[:3]+" "+c[3:])
	if err != nil || m != MethodEmail {
		t.Fatalf("verify: %v %q", err, m)
	}
	if !u.Email.LastUsed.Equal(f.clk.Now().UTC()) {
		t.Fatalf("LastUsed %v, want %v", u.Email.LastUsed, f.clk.Now().UTC())
	}
	if s, _ := f.e.State(ctx, "alice"); !s.Email.LastUsed.Equal(f.clk.Now().UTC()) {
		t.Fatal("LastUsed not stored")
	}
	if n := f.failures("alice"); n != "0" {
		t.Fatalf("failure count %s after success, want cleared", n)
	}
	if f.count("verify", "result", "success") != 1 || f.count("verify", "reason", "incorrect") != 4 {
		t.Fatal("verification not audited")
	}
	// Used once (RP-6).
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("code reused: %v", err)
	}

	// The cleared counter allows four more wrong codes without a lockout.
	f.clk.Advance(time.Minute)
	c = f.sendVerify(a, MethodEmail, "v", "")
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c[:2]+"-"+c[2:4]+"-"+c[4:]); err != nil {
		t.Fatalf("hyphenated code: %v", err)
	}
	f.clk.Advance(time.Minute)
	c = f.sendVerify(a, MethodEmail, "v", "")
	for range 4 {
		if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("not expected to lock: %v", err)
		}
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err != nil {
		t.Fatalf("right code after 4 wrong: %v", err)
	}

	// A method removed after the code was sent cannot be passed with it.
	f.clk.Advance(time.Minute)
	c = f.sendVerify(a, MethodEmail, "v", "")
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error { u.Email = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("code for a removed method: %v", err)
	}
	// Nor can a code be asked for.
	f.clk.Advance(time.Minute)
	n := f.ob.count()
	if _, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver); !errors.Is(err, ErrNotEnrolled) || f.ob.count() != n {
		t.Fatalf("send for a method not enrolled: %v", err)
	}
}

func TestCodeRequestValidation(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	for _, req := range []CodeRequest{
		{Method: MethodTOTP, Purpose: PurposeVerify, Flow: "v"},
		{Method: "", Purpose: PurposeVerify, Flow: "v"},
		{Method: "EMAIL", Purpose: PurposeVerify, Flow: "v"},
		{Method: MethodEmail, Purpose: "", Flow: "v"},
		{Method: MethodEmail, Purpose: "reset", Flow: "v"},
	} {
		if _, err := f.e.SendCode(ctx, a, req, f.ob.deliver); err == nil {
			t.Errorf("%+v accepted", req)
		}
	}
	if f.ob.count() != 1 {
		t.Fatalf("%d deliveries for invalid requests", f.ob.count()-1)
	}
	// None of them took the cooldown.
	f.sendVerify(a, MethodEmail, "v", "")
}

// The store never holds a code, an address or a number in the clear, and
// the code record expires with the code.
func TestCodeStoreHoldsNoCodeOrDestination(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(a, MethodSMS, alicePhone, false)
	// bob's enrolment is pending: its record carries the sealed address.
	b := Actor{User: "bob", IP: "192.0.2.2"}
	f.send(b, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "fb", To: bobMail})
	// alice has a live verification code.
	sent := f.clk.Now()
	f.sendVerify(a, MethodSMS, "v", "")
	// carol's email follows her identity: the address passes through only.
	c := Actor{User: "carol", IP: "192.0.2.3"}
	f.enrolCode(c, MethodEmail, bobMail, true)
	f.sendVerify(c, MethodEmail, "vc", bobMail)

	codes := f.ob.all()
	check := func(where string, data []byte) {
		t.Helper()
		s := string(data)
		for _, d := range codes {
			if containsCode(s, d.Code) {
				t.Errorf("%s holds code %s: %q", where, d.Code, s)
			}
		}
		for _, dest := range clearDestinations {
			if strings.Contains(s, dest) {
				t.Errorf("%s holds %q in the clear: %q", where, dest, s)
			}
		}
	}
	for _, key := range []string{codeKey("alice"), codeKey("bob"), codeKey("carol"), userKey("alice"), userKey("bob"), userKey("carol")} {
		raw, err := f.st.Get(ctx, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		check(key, raw)
	}
	if rec := f.codeRecord("bob"); rec == nil || len(rec.Dest) == 0 || rec.Masked != "b•••@example.org" {
		t.Fatalf("bob's pending record %+v", rec)
	}

	// Every key and value in the database file, counters included.
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var codeExpiry int64
	keys := 0
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error {
				keys++
				check("key "+string(k), k)
				check("value of "+string(k), v)
				if string(k) == codeKey("alice") && len(v) >= 8 {
					codeExpiry = int64(binary.BigEndian.Uint64(v))
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys < 10 {
		t.Fatalf("only %d keys scanned", keys)
	}
	// EX-1: the record carries the code's TTL in the store itself.
	if want := sent.Add(5 * time.Minute).UnixNano(); codeExpiry != want {
		t.Fatalf("code record expires at %d, want %d (sent + SMS TTL)", codeExpiry, want)
	}
}

// The audit trail names where codes went, masked, and never holds a code.
func TestCodeAuditHasMaskedDestinationsAndNoCode(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 20})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(a, MethodSMS, alicePhone, false)
	c := f.sendVerify(a, MethodSMS, "v", "")
	_, _ = f.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver) // cooldown
	_, _, _ = f.e.VerifyCode(ctx, a, "v", wrong(c))
	_, _, _ = f.e.VerifyCode(ctx, a, "other-flow", c)
	_, _, _ = f.e.ConfirmCode(ctx, a, "v", c)
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err != nil {
		t.Fatal(err)
	}
	f.ob.setFail(&notify.Error{Class: notify.ClassThrottled, Err: errors.New("rate exceeded")})
	_, _ = f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	f.ob.setFail(nil)
	f.clk.Advance(failedSendWait)
	c = f.sendVerify(a, MethodEmail, "v", "")
	for range 5 {
		_, _, _ = f.e.VerifyCode(ctx, a, "v", wrong(c)) // voids it
	}

	lines := f.auditText()
	for _, d := range f.ob.all() {
		for _, l := range lines {
			if containsCode(l, d.Code) {
				t.Errorf("audit entry holds code %s: %s", d.Code, l)
			}
		}
	}
	for _, dest := range clearDestinations {
		for _, l := range lines {
			if strings.Contains(l, dest) {
				t.Errorf("audit entry holds %q in the clear: %s", dest, l)
			}
		}
	}
	if n := f.count("code_send", "to", Mask(MethodEmail, aliceMail)); n < 3 {
		t.Errorf("%d code_send entries with the masked address, want at least 3", n)
	}
	if n := f.count("code_send", "to", Mask(MethodSMS, alicePhone)); n < 2 {
		t.Errorf("%d code_send entries with the masked number, want at least 2", n)
	}
	if f.count("enrol_confirm", "to", Mask(MethodSMS, alicePhone)) != 1 {
		t.Error("enrolment confirmation does not name the masked number")
	}
	if f.count("code_send", "reason", LimitCooldown) != 1 || f.count("code_send", "error_class", notify.ClassThrottled) != 1 {
		t.Error("refused or failed sends not audited")
	}
	for _, r := range []string{"incorrect", "expired", "void"} {
		if f.count("verify", "reason", r) == 0 {
			t.Errorf("no verify failure with reason %s", r)
		}
	}
	if f.count("enrol_confirm", "reason", "expired") != 1 {
		t.Error("verification code offered as an enrolment code not audited")
	}
}

// RS-1: a resend is a new code and the old one stops working.
func TestCodeResendReplacesOldCode(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	c1 := f.sendVerify(a, MethodEmail, "v", "")
	f.clk.Advance(time.Minute)
	c2 := f.sendVerifyNot(a, MethodEmail, "v", "", c1)
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c1); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("old code after resend: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c2); err != nil {
		t.Fatalf("new code: %v", err)
	}

	// The same for an enrolment resent with ResendEnrolment.
	b := Actor{User: "bob", IP: "192.0.2.2"}
	_, d1 := f.send(b, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "fb", To: bobPhone})
	n := f.ob.count()
	_, err := f.e.ResendEnrolment(ctx, b, "fb", f.ob.deliver)
	wantLimited(t, err, LimitCooldown, f.clk.Now().Add(time.Minute))
	if _, err := f.e.ResendEnrolment(ctx, b, "other-flow", f.ob.deliver); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("resend from another flow: %v", err)
	}
	if _, err := f.e.ResendEnrolment(ctx, a, "fb", f.ob.deliver); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("resend of another user's enrolment: %v", err)
	}
	if f.ob.count() != n {
		t.Fatal("refused resend delivered a code")
	}
	var d2 Delivery
	for {
		f.clk.Advance(time.Minute)
		pc, err := f.e.ResendEnrolment(ctx, b, "fb", f.ob.deliver)
		if err != nil {
			t.Fatalf("ResendEnrolment: %v", err)
		}
		d2 = f.ob.last()
		if d2.To != bobPhone || d2.Purpose != PurposeEnrol || d2.Method != MethodSMS || pc.Masked != Mask(MethodSMS, bobPhone) {
			t.Fatalf("resent enrolment %+v %+v", d2, pc)
		}
		if d2.Code != d1.Code {
			break
		}
	}
	if _, _, err := f.e.ConfirmCode(ctx, b, "fb", d1.Code); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("old enrolment code after resend: %v", err)
	}
	u, _, err := f.e.ConfirmCode(ctx, b, "fb", d2.Code)
	if err != nil {
		t.Fatalf("new enrolment code: %v", err)
	}
	if got := f.e.Destination(u, MethodSMS, ""); got != Mask(MethodSMS, bobPhone) {
		t.Fatalf("enrolled %q", got)
	}
	if _, err := f.e.ResendEnrolment(ctx, b, "fb", f.ob.deliver); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("resend after confirmation: %v", err)
	}
}

// ResendEnrolment of an identity-following email keeps following it.
func TestCodeResendEnrolmentFromIdentity(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "f", To: aliceMail, FromIdentity: true})
	f.clk.Advance(time.Minute)
	if _, err := f.e.ResendEnrolment(ctx, a, "f", f.ob.deliver); err != nil {
		t.Fatal(err)
	}
	if d := f.ob.last(); d.To != aliceMail {
		t.Fatalf("resent to %q", d.To)
	}
	u, _, err := f.e.ConfirmCode(ctx, a, "f", f.ob.last().Code)
	if err != nil || !u.Email.FromIdentity || len(u.Email.Destination) != 0 {
		t.Fatalf("confirm: %v %+v", err, u.Email)
	}
}

// RS-2: a resend does not reset the failure count.
func TestCodeResendKeepsFailureCount(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	c := f.sendVerify(a, MethodEmail, "v", "")
	for range 4 {
		if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
			t.Fatal(err)
		}
	}
	f.clk.Advance(time.Minute)
	c = f.sendVerify(a, MethodEmail, "v", "")
	if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !isLocked(err) {
		t.Fatalf("5th wrong code after a resend: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !isLocked(err) {
		t.Fatalf("right code while locked: %v", err)
	}
	if f.count("lockout", "result", "account_locked") != 1 {
		t.Fatal("lockout not audited")
	}
	// BF-1: one counter for every method. After the ban the code still
	// works if it has not expired.
	f.clk.Advance(15*time.Minute + time.Second)
	c = f.sendVerify(a, MethodEmail, "v", "")
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}

// The failure counter is shared with the authenticator app (BF-1).
func TestCodeFailuresShareCounterWithTOTP(t *testing.T) {
	f := newCodeFixture(t, Config{})
	secret := f.enrol("alice")
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodSMS, alicePhone, false)
	c := f.sendVerify(a, MethodSMS, "v", "")
	for range 2 {
		if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := f.e.VerifyTOTP(ctx, a, wrong(f.code(secret, 0))); !errors.Is(err, ErrCodeInvalid) {
			t.Fatal(err)
		}
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !isLocked(err) {
		t.Fatalf("5th failure across methods: %v", err)
	}
	if _, err := f.e.VerifyTOTP(ctx, a, f.code(secret, 0)); !isLocked(err) {
		t.Fatalf("totp while locked: %v", err)
	}
}

// A code allows CodeAttempts tries, however high the account limit.
func TestCodeVoidAfterAttempts(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 20, CodeAttempts: 5})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)

	c := f.sendVerify(a, MethodEmail, "v", "")
	for i := range 5 {
		_, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c))
		if i < 4 && !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("wrong try %d: %v", i+1, err)
		}
		if i == 4 && !errors.Is(err, ErrCodeVoid) {
			t.Fatalf("wrong try 5: %v, want ErrCodeVoid", err)
		}
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err == nil || isLocked(err) {
		t.Fatalf("right code after the code was void: %v", err)
	}
	if _, err := f.e.PendingCode(ctx, a, "v", PurposeVerify); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("void code still pending: %v", err)
	}
	if f.count("verify", "reason", "void") != 1 {
		t.Fatal("void code not audited")
	}

	// Tries from another flow and malformed input do not use up the code's
	// tries (they count toward the account limit only); wrong codes do.
	f.clk.Advance(time.Minute)
	c = f.sendVerify(a, MethodEmail, "v", "")
	for range 3 {
		if _, _, err := f.e.VerifyCode(ctx, a, "elsewhere", c); !errors.Is(err, ErrCodeExpired) {
			t.Fatalf("other flow: %v", err)
		}
		if _, _, err := f.e.VerifyCode(ctx, a, "v", "12ab56"); !errors.Is(err, ErrMalformed) {
			t.Fatalf("malformed: %v", err)
		}
	}
	for range 4 {
		if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
			t.Fatal(err)
		}
	}
	if rec := f.codeRecord("alice"); rec == nil || rec.Tries != 4 {
		t.Fatalf("record after 4 wrong tries: %+v", rec)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err != nil {
		t.Fatalf("right code on the last try: %v", err)
	}

	// One try only.
	g := newCodeFixture(t, Config{MaxFailures: 20, CodeAttempts: 1})
	g.enrolCode(a, MethodSMS, alicePhone, false)
	c = g.sendVerify(a, MethodSMS, "v", "")
	if _, _, err := g.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeVoid) {
		t.Fatalf("CodeAttempts 1, wrong code: %v", err)
	}
	if _, _, err := g.e.VerifyCode(ctx, a, "v", c); err == nil {
		t.Fatal("right code accepted after the only try")
	}
}

// EX-1: codes expire after their method's TTL, in the engine and the store.
func TestCodeExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		method string
		to     string
		ttl    time.Duration
	}{
		{"email default", Config{}, MethodEmail, aliceMail, 10 * time.Minute},
		{"sms default", Config{}, MethodSMS, alicePhone, 5 * time.Minute},
		{"email custom", Config{EmailCodeTTL: 3 * time.Minute, SMSCodeTTL: 7 * time.Minute}, MethodEmail, aliceMail, 3 * time.Minute},
		{"sms custom", Config{EmailCodeTTL: 3 * time.Minute, SMSCodeTTL: 2 * time.Minute}, MethodSMS, alicePhone, 2 * time.Minute},
		{"sms longest", Config{SMSCodeTTL: 10 * time.Minute}, MethodSMS, alicePhone, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCodeFixture(t, tc.cfg)
			a := Actor{User: "alice", IP: "192.0.2.1"}
			f.enrolCode(a, tc.method, tc.to, false)
			f.nextHour() // room under the hourly caps

			sent := f.clk.Now()
			pc, d := f.send(a, CodeRequest{Method: tc.method, Purpose: PurposeVerify, Flow: "v"})
			if d.TTL != tc.ttl || !pc.Expires.Equal(sent.Add(tc.ttl)) {
				t.Fatalf("TTL %v, expires %v; want %v", d.TTL, pc.Expires, tc.ttl)
			}
			f.clk.Advance(tc.ttl - time.Second)
			if _, err := f.st.Get(ctx, codeKey("alice")); err != nil {
				t.Fatalf("record gone before the TTL: %v", err)
			}
			if _, _, err := f.e.VerifyCode(ctx, a, "v", d.Code); err != nil {
				t.Fatalf("at TTL-1s: %v", err)
			}

			c := f.sendVerify(a, tc.method, "v", "")
			f.clk.Advance(tc.ttl + time.Second)
			if _, err := f.st.Get(ctx, codeKey("alice")); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("store record at TTL+1s: %v", err)
			}
			if _, err := f.e.PendingCode(ctx, a, "v", PurposeVerify); !errors.Is(err, ErrCodeExpired) {
				t.Fatalf("pending at TTL+1s: %v", err)
			}
			if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrCodeExpired) {
				t.Fatalf("at TTL+1s: %v", err)
			}

			c = f.sendVerify(a, tc.method, "v", "")
			f.clk.Advance(tc.ttl)
			if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrCodeExpired) {
				t.Fatalf("at exactly TTL: %v", err)
			}

			// Enrolment codes expire the same way.
			b := Actor{User: "bob", IP: "192.0.2.2"}
			_, d = f.send(b, CodeRequest{Method: tc.method, Purpose: PurposeEnrol, Flow: "e", To: tc.to})
			if d.TTL != tc.ttl {
				t.Fatalf("enrolment TTL %v", d.TTL)
			}
			f.clk.Advance(tc.ttl + time.Second)
			if _, err := f.e.ResendEnrolment(ctx, b, "e", f.ob.deliver); !errors.Is(err, ErrCodeExpired) {
				t.Fatalf("resend of an expired enrolment: %v", err)
			}
			if _, _, err := f.e.ConfirmCode(ctx, b, "e", d.Code); !errors.Is(err, ErrCodeExpired) {
				t.Fatalf("enrolment at TTL+1s: %v", err)
			}
			if u, _ := f.e.State(ctx, "bob"); u.Enrolled() {
				t.Fatal("enrolled with an expired code")
			}
		})
	}
}

// A wrong try rewrites the record; it must keep the original expiry.
func TestCodeWrongTryKeepsExpiry(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 20})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodSMS, alicePhone, false)
	c := f.sendVerify(a, MethodSMS, "v", "")
	f.clk.Advance(4 * time.Minute)
	if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute + time.Second)
	if _, err := f.st.Get(ctx, codeKey("alice")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a wrong try extended the record's life: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("after expiry: %v", err)
	}
}

// RP-6: a code works only in the browser that asked for it, only for the
// user it was sent to, and only once.
func TestCodeBoundToFlowAndUser(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 20})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	b := Actor{User: "bob", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(b, MethodEmail, bobMail, false)

	ca := f.sendVerify(a, MethodEmail, "flow-A", "")
	if _, _, err := f.e.VerifyCode(ctx, a, "flow-B", ca); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("code from flow A in flow B: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "", ca); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("code from flow A with no flow: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "flow-A", ca); err != nil {
		t.Fatalf("code in its own flow: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "flow-A", ca); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("reuse after success: %v", err)
	}

	// bob has his own pending code; alice's is refused for him.
	f.clk.Advance(time.Minute)
	ca = f.sendVerify(a, MethodEmail, "flow-A", "")
	cb := f.sendVerifyNot(b, MethodEmail, "flow-A", "", ca)
	if _, _, err := f.e.VerifyCode(ctx, b, "flow-A", ca); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("alice's code for bob: %v", err)
	}
	if _, _, err := f.e.ConfirmCode(ctx, b, "flow-A", ca); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("alice's code as bob's enrolment: %v", err)
	}
	// alice's record copied under bob's key: the code is bound to alice.
	raw, err := f.st.Get(ctx, codeKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	rawB, _ := f.st.Get(ctx, codeKey("bob"))
	if err := f.st.Set(ctx, codeKey("bob"), raw, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.e.VerifyCode(ctx, b, "flow-A", ca); !errors.Is(err, ErrCodeInvalid) {
		t.Fatalf("alice's record and code under bob's key: %v", err)
	}
	if err := f.st.Set(ctx, codeKey("bob"), rawB, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, m, err := f.e.VerifyCode(ctx, b, "flow-A", cb); err != nil || m != MethodEmail {
		t.Fatalf("bob's own code: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "flow-A", ca); err != nil {
		t.Fatalf("alice's code after bob's tries: %v", err)
	}

	// alice's sealed address copied into bob's record does not open.
	alice, _, _ := f.e.loadUser(ctx, "alice")
	if _, err := f.e.updateUser(ctx, "bob", func(u *User) error { u.Email.Destination = alice.Email.Destination; return nil }); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	n := f.ob.count()
	if _, err := f.e.SendCode(ctx, b, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "x"}, f.ob.deliver); !errors.Is(err, ErrUnreadable) || f.ob.count() != n {
		t.Fatalf("send with another user's sealed address: %v", err)
	}
	bob, _, _ := f.e.loadUser(ctx, "bob")
	if got := f.e.Destination(bob, MethodEmail, ""); got != "" {
		t.Fatalf("Destination with another user's sealed address = %q", got)
	}
}

// Enrolment and challenge codes do not stand in for each other.
func TestCodePurposesDoNotMix(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 20})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)

	_, d := f.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "f", To: alicePhone})
	if _, _, err := f.e.VerifyCode(ctx, a, "f", d.Code); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("enrolment code passed the challenge: %v", err)
	}
	if _, err := f.e.PendingCode(ctx, a, "f", PurposeEnrol); err != nil {
		t.Fatalf("enrolment code gone after a refused use: %v", err)
	}
	if _, m, err := f.e.ConfirmCode(ctx, a, "f", d.Code); err != nil || m != MethodSMS {
		t.Fatalf("enrolment code: %v", err)
	}

	c := f.sendVerify(a, MethodEmail, "f", "")
	if _, _, err := f.e.ConfirmCode(ctx, a, "f", c); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("challenge code confirmed an enrolment: %v", err)
	}
	if _, err := f.e.ResendEnrolment(ctx, a, "f", f.ob.deliver); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("challenge code resent as an enrolment: %v", err)
	}
	if _, err := f.e.PendingCode(ctx, a, "f", PurposeVerify); err != nil {
		t.Fatalf("challenge code gone after a refused use: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "f", c); err != nil {
		t.Fatalf("challenge code: %v", err)
	}
	if u, _ := f.e.State(ctx, "alice"); !u.Has(MethodSMS) || !u.Has(MethodEmail) || u.Epoch != 1 {
		t.Fatalf("user %+v", u)
	}
}

// A method enrolled elsewhere meanwhile is not enrolled twice.
func TestCodeConfirmAlreadyEnrolled(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	_, d := f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "f", To: aliceMail})
	other := &CodeMethod{FromIdentity: true}
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error { u.Email = other; u.Epoch = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.e.ConfirmCode(ctx, a, "f", d.Code); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Fatalf("confirm for a method enrolled meanwhile: %v", err)
	}
	if u, _ := f.e.State(ctx, "alice"); !u.Email.FromIdentity || u.Epoch != 7 {
		t.Fatalf("existing method replaced: %+v", u.Email)
	}
}

func TestCodeResendCooldown(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(a, MethodSMS, alicePhone, false)

	t0 := f.clk.Now()
	pc, _ := f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"})
	if !pc.ResendAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("ResendAt %v", pc.ResendAt)
	}
	f.clk.Advance(30 * time.Second)
	n := f.ob.count()
	_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitCooldown, t0.Add(time.Minute))
	if f.ob.count() != n {
		t.Fatal("code sent during the cooldown")
	}
	if f.count("code_send", "reason", LimitCooldown) != 1 {
		t.Fatal("cooldown refusal not audited")
	}
	// Another method, and another user, are not held up.
	f.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v"})
	f.send(Actor{User: "bob", IP: "192.0.2.1"}, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "b", To: bobMail})

	f.clk.Advance(29 * time.Second)
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitCooldown, t0.Add(time.Minute))
	f.clk.Advance(time.Second)
	f.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"})

	// A custom cooldown.
	g := newCodeFixture(t, Config{ResendCooldown: 10 * time.Second})
	g.enrolCode(a, MethodEmail, aliceMail, false)
	t1 := g.clk.Now()
	pc, _ = g.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"})
	if !pc.ResendAt.Equal(t1.Add(10 * time.Second)) {
		t.Fatalf("ResendAt %v", pc.ResendAt)
	}
	g.clk.Advance(9 * time.Second)
	_, err = g.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, g.ob.deliver)
	wantLimited(t, err, LimitCooldown, t1.Add(10*time.Second))
	g.clk.Advance(time.Second)
	g.send(a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"})
}

func TestCodeHourlyCapPerUser(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(a, MethodSMS, alicePhone, false)
	f.nextHour()
	end := f.hourEnd()

	for i := range 5 {
		method := MethodEmail
		if i%2 == 1 {
			method = MethodSMS
		}
		f.sendVerify(a, method, "v", "")
		f.clk.Advance(time.Minute)
	}
	n := f.ob.count()
	_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitUser, end)
	// The refusal did not take the cooldown; another method is capped too.
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitUser, end)
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitUser, end)
	if f.ob.count() != n {
		t.Fatal("code sent over the hourly cap")
	}
	if f.count("code_send", "reason", LimitUser) != 3 {
		t.Fatal("cap refusals not audited")
	}
	// Other users are not affected.
	f.send(Actor{User: "bob", IP: "192.0.2.1"}, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "b", To: bobMail})

	f.clk.Set(end.Add(-time.Second))
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitUser, end)
	f.clk.Set(end)
	f.sendVerify(a, MethodEmail, "v", "")
}

func TestCodeHourlyCapPerDestination(t *testing.T) {
	f := newCodeFixture(t, Config{SendsPerDestination: 3})
	f.nextHour()
	end := f.hourEnd()
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodSMS, alicePhone, false)
	for _, user := range []string{"bob", "carol"} {
		f.send(Actor{User: user, IP: "192.0.2.2"}, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: alicePhone})
	}
	// The number has had three confirmation codes this hour, from three
	// users: a fourth account cannot send it another.
	n := f.ob.count()
	_, err := f.e.SendCode(ctx, Actor{User: "dave"}, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: alicePhone}, f.ob.deliver)
	wantLimited(t, err, LimitDestination, end)
	if f.ob.count() != n {
		t.Fatal("code sent over the destination cap")
	}
	// Those did not use up the owner's own sign-in codes to it.
	for range 3 {
		f.sendVerify(a, MethodSMS, "v", "")
		f.clk.Advance(time.Minute)
	}
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitDestination, end)
	// Another number is fine, at once (the refusal took no cooldown).
	f.send(Actor{User: "dave"}, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: bobPhone})

	// Addresses are counted whatever their case.
	for i, to := range []string{"Carol@Example.com", "carol@example.com", "CAROL@EXAMPLE.COM"} {
		f.send(Actor{User: fmt.Sprintf("mail%d", i)}, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: to})
	}
	_, err = f.e.SendCode(ctx, Actor{User: "mail9"}, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: "carol@example.COM"}, f.ob.deliver)
	wantLimited(t, err, LimitDestination, end)

	f.clk.Set(end)
	f.sendVerify(a, MethodSMS, "v", "")
}

func TestCodeHourlyCapPerAddress(t *testing.T) {
	f := newCodeFixture(t, Config{SendsPerAddress: 3})
	f.nextHour()
	end := f.hourEnd()
	sendFrom := func(user, ip string) error {
		_, err := f.e.SendCode(ctx, Actor{User: user, IP: ip}, CodeRequest{
			Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: user + "@example.net",
		}, f.ob.deliver)
		return err
	}
	for i := range 3 {
		if err := sendFrom(fmt.Sprintf("u%d", i), "192.0.2.7"); err != nil {
			t.Fatal(err)
		}
	}
	wantLimited(t, sendFrom("u3", "192.0.2.7"), LimitAddress, end)
	wantLimited(t, sendFrom("u4", "::ffff:192.0.2.7"), LimitAddress, end)
	if err := sendFrom("u5", "192.0.2.8"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	if err := sendFrom("u6", ""); err != nil {
		t.Fatalf("no address: %v", err)
	}

	// IPv6 addresses in one /64 count together.
	for i, ip := range []string{"2001:db8:aa:bb::1", "2001:db8:aa:bb::2", "2001:db8:aa:bb:1234:5678:9abc:def0"} {
		if err := sendFrom(fmt.Sprintf("v%d", i), ip); err != nil {
			t.Fatal(err)
		}
	}
	wantLimited(t, sendFrom("v3", "2001:db8:aa:bb:ffff::9"), LimitAddress, end)
	if err := sendFrom("v4", "2001:db8:aa:bc::1"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if f.count("code_send", "reason", LimitAddress) != 3 {
		t.Fatal("address refusals not audited")
	}
	f.clk.Set(end)
	if err := sendFrom("u3", "192.0.2.7"); err != nil {
		t.Fatalf("next hour: %v", err)
	}

	// Default 20.
	g := newCodeFixture(t, Config{})
	g.nextHour()
	for i := range 20 {
		if _, err := g.e.SendCode(ctx, Actor{User: fmt.Sprintf("w%d", i), IP: "198.51.100.1"},
			CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: fmt.Sprintf("w%d@example.net", i)}, g.ob.deliver); err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
	}
	_, err := g.e.SendCode(ctx, Actor{User: "w20", IP: "198.51.100.1"},
		CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: "w20@example.net"}, g.ob.deliver)
	wantLimited(t, err, LimitAddress, g.hourEnd())

	// Negative: off.
	h := newCodeFixture(t, Config{SendsPerAddress: -1})
	h.nextHour()
	for i := range 40 {
		if _, err := h.e.SendCode(ctx, Actor{User: fmt.Sprintf("x%d", i), IP: "198.51.100.1"},
			CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: fmt.Sprintf("x%d@example.net", i)}, h.ob.deliver); err != nil {
			t.Fatalf("address cap applied although off, send %d: %v", i+1, err)
		}
	}
}

func TestCodeHourlySMSSiteCap(t *testing.T) {
	f := newCodeFixture(t, Config{SMSPerHour: 3})
	f.nextHour()
	end := f.hourEnd()
	sms := func(i int) error {
		_, err := f.e.SendCode(ctx, Actor{User: fmt.Sprintf("u%d", i), IP: fmt.Sprintf("192.0.2.%d", i)}, CodeRequest{
			Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: fmt.Sprintf("+8190000000%02d", i),
		}, f.ob.deliver)
		return err
	}
	for i := range 3 {
		if err := sms(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < 8; i++ {
		wantLimited(t, sms(i), LimitSMSSite, end)
	}
	if f.ob.count() != 3 {
		t.Fatalf("%d texts sent, cap 3", f.ob.count())
	}
	// Email is not limited by the SMS budget.
	f.send(Actor{User: "u3", IP: "192.0.2.3"}, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "m", To: aliceMail})

	alerts := func() int {
		n := 0
		for _, e := range f.audit.FilterMessage("site-wide SMS limit reached").All() {
			m := e.ContextMap()
			if e.Level != zapcore.ErrorLevel || m["event"] != "sms_site_limit" || m["limit"] != int64(3) {
				t.Fatalf("alert entry %v %v", e.Level, m)
			}
			n++
		}
		return n
	}
	if n := alerts(); n != 1 {
		t.Fatalf("%d site-wide alerts in the hour, want exactly 1", n)
	}
	if f.count("code_send", "reason", LimitSMSSite) != 5 {
		t.Fatal("site cap refusals not audited")
	}

	f.clk.Set(end)
	for i := 3; i < 6; i++ {
		if err := sms(i); err != nil {
			t.Fatalf("next hour: %v", err)
		}
	}
	wantLimited(t, sms(6), LimitSMSSite, end.Add(time.Hour))
	wantLimited(t, sms(7), LimitSMSSite, end.Add(time.Hour))
	if n := alerts(); n != 2 {
		t.Fatalf("%d alerts over two hours, want 2", n)
	}
}

// RS-8: a failed delivery uses up nothing and says only its class.
func TestCodeDeliveryFailure(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	c1 := f.sendVerify(a, MethodEmail, "v", "")
	f.clk.Advance(time.Minute)
	before, err := f.st.Get(ctx, codeKey("alice"))
	if err != nil {
		t.Fatal(err)
	}

	cause := &notify.Error{Class: notify.ClassThrottled, Err: errors.New("Rate exceeded")}
	f.ob.setFail(cause)
	var failedCodes []string
	for i := range 2 { // the second try after the short wait a failure leaves
		if i > 0 {
			_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
			wantLimited(t, err, LimitCooldown, f.clk.Now().Add(failedSendWait))
			f.clk.Advance(failedSendWait)
		}
		_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
		var de *DeliveryError
		if !errors.As(err, &de) || de.Class != notify.ClassThrottled {
			t.Fatalf("try %d: %v, want DeliveryError throttled", i+1, err)
		}
		var ne *notify.Error
		if !errors.As(err, &ne) || ne != cause {
			t.Fatalf("try %d: notify error not wrapped: %v", i+1, err)
		}
		failedCodes = append(failedCodes, f.ob.last().Code)
		if containsCode(err.Error(), f.ob.last().Code) {
			t.Fatalf("error text holds the code: %v", err)
		}
		after, err := f.st.Get(ctx, codeKey("alice"))
		if err != nil || string(after) != string(before) {
			t.Fatalf("try %d: code record changed by a failed delivery: %v", i+1, err)
		}
	}
	if f.count("code_send", "error_class", notify.ClassThrottled) != 2 || f.count("code_send", "result", "failure") != 2 {
		t.Fatal("failed deliveries not audited")
	}
	for _, e := range f.audit.FilterMessage("code_send").All() {
		m := e.ContextMap()
		if m["result"] == "failure" && m["to"] != "a•••@example.com" {
			t.Fatalf("failure entry %v", m)
		}
	}
	for _, l := range f.auditText() {
		for _, c := range failedCodes {
			if containsCode(l, c) {
				t.Fatalf("audit holds the undelivered code: %s", l)
			}
		}
	}
	// Codes that were not delivered do not work; the earlier one does.
	for _, c := range failedCodes {
		if c == c1 {
			continue
		}
		if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("undelivered code: %v", err)
		}
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c1); err != nil {
		t.Fatalf("earlier code after failed resends: %v", err)
	}

	// Sending works again when the sender recovers, after the short wait.
	f.ob.setFail(nil)
	f.clk.Advance(failedSendWait)
	f.sendVerify(a, MethodEmail, "v", "")

	// Other errors are class "other"; an enrolment whose code was not
	// delivered cannot be confirmed.
	f.ob.setFail(errors.New("boom"))
	b := Actor{User: "bob", IP: "192.0.2.2"}
	_, err = f.e.SendCode(ctx, b, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: bobPhone}, f.ob.deliver)
	var de *DeliveryError
	if !errors.As(err, &de) || de.Class != notify.ClassOther {
		t.Fatalf("plain error: %v", err)
	}
	if _, err := f.st.Get(ctx, codeKey("bob")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record stored for an undelivered enrolment code: %v", err)
	}
	if _, _, err := f.e.ConfirmCode(ctx, b, "e", f.ob.last().Code); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("undelivered enrolment code: %v", err)
	}
}

func TestCodeSendRefusedWhenLocked(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	c := f.sendVerify(a, MethodEmail, "v", "")
	for range 5 {
		_, _, _ = f.e.VerifyCode(ctx, a, "v", wrong(c))
	}
	f.clk.Advance(time.Minute)
	n := f.ob.count()
	for _, req := range []CodeRequest{
		{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"},
		{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: alicePhone},
	} {
		if _, err := f.e.SendCode(ctx, a, req, f.ob.deliver); !isLocked(err) {
			t.Fatalf("send while locked: %v", err)
		}
	}
	if f.ob.count() != n {
		t.Fatal("code sent to a locked account")
	}
	f.clk.Advance(15 * time.Minute)
	f.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: alicePhone})

	// ResendEnrolment honours the lock as well.
	g := newCodeFixture(t, Config{})
	g.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: alicePhone})
	for range 5 {
		_, _, _ = g.e.VerifyCode(ctx, a, "v", "000000")
	}
	g.clk.Advance(time.Minute)
	if _, err := g.e.ResendEnrolment(ctx, a, "e", g.ob.deliver); !isLocked(err) {
		t.Fatalf("resend while locked: %v", err)
	}
	if g.ob.count() != 1 {
		t.Fatal("enrolment code resent to a locked account")
	}

	// A locked client address cannot have codes sent either, for any user.
	h := newCodeFixture(t, Config{MaxAddressFailures: 3, MaxFailures: 20})
	ip := "203.0.113.5"
	for i := range 3 {
		_, _, _ = h.e.VerifyCode(ctx, Actor{User: fmt.Sprintf("u%d", i), IP: ip}, "v", "000000")
	}
	_, err := h.e.SendCode(ctx, Actor{User: "bob", IP: ip}, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "e", To: bobMail}, h.ob.deliver)
	if !isLocked(err) || h.ob.count() != 0 {
		t.Fatalf("send from a locked address: %v", err)
	}
}

// CC-5 / RS-3: parallel sends for one user deliver exactly one code.
func TestCodeParallelSendsDeliverOnce(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			f := newCodeFixture(t, Config{})
			a := Actor{User: "alice", IP: "192.0.2.1"}
			f.enrolCode(a, MethodSMS, alicePhone, false)
			var gate chan struct{}
			if hold {
				// The winning delivery is held until every other request
				// has been answered: the cooldown is taken before sending.
				gate = make(chan struct{})
				f.ob.mu.Lock()
				f.ob.gate = gate
				f.ob.mu.Unlock()
			}
			n := f.ob.count()
			start := make(chan struct{})
			results := make(chan error, 20)
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					<-start
					_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
					results <- err
				})
			}
			close(start)
			var errs []error
			if hold {
				for range 19 {
					select {
					case err := <-results:
						errs = append(errs, err)
					case <-time.After(10 * time.Second):
						t.Fatalf("only %d of 19 requests answered while one delivery is in flight", len(errs))
					}
				}
				close(gate)
			}
			wg.Wait()
			close(results)
			for err := range results {
				errs = append(errs, err)
			}
			ok, cooled := 0, 0
			for _, err := range errs {
				var l *LimitedError
				switch {
				case err == nil:
					ok++
				case errors.As(err, &l) && l.Limit == LimitCooldown:
					cooled++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			if ok != 1 || cooled != 19 || f.ob.count()-n != 1 {
				t.Fatalf("%d sent, %d cooldown, %d deliveries; want 1, 19, 1", ok, cooled, f.ob.count()-n)
			}
			if _, _, err := f.e.VerifyCode(ctx, a, "v", f.ob.last().Code); err != nil {
				t.Fatalf("the one code: %v", err)
			}
		})
	}
}

// CC-2: the same right code submitted in parallel succeeds exactly once.
func TestCodeParallelSameCodeAcceptedOnce(t *testing.T) {
	f := newCodeFixture(t, Config{
		MaxFailures: 50, MaxAddressFailures: 1000, ResendCooldown: 10 * time.Second,
		SendsPerUser: 100, SendsPerDestination: 100, SendsPerAddress: -1,
	})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	for round := range 60 {
		purpose := PurposeVerify
		if round%10 == 9 {
			purpose = PurposeEnrol // an SMS enrolment, confirmed in parallel
		}
		var code string
		if purpose == PurposeVerify {
			code = f.sendVerify(a, MethodEmail, "v", "")
		} else {
			_, d := f.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "v", To: alicePhone})
			code = d.Code
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		var bad []error
		for range 10 {
			wg.Go(func() {
				<-start
				var err error
				if purpose == PurposeVerify {
					_, _, err = f.e.VerifyCode(ctx, a, "v", code)
				} else {
					_, _, err = f.e.ConfirmCode(ctx, a, "v", code)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, ErrCodeExpired):
					bad = append(bad, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok != 1 || len(bad) != 0 {
			t.Fatalf("round %d (%s): %d successes, other errors %v; want 1 success", round, purpose, ok, bad)
		}
		if purpose == PurposeEnrol {
			// Remove the number again for the next enrolment round.
			if _, err := f.e.updateUser(ctx, "alice", func(u *User) error { u.SMS = nil; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		f.clk.Advance(10 * time.Second)
	}
}

// BF-3 for codes: parallel wrong guesses stay within the account limit,
// and within the code's own tries.
func TestCodeParallelWrongGuesses(t *testing.T) {
	guess := func(f *codeFixture, a Actor, code string, n int) {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				<-start
				_, _, _ = f.e.VerifyCode(ctx, a, "v", code)
			})
		}
		close(start)
		wg.Wait()
	}
	a := Actor{User: "alice", IP: "192.0.2.1"}

	f := newCodeFixture(t, Config{})
	f.enrolCode(a, MethodEmail, aliceMail, false)
	c := f.sendVerify(a, MethodEmail, "v", "")
	guess(f, a, wrong(c), 50)
	if n := f.count("verify", "reason", "incorrect") + f.count("verify", "reason", "void"); n > 5 {
		t.Fatalf("%d guesses evaluated, limit 5", n)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !isLocked(err) {
		t.Fatalf("not locked after 50 parallel guesses: %v", err)
	}

	g := newCodeFixture(t, Config{MaxFailures: 50, MaxAddressFailures: 1000, CodeAttempts: 5})
	g.enrolCode(a, MethodEmail, aliceMail, false)
	c = g.sendVerify(a, MethodEmail, "v", "")
	guess(g, a, wrong(c), 30)
	if inc, void := g.count("verify", "reason", "incorrect"), g.count("verify", "reason", "void"); inc != 4 || void != 1 {
		t.Fatalf("%d incorrect and %d void, want 4 and 1", inc, void)
	}
	if _, _, err := g.e.VerifyCode(ctx, a, "v", c); err == nil || isLocked(err) {
		t.Fatalf("right code after the tries were used up in parallel: %v", err)
	}
}

func TestCodeMalformedInputCounts(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	c := f.sendVerify(a, MethodEmail, "v", "")
	for _, in := range []string{"abcdef", "12345", "1234567", strings.Repeat("1", 100)} {
		if _, _, err := f.e.VerifyCode(ctx, a, "v", in); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", in[:min(len(in), 12)], err)
		}
	}
	if n := f.failures("alice"); n != "4" {
		t.Fatalf("failure count %s after 4 malformed codes, want 4", n)
	}
	if f.count("verify", "reason", "malformed") != 4 {
		t.Fatal("malformed codes not audited")
	}
	if rec := f.codeRecord("alice"); rec == nil || rec.Tries != 0 {
		t.Fatalf("malformed input used up code tries: %+v", rec)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !isLocked(err) {
		t.Fatalf("5th failure: %v", err)
	}
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !isLocked(err) {
		t.Fatalf("right code while locked: %v", err)
	}

	// Enrolment confirmations count the same way.
	g := newCodeFixture(t, Config{})
	g.send(a, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: alicePhone})
	for _, in := range []string{"", "12345", "1234567", "１２３４５６"} {
		if _, _, err := g.e.ConfirmCode(ctx, a, "e", in); !errors.Is(err, ErrMalformed) {
			t.Fatalf("confirm %q: %v", in, err)
		}
	}
	if n := g.failures("alice"); n != "4" {
		t.Fatalf("failure count %s after 4 malformed confirmations", n)
	}
}

func TestCodeConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{EmailCodeTTL: 59 * time.Second}, "email_code_ttl"},
		{Config{EmailCodeTTL: 10*time.Minute + time.Second}, "email_code_ttl"},
		{Config{EmailCodeTTL: -time.Minute}, "email_code_ttl"},
		{Config{SMSCodeTTL: 59 * time.Second}, "sms_code_ttl"},
		{Config{SMSCodeTTL: 11 * time.Minute}, "sms_code_ttl"},
		{Config{CodeAttempts: 11}, "code_attempts"},
		{Config{CodeAttempts: -1}, "code_attempts"},
		{Config{ResendCooldown: 9 * time.Second}, "resend_cooldown"},
		{Config{ResendCooldown: 10*time.Minute + time.Second}, "resend_cooldown"},
		{Config{ResendCooldown: -time.Minute}, "resend_cooldown"},
		{Config{SendsPerUser: 101}, "hourly_sends_per_user"},
		{Config{SendsPerUser: -1}, "hourly_sends_per_user"},
		{Config{SendsPerDestination: 101}, "hourly_sends_per_destination"},
		{Config{SendsPerDestination: -1}, "hourly_sends_per_destination"},
		{Config{SendsPerAddress: 100_001}, "hourly_sends_per_address"},
		{Config{SMSPerHour: 1_000_001}, "hourly_sms_site"},
		{Config{SMSPerHour: -1}, "hourly_sms_site"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want+" ") {
			t.Errorf("%+v: got %v, want error about %s", tc.cfg, err, tc.want)
		}
		if _, err := New(nil, nil, tc.cfg, nil, nil); err == nil {
			t.Errorf("New accepted %+v", tc.cfg)
		}
	}
	for _, cfg := range []Config{
		{EmailCodeTTL: time.Minute, SMSCodeTTL: time.Minute, CodeAttempts: 1, ResendCooldown: 10 * time.Second,
			SendsPerUser: 1, SendsPerDestination: 1, SendsPerAddress: 1, SMSPerHour: 1},
		{EmailCodeTTL: 10 * time.Minute, SMSCodeTTL: 10 * time.Minute, CodeAttempts: 10, ResendCooldown: 10 * time.Minute,
			SendsPerUser: 100, SendsPerDestination: 100, SendsPerAddress: 100_000, SMSPerHour: 1_000_000},
		{SendsPerAddress: -1},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	// Defaults.
	c := Config{}
	c.setDefaults()
	if c.EmailCodeTTL != 10*time.Minute || c.SMSCodeTTL != 5*time.Minute || c.CodeAttempts != 5 ||
		c.ResendCooldown != time.Minute || c.SendsPerUser != 5 || c.SendsPerDestination != 5 ||
		c.SendsPerAddress != 20 || c.SMSPerHour != 100 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestMask(t *testing.T) {
	if got := Mask(MethodEmail, aliceMail); got != "a•••@example.com" {
		t.Errorf("email: %q", got)
	}
	for _, p := range []string{alicePhone, bobPhone} {
		got := Mask(MethodSMS, p)
		if !strings.HasSuffix(got, p[len(p)-4:]) || strings.Contains(got, p[len(p)-8:len(p)-4]) || !strings.Contains(got, "•") {
			t.Errorf("sms %s: %q", p, got)
		}
	}
}

// A used code frees its method's cooldown, so the next code may follow at
// once; an unused code, or a wrong try, does not.
func TestCodeCooldownReleasedByUse(t *testing.T) {
	f := newCodeFixture(t, Config{MaxFailures: 20, SendsPerUser: 20})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.enrolCode(a, MethodSMS, alicePhone, false)
	sent := f.clk.Now()
	c := f.sendVerify(a, MethodEmail, "v", "")
	f.sendVerify(a, MethodSMS, "w", "") // replaces the email code
	f.clk.Advance(10 * time.Second)
	_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitCooldown, sent.Add(time.Minute))
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("replaced code: %v", err)
	}
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitCooldown, sent.Add(time.Minute))

	f.clk.Advance(time.Minute)
	c = f.sendVerify(a, MethodEmail, "v", "")
	if _, _, err := f.e.VerifyCode(ctx, a, "v", wrong(c)); !errors.Is(err, ErrCodeInvalid) {
		t.Fatal(err)
	}
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitCooldown, f.clk.Now().Add(time.Minute))
	if _, _, err := f.e.VerifyCode(ctx, a, "v", c); err != nil {
		t.Fatal(err)
	}
	f.sendVerify(a, MethodEmail, "v", "") // at once
	// A fresh SMS code still holds the SMS cooldown.
	f.sendVerify(a, MethodSMS, "w", "")
	_, err = f.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "w"}, f.ob.deliver)
	wantLimited(t, err, LimitCooldown, f.clk.Now().Add(time.Minute))
}

// Sends that do not go out (not delivered, or refused by a later cap) are
// not counted against the hourly caps.
func TestCodeCapsCountOnlyCodesSent(t *testing.T) {
	f := newCodeFixture(t, Config{SendsPerUser: 3})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.nextHour()
	f.ob.setFail(&notify.Error{Class: notify.ClassThrottled, Err: errors.New("rate exceeded")})
	for i := range 6 {
		_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
		var de *DeliveryError
		if !errors.As(err, &de) || de.Class != notify.ClassThrottled {
			t.Fatalf("failed delivery %d: %v", i+1, err)
		}
		f.clk.Advance(failedSendWait)
	}
	f.ob.setFail(nil)
	for range 3 {
		f.sendVerify(a, MethodEmail, "v", "")
		f.clk.Advance(time.Minute)
	}
	_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitUser, f.hourEnd())

	// Refused by the site-wide SMS budget: the member's own allowance and
	// the number's are untouched.
	g := newCodeFixture(t, Config{SendsPerUser: 2, SendsPerDestination: 2, SMSPerHour: 1})
	g.enrolCode(a, MethodEmail, aliceMail, false)
	g.enrolCode(a, MethodSMS, alicePhone, false)
	g.nextHour()
	g.send(Actor{User: "bob", IP: "192.0.2.2"}, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: bobPhone})
	for range 4 {
		_, err := g.e.SendCode(ctx, a, CodeRequest{Method: MethodSMS, Purpose: PurposeVerify, Flow: "v"}, g.ob.deliver)
		wantLimited(t, err, LimitSMSSite, g.hourEnd())
	}
	g.sendVerify(a, MethodEmail, "v", "")
	g.clk.Advance(time.Minute)
	g.sendVerify(a, MethodEmail, "v", "")
	g.clk.Advance(time.Minute)
	_, err = g.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, g.ob.deliver)
	wantLimited(t, err, LimitUser, g.hourEnd())
	// The SMS budget is back in the next hour.
	g.clk.Set(g.hourEnd())
	g.sendVerify(a, MethodSMS, "v", "")
}

// hookStore passes every call on to a store, first telling before about
// reads, increments and compare-and-swaps.
type hookStore struct {
	store.Store
	before func(op, key string)
}

func (h hookStore) Get(ctx context.Context, key string) ([]byte, error) {
	h.before("get", key)
	return h.Store.Get(ctx, key)
}

func (h hookStore) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	h.before("incr", key)
	return h.Store.Increment(ctx, key, ttl)
}

func (h hookStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	h.before("cas", key)
	return h.Store.CompareAndSwap(ctx, key, old, value, ttl)
}

// A refund made by a parallel request must never let a send past a full
// cap. Here the site-wide SMS budget is 1 and already spent; request 1
// pauses at its refund read while request 2 is refused and refunds one.
// Were the refunds read after request 1's own increment, it would compute
// 2 - 1 = 1 <= 1 and send a second SMS; read before it, the refund is
// already matched by an increment in the count.
func TestCodeCapRefundRace(t *testing.T) {
	f := newCodeFixture(t, Config{SMSPerHour: 1})
	f.nextHour()
	var armed atomic.Bool // the next read of the SMS refunds pauses
	paused, resume := make(chan struct{}), make(chan struct{})
	hs := hookStore{Store: f.st, before: func(op, key string) {
		if op == "get" && strings.HasPrefix(key, "smssite:") && strings.HasSuffix(key, ":refund") && armed.CompareAndSwap(true, false) {
			close(paused)
			<-resume
		}
	}}
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(hs, kr, Config{SMSPerHour: 1}, f.clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	sms := func(i int) error {
		_, err := e.SendCode(ctx, Actor{User: fmt.Sprintf("u%d", i), IP: fmt.Sprintf("192.0.2.%d", i)}, CodeRequest{
			Method: MethodSMS, Purpose: PurposeEnrol, Flow: "e", To: fmt.Sprintf("+8190000000%02d", i),
		}, f.ob.deliver)
		return err
	}
	if err := sms(0); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	res := make(chan error, 1)
	go func() { res <- sms(1) }()
	var err1 error
	select {
	case <-paused:
		wantLimited(t, sms(2), LimitSMSSite, f.hourEnd())
		close(resume)
		err1 = <-res
	case err1 = <-res: // refunds not read at that point: nothing to interleave
	}
	var l *LimitedError
	if !errors.As(err1, &l) || l.Limit != LimitSMSSite {
		t.Errorf("request 1 got %v, want LimitedError %s", err1, LimitSMSSite)
	}
	if n := f.ob.delivered(); n != 1 {
		t.Errorf("%d texts sent with a site-wide budget of 1", n)
	}
}

// An enrolment started before the member enrolled (say, by someone holding
// only the password) cannot be completed or kept alive afterwards.
func TestEnrolmentStartedBeforeEnrolmentIsVoid(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	attacker := Actor{User: "alice", IP: "198.51.100.9"}
	_, d := f.send(attacker, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "attacker", To: bobPhone})
	en, err := f.e.StartTOTP(ctx, attacker, "Example", "alice", "attacker-totp")
	if err != nil {
		t.Fatal(err)
	}
	// The member enrols email meanwhile (this replaces the code record, so
	// send the attacker's again from another flow after).
	f.enrolCode(a, MethodEmail, aliceMail, false)
	if _, _, err := f.e.ConfirmCode(ctx, attacker, "attacker", d.Code); err == nil {
		t.Fatal("an SMS enrolment started before the member enrolled was confirmed")
	}
	if _, err := f.e.ConfirmTOTP(ctx, attacker, "attacker-totp", f.code(en.Secret, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("a TOTP enrolment started before the member enrolled: %v", err)
	}
	u, err := f.e.State(ctx, "alice")
	if err != nil || u.TOTP != nil || u.SMS != nil {
		t.Fatalf("factors added: %+v %v", u, err)
	}

	// The same with the code record surviving: start, member enrols TOTP
	// elsewhere, then confirm or resend.
	g := newCodeFixture(t, Config{})
	_, d = g.send(attacker, CodeRequest{Method: MethodSMS, Purpose: PurposeEnrol, Flow: "attacker", To: bobPhone})
	en2, err := g.e.StartTOTP(ctx, a, "Example", "alice", "member")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.e.ConfirmTOTP(ctx, a, "member", g.code(en2.Secret, 0)); err != nil {
		t.Fatal(err)
	}
	g.clk.Advance(2 * time.Minute)
	if _, err := g.e.ResendEnrolment(ctx, attacker, "attacker", g.ob.deliver); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("resend of a stale enrolment: %v", err)
	}
	if _, _, err := g.e.ConfirmCode(ctx, attacker, "attacker", d.Code); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("confirm of a stale enrolment: %v", err)
	}
	if u, _ := g.e.State(ctx, "alice"); u.SMS != nil {
		t.Fatal("SMS added from a stale enrolment")
	}
}

// Failures the member might have received, or can cause at will, stay
// counted; and failed attempts have a ceiling of their own.
func TestFailedSendsAreBounded(t *testing.T) {
	f := newCodeFixture(t, Config{SendsPerUser: 2})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	f.nextHour()
	f.ob.setFail(&notify.Error{Class: notify.ClassTimeout, Err: errors.New("i/o timeout")})
	for range 2 {
		if _, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver); deliveryClass(err) != notify.ClassTimeout {
			t.Fatalf("timeout: %v", err)
		}
		f.clk.Advance(failedSendWait)
	}
	f.ob.setFail(nil)
	_, err := f.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, f.ob.deliver)
	wantLimited(t, err, LimitUser, f.hourEnd())

	// Refunded failures still count as attempts: three times the cap.
	g := newCodeFixture(t, Config{SendsPerUser: 2})
	g.enrolCode(a, MethodEmail, aliceMail, false)
	g.nextHour()
	g.ob.setFail(&notify.Error{Class: notify.ClassThrottled, Err: errors.New("rate exceeded")})
	for i := range 6 {
		if _, err := g.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, g.ob.deliver); deliveryClass(err) != notify.ClassThrottled {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		g.clk.Advance(failedSendWait)
	}
	n := g.ob.count()
	_, err = g.e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "v"}, g.ob.deliver)
	wantLimited(t, err, LimitUser, g.hourEnd())
	if g.ob.count() != n {
		t.Fatal("the provider was called past the attempts cap")
	}
}

// deliveryClass returns the delivery class of a SendCode error, "" otherwise.
func deliveryClass(err error) string {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.Class
	}
	return ""
}

// A remembered device stands for the method that verified it.
func TestDeviceRemembersMethod(t *testing.T) {
	f := newCodeFixture(t, Config{})
	a := Actor{User: "alice", IP: "192.0.2.1"}
	f.enrolCode(a, MethodEmail, aliceMail, false)
	id := [16]byte{7}
	if _, err := f.e.RememberDevice(ctx, a, id, time.Hour, MethodEmail); err != nil {
		t.Fatal(err)
	}
	_, method, err := f.e.UseDevice(ctx, a, id, time.Hour)
	if err != nil || method != MethodEmail {
		t.Fatalf("device method %q, %v", method, err)
	}
}
