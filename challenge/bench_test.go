package challenge

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/audit"
	"github.com/caddy-twofactor/twofactor/clock"
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

// signInGap is how far a member's clock moves between sign-ins. Each
// sign-in needs a step newer than the last one used, and the newest step in
// the skew window whose code matches is the one recorded: about once in a
// million sign-ins the next step has the same code, so it is used up too.
// Two steps on, a fresh step always exists and every verification succeeds.
const signInGap = 60 * time.Second

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
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clk.Advance(signInGap)
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

// BenchmarkVerificationParallel is BenchmarkVerification with many members
// signing in at once, each from their own address: the throughput a store
// sustains (ops/s, verifications per second) and the latency a member
// sees meanwhile (p50-µs, p99-µs), on the embedded store, one local
// redis-server, and a three-node Redis Cluster on this machine.
//
//	go test -run '^$' -bench VerificationParallel -benchtime 5s ./challenge/
//
// Each store runs with and without the durable audit trail (trail/off):
// with it, every verification's audit event is also queued and appended
// in the background, and "dropped" counts records the queue could not
// hold (appending fell behind the sign-ins).
func BenchmarkVerificationParallel(b *testing.B) {
	for _, trail := range []string{"off", "trail"} {
		b.Run("embedded/"+trail, func(b *testing.B) {
			st, err := embedded.Open(filepath.Join(b.TempDir(), "db"), embedded.Options{SweepInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			benchVerifyParallel(b, st, trail == "trail")
		})
		b.Run("redis/"+trail, func(b *testing.B) {
			srv := testredis.Start(b)
			client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
			b.Cleanup(func() { client.Close() })
			benchVerifyParallel(b, redis.New(client, "bench:"), trail == "trail")
		})
		b.Run("cluster/"+trail, func(b *testing.B) {
			client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: testredis.StartCluster(b)})
			b.Cleanup(func() { client.Close() })
			benchVerifyParallel(b, redis.New(client, "bench:"), trail == "trail")
		})
	}
}

// verifiersPerCPU is how many members sign in at once per CPU: more than
// one, so a store that waits on the network (Redis) has requests in flight
// while others wait.
const verifiersPerCPU = 8

// membersPerVerifier is how many members each of them signs in, in turn:
// many members, as a site has, not a few signing in over and over.
const membersPerVerifier = 8

// verifier is one member signing in over and over with fresh codes.
type verifier struct {
	e      *Engine
	clk    *clock.Fake
	a      Actor
	secret string
}

func benchVerifyParallel(b *testing.B, st store.Store, withTrail bool) {
	kr, err := keyring.New(testKey)
	if err != nil {
		b.Fatal(err)
	}
	logger := zap.NewNop()
	var dropped atomic.Int64
	if withTrail {
		tr, err := audit.New(st, kr.MACKeys("audit chain"), "bench", time.Now)
		if err != nil {
			b.Fatal(err)
		}
		w := audit.NewWriter(zap.NewNop(), func() { dropped.Add(1) })
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx, tr) }()
		b.Cleanup(func() { w.Close(); <-done })
		logger = audit.Tee(logger, w, time.Now)
	}
	// Every sign-in needs a time step newer than the member's last, and a
	// code is only accepted within a step of the engine's clock. One clock
	// moved by every goroutine could pass a code's step before it is
	// checked, so each member has an engine of their own on the shared
	// store, its clock moved only by that member, like gateway instances
	// sharing one store. Each member is served by one engine only, so the
	// store work is what one engine would do.
	groups := make([][]*verifier, verifiersPerCPU*runtime.GOMAXPROCS(0))
	for g := range groups {
		for i := range membersPerVerifier {
			n := g*membersPerVerifier + i
			clk := clock.NewFake(time.Unix(1_700_000_010, 0))
			e, err := New(st, kr, Config{}, clk.Now, logger)
			if err != nil {
				b.Fatal(err)
			}
			v := &verifier{e: e, clk: clk, a: Actor{User: fmt.Sprintf("member%d", n), IP: fmt.Sprintf("192.0.%d.%d", 2+n/250, 1+n%250)}}
			en, err := e.StartTOTP(ctx, v.a, "Example", v.a.User, "flow")
			if err != nil {
				b.Fatal(err)
			}
			v.secret = en.Secret
			if _, err := e.ConfirmTOTP(ctx, v.a, "flow", v.code(b)); err != nil {
				b.Fatalf("confirm %s: %v", v.a.User, err)
			}
			groups[g] = append(groups[g], v)
		}
	}
	took := make([][]time.Duration, len(groups))
	var next atomic.Int32
	b.SetParallelism(verifiersPerCPU)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1) - 1
		mine := make([]time.Duration, 0, b.N/len(groups)+1)
		defer func() { took[g] = mine }()
		for i := 0; pb.Next(); i++ {
			v := groups[g][i%len(groups[g])]
			v.clk.Advance(signInGap)
			c := v.code(b)
			start := time.Now()
			if _, err := v.e.VerifyTOTP(ctx, v.a, c); err != nil {
				// Not Fatal: FailNow must not run off the benchmark's goroutine.
				b.Errorf("%s: %v", v.a.User, err)
				return
			}
			mine = append(mine, time.Since(start))
		}
	})
	b.StopTimer()
	if b.Failed() {
		return
	}
	all := slices.Concat(took...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	if withTrail {
		b.ReportMetric(float64(dropped.Load()), "dropped")
	}
}

// code is the member's authenticator code at their engine's time.
func (v *verifier) code(b *testing.B) string {
	c, err := hotp.GenerateCodeCustom(v.secret, uint64(v.clk.Now().Unix()/30), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		b.Error(err)
	}
	return c
}
