package challenge

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// BenchmarkVerification measures a successful authenticator-app
// verification, the store work a sign-in costs (count the guess, read the
// record, record the step, clear the count), on each store. It reports
// the 99th-percentile latency next to the mean.
//
//	go test -run '^$' -bench Verification ./challenge/
func BenchmarkVerification(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		clk := clock.NewFake(time.Unix(1_700_000_010, 0))
		st, err := embedded.Open(filepath.Join(b.TempDir(), "db"), embedded.Options{Now: clk.Now, SweepInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		benchVerify(b, st, clk)
	})
	b.Run("redis", func(b *testing.B) {
		srv := testredis.Start(b)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		b.Cleanup(func() { client.Close() })
		benchVerify(b, redis.New(client, "bench:"), clock.NewFake(time.Unix(1_700_000_010, 0)))
	})
}

func benchVerify(b *testing.B, st store.Store, clk *clock.Fake) {
	kr, err := keyring.New(testKey)
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(st, kr, Config{}, clk.Now, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	a := Actor{User: "alice", IP: "192.0.2.1"}
	en, err := e.StartTOTP(ctx, a, "Example", "alice", "flow")
	if err != nil {
		b.Fatal(err)
	}
	code := func() string {
		c, err := hotp.GenerateCodeCustom(en.Secret, uint64(clk.Now().Unix()/30), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	if _, err := e.ConfirmTOTP(ctx, a, "flow", code()); err != nil {
		b.Fatalf("confirm: %v", err)
	}
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		// Each sign-in needs a fresh time step.
		clk.Advance(30 * time.Second)
		c := code()
		start := time.Now()
		if _, err := e.VerifyTOTP(ctx, a, c); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}
