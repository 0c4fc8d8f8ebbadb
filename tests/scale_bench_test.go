package tests

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math"
	randv2 "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/session"
	redisstore "github.com/caddy-twofactor/twofactor/store/redis"
)

var (
	scaleMembers  = flag.Int("members", 1_000_000, "BenchmarkScale: distinct members in the large population")
	scaleZipfS    = flag.Float64("zipf.s", 1.1, "BenchmarkScale: Zipf exponent s (> 1) of the members' popularity")
	scaleZipfV    = flag.Float64("zipf.v", 1, "BenchmarkScale: Zipf offset v (>= 1) of the members' popularity")
	scaleTime     = flag.Duration("scale.time", 10*time.Second, "BenchmarkScale: how long each population is measured, after a warm-up as long")
	scaleUsers    = flag.Int("member_cache_size", 0, "BenchmarkScale: the app's member_cache_size (0: its default)")
	scaleIdentity = flag.Int("identity_cache_size", 0, "BenchmarkScale: the identity's cache_size (0: its default)")
	scaleWorkers  = flag.Int("scale.workers", 16, "BenchmarkScale: requests in flight at once")
	scaleRequests = flag.Int64("scale.requests", 0, "BenchmarkScale: measure this many requests per population, after a warm-up of as many, instead of -scale.time")
	scaleFrozen   = flag.Bool("scale.frozen", false, "BenchmarkScale: stop the gateway's clock, so nothing expires and every miss is one of capacity")
	scaleLease    = flag.Bool("lease_records", true, "BenchmarkScale: the Redis store's lease_records (one local redis-server: its notices arrive in order)")
)

// BenchmarkScale drives verified members' requests through Caddy's whole
// handler chain, in memory, with the gateway's state in a real Redis and a
// who-am-I endpoint on loopback that counts its calls. Each member has
// their own member-site session and their own second-factor session;
// which member sends the next request follows a Zipf law of exponent s
// and offset v (math/rand/v2). It measures 1,000 members, then -members
// (default 1,000,000) in the same run, each for -scale.time after a
// warm-up as long, on the real clock, so the caches' TTLs (2s for member
// records, the identity's cache for who-am-I answers) run as they do in
// production (-scale.frozen stops it instead, so that every miss is one
// of the caches' bounds):
//
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 30m ./tests/ \
//		-members 1000000 -zipf.s 1.1 [-member_cache_size N] [-identity_cache_size N] [-lease_records=false]
//
// Reported per population: requests/s, store commands and GETs per
// request (the member records' misses, plus the daily seen notes'
// reads), who-am-I calls per request (the identities' misses), the hit
// ratios that follow, and the Go heap in use above the benchmark's own
// cookies after the warm-up and at the end; then the large population's
// throughput as a ratio of the small one's.
func BenchmarkScale(b *testing.B) {
	s, v, n := *scaleZipfS, *scaleZipfV, *scaleMembers
	if s <= 1 || v < 1 || n < 1000 {
		b.Fatalf("-zipf.s %v -zipf.v %v -members %d: need s > 1, v >= 1 and at least 1000 members", s, v, n)
	}
	srv := testredis.Start(b)
	who := newCountingWhoami(b)
	lease := ""
	if *scaleLease {
		lease = "\n\t\t\tlease_records"
	}
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tkey_prefix scale:%s\n\t\t}", testKey, srv.Addr, lease)
	if *scaleUsers > 0 {
		global += fmt.Sprintf("\n\t\tmember_cache_size %d", *scaleUsers)
	}
	identity := ""
	if *scaleIdentity > 0 {
		identity = fmt.Sprintf("\n\t\tcache_size %d", *scaleIdentity)
	}
	e := start(b, setup{
		global: global,
		extra:  `respond /bench/* "ok" 200`,
		policy: fmt.Sprintf("\n\tidentity endpoint %s/me {\n\t\tsession_cookie member_session%s\n\t}\n\tprotect /bench/*\n", who.URL, identity),
	})
	// The real clock from here: cached records and answers expire as
	// they would in production. Frozen, only the caches' bounds cause
	// misses.
	if !*scaleFrozen {
		b.Cleanup(clock.Set(time.Now))
	}

	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr, PoolSize: 64})
	b.Cleanup(func() { rdb.Close() })
	began := time.Now()
	seedMembers(b, redisstore.New(rdb, "scale:"), n)
	b.Logf("seeded %d member records in %s", n, time.Since(began).Round(time.Millisecond))

	kr, err := keyring.New([]byte(testKey))
	if err != nil {
		b.Fatal(err)
	}
	codec := session.NewJar(kr).Codec()
	gw := server(b, e.port)
	length := scaleTime.String()
	if *scaleRequests > 0 {
		length = strconv.FormatInt(*scaleRequests, 10) + " requests"
	}
	b.Logf("Zipf s=%v v=%v, %d requests in flight, %s warm-up and %s measured per population, GOMAXPROCS %d, clock frozen %t, lease_records %t",
		s, v, *scaleWorkers, length, length, runtime.GOMAXPROCS(0), *scaleFrozen, *scaleLease)

	small := runPopulation(b, gw, e.host, codec, rdb, who, 1000)
	large := runPopulation(b, gw, e.host, codec, rdb, who, n)
	ratio := large.perSecond / small.perSecond
	b.Logf("%d members: %.3f of the 1000-member throughput", n, ratio)
	b.ReportMetric(small.perSecond, "req/s-1k")
	b.ReportMetric(large.perSecond, "req/s-large")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(large.getsPerReq, "GETs/req-large")
	b.ReportMetric(large.whoamiPerReq, "whoami/req-large")
	b.ReportMetric(large.firstPerReq+large.idlePerReq, "unsavable/req-large")
	b.ReportMetric(large.heapWarm, "heapMB-warm")
	b.ReportMetric(large.heapEnd, "heapMB-end")
}

// scaleResult is one population's measurements.
type scaleResult struct {
	perSecond, getsPerReq, cmdsPerReq, whoamiPerReq float64
	heapWarm, heapEnd                               float64 // MB above the heap before its traffic, its cookies minted
	// firstPerReq counts the requests of members with no request before
	// in the run, idlePerReq those of members whose last request was the
	// identity's cache time ago or more: misses no cache can save, for
	// the identity's answers (both) and the member records (the first).
	firstPerReq, idlePerReq float64
}

// identityCacheTime is the identity's cache time the benchmark runs with:
// the default.
const identityCacheTime = 10 * time.Second

// lastRequests holds each member's last request time (Unix nanoseconds,
// 0: none yet), for counting the misses no cache can save.
type lastRequests struct {
	at          []atomic.Int64
	first, idle atomic.Int64
}

// note records a request of member i at now, counting it as first or
// idle when counting.
func (l *lastRequests) note(i uint64, now int64, counting bool) {
	prev := l.at[i].Swap(now)
	switch {
	case !counting:
	case prev == 0:
		l.first.Add(1)
	case now-prev >= int64(identityCacheTime):
		l.idle.Add(1)
	}
}

// runPopulation mints the sessions of members 0 to n-1, warms the gateway
// up with their traffic and measures it.
func runPopulation(b *testing.B, gw *caddyhttp.Server, host string, codec *session.Codec, rdb *goredis.Client, who *countingWhoami, n int) scaleResult {
	b.Helper()
	cookies := mintCookies(b, codec, n)
	last := &lastRequests{at: make([]atomic.Int64, n)}
	base := heapMB()
	drive(b, gw, host, cookies, *scaleTime, 1, last, false)
	warm := heapMB()

	calls0, gets0, cmds0, keys0 := who.calls.Load(), redisCalls(b, rdb, "cmdstat_get"), redisCalls(b, rdb, "total"), redisKeys(b, rdb)
	began := time.Now()
	reqs := drive(b, gw, host, cookies, *scaleTime, 2, last, true)
	elapsed := time.Since(began)
	calls, gets, cmds, keys := who.calls.Load()-calls0, redisCalls(b, rdb, "cmdstat_get")-gets0, redisCalls(b, rdb, "total")-cmds0, redisKeys(b, rdb)-keys0
	end := heapMB()

	r := scaleResult{
		perSecond:    float64(reqs) / elapsed.Seconds(),
		getsPerReq:   float64(gets) / float64(reqs),
		cmdsPerReq:   float64(cmds) / float64(reqs),
		whoamiPerReq: float64(calls) / float64(reqs),
		heapWarm:     warm - base,
		heapEnd:      end - base,
		firstPerReq:  float64(last.first.Load()) / float64(reqs),
		idlePerReq:   float64(last.idle.Load()) / float64(reqs),
	}
	// A member noted as seen for the first time today is one new seen
	// key and one GET of it; the rest of the GETs are member records.
	userHit := 1 - float64(max(gets-keys, 0))/float64(reqs)
	b.Logf("%7d members: %8.0f req/s  %.4f store cmds/req  %.4f GETs/req (%d new seen notes)  %.4f who-am-I/req  "+
		"hit ratio: identities %.4f, member records ≥ %.4f  heap: +%.1f MB after warm-up, +%.1f MB at the end, above %.1f MB before it (cookies minted)",
		n, r.perSecond, r.cmdsPerReq, r.getsPerReq, keys, r.whoamiPerReq, 1-r.whoamiPerReq, userHit, r.heapWarm, r.heapEnd, base)
	b.Logf("%7d members: misses no cache saves: %.4f/req first requests in the run, %.4f/req after %s idle or more",
		n, r.firstPerReq, r.idlePerReq, identityCacheTime)
	runtime.KeepAlive(cookies)
	return r
}

// drive sends requests of the members whose cookies are given, picked by
// the Zipf law, from -scale.workers goroutines for d (or -scale.requests
// of them), and returns how many it sent. Every request must pass the
// gateway.
func drive(b *testing.B, gw *caddyhttp.Server, host string, cookies []string, d time.Duration, seed uint64, last *lastRequests, counting bool) int64 {
	b.Helper()
	var total, refused, left atomic.Int64
	left.Store(*scaleRequests)
	var firstRefusal atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range *scaleWorkers {
		wg.Go(func() {
			z := randv2.NewZipf(randv2.New(randv2.NewPCG(seed, uint64(w))), *scaleZipfS, *scaleZipfV, uint64(len(cookies)-1))
			req := httptest.NewRequest(http.MethodGet, "http://"+host+"/bench/page", nil)
			req.RemoteAddr = "127.0.0.1:50000"
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
			req.Header.Set("Accept", "text/html,application/xhtml+xml")
			rw := &discardWriter{h: http.Header{}}
			var count int64
			for {
				i := z.Uint64()
				last.note(i, time.Now().UnixNano(), counting)
				req.Header["Cookie"] = append(req.Header["Cookie"][:0], cookies[i])
				rw.reset()
				gw.ServeHTTP(rw, req)
				if rw.code != http.StatusOK {
					refused.Add(1)
					firstRefusal.CompareAndSwap(nil, fmt.Sprintf("status %d, Location %q", rw.code, rw.h.Get("Location")))
				}
				count++
				if count%32 != 0 {
					continue
				}
				if *scaleRequests > 0 {
					if left.Add(-32) <= 0 {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
			}
			total.Add(count)
		})
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		b.Fatalf("%d of %d requests not passed, the first: %v", n, total.Load(), firstRefusal.Load())
	}
	return total.Load()
}

// discardWriter is a ResponseWriter that keeps the status only.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}
func (w *discardWriter) reset() { clear(w.h); w.code = 0 }

func scaleMemberID(i int) string { return "member-" + strconv.Itoa(i) }

// seedMembers writes n enrolled members' records (an authenticator app,
// recovery codes, one browser), each with its own sealed-looking secrets.
func seedMembers(b *testing.B, st *redisstore.Store, n int) {
	b.Helper()
	created := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	const workers = 32
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range workers {
		wg.Go(func() {
			secret, codes, browser := make([]byte, 66), make([]byte, 220), make([]byte, 16)
			for i := w; i < n; i += workers {
				rand.Read(secret)
				rand.Read(codes)
				rand.Read(browser)
				u := &challenge.User{
					ID: scaleMemberID(i), Rev: 1, Created: created,
					TOTP:     &challenge.TOTPMethod{Secret: secret, Added: created, LastUsed: created, LastStep: created.Unix() / 30},
					Recovery: &challenge.RecoveryCodes{Sealed: codes, Created: created, Left: 10},
					Browsers: map[string]int64{hex.EncodeToString(browser): created.Unix()},
				}
				if err := challenge.SeedUser(context.Background(), st, u); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("seeding: %v", err)
	}
}

// mintCookies returns each member's Cookie header: their member-site
// session and a second-factor session for it, sealed as the gateway
// seals them, verified with the app a minute ago.
func mintCookies(b *testing.B, codec *session.Codec, n int) []string {
	b.Helper()
	now := clock.Now().Unix()
	out := make([]string, n)
	for i := range out {
		member := "s" + strconv.Itoa(i) + "-" + strconv.FormatUint(randv2.Uint64(), 36)
		sum := sha256.Sum256([]byte(member))
		s := session.Session{User: scaleMemberID(i), Method: challenge.MethodTOTP,
			// Seen up to a minute ahead is allowed: so no session falls
			// due for re-sealing (a minute after its last use) during
			// the run.
			Issued: now - 60, LastSeen: now + 55, Expires: now + 6*3600}
		copy(s.Binding[:], sum[:16])
		rand.Read(s.ID[:])
		out[i] = "member_session=" + member + "; " + session.SessionCookie + "=" + codec.EncodeSession(&s)
	}
	return out
}

// countingWhoami is the member site's who-am-I endpoint: a member-site
// session "s<n>-..." is member n. It counts its calls.
type countingWhoami struct {
	*httptest.Server
	calls atomic.Int64
}

func newCountingWhoami(b *testing.B) *countingWhoami {
	w := &countingWhoami{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.calls.Add(1)
		c, err := r.Cookie("member_session")
		if err != nil {
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		num, _, ok := strings.Cut(strings.TrimPrefix(c.Value, "s"), "-")
		if !ok {
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(rw, `{"id":"member-%s","email":"member-%s@example.com"}`, num, num)
	}))
	b.Cleanup(w.Close)
	return w
}

var callsRE = regexp.MustCompile(`calls=(\d+)`)

// redisCalls reads a command's calls from Redis's commandstats, or with
// "total", every command processed.
func redisCalls(b *testing.B, rdb *goredis.Client, stat string) int64 {
	b.Helper()
	section, field := "commandstats", stat+":"
	if stat == "total" {
		section, field = "stats", "total_commands_processed:"
	}
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, field)
		if !ok {
			continue
		}
		if m := callsRE.FindStringSubmatch(rest); m != nil {
			rest = m[1]
		}
		n, _ := strconv.ParseInt(rest, 10, 64)
		return n
	}
	return 0
}

func redisKeys(b *testing.B, rdb *goredis.Client) int64 {
	b.Helper()
	n, err := rdb.DBSize(context.Background()).Result()
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// heapMB is the live Go heap in MB, after two collections: the first
// moves what sync.Pools hold to their victim caches, the second frees it.
func heapMB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return math.Round(float64(m.HeapAlloc)/(1<<20)*10) / 10
}
