package challenge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

const waOrigin = "https://login.example.com"

func waConfig() Config {
	return Config{WebAuthn: WebAuthnConfig{RPID: "example.com", RPName: "Example", Origins: []string{waOrigin}}}
}

// waRig is two engines on one store: on Redis, two instances with their
// own clients and caches; embedded, the one engine twice.
type waRig struct {
	t     *testing.T
	a, b  *Engine
	clk   *clock.Fake
	audit *observer.ObservedLogs
}

// onBothStores runs test on the embedded store and on a real Redis.
func onBothStores(t *testing.T, cfg Config, test func(t *testing.T, r *waRig)) {
	t.Run("embedded", func(t *testing.T) {
		f := newFixture(t, cfg)
		test(t, &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit})
	})
	t.Run("redis", func(t *testing.T) {
		srv := testredis.Start(t)
		clk := clock.NewFake(time.Unix(1_700_000_010, 0))
		kr, err := keyring.New(testKey)
		if err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zap.InfoLevel)
		r := &waRig{t: t, clk: clk, audit: logs}
		for _, e := range []**Engine{&r.a, &r.b} {
			client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
			t.Cleanup(func() { client.Close() })
			if *e, err = New(redis.New(client, "2fa:"), kr, cfg, clk.Now, zap.New(core)); err != nil {
				t.Fatal(err)
			}
		}
		test(t, r)
	})
}

// register adds a credential from auth for the actor, beginning on A and
// finishing on B.
func (r *waRig) register(a Actor, auth *testwebauthn.Authenticator, name string) *WebAuthnCredential {
	r.t.Helper()
	opts, err := r.a.BeginRegistration(ctx, a, flowToken("flow-"+name), a.User+"@example.com")
	if err != nil {
		r.t.Fatalf("begin registration: %v", err)
	}
	body, err := auth.Create(opts)
	if err != nil {
		r.t.Fatal(err)
	}
	_, c, err := r.b.FinishRegistration(ctx, a, flowToken("flow-"+name), name, body)
	if err != nil {
		r.t.Fatalf("finish registration: %v", err)
	}
	return c
}

// login runs a sign-in ceremony with auth, beginning on A and finishing
// on B.
func (r *waRig) login(a Actor, auth *testwebauthn.Authenticator) (*WebAuthnCredential, error) {
	r.t.Helper()
	opts, err := r.a.BeginLogin(ctx, a, flowToken("login-flow"))
	if err != nil {
		r.t.Fatalf("begin login: %v", err)
	}
	body, err := auth.Get(opts)
	if err != nil {
		r.t.Fatal(err)
	}
	_, c, err := r.b.FinishLogin(ctx, a, flowToken("login-flow"), body)
	return c, err
}

func (r *waRig) audited(event, result string) []map[string]any {
	var out []map[string]any
	for _, e := range r.audit.FilterMessage(event).All() {
		if m := e.ContextMap(); m["result"] == result {
			out = append(out, m)
		}
	}
	return out
}

var (
	alice = Actor{User: "alice", IP: "192.0.2.1"}
	bob   = Actor{User: "bob", IP: "192.0.2.2"}
)

func TestWebAuthnTwoCredentials(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		key, phone := testwebauthn.New(waOrigin), testwebauthn.New(waOrigin)
		phone.Flags |= testwebauthn.FlagBE | testwebauthn.FlagBS
		phone.Transports = []string{"internal", "hybrid"}
		c1 := r.register(alice, key, "  Blue key ")
		if c1.Name != "Blue key" {
			t.Fatalf("name %q, want it trimmed", c1.Name)
		}
		// The second registration excludes the first credential.
		opts, err := r.a.BeginRegistration(ctx, alice, flowToken("flow-phone"), "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		var creation struct {
			PublicKey struct {
				Exclude []struct {
					ID string `json:"id"`
				} `json:"excludeCredentials"`
				Selection struct {
					ResidentKey      string `json:"residentKey"`
					UserVerification string `json:"userVerification"`
				} `json:"authenticatorSelection"`
				Attestation string `json:"attestation"`
			} `json:"publicKey"`
		}
		if err := json.Unmarshal(opts, &creation); err != nil {
			t.Fatal(err)
		}
		pk := creation.PublicKey
		if len(pk.Exclude) != 1 || pk.Exclude[0].ID != b64url(key.CredID) {
			t.Fatalf("excludeCredentials %+v, want the blue key", pk.Exclude)
		}
		if pk.Selection.ResidentKey != "preferred" || pk.Selection.UserVerification != "preferred" || pk.Attestation != "none" {
			t.Fatalf("selection %+v, attestation %q", pk.Selection, pk.Attestation)
		}
		body, err := phone.Create(opts)
		if err != nil {
			t.Fatal(err)
		}
		u, c2, err := r.b.FinishRegistration(ctx, alice, flowToken("flow-phone"), "Phone", body)
		if err != nil {
			t.Fatal(err)
		}
		if !c2.BackupEligible || !c2.BackedUp || strings.Join(c2.Transports, ",") != "internal,hybrid" || c2.ID == c1.ID {
			t.Fatalf("second credential %+v", c2)
		}
		if !u.Enrolled() || !u.Has(MethodWebAuthn) || u.Methods()[0] != MethodWebAuthn || len(u.WebAuthnCredentials()) != 2 {
			t.Fatalf("record: enrolled %t, methods %v, %d credentials", u.Enrolled(), u.Methods(), len(u.WebAuthnCredentials()))
		}
		// Both user handles are the member's one random handle.
		if !bytes.Equal(key.UserHandle, phone.UserHandle) || len(key.UserHandle) != 32 || bytes.Contains(key.UserHandle, []byte("alice")) {
			t.Fatalf("user handles %x and %x", key.UserHandle, phone.UserHandle)
		}

		r.clk.Advance(time.Minute)
		for _, c := range []struct {
			auth *testwebauthn.Authenticator
			id   string
		}{{key, c1.ID}, {phone, c2.ID}, {key, c1.ID}} {
			used, err := r.login(alice, c.auth)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if used.ID != c.id || !used.LastUsed.Equal(r.clk.Now().UTC()) {
				t.Fatalf("used %+v, want %s at %s", used, c.id, r.clk.Now())
			}
		}
		if n := len(r.audited("verify", "success")); n != 3 {
			t.Fatalf("%d verify successes audited, want 3", n)
		}
		if got := r.audited("webauthn_registered", "success"); len(got) != 2 || got[0]["aaguid"] != "00000000-0000-0000-0000-000000000000" {
			t.Fatalf("registrations audited: %v", got)
		}
	})
}

func b64url(b []byte) string {
	raw, _ := json.Marshal(b) // std base64; compare in URL form
	s := strings.Trim(string(raw), `"`)
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(s), "=")
}

func TestWebAuthnCeremonyState(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		// A member per case, so one case's counted failures do not lock
		// the next one out.
		var key *testwebauthn.Authenticator
		var alice Actor
		member := func(name string) {
			alice = Actor{User: name, IP: "192.0.2.1"}
			key = testwebauthn.New(waOrigin)
			r.register(alice, key, "Key")
		}

		t.Run("expired", func(t *testing.T) {
			member("expired")
			opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f1"))
			body, _ := key.Get(opts)
			r.clk.Advance(2*time.Minute + time.Second)
			if _, _, err := r.b.FinishLogin(ctx, alice, flowToken("f1"), body); !errors.Is(err, ErrExpired) {
				t.Fatalf("late answer: %v, want ErrExpired", err)
			}
			optsR, _ := r.a.BeginRegistration(ctx, alice, flowToken("f1r"), "")
			bodyR, _ := testwebauthn.New(waOrigin).Create(optsR)
			r.clk.Advance(2*time.Minute + time.Second)
			if _, _, err := r.b.FinishRegistration(ctx, alice, flowToken("f1r"), "Late", bodyR); !errors.Is(err, ErrExpired) {
				t.Fatalf("late registration: %v, want ErrExpired", err)
			}
		})
		t.Run("replayed", func(t *testing.T) {
			member("replayed")
			opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f2"))
			body, _ := key.Get(opts)
			if _, _, err := r.b.FinishLogin(ctx, alice, flowToken("f2"), body); err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.a.FinishLogin(ctx, alice, flowToken("f2"), body); !errors.Is(err, ErrExpired) {
				t.Fatalf("replay: %v, want ErrExpired", err)
			}
		})
		t.Run("concurrent", func(t *testing.T) {
			member("concurrent")
			opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f3"))
			body, _ := key.Get(opts)
			var wg sync.WaitGroup
			errs := make([]error, 4) // losers count as failures: stay below max_failures
			for i := range errs {
				e := r.a
				if i%2 == 1 {
					e = r.b
				}
				wg.Go(func() { _, _, errs[i] = e.FinishLogin(ctx, alice, flowToken("f3"), body) })
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, ErrExpired):
					t.Errorf("a losing finish: %v, want ErrExpired", err)
				}
			}
			if ok != 1 {
				t.Fatalf("%d finishes won, want exactly 1", ok)
			}
		})
		t.Run("another browser", func(t *testing.T) {
			member("another-browser")
			opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f4"))
			body, _ := key.Get(opts)
			if _, _, err := r.b.FinishLogin(ctx, alice, flowToken("f4-other"), body); !errors.Is(err, ErrExpired) {
				t.Fatalf("other flow: %v, want ErrExpired", err)
			}
			// The browser that asked still can.
			if _, _, err := r.b.FinishLogin(ctx, alice, flowToken("f4"), body); err != nil {
				t.Fatalf("own flow after the other's try: %v", err)
			}
		})
		t.Run("another member's ceremony", func(t *testing.T) {
			member("another-members-ceremony")
			r.register(bob, testwebauthn.New(waOrigin), "Bob's")
			opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f5"))
			body, _ := key.Get(opts)
			if _, _, err := r.b.FinishLogin(ctx, bob, flowToken("f5"), body); !errors.Is(err, ErrExpired) {
				t.Fatalf("alice's answer as bob: %v, want ErrExpired", err)
			}
		})
		t.Run("kinds apart", func(t *testing.T) {
			member("kinds-apart")
			opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f6"))
			body, _ := testwebauthn.New(waOrigin).Create(opts)
			if _, _, err := r.b.FinishRegistration(ctx, alice, flowToken("f6"), "X", body); !errors.Is(err, ErrExpired) {
				t.Fatalf("sign-in challenge used to register: %v, want ErrExpired", err)
			}
		})
	})
}

func TestWebAuthnRefusals(t *testing.T) {
	cfg := waConfig()
	cfg.MaxFailures = 6
	onBothStores(t, cfg, func(t *testing.T, r *waRig) {
		key := testwebauthn.New(waOrigin)
		r.register(alice, key, "Key")
		bobKey := testwebauthn.New(waOrigin)
		r.register(bob, bobKey, "Bob's key")

		for _, c := range []struct {
			name  string
			spoil func(a *testwebauthn.Authenticator)
		}{
			{"another member's credential", nil},
			{"wrong origin", func(a *testwebauthn.Authenticator) { a.Origin = "https://login.example.net" }},
			{"wrong RP ID hash", func(a *testwebauthn.Authenticator) { a.RPID = "example.net" }},
			{"no user presence", func(a *testwebauthn.Authenticator) { a.Flags &^= testwebauthn.FlagUP }},
			{"bad signature", func(a *testwebauthn.Authenticator) { a.Key = testwebauthn.New(waOrigin).Key }},
		} {
			t.Run(c.name, func(t *testing.T) {
				auth := bobKey
				if c.spoil != nil {
					cp := *key
					auth = &cp
					c.spoil(auth)
				}
				if _, err := r.login(alice, auth); !errors.Is(err, ErrCredentialRefused) {
					t.Fatalf("login: %v, want ErrCredentialRefused", err)
				}
				if c.spoil != nil {
					fresh := testwebauthn.New(waOrigin)
					fresh.Key, fresh.Origin, fresh.RPID, fresh.Flags = auth.Key, auth.Origin, auth.RPID, auth.Flags
					opts, _ := r.a.BeginRegistration(ctx, alice, flowToken("reg"), "")
					body, _ := fresh.Create(opts)
					if _, _, err := r.b.FinishRegistration(ctx, alice, flowToken("reg"), "Spoilt", body); !errors.Is(err, ErrCredentialRefused) && c.name != "bad signature" {
						t.Fatalf("registration: %v, want ErrCredentialRefused", err)
					}
				}
			})
		}
		// Every refused assertion was counted: one more wrong answer
		// locks the account (max_failures 6).
		if _, err := r.login(alice, bobKey); !isLocked(err) {
			t.Fatalf("sixth refusal: %v, want a lockout", err)
		}
		if _, err := r.a.BeginLogin(ctx, alice, flowToken("x")); !isLocked(err) {
			t.Fatalf("begin while locked: %v, want a lockout", err)
		}
		if _, err := r.login(bob, bobKey); err != nil {
			t.Fatalf("bob, not locked, with his own key: %v", err)
		}
		fails := r.audited("verify", "failure")
		if len(fails) < 5 || fails[0]["method"] != MethodWebAuthn || fails[0]["reason"] != "refused" {
			t.Fatalf("failures audited: %v", fails)
		}
		// The library's reason is kept for the operator.
		if d := fmt.Sprint(fails[1]["detail"]); !strings.Contains(strings.ToLower(d), "origin") {
			t.Fatalf("wrong origin audited with detail %q", d)
		}
	})
}

func TestWebAuthnUserVerificationRequired(t *testing.T) {
	cfg := waConfig()
	cfg.WebAuthn.UserVerification = UVRequired
	onBothStores(t, cfg, func(t *testing.T, r *waRig) {
		noPIN := testwebauthn.New(waOrigin)
		noPIN.Flags = testwebauthn.FlagUP
		opts, _ := r.a.BeginRegistration(ctx, alice, flowToken("f"), "")
		body, _ := noPIN.Create(opts)
		if _, _, err := r.b.FinishRegistration(ctx, alice, flowToken("f"), "No PIN", body); !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("registration without UV: %v, want ErrCredentialRefused", err)
		}
		key := testwebauthn.New(waOrigin)
		r.register(alice, key, "With PIN")
		if _, err := r.login(alice, key); err != nil {
			t.Fatal(err)
		}
		key.Flags = testwebauthn.FlagUP
		if _, err := r.login(alice, key); !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("assertion without UV: %v, want ErrCredentialRefused", err)
		}
	})
}

func TestWebAuthnAAGUIDAllowList(t *testing.T) {
	cfg := waConfig()
	allowed := "cb69481e-8ff7-4039-93ec-0a2729a154a8"
	cfg.WebAuthn.AAGUIDs = []string{allowed}
	onBothStores(t, cfg, func(t *testing.T, r *waRig) {
		for _, c := range []struct {
			name   string
			aaguid [16]byte
		}{{"another model", [16]byte{1, 2, 3}}, {"no model", [16]byte{}}} {
			auth := testwebauthn.New(waOrigin)
			auth.AAGUID = c.aaguid
			opts, _ := r.a.BeginRegistration(ctx, alice, flowToken("f"), "")
			body, _ := auth.Create(opts)
			if _, _, err := r.b.FinishRegistration(ctx, alice, flowToken("f"), "K", body); !errors.Is(err, ErrAuthenticatorNotAllowed) {
				t.Fatalf("%s: %v, want ErrAuthenticatorNotAllowed", c.name, err)
			}
		}
		ok := testwebauthn.New(waOrigin)
		ok.AAGUID = [16]byte{0xcb, 0x69, 0x48, 0x1e, 0x8f, 0xf7, 0x40, 0x39, 0x93, 0xec, 0x0a, 0x27, 0x29, 0xa1, 0x54, 0xa8}
		if c := r.register(alice, ok, "Allowed"); c.AAGUID != allowed {
			t.Fatalf("AAGUID %q, want %q", c.AAGUID, allowed)
		}
		if got := r.audited("webauthn_registered", "failure"); len(got) != 2 || got[0]["reason"] != "authenticator_not_allowed" {
			t.Fatalf("refusals audited: %v", got)
		}
	})
}

func TestWebAuthnSignCounter(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		key := testwebauthn.New(waOrigin)
		key.Counter = 5
		c := r.register(alice, key, "Counting key")
		if c.SignCount != 5 {
			t.Fatalf("registered counter %d, want 5", c.SignCount)
		}
		used, err := r.login(alice, key)
		if err != nil || used.SignCount != 6 {
			t.Fatalf("login: %v, counter %+v", err, used)
		}
		clone := *key
		clone.Counter = 4 // answers 5, below 6
		if _, err := r.login(alice, &clone); !errors.Is(err, ErrCounterRegressed) || !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("counter backwards: %v, want ErrCounterRegressed", err)
		}
		clone.Counter = 5 // answers 6, equal
		if _, err := r.login(alice, &clone); !errors.Is(err, ErrCounterRegressed) {
			t.Fatalf("counter repeated: %v, want ErrCounterRegressed", err)
		}
		got := r.audited("webauthn_counter_regressed", "refused")
		if len(got) != 2 || fmt.Sprint(got[0]["stored"], got[0]["presented"]) != "6 5" || !strings.Contains(fmt.Sprint(got[0]["note"]), "cloned") {
			t.Fatalf("regressions audited: %v", got)
		}
		// The genuine key goes on from the stored counter.
		if used, err := r.login(alice, key); err != nil || used.SignCount != 7 {
			t.Fatalf("genuine key after the clone: %v %+v", err, used)
		}

		// Without a counter (0 and 0, as synced passkeys send) is fine,
		// any number of times.
		passkey := testwebauthn.New(waOrigin)
		r.register(bob, passkey, "Passkey")
		for range 3 {
			if used, err := r.login(bob, passkey); err != nil || used.SignCount != 0 {
				t.Fatalf("counterless passkey: %v %+v", err, used)
			}
		}
	})
}

func TestCounterRegressed(t *testing.T) {
	for _, c := range []struct {
		stored, presented uint32
		want              bool
	}{{0, 0, false}, {0, 1, false}, {5, 6, false}, {5, 5, true}, {5, 4, true}, {5, 0, true}} {
		if got := counterRegressed(c.stored, c.presented); got != c.want {
			t.Errorf("counterRegressed(%d, %d) = %t, want %t", c.stored, c.presented, got, c.want)
		}
	}
}

func TestWebAuthnRemoveAndRename(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		key, phone := testwebauthn.New(waOrigin), testwebauthn.New(waOrigin)
		c1 := r.register(alice, key, "Key")
		c2 := r.register(alice, phone, "Phone")

		// Removal between a sign-in's options and its answer ends the
		// credential's use at once, on the other instance too.
		opts, _ := r.a.BeginLogin(ctx, alice, flowToken("f"))
		body, _ := key.Get(opts)
		if _, err := r.a.RemoveCredential(ctx, alice, c1.ID, false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.b.FinishLogin(ctx, alice, flowToken("f"), body); !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("removed credential: %v, want ErrCredentialRefused", err)
		}
		if _, err := r.login(alice, key); !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("removed credential, new ceremony: %v, want ErrCredentialRefused", err)
		}
		if _, err := r.login(alice, phone); err != nil {
			t.Fatalf("the other credential: %v", err)
		}
		if _, err := r.b.RemoveCredential(ctx, alice, c1.ID, false); !errors.Is(err, ErrCredentialUnknown) {
			t.Fatalf("removing twice: %v", err)
		}
		// Another member cannot remove or rename it.
		if _, err := r.a.RemoveCredential(ctx, bob, c2.ID, true); !errors.Is(err, ErrCredentialUnknown) {
			t.Fatalf("bob removing alice's: %v", err)
		}

		u, err := r.b.RenameCredential(ctx, alice, c2.ID, " 仕事のスマホ ")
		if err != nil || u.WebAuthnCredentials()[0].Name != "仕事のスマホ" {
			t.Fatalf("rename: %v %+v", err, u)
		}
		if _, err := r.b.RenameCredential(ctx, alice, c2.ID, ""); !isField(err, "name") {
			t.Fatalf("empty rename: %v", err)
		}

		// The last method stays unless the caller allows it.
		if _, err := r.a.RemoveCredential(ctx, alice, c2.ID, false); !errors.Is(err, ErrLastMethod) {
			t.Fatalf("removing the last method: %v, want ErrLastMethod", err)
		}
		if _, err := r.a.RemoveMethod(ctx, alice, MethodWebAuthn, false); !errors.Is(err, ErrLastMethod) {
			t.Fatalf("RemoveMethod(webauthn) of the last method: %v, want ErrLastMethod", err)
		}
		u, err = r.a.RemoveCredential(ctx, alice, c2.ID, true)
		if err != nil || u.Enrolled() || u.WebAuthn != nil {
			t.Fatalf("removing the last with allowLast: %v, enrolled %t", err, u.Enrolled())
		}
		if _, err := r.a.BeginLogin(ctx, alice, flowToken("g")); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("begin without credentials: %v", err)
		}
		if n := len(r.audited("webauthn_removed", "success")); n != 2 {
			t.Fatalf("%d removals audited, want 2", n)
		}
		if got := r.audited("webauthn_removed", "refused"); len(got) < 2 || got[len(got)-1]["reason"] != "last_method" {
			t.Fatalf("refused removals audited: %v", got)
		}
		if n := len(r.audited("webauthn_renamed", "success")); n != 1 {
			t.Fatalf("%d renames audited, want 1", n)
		}
		// The member's own list shows what happened to their keys.
		acts, err := r.b.RecentActivity(ctx, alice.User)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ev := range acts {
			seen[ev.Event+"/"+ev.Result] = true
		}
		for _, want := range []string{"webauthn_registered/success", "webauthn_removed/success", "webauthn_removed/refused", "webauthn_renamed/success", "verify/success"} {
			if !seen[want] {
				t.Errorf("activity lacks %s: %v", want, acts)
			}
		}
	})
}

func isField(err error, field string) bool {
	var ie *InputError
	return errors.As(err, &ie) && ie.Field == field
}

func TestCredentialNames(t *testing.T) {
	for in, want := range map[string]string{
		"YubiKey 5":             "YubiKey 5",
		"  padded\t":            "padded",
		strings.Repeat("鍵", 64): strings.Repeat("鍵", 64),
	} {
		if got, err := CheckCredentialName(in); err != nil || got != want {
			t.Errorf("CheckCredentialName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "   ", strings.Repeat("a", 65), "a\x00b", "two\nlines", "bell\a", "\xff\xfe", "a\u2028b", "del\x7f"} {
		_, err := CheckCredentialName(bad)
		if !isField(err, "name") {
			t.Errorf("CheckCredentialName(%q) = %v, want an error naming the field name", bad, err)
		}
	}
	// A bad name is refused before the ceremony is used up.
	f := newFixture(t, waConfig())
	auth := testwebauthn.New(waOrigin)
	opts, _ := f.e.BeginRegistration(ctx, alice, flowToken("f"), "")
	body, _ := auth.Create(opts)
	if _, _, err := f.e.FinishRegistration(ctx, alice, flowToken("f"), strings.Repeat("x", 65), body); !isField(err, "name") {
		t.Fatalf("long name: %v", err)
	}
	if _, _, err := f.e.FinishRegistration(ctx, alice, flowToken("f"), "Fine", body); err != nil {
		t.Fatalf("the same ceremony with a good name: %v", err)
	}
}

func TestWebAuthnCredentialBound(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	for i := range MaxWebAuthnCredentials {
		r.register(alice, testwebauthn.New(waOrigin), fmt.Sprint("Key ", i))
		f.clk.Advance(time.Minute) // beyond the enrolment start limit
	}
	if _, err := f.e.BeginRegistration(ctx, alice, flowToken("f"), ""); !errors.Is(err, ErrTooManyCredentials) {
		t.Fatalf("eleventh: %v, want ErrTooManyCredentials", err)
	}
}

func TestWebAuthnBeginLimited(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	r.register(alice, testwebauthn.New(waOrigin), "Key")
	for i := range maxWebAuthnStarts {
		if _, err := f.e.BeginLogin(ctx, alice, flowToken(fmt.Sprint("f", i))); err != nil {
			t.Fatal(err)
		}
	}
	var lim *LimitedError
	if _, err := f.e.BeginLogin(ctx, alice, flowToken("one more")); !errors.As(err, &lim) || lim.Limit != LimitWebAuthnStarts {
		t.Fatalf("beyond the limit: %v", err)
	}
}

// The credential is sealed and bound to the member: the record holds
// neither the credential ID nor the public key in the clear, and a
// credential copied into another member's record does not open.
func TestWebAuthnCredentialSealed(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	key := testwebauthn.New(waOrigin)
	r.register(alice, key, "Key")
	raw, err := f.st.Get(ctx, userKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	x := key.Key.X.FillBytes(make([]byte, 32))
	for _, secret := range [][]byte{key.CredID, x} {
		for _, form := range [][]byte{secret, []byte(b64url(secret)), []byte(strings.TrimRight(mustJSON(secret), `"`)[1:])} {
			if bytes.Contains(raw, form) {
				t.Fatalf("the record holds %x in the clear", secret)
			}
		}
	}
	var u User
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatal(err)
	}
	copied := u.WebAuthn.Credentials[0]
	if _, err := f.e.openCredential("bob", &copied); !errors.Is(err, ErrUnreadable) {
		t.Fatalf("alice's credential opened for bob: %v", err)
	}
}

func mustJSON(b []byte) string {
	s, _ := json.Marshal(b)
	return string(s)
}

func TestWebAuthnOff(t *testing.T) {
	f := newFixture(t, Config{})
	if f.e.WebAuthnEnabled() {
		t.Fatal("enabled without an RP ID")
	}
	if _, err := f.e.BeginRegistration(ctx, alice, flowToken("f"), ""); !errors.Is(err, ErrWebAuthnOff) {
		t.Fatalf("begin: %v", err)
	}
	if _, _, err := f.e.FinishLogin(ctx, alice, flowToken("f"), []byte("{}")); !errors.Is(err, ErrWebAuthnOff) {
		t.Fatalf("finish: %v", err)
	}
}

func TestWebAuthnConfigValidation(t *testing.T) {
	ok := func(c *WebAuthnConfig) {}
	for _, c := range []struct {
		change func(c *WebAuthnConfig)
		field  string // "" for valid
	}{
		{ok, ""},
		{func(c *WebAuthnConfig) { c.Origins = []string{"http://localhost:8080"}; c.RPID = "localhost" }, ""},
		{func(c *WebAuthnConfig) { c.Origins = []string{"https://example.com", "https://a.b.example.com:8443"} }, ""},
		{func(c *WebAuthnConfig) { *c = WebAuthnConfig{} }, ""},
		{func(c *WebAuthnConfig) { c.RPID = "" }, "webauthn_rp_id"},
		{func(c *WebAuthnConfig) { c.RPID = "Example.com" }, "webauthn_rp_id"},
		{func(c *WebAuthnConfig) { c.RPID = "example.com:443" }, "webauthn_rp_id"},
		{func(c *WebAuthnConfig) { c.RPID = "co.uk"; c.Origins = []string{"https://x.co.uk"} }, "webauthn_rp_id"},
		{func(c *WebAuthnConfig) { c.RPID = "192.0.2.1"; c.Origins = []string{"https://192.0.2.1"} }, "webauthn_rp_id"},
		{func(c *WebAuthnConfig) { c.RPID = "127.0.0.1"; c.Origins = []string{"http://127.0.0.1:8080"} }, "webauthn_rp_id"},
		{func(c *WebAuthnConfig) { c.Origins = nil }, "webauthn_origins"},
		{func(c *WebAuthnConfig) { c.Origins = []string{"http://login.example.com"} }, "webauthn_origins"},
		{func(c *WebAuthnConfig) { c.Origins = []string{"https://example.net"} }, "webauthn_origins"},
		{func(c *WebAuthnConfig) { c.Origins = []string{"https://badexample.com"} }, "webauthn_origins"},
		{func(c *WebAuthnConfig) { c.Origins = []string{"https://example.com/path"} }, "webauthn_origins"},
		{func(c *WebAuthnConfig) { c.Origins = []string{"example.com"} }, "webauthn_origins"},
		{func(c *WebAuthnConfig) { c.UserVerification = "discouraged" }, "webauthn_user_verification"},
		{func(c *WebAuthnConfig) { c.Attestation = "enterprise" }, "webauthn_attestation"},
		{func(c *WebAuthnConfig) { c.AAGUIDs = []string{"not-a-uuid"} }, "webauthn_aaguids"},
		{func(c *WebAuthnConfig) { c.ChallengeTTL = 10 * time.Second }, "webauthn_challenge_ttl"},
		{func(c *WebAuthnConfig) { c.ChallengeTTL = time.Hour }, "webauthn_challenge_ttl"},
		{func(c *WebAuthnConfig) { c.RPName = "bad\nname" }, "webauthn_rp_name"},
	} {
		cfg := waConfig()
		c.change(&cfg.WebAuthn)
		err := cfg.Validate()
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v", cfg.WebAuthn, err)
		case c.field != "" && (err == nil || !strings.HasPrefix(err.Error(), c.field+" ") && !strings.HasPrefix(err.Error(), c.field+":")):
			t.Errorf("%+v: %v, want an error naming %s", cfg.WebAuthn, err, c.field)
		}
	}
}

// An admin reset takes the credentials with everything else, and a
// registration begun before it cannot finish after it.
func TestWebAuthnAdminReset(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		key := testwebauthn.New(waOrigin)
		r.register(alice, key, "Key")
		opts, err := r.a.BeginRegistration(ctx, alice, flowToken("before"), "")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := testwebauthn.New(waOrigin).Create(opts)
		if _, err := r.b.Reset(ctx, "admin endpoint", alice.User, "lost keys, ID checked"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.a.FinishRegistration(ctx, alice, flowToken("before"), "Sneaky", body); !errors.Is(err, ErrExpired) {
			t.Fatalf("registration begun before the reset: %v, want ErrExpired", err)
		}
		if _, err := r.a.BeginLogin(ctx, alice, flowToken("after")); !errors.Is(err, ErrNotEnrolled) {
			t.Fatalf("sign-in after the reset: %v, want ErrNotEnrolled", err)
		}
		// Enrolling afresh works, with a new user handle.
		old := key.UserHandle
		fresh := testwebauthn.New(waOrigin)
		r.register(alice, fresh, "New key")
		if bytes.Equal(old, fresh.UserHandle) {
			t.Fatal("the user handle outlived the reset")
		}
		if _, err := r.login(alice, fresh); err != nil {
			t.Fatal(err)
		}
	})
}

// Credentials sealed under an older key still work, and move to the
// current key with the next write.
func TestWebAuthnKeyRotation(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	key := testwebauthn.New(waOrigin)
	r.register(alice, key, "Key")
	f.e = f.engine(waConfig(), otherKey, testKey)
	r.a, r.b = f.e, f.e
	if _, err := r.login(alice, key); err != nil {
		t.Fatalf("login after rotation: %v", err)
	}
	u, err := f.e.State(ctx, alice.User)
	if err != nil {
		t.Fatal(err)
	}
	if older, missing := f.e.keysOf(u); older || missing {
		t.Fatalf("after a sign-in: sealed under an older key %t, a missing one %t", older, missing)
	}
	f.e = f.engine(waConfig(), otherKey)
	r.a, r.b = f.e, f.e
	if _, err := r.login(alice, key); err != nil {
		t.Fatalf("login with the old key gone: %v", err)
	}
}

// flowToken is a browser's flow token for a test: name, made as long as
// the engine asks.
func flowToken(name string) string { return "browser-flow-token-" + name }

// A ceremony needs the browser's flow token: an empty or short one, which
// would bind it to the member alone, is refused at the start and at the
// finish.
func TestWebAuthnNeedsFlowToken(t *testing.T) {
	f := newFixture(t, waConfig())
	alice := Actor{User: "alice", IP: "192.0.2.1"}
	for _, flow := range []string{"", "short"} {
		if _, err := f.e.BeginRegistration(ctx, alice, flow, ""); !errors.Is(err, errNoFlow) {
			t.Errorf("registration with flow %q: %v", flow, err)
		}
		if _, _, err := f.e.FinishRegistration(ctx, alice, flow, "Key", []byte("{}")); !errors.Is(err, ErrExpired) {
			t.Errorf("finish with flow %q: %v", flow, err)
		}
	}
}

// A registration keeps what sign-ins need and no more: junk or repeated
// transports are dropped, and the attestation as received is not kept,
// so a client cannot fill the member's record through it.
func TestWebAuthnKeepsOnlyWhatSignInNeeds(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	auth := testwebauthn.New(waOrigin)
	auth.Transports = []string{"usb", "usb", "<img src=x onerror=alert(1)>", "nfc"}
	for i := range 500 {
		auth.Transports = append(auth.Transports, fmt.Sprintf("junk-%d", i))
	}
	c := r.register(alice, auth, "Key")
	if strings.Join(c.Transports, ",") != "usb,nfc" {
		t.Fatalf("transports kept: %v", c.Transports)
	}
	if len(c.Sealed) > 1024 {
		t.Fatalf("the sealed credential is %d bytes: more than sign-ins need", len(c.Sealed))
	}
	if _, err := r.login(alice, auth); err != nil {
		t.Fatalf("signing in with the trimmed credential: %v", err)
	}
}

// An allow-list set after a credential was registered applies to its
// sign-ins too: a model not on it no longer signs in.
func TestWebAuthnAAGUIDAllowListAtSignIn(t *testing.T) {
	f := newFixture(t, waConfig())
	r := &waRig{t: t, a: f.e, b: f.e, clk: f.clk, audit: f.audit}
	auth := testwebauthn.New(waOrigin)
	auth.AAGUID = [16]byte{1, 2, 3}
	r.register(alice, auth, "Old model")
	cfg := waConfig()
	cfg.WebAuthn.AAGUIDs = []string{"cb69481e-8ff7-4039-93ec-0a2729a154a8"}
	listed := f.engine(cfg, testKey)
	r.a, r.b = listed, listed
	if _, err := r.login(alice, auth); !errors.Is(err, ErrAuthenticatorNotAllowed) {
		t.Fatalf("a model off the list signing in: %v", err)
	}
}

// The library's words kept with a refusal are bounded: they may quote
// what the client sent.
func TestWebAuthnRefusalDetailBounded(t *testing.T) {
	err := refused(errors.New(strings.Repeat("x", 60_000)))
	if !errors.Is(err, ErrCredentialRefused) || len(err.Error()) > len(ErrCredentialRefused.Error())+2+maxRefusalDetail+len("…") {
		t.Fatalf("refusal of %d bytes", len(err.Error()))
	}
}

// A passkey added by a member who had factors before, without a session
// verified with a proven app or passkey, is unproven, as an app added so
// is: where the admin pages accept passkeys, a stolen password with the
// member's mailbox must not open them. An admin's confirmation proves it.
func TestWebAuthnUnprovenPasskey(t *testing.T) {
	onBothStores(t, waConfig(), func(t *testing.T, r *waRig) {
		if c := r.register(alice, testwebauthn.New(waOrigin), "First"); c.Unproven {
			t.Fatal("a first method is unproven")
		}
		u, _ := r.a.State(ctx, alice.User)
		if !u.Proven(MethodWebAuthn) || u.Proven(MethodEmail) || u.Proven(MethodRecovery) {
			t.Fatal("Proven: a first passkey is proven, codes never are")
		}
		withPasskey := Actor{User: alice.User, IP: alice.IP, StepUp: MethodWebAuthn}
		if c := r.register(withPasskey, testwebauthn.New(waOrigin), "Second"); c.Unproven {
			t.Fatal("a passkey added after a proven passkey is unproven")
		}
		for _, stepUp := range []string{MethodEmail, MethodSMS, MethodRecovery, ""} {
			a := Actor{User: alice.User, IP: alice.IP, StepUp: stepUp}
			if c := r.register(a, testwebauthn.New(waOrigin), "After "+stepUp); !c.Unproven {
				t.Fatalf("a passkey added after step-up %q is proven", stepUp)
			}
		}
		if n := len(r.audited("webauthn_registered", "success")); n != 6 {
			t.Fatalf("%d registrations audited", n)
		}
		// Unproven passkeys among proven ones: a session from a proven
		// one still proves, one from an unproven one (the session says
		// which, Actor.StepUpUnproven) does not, and what it adds is
		// unproven too.
		u, _ = r.b.State(ctx, alice.User)
		if !u.Proven(MethodWebAuthn) || !u.FactorUnproven() {
			t.Fatal("Proven, FactorUnproven: proven and unproven passkeys together")
		}
		viaUnproven := withPasskey
		viaUnproven.StepUpUnproven = true
		if c := r.register(viaUnproven, testwebauthn.New(waOrigin), "Laundered"); !c.Unproven {
			t.Fatal("a passkey added in a session from an unproven passkey is proven")
		}
		if _, err := r.a.ConfirmApp(ctx, "boss (approver)", alice.User, "called her back"); err != nil {
			t.Fatal(err)
		}
		if u, _ := r.a.State(ctx, alice.User); !u.Proven(MethodWebAuthn) || u.FactorUnproven() {
			t.Fatal("after the confirmation, passkeys are still unproven")
		}
		// After a reset, a first passkey with the password alone: unproven.
		if _, err := r.a.Reset(ctx, "admin endpoint", alice.User, "lost keys"); err != nil {
			t.Fatal(err)
		}
		if c := r.register(alice, testwebauthn.New(waOrigin), "After reset"); !c.Unproven {
			t.Fatal("a passkey after a reset is proven")
		}
	})
}
