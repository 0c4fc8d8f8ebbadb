package challenge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// Redis going down in the middle of a flow must never leave a member's
// enrolment half written: the record is what it was before the flow or
// what the flow makes it, never a mix, and the member can carry on once
// Redis is back. Each flow runs once with Redis up, to list its store
// calls; then, for every call k, again from the same starting state with
// the store failing from call k on: either before call k reaches Redis,
// or after it ran there and only its answer was lost (a timeout once the
// command had run).

// faultStore is a real Redis store that goes down at its failAt-th call:
// that call and every later one fail with store.ErrUnavailable.
type faultStore struct {
	*redis.Store
	mu      sync.Mutex
	calls   []string // "Method key" of each call since arm
	failAt  int      // 0: never
	afterOp bool     // call failAt runs in Redis; its answer is lost
}

func (s *faultStore) arm(k int, afterOp bool) {
	s.mu.Lock()
	s.calls, s.failAt, s.afterOp = nil, k, afterOp
	s.mu.Unlock()
}

// disarm brings the store back and returns the calls made since arm.
func (s *faultStore) disarm() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAt = 0
	return s.calls
}

func (s *faultStore) do(method, key string, op func() error) error {
	s.mu.Lock()
	s.calls = append(s.calls, method+" "+key)
	n, k, afterOp := len(s.calls), s.failAt, s.afterOp
	s.mu.Unlock()
	switch {
	case k == 0 || n < k:
		return op()
	case n == k && afterOp:
		_ = op()
		return fmt.Errorf("%w: injected: the answer to call %d was lost", store.ErrUnavailable, n)
	}
	return fmt.Errorf("%w: injected: down since call %d", store.ErrUnavailable, k)
}

func (s *faultStore) Get(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.do("Get", key, func() (err error) { v, err = s.Store.Get(ctx, key); return err })
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (s *faultStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.do("Set", key, func() error { return s.Store.Set(ctx, key, value, ttl) })
}

func (s *faultStore) Delete(ctx context.Context, keys ...string) error {
	return s.do("Delete", strings.Join(keys, " "), func() error { return s.Store.Delete(ctx, keys...) })
}

func (s *faultStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	var ok bool
	err := s.do("CompareAndSwap", key, func() (err error) { ok, err = s.Store.CompareAndSwap(ctx, key, old, value, ttl); return err })
	return ok && err == nil, err
}

func (s *faultStore) Increment(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	var n int64
	err := s.do("Increment", key, func() (err error) { n, err = s.Store.Increment(ctx, key, ttl); return err })
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (s *faultStore) IndexPut(ctx context.Context, index string, members ...string) error {
	return s.do("IndexPut", index+" "+strings.Join(members, " "), func() error { return s.Store.IndexPut(ctx, index, members...) })
}

// Publish goes down with the rest: notices travel through the same Redis.
func (s *faultStore) Publish(ctx context.Context, channel string, msg []byte) error {
	return s.do("Publish", channel, func() error { return s.Store.Publish(ctx, channel, msg) })
}

// opNames name a batch's ops as the calls they stand for, so a sweep
// lists the same calls whether they went alone or together.
var opNames = map[store.OpKind]string{
	store.OpGet: "Get", store.OpSet: "Set", store.OpDelete: "Delete",
	store.OpCompareAndSwap: "CompareAndSwap", store.OpIncrement: "Increment", store.OpPublish: "Publish",
}

// Batch counts each op as a call. When the store goes down within the
// batch, the ops before the failing one run (and it too, if its answer is
// what is lost), as a pipeline cut short would leave them; the rest do
// not.
func (s *faultStore) Batch(ctx context.Context, ops ...*store.Op) error {
	s.mu.Lock()
	first := len(s.calls) + 1
	for _, op := range ops {
		if op != nil {
			s.calls = append(s.calls, opNames[op.Kind]+" "+op.Key)
		}
	}
	k, afterOp := s.failAt, s.afterOp
	s.mu.Unlock()
	switch {
	case k == 0 || k >= first+len(ops):
		return s.Store.Batch(ctx, ops...)
	case k < first:
		return fmt.Errorf("%w: injected: down since call %d", store.ErrUnavailable, k)
	}
	ran := k - first
	if afterOp {
		ran++
	}
	if ran > 0 {
		_ = s.Store.Batch(ctx, ops[:ran]...)
	}
	return fmt.Errorf("%w: injected: down from call %d, op %d of a batch of %d", store.ErrUnavailable, k, k-first, len(ops))
}

// faultRig runs one member, alice, through an engine on a faultStore.
type faultRig struct {
	t    *testing.T
	cfg  Config
	fs   *faultStore
	rdb  *goredis.Client
	kr   *keyring.Keyring
	clk  *clock.Fake
	e    *Engine
	sent Delivery // the last code delivered
}

var faultAlice = Actor{User: "alice", IP: "192.0.2.1", UserAgent: "test"}

// faultStart is the start of a time step, so every case sees the same
// codes at the same moments.
var faultStart = time.Unix(1_700_000_010, 0)

// Calls the flows are judged by.
var (
	callWriteUser = "CompareAndSwap " + userKey("alice")
	callTakeCode  = "CompareAndSwap " + codeKey("alice")
	callStoreCode = "Set " + codeKey("alice")
	callDropEnrol = "Delete " + pendingKey("alice")
)

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	srv := testredis.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return &faultRig{t: t, fs: &faultStore{Store: redis.New(rdb, "2fa:")}, rdb: rdb, kr: kr, clk: clock.NewFake(faultStart)}
}

// reset empties Redis and starts a new instance at faultStart.
func (r *faultRig) reset(t *testing.T) {
	t.Helper()
	if err := r.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r.clk.Set(faultStart)
	r.start(t)
}

// start starts a new instance: an empty cache, as after a restart.
func (r *faultRig) start(t *testing.T) {
	t.Helper()
	r.t = t
	r.e = r.engine(r.fs)
	if _, err := r.e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	r.sent = Delivery{}
}

// faultSnapshot is everything in Redis, and the time, at one moment.
type faultSnapshot struct {
	at   time.Time
	keys map[string]string        // DUMP of each key
	ttls map[string]time.Duration // and its time to live, or <0
}

// snapshot keeps the state a flow starts from, so every case starts from
// exactly that state without setting it up again.
func (r *faultRig) snapshot() *faultSnapshot {
	r.t.Helper()
	keys, err := r.rdb.Keys(ctx, "*").Result()
	if err != nil {
		r.t.Fatal(err)
	}
	s := &faultSnapshot{at: r.clk.Now(), keys: map[string]string{}, ttls: map[string]time.Duration{}}
	for _, k := range keys {
		if s.keys[k], err = r.rdb.Dump(ctx, k).Result(); err != nil {
			r.t.Fatal(err)
		}
		if s.ttls[k], err = r.rdb.PTTL(ctx, k).Result(); err != nil {
			r.t.Fatal(err)
		}
	}
	return s
}

// restore brings back a snapshot and starts a new instance on it.
func (r *faultRig) restore(t *testing.T, s *faultSnapshot) {
	t.Helper()
	if err := r.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for k, v := range s.keys {
		if err := r.rdb.Restore(ctx, k, max(s.ttls[k], 0), v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r.clk.Set(s.at)
	r.start(t)
}

func (r *faultRig) engine(st store.Store) *Engine {
	r.t.Helper()
	e, err := New(st, r.kr, r.cfg, r.clk.Now, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// faultAge makes every expiring key ARGV[1] ms older: Redis expires keys
// in real time, while the engine lives on the fake clock.
var faultAge = goredis.NewScript(`
local d = tonumber(ARGV[1])
for _, k in ipairs(redis.call('KEYS', '*')) do
  local ttl = redis.call('PTTL', k)
  if ttl > 0 then
    if ttl <= d then redis.call('DEL', k) else redis.call('PEXPIRE', k, ttl - d) end
  end
end
return 0`)

// wait lets d pass for the engine and for Redis.
func (r *faultRig) wait(d time.Duration) {
	r.t.Helper()
	r.clk.Advance(d)
	if err := faultAge.Run(ctx, r.rdb, nil, d.Milliseconds()).Err(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *faultRig) totp(secret string) string {
	r.t.Helper()
	return (&fixture{t: r.t, clk: r.clk}).code(secret, 0)
}

func (r *faultRig) deliver(_ context.Context, d Delivery) error {
	r.sent = d
	return nil
}

// enrolApp enrols the authenticator app and moves to the next time step.
func (r *faultRig) enrolApp() string {
	r.t.Helper()
	en, err := r.e.StartTOTP(ctx, faultAlice, "Example", "alice", "app")
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.e.ConfirmTOTP(ctx, faultAlice, "app", r.totp(en.Secret)); err != nil {
		r.t.Fatal(err)
	}
	r.wait(30 * time.Second)
	return en.Secret
}

// sendCode has an email code sent for flow and returns it.
func (r *faultRig) sendCode(purpose, flow string) string {
	r.t.Helper()
	req := CodeRequest{Method: MethodEmail, Purpose: purpose, Flow: flow}
	if purpose == PurposeEnrol {
		req.To = aliceMail
	}
	if _, err := r.e.SendCode(ctx, faultAlice, req, r.deliver); err != nil {
		r.t.Fatalf("SendCode %s: %v", purpose, err)
	}
	return r.sent.Code
}

func (r *faultRig) enrolEmail() {
	r.t.Helper()
	if _, _, err := r.e.ConfirmCode(ctx, faultAlice, "mail", r.sendCode(PurposeEnrol, "mail")); err != nil {
		r.t.Fatal(err)
	}
}

func (r *faultRig) generate() []string {
	r.t.Helper()
	codes, err := r.e.GenerateRecoveryCodes(ctx, faultAlice)
	if err != nil {
		r.t.Fatal(err)
	}
	return codes
}

// signInByApp passes the challenge with the app's next code.
func (r *faultRig) signInByApp(secret string) {
	r.t.Helper()
	r.wait(30 * time.Second)
	if _, err := r.e.VerifyTOTP(ctx, faultAlice, r.totp(secret)); err != nil {
		r.t.Fatalf("signing in with the app: %v", err)
	}
}

// signInByEmail passes the challenge with a new emailed code, once any
// resend wait a failed send left behind is over.
func (r *faultRig) signInByEmail() {
	r.t.Helper()
	r.wait(r.e.cfg.ResendCooldown)
	if _, _, err := r.e.VerifyCode(ctx, faultAlice, "later", r.sendCode(PurposeVerify, "later")); err != nil {
		r.t.Fatalf("signing in by email: %v", err)
	}
}

func (r *faultRig) useRecovery(code string) (*User, error) {
	return r.e.UseRecoveryCode(ctx, faultAlice, code)
}

// record reads alice's record straight from Redis; nil when there is none.
func (r *faultRig) record() (*User, []byte) {
	r.t.Helper()
	raw, err := r.fs.Store.Get(ctx, userKey("alice"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	u := &User{}
	if err := json.Unmarshal(raw, u); err != nil {
		r.t.Fatalf("the record does not decode: %v\n%s", err, raw)
	}
	return u, raw
}

// consistent checks that the record holds together: every sealed part
// opens, the counts agree, and another instance reads the same revision.
func (r *faultRig) consistent(u *User) {
	t := r.t
	t.Helper()
	seen, err := r.engine(r.fs.Store).State(ctx, "alice")
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if u == nil {
		if seen.Enrolled() || seen.Rev != 0 {
			t.Fatalf("no record, yet State gives %+v", seen)
		}
		return
	}
	if seen.Rev != u.Rev || u.ID != "alice" {
		t.Fatalf("State gives revision %d of %q, the record is %d of %q", seen.Rev, seen.ID, u.Rev, u.ID)
	}
	if u.Enrolled() && u.Epoch == 0 {
		t.Fatal("enrolled in epoch 0")
	}
	if u.Default != "" && !u.Has(u.Default) {
		t.Fatalf("default %q not enrolled", u.Default)
	}
	if u.SMS != nil {
		t.Fatal("an SMS method nobody enrolled")
	}
	if u.TOTP != nil {
		if _, err := r.e.secret.Open(nil, u.TOTP.Secret, secretAAD("totp", "alice")); err != nil {
			t.Fatalf("app secret: %v", err)
		}
	}
	if u.Email != nil {
		to, err := r.e.dests.Open(nil, u.Email.Destination, destAAD(MethodEmail, "alice"))
		if err != nil || string(to) != aliceMail {
			t.Fatalf("email destination %q: %v", to, err)
		}
	}
	if rc := u.Recovery; rc != nil {
		if !u.Enrolled() {
			t.Fatal("recovery codes without a factor")
		}
		plain, err := r.e.secret.Open(nil, rc.Sealed, recoveryAAD("alice"))
		if err != nil {
			t.Fatalf("recovery codes: %v", err)
		}
		var set recoverySet
		if err := json.Unmarshal(plain, &set); err != nil || len(set.Hashes) != RecoveryCodeCount || len(set.Used) != RecoveryCodeCount {
			t.Fatalf("recovery set: %v, %d hashes, %d flags", err, len(set.Hashes), len(set.Used))
		}
		left := 0
		for _, used := range set.Used {
			if !used {
				left++
			}
		}
		if left != rc.Left {
			t.Fatalf("%d recovery codes unused, the record says %d", left, rc.Left)
		}
	}
}

// faultFlow is one member flow under test.
type faultFlow struct {
	// cfg configures the engine. Default: the defaults.
	cfg Config
	// setup brings alice to the flow's starting state, with Redis up;
	// every run starts from a snapshot of it.
	setup func(r *faultRig)
	run   func(r *faultRig) error
	// reportsUpTo is the flow's last call whose failure it reports;
	// what follows (clean-up, notices, the activity list) is best
	// effort, so a failure there still ends in success.
	reportsUpTo string
	// check verifies the record and that the member can carry on.
	check func(r *faultRig, c *faultCase)
}

// faultCase is one run with the store failing from call k.
type faultCase struct {
	t         *testing.T
	k         int
	afterOp   bool
	clean     []string // the calls of the run with Redis up
	before    *User
	beforeRaw []byte
	err       error
}

// ran reports whether the flow's first call named call reached Redis.
func (c *faultCase) ran(call string) bool {
	c.t.Helper()
	i := slices.IndexFunc(c.clean, func(s string) bool { return strings.HasPrefix(s, call) })
	if i < 0 {
		c.t.Fatalf("the flow makes no call %q: %q", call, c.clean)
	}
	return i+1 < c.k || i+1 == c.k && c.afterOp
}

// unchanged checks that the record is byte for byte what it was.
func (r *faultRig) unchanged(c *faultCase) {
	r.t.Helper()
	if _, raw := r.record(); !bytes.Equal(raw, c.beforeRaw) {
		r.t.Fatalf("the record changed although the flow did not write it:\nbefore %s\nafter  %s", c.beforeRaw, raw)
	}
}

// changed checks that the record is before with exactly change made, in
// one write: change gets the record read, for the freshly sealed parts.
func (r *faultRig) changed(before *User, change func(want, got *User)) {
	r.t.Helper()
	want := &User{ID: "alice"}
	if before != nil {
		b, _ := json.Marshal(before)
		want = &User{}
		if err := json.Unmarshal(b, want); err != nil {
			r.t.Fatal(err)
		}
	}
	got, raw := r.record()
	if got == nil {
		r.t.Fatal("no record")
	}
	change(want, got)
	want.Rev++
	if w, _ := json.Marshal(want); !bytes.Equal(raw, w) {
		r.t.Fatalf("the record is neither before nor after the flow:\ngot  %s\nwant %s", raw, w)
	}
}

// runFaultFlow runs fl with Redis going down at each of its calls in
// turn, before and after the call runs, and checks what is left.
func runFaultFlow(t *testing.T, fl faultFlow) {
	r := newFaultRig(t)
	r.cfg = fl.cfg
	r.reset(t)
	fl.setup(r)
	snap := r.snapshot()
	r.restore(t, snap)
	r.fs.arm(0, false)
	err := fl.run(r)
	clean := r.fs.disarm()
	if err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	last := 0
	for i, c := range clean {
		if strings.HasPrefix(c, fl.reportsUpTo) {
			last = i + 1
		}
	}
	if last == 0 {
		t.Fatalf("no call %q in %q", fl.reportsUpTo, clean)
	}
	t.Logf("%d calls, failures reported up to call %d: %q", len(clean), last, clean)
	for k := 1; k <= len(clean); k++ {
		for _, afterOp := range []bool{false, true} {
			kind := "before"
			if afterOp {
				kind = "after"
			}
			t.Run(fmt.Sprintf("%02d-%s-%s", k, kind, clean[k-1]), func(t *testing.T) {
				r.restore(t, snap)
				c := &faultCase{t: t, k: k, afterOp: afterOp, clean: clean}
				c.before, c.beforeRaw = r.record()
				r.fs.arm(k, afterOp)
				c.err = fl.run(r)
				if calls := r.fs.disarm(); len(calls) < k || !slices.Equal(calls[:k], clean[:k]) {
					t.Fatalf("calls %q, not those of the run with Redis up %q", calls, clean)
				}
				switch {
				case k <= last && !errors.Is(c.err, store.ErrUnavailable):
					t.Fatalf("Redis down from %q: got %v, want store.ErrUnavailable", clean[k-1], c.err)
				case k > last && c.err != nil:
					t.Fatalf("Redis down from %q, after %q: got %v, want success", clean[k-1], fl.reportsUpTo, c.err)
				}
				u, _ := r.record()
				r.consistent(u)
				fl.check(r, c)
			})
		}
	}
}

// Confirming a first enrolment in the app.
func TestFaultConfirmTOTP(t *testing.T) {
	var secret string
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) {
			en, err := r.e.StartTOTP(ctx, faultAlice, "Example", "alice", "app")
			if err != nil {
				r.t.Fatal(err)
			}
			secret = en.Secret
		},
		run: func(r *faultRig) error {
			_, err := r.e.ConfirmTOTP(ctx, faultAlice, "app", r.totp(secret))
			return err
		},
		// Once the record is written the pending secret and the
		// failure count are garbage that expires.
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if !c.ran(callWriteUser) {
				r.unchanged(c)
				// Still pending: the member types the next code.
				r.wait(30 * time.Second)
				if u, err := r.e.ConfirmTOTP(ctx, faultAlice, "app", r.totp(secret)); err != nil || !u.Has(MethodTOTP) {
					r.t.Fatalf("confirming again: %v", err)
				}
				r.signInByApp(secret)
				return
			}
			now := r.clk.Now().UTC()
			r.changed(nil, func(want, got *User) {
				want.Created, want.Epoch = now, 1
				want.TOTP = &TOTPMethod{Added: now, LastUsed: now, LastStep: now.Unix() / 30}
				if got.TOTP != nil {
					want.TOTP.Secret = got.TOTP.Secret
				}
			})
			// Enrolled, maybe without being told: confirming again
			// says so, and the app passes the challenge.
			r.wait(30 * time.Second)
			want := ErrAlreadyEnrolled
			if c.ran(callDropEnrol) {
				want = ErrExpired
			}
			if _, err := r.e.ConfirmTOTP(ctx, faultAlice, "app", r.totp(secret)); !errors.Is(err, want) {
				r.t.Fatalf("confirming again: %v, want %v", err, want)
			}
			r.signInByApp(secret)
		},
	})
}

// Signing in with the app.
func TestFaultVerifyTOTP(t *testing.T) {
	var secret, code string
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) { secret = r.enrolApp() },
		run: func(r *faultRig) error {
			code = r.totp(secret)
			_, err := r.e.VerifyTOTP(ctx, faultAlice, code)
			return err
		},
		// Once the step is recorded the sign-in stands: clearing the
		// failure count is best effort.
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if !c.ran(callWriteUser) {
				r.unchanged(c)
				r.signInByApp(secret)
				return
			}
			now := r.clk.Now().UTC()
			r.changed(c.before, func(want, _ *User) {
				want.TOTP.LastStep, want.TOTP.LastUsed = now.Unix()/30, now
			})
			// The code is spent whatever the answer was; the next works.
			if _, err := r.e.VerifyTOTP(ctx, faultAlice, code); !errors.Is(err, ErrCodeInvalid) {
				r.t.Fatalf("the spent code again: %v", err)
			}
			r.signInByApp(secret)
		},
	})
}

// Asking for an emailed sign-in code.
func TestFaultSendCode(t *testing.T) {
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) { r.enrolEmail() },
		run: func(r *faultRig) error {
			_, err := r.e.SendCode(ctx, faultAlice, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "signin"}, r.deliver)
			return err
		},
		reportsUpTo: callStoreCode,
		check: func(r *faultRig, c *faultCase) {
			// Sending never writes the record.
			r.unchanged(c)
			if code := r.sent.Code; code != "" {
				// Delivered: it works if and only if it was stored.
				_, _, err := r.e.VerifyCode(ctx, faultAlice, "signin", code)
				if c.ran(callStoreCode) {
					if err != nil {
						r.t.Fatalf("the delivered, stored code: %v", err)
					}
					return
				}
				if !errors.Is(err, ErrCodeExpired) {
					r.t.Fatalf("a code delivered but never stored: %v", err)
				}
			} else if c.ran(callStoreCode) {
				r.t.Fatal("a code stored but not delivered")
			}
			// What the failed send held (the resend wait, the hourly
			// allowance) costs a wait at most.
			r.signInByEmail()
		},
	})
}

// Signing in with an emailed code.
func TestFaultVerifyCode(t *testing.T) {
	var code string
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) {
			r.enrolEmail()
			code = r.sendCode(PurposeVerify, "signin")
		},
		run: func(r *faultRig) error {
			_, _, err := r.e.VerifyCode(ctx, faultAlice, "signin", code)
			return err
		},
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if c.ran(callWriteUser) {
				now := r.clk.Now().UTC()
				r.changed(c.before, func(want, _ *User) { want.Email.LastUsed = now })
			} else {
				r.unchanged(c)
			}
			if c.err == nil {
				return
			}
			// Refused: the member types the code again, and asks for
			// another if it was used up.
			_, _, err := r.e.VerifyCode(ctx, faultAlice, "signin", code)
			if !c.ran(callTakeCode) {
				if err != nil {
					r.t.Fatalf("the unused code again: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCodeExpired) {
				r.t.Fatalf("the used code again: %v", err)
			}
			r.signInByEmail()
		},
	})
}

// Confirming an email address as a second method, beside the app.
func TestFaultConfirmCode(t *testing.T) {
	var secret, code string
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) {
			secret = r.enrolApp()
			code = r.sendCode(PurposeEnrol, "add")
		},
		run: func(r *faultRig) error {
			_, _, err := r.e.ConfirmCode(ctx, faultAlice, "add", code)
			return err
		},
		// Once the record is written the failure count is garbage.
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if c.ran(callWriteUser) {
				now := r.clk.Now().UTC()
				r.changed(c.before, func(want, got *User) {
					want.Email = &CodeMethod{Added: now, LastUsed: now}
					if got.Email != nil {
						want.Email.Destination = got.Email.Destination
					}
				})
			} else {
				r.unchanged(c)
				// Not added: the member types the code again, or
				// has a new one sent if it was used up.
				_, _, err := r.e.ConfirmCode(ctx, faultAlice, "add", code)
				if c.ran(callTakeCode) {
					if !errors.Is(err, ErrCodeExpired) {
						r.t.Fatalf("the used code again: %v", err)
					}
					r.wait(r.e.cfg.ResendCooldown)
					_, _, err = r.e.ConfirmCode(ctx, faultAlice, "add", r.sendCode(PurposeEnrol, "add"))
				}
				if err != nil {
					r.t.Fatalf("confirming again: %v", err)
				}
			}
			r.signInByEmail()
			r.signInByApp(secret)
		},
	})
}

// Removing the app, keeping email.
func TestFaultRemoveMethod(t *testing.T) {
	var secret string
	device := [16]byte{7}
	useDevice := func(r *faultRig) error {
		_, _, err := r.e.UseDevice(ctx, faultAlice, device, time.Hour)
		return err
	}
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) {
			secret = r.enrolApp()
			r.enrolEmail()
			if _, err := r.e.RememberDevice(ctx, faultAlice, device, time.Hour, MethodEmail); err != nil {
				r.t.Fatal(err)
			}
		},
		run: func(r *faultRig) error {
			_, err := r.e.RemoveMethod(ctx, faultAlice, MethodTOTP, false)
			return err
		},
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if c.ran(callWriteUser) {
				r.changed(c.before, func(want, _ *User) {
					want.TOTP, want.Devices = nil, nil
					want.Epoch++
				})
			} else {
				r.unchanged(c)
				// Nothing changed: the device still stands in, and
				// removing again works.
				if err := useDevice(r); err != nil {
					r.t.Fatalf("device before removal: %v", err)
				}
				if _, err := r.e.RemoveMethod(ctx, faultAlice, MethodTOTP, false); err != nil {
					r.t.Fatalf("removing again: %v", err)
				}
			}
			// Removed: the epoch's device ends, the app no longer
			// passes, email does.
			if err := useDevice(r); !errors.Is(err, ErrDeviceUnknown) {
				r.t.Fatalf("device from before the removal: %v", err)
			}
			r.wait(30 * time.Second)
			if _, err := r.e.VerifyTOTP(ctx, faultAlice, r.totp(secret)); !errors.Is(err, ErrNotEnrolled) {
				r.t.Fatalf("the removed app: %v", err)
			}
			r.signInByEmail()
		},
	})
}

// Signing in with a recovery code.
func TestFaultUseRecoveryCode(t *testing.T) {
	var secret string
	var codes []string
	device := [16]byte{7}
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) {
			secret = r.enrolApp()
			codes = r.generate()
			if _, err := r.e.RememberDevice(ctx, faultAlice, device, time.Hour, MethodTOTP); err != nil {
				r.t.Fatal(err)
			}
		},
		run: func(r *faultRig) error {
			_, err := r.useRecovery(codes[0])
			return err
		},
		// Once the code is used up the sign-in stands (see
		// TestFaultLastRecoveryCode): clearing the failure count is best
		// effort.
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if c.ran(callWriteUser) {
				now := r.clk.Now().UTC()
				r.changed(c.before, func(want, got *User) {
					want.Epoch++
					want.Devices = nil
					want.Recovery.Left--
					want.Recovery.LastUsed = now
					want.Recovery.Renew = true
					want.StuckSince = now // back to an enrolled method is still to come
					if got.Recovery != nil {
						want.Recovery.Sealed = got.Recovery.Sealed
					}
				})
				// Used up whatever the answer was; the next one works.
				if _, err := r.useRecovery(codes[0]); !errors.Is(err, ErrCodeInvalid) {
					r.t.Fatalf("the used code again: %v", err)
				}
				if u, err := r.useRecovery(codes[1]); err != nil || u.Recovery.Left != RecoveryCodeCount-2 {
					r.t.Fatalf("the next code: %v", err)
				}
			} else {
				r.unchanged(c)
				if _, _, err := r.e.UseDevice(ctx, faultAlice, device, time.Hour); err != nil {
					r.t.Fatalf("device: %v", err)
				}
				if u, err := r.useRecovery(codes[0]); err != nil || u.Recovery.Left != RecoveryCodeCount-1 {
					r.t.Fatalf("the code again: %v", err)
				}
			}
			// A recovery code ends remembered devices; the app is kept.
			if _, _, err := r.e.UseDevice(ctx, faultAlice, device, time.Hour); !errors.Is(err, ErrDeviceUnknown) {
				r.t.Fatalf("device after a recovery code: %v", err)
			}
			r.signInByApp(secret)
		},
	})
}

// Replacing the recovery codes.
func TestFaultGenerateRecoveryCodes(t *testing.T) {
	var secret string
	var old, fresh []string
	runFaultFlow(t, faultFlow{
		setup: func(r *faultRig) {
			secret = r.enrolApp()
			old = r.generate()
		},
		run: func(r *faultRig) (err error) {
			fresh, err = r.e.GenerateRecoveryCodes(ctx, faultAlice)
			return err
		},
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if !c.ran(callWriteUser) {
				r.unchanged(c)
				if _, err := r.useRecovery(old[0]); err != nil {
					r.t.Fatalf("an old code: %v", err)
				}
				return
			}
			now := r.clk.Now().UTC()
			r.changed(c.before, func(want, got *User) {
				want.Recovery = &RecoveryCodes{Created: now, Left: RecoveryCodeCount}
				if got.Recovery != nil {
					want.Recovery.Sealed = got.Recovery.Sealed
				}
			})
			if _, err := r.useRecovery(old[0]); !errors.Is(err, ErrCodeInvalid) {
				r.t.Fatalf("an old code after the new set: %v", err)
			}
			if c.err != nil {
				// The set was written but the answer lost, so its codes
				// were never shown: the member has none they know of
				// until they generate again, which the app allows.
				r.signInByApp(secret)
				fresh = r.generate()
			}
			if _, err := r.useRecovery(fresh[len(fresh)-1]); err != nil {
				r.t.Fatalf("a new code: %v", err)
			}
		},
	})
}

// A member down to the last recovery code, the app out of reach (the
// reason to use one): if Redis goes down once the code is used up but
// before the sign-in completes, the code must have let the member in or
// still be there. Otherwise the member has no way in left.
func TestFaultLastRecoveryCode(t *testing.T) {
	r := newFaultRig(t)
	r.reset(t)
	r.enrolApp()
	codes := r.generate()
	last := len(codes) - 1
	for i, code := range codes[:last] {
		if i == last-1 {
			r.fs.arm(0, false) // list the calls of one use
		}
		if _, err := r.useRecovery(code); err != nil {
			t.Fatal(err)
		}
	}
	// Down from the first call after the record write (which carries its
	// notice) and the activity entry.
	clean := r.fs.disarm()
	k := slices.Index(clean, callWriteUser) + 2
	if k < 2 || !strings.HasPrefix(clean[k-1], "CompareAndSwap activity") {
		t.Fatalf("calls %q", clean)
	}
	r.fs.arm(k, false)
	_, err := r.useRecovery(codes[last])
	r.fs.disarm()
	u, _ := r.record()
	if err != nil && u.Recovery.Left == 0 {
		_, again := r.useRecovery(codes[last])
		t.Fatalf("Redis down from %q: the sign-in failed (%v) but the last code is used up (epoch %d, again: %v)", clean[k-1], err, u.Epoch, again)
	}
}

// Signing in with a passkey.
func TestFaultFinishLogin(t *testing.T) {
	key := testwebauthn.New(waOrigin)
	var answer []byte
	signIn := func(r *faultRig, flow string) error {
		r.t.Helper()
		opts, err := r.e.BeginLogin(ctx, faultAlice, flowToken(flow))
		if err != nil {
			r.t.Fatal(err)
		}
		fresh, err := key.Get(opts)
		if err != nil {
			r.t.Fatal(err)
		}
		_, _, err = r.e.FinishLogin(ctx, faultAlice, flowToken(flow), fresh)
		return err
	}
	runFaultFlow(t, faultFlow{
		cfg: waConfig(),
		setup: func(r *faultRig) {
			opts, err := r.e.BeginRegistration(ctx, faultAlice, flowToken("add"), "alice@example.com")
			if err != nil {
				r.t.Fatal(err)
			}
			body, err := key.Create(opts)
			if err != nil {
				r.t.Fatal(err)
			}
			if _, _, err := r.e.FinishRegistration(ctx, faultAlice, flowToken("add"), "Key", body); err != nil {
				r.t.Fatal(err)
			}
			opts, err = r.e.BeginLogin(ctx, faultAlice, flowToken("login"))
			if err != nil {
				r.t.Fatal(err)
			}
			if answer, err = key.Get(opts); err != nil {
				r.t.Fatal(err)
			}
		},
		run: func(r *faultRig) error {
			_, _, err := r.e.FinishLogin(ctx, faultAlice, flowToken("login"), answer)
			return err
		},
		// Once the counter is recorded the sign-in stands.
		reportsUpTo: callWriteUser,
		check: func(r *faultRig, c *faultCase) {
			if c.ran(callWriteUser) {
				now := r.clk.Now().UTC()
				r.changed(c.before, func(want, got *User) {
					cr := &want.WebAuthn.Credentials[0]
					cr.LastUsed, cr.SignCount = now, got.WebAuthn.Credentials[0].SignCount
				})
			} else {
				r.unchanged(c)
			}
			// A ceremony taken (with the count) is spent; one not taken
			// is answered again and signs in; a new one always does.
			_, _, err := r.e.FinishLogin(ctx, faultAlice, flowToken("login"), answer)
			if c.ran("CompareAndSwap " + ceremonyKey("alice", ceremonyLogin, flowToken("login"))) {
				if !errors.Is(err, ErrExpired) {
					r.t.Fatalf("the taken ceremony again: %v", err)
				}
			} else if err != nil {
				r.t.Fatalf("the ceremony not taken, answered again: %v", err)
			}
			if err := signIn(r, "again"); err != nil {
				r.t.Fatalf("a new ceremony: %v", err)
			}
		},
	})
}
