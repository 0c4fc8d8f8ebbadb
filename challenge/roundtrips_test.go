package challenge

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// maxVerifyTrips is the round trips one verification may make to Redis
// (issue 16): read, count, write, clean up.
const maxVerifyTrips = 4

// A verification by each method, right and wrong, makes at most
// maxVerifyTrips round trips to a standalone Redis and to a Cluster. On a
// Cluster a step's pipeline is split by node and the parts are sent in
// parallel: the step costs one round trip of latency, counted on the
// cluster client, and no node may see more trips than there are steps.
func TestVerificationRoundTrips(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		srv := testredis.Start(t)
		verifyTrips(t, goredis.NewClient(&goredis.Options{Addr: srv.Addr}))
	})
	t.Run("cluster", func(t *testing.T) {
		verifyTrips(t, goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: testredis.StartCluster(t)}))
	})
}

func verifyTrips(t *testing.T, client goredis.UniversalClient) {
	t.Cleanup(func() { client.Close() })
	var trips testredis.RoundTrips
	trips.Watch(client)
	clk := clock.NewFake(time.Unix(1_700_000_010, 0))
	kr, err := keyring.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(redis.New(client, "2fa:"), kr, waConfig(), clk.Now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CheckKey(ctx, ""); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, clk: clk}
	a := Actor{User: "alice", IP: "192.0.2.1", UserAgent: "test"}
	secret, _ := enrolOn(t, e, clk, a)
	var sent Delivery
	deliver := func(_ context.Context, d Delivery) error { sent = d; return nil }
	if _, err := e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeEnrol, Flow: "mail", To: aliceMail}, deliver); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ConfirmCode(ctx, a, "mail", sent.Code); err != nil {
		t.Fatal(err)
	}
	codes, err := e.GenerateRecoveryCodes(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	auth := testwebauthn.New(waOrigin)
	opts, err := e.BeginRegistration(ctx, a, flowToken("reg"), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	body, err := auth.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.FinishRegistration(ctx, a, flowToken("reg"), "Phone", body); err != nil {
		t.Fatal(err)
	}

	// measure runs one verification (prepare, untimed, readies it) and
	// returns its round trips.
	measure := func(name string, prepare func(), verify func() error, wantErr bool) {
		t.Helper()
		clk.Advance(time.Minute)
		if prepare != nil {
			prepare()
		}
		trips.Take()
		err := verify()
		steps, sent := trips.Take()
		if (err != nil) != wantErr {
			t.Fatalf("%s: %v", name, err)
		}
		lines := ""
		for _, tr := range sent {
			lines += "\n\t" + tr.String()
		}
		t.Logf("%s: %d round trips, %d pipelines or commands to the servers:%s", name, len(steps), len(sent), lines)
		if len(steps) > maxVerifyTrips || testredis.MostPerServer(sent) > len(steps) {
			t.Errorf("%s: %d round trips, at most %d to one server; want at most %d", name, len(steps), testredis.MostPerServer(sent), maxVerifyTrips)
		}
	}
	// Twice each: the first use of a script on a node loads it.
	for round := range 2 {
		measure(fmt.Sprintf("app, right code (%d)", round), nil, func() error {
			_, err := e.VerifyTOTP(ctx, a, f.code(secret, 0))
			return err
		}, false)
		measure(fmt.Sprintf("app, wrong code (%d)", round), nil, func() error {
			_, err := e.VerifyTOTP(ctx, a, "000000")
			return err
		}, true)
		var code string
		measure(fmt.Sprintf("email code (%d)", round), func() {
			if _, err := e.SendCode(ctx, a, CodeRequest{Method: MethodEmail, Purpose: PurposeVerify, Flow: "signin"}, deliver); err != nil {
				t.Fatal(err)
			}
			code = sent.Code
			clk.Advance(e.cfg.ResendCooldown)
		}, func() error {
			_, _, err := e.VerifyCode(ctx, a, "signin", code)
			return err
		}, false)
		measure(fmt.Sprintf("recovery code (%d)", round), nil, func() error {
			_, err := e.UseRecoveryCode(ctx, a, codes[round])
			return err
		}, false)
		var answer []byte
		measure(fmt.Sprintf("passkey (%d)", round), func() {
			opts, err := e.BeginLogin(ctx, a, flowToken("login"))
			if err != nil {
				t.Fatal(err)
			}
			if answer, err = auth.Get(opts); err != nil {
				t.Fatal(err)
			}
		}, func() error {
			_, _, err := e.FinishLogin(ctx, a, flowToken("login"), answer)
			return err
		}, false)
	}
}
