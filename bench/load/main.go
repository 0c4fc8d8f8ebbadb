// Command load is the load test an operator runs against their own
// deployment of the gateway. It seeds N members (default 1,000,000) into
// the gateway's store, through the engine's own record format, each with
// an authenticator app whose key the tool derives and an email address
// whose mail reaches the tool's SMTP sink; serves the member site of the
// site block under test (sign-in, who-am-I, member pages); then, for a set
// time and concurrency, runs a mix of verified browsing, sign-ins with the
// app, sign-ins with an emailed code and settings views, members drawn
// with a Zipf popularity, with a progress line, and prints throughput,
// p50/p99 and errors per kind. See the README's Benchmarks section for the
// site block and the global options the gateway needs.
//
//	go run ./bench/load -members 1000000 -gateway http://127.0.0.1:8080 -redis 127.0.0.1:6379 -key-prefix 2fa-load:
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

func main() {
	o, err := parseOptions(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := o.run(ctx, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if rep.Total.ErrorCount() > 0 {
		os.Exit(3)
	}
}

// options are the command's flags.
type options struct {
	members       int
	gateway       string
	listen        string
	smtp          string
	smtpCert      string
	storeKind     string
	redis         []string
	redisMaster   string
	redisUser     string
	redisPassword string
	redisDB       int
	redisTLS      bool
	redisCAFile   string
	keyPrefix     string
	embeddedPath  string
	noStore       bool
	key           string
	idPrefix      string
	emailDomain   string
	seedSecret    string
	seedBatch     int
	seedWorkers   int
	duration      time.Duration
	concurrency   int
	mix           mix
	zipf          float64
	pagePrefix    string
	sessionCookie string
	period        time.Duration
	digits        int
	skew          int
	cooldown      time.Duration
	sendsPerHour  int
	stepUp        time.Duration
	mailTimeout   time.Duration
	insecure      bool
	jsonPath      string
	progress      time.Duration
}

func parseOptions(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.IntVar(&o.members, "members", 1_000_000, "members to seed and draw from")
	fs.StringVar(&o.gateway, "gateway", "http://127.0.0.1:8080", "the site block under test (scheme://host[:port])")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9090", "address of the member site the site block proxies to")
	fs.StringVar(&o.smtp, "smtp", "127.0.0.1:2525", "address of the SMTP sink the gateway's email sender points at")
	fs.StringVar(&o.smtpCert, "smtp-cert", "", "offer STARTTLS with a certificate for the -smtp host kept in this file (and .key), for the sender's ca_file")
	fs.StringVar(&o.storeKind, "store", "redis", "the gateway's store: redis or embedded (the embedded one only while Caddy is stopped: seed only)")
	redisAddrs := fs.String("redis", "127.0.0.1:6379", "Redis address(es), comma-separated: one server, the sentinels (with -redis-master) or Cluster nodes")
	fs.StringVar(&o.redisMaster, "redis-master", "", "Sentinel master name")
	fs.StringVar(&o.redisUser, "redis-username", "", "Redis ACL user")
	fs.StringVar(&o.redisPassword, "redis-password", getenv("REDIS_PASSWORD"), "Redis password (default $REDIS_PASSWORD)")
	fs.IntVar(&o.redisDB, "redis-db", 0, "Redis database number")
	fs.BoolVar(&o.redisTLS, "redis-tls", false, "connect to Redis with TLS")
	fs.StringVar(&o.redisCAFile, "redis-ca-file", "", "PEM file of the CAs to trust for Redis's certificates (with -redis-tls)")
	fs.StringVar(&o.keyPrefix, "key-prefix", "2fa-load:", "the store's key_prefix: use one of its own for the load test")
	fs.StringVar(&o.embeddedPath, "embedded", "", "the embedded store's file (with -store embedded)")
	fs.BoolVar(&o.noStore, "no-store", false, "open no store: the members were seeded before (the embedded store, which Caddy holds while it runs)")
	fs.StringVar(&o.key, "key", getenv("TWOFACTOR_KEY"), "the gateway's first key, as in its keys option (default $TWOFACTOR_KEY)")
	fs.StringVar(&o.idPrefix, "id-prefix", "load-", "the members' IDs: this and a 7-digit number")
	fs.StringVar(&o.emailDomain, "email-domain", "load.example.com", "the members' email domain")
	fs.StringVar(&o.seedSecret, "seed", "caddy-twofactor load test", "secret the members' app keys are derived from")
	fs.IntVar(&o.seedBatch, "seed-batch", 1000, "members per seed write")
	fs.IntVar(&o.seedWorkers, "seed-workers", 4, "seed writes at once")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long the load runs (0: seed only)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "operations at once")
	mixFlag := fs.String("mix", defaultMix, "weights of the kinds of operation")
	fs.Float64Var(&o.zipf, "zipf", 1.1, "popularity exponent s (> 1): member k is drawn in proportion to 1/(1+k)^s")
	fs.StringVar(&o.pagePrefix, "page-prefix", "/.2fa/", "the gateway's page prefix (prefix option)")
	fs.StringVar(&o.sessionCookie, "session-cookie", "load_session", "the member site's session cookie (identity endpoint session_cookie)")
	fs.DurationVar(&o.period, "totp-period", 30*time.Second, "the gateway's totp_period")
	fs.IntVar(&o.digits, "totp-digits", 6, "the gateway's totp_digits")
	fs.IntVar(&o.skew, "totp-skew", 1, "the gateway's totp_skew")
	fs.DurationVar(&o.cooldown, "resend-cooldown", time.Minute, "the gateway's resend_cooldown")
	fs.IntVar(&o.sendsPerHour, "sends-per-user", 5, "the gateway's hourly_sends_per_user (and per destination, if lower)")
	fs.DurationVar(&o.stepUp, "step-up", 10*time.Minute, "the gateway's step_up")
	fs.DurationVar(&o.mailTimeout, "mail-timeout", 10*time.Second, "how long an email sign-in waits for its code")
	fs.BoolVar(&o.insecure, "insecure", false, "accept any TLS certificate from the gateway")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	fs.DurationVar(&o.progress, "progress", time.Second, "interval of the progress line")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every option is a flag", fs.Arg(0))
	}
	for a := range strings.SplitSeq(*redisAddrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.redis = append(o.redis, a)
		}
	}
	var err error
	if o.mix, err = parseMix(*mixFlag); err != nil {
		return o, err
	}
	return o, o.check()
}

// check reports the first bad flag, naming it.
func (o *options) check() error {
	u, err := url.Parse(o.gateway)
	switch {
	case o.members < 1:
		return fmt.Errorf("-members %d: at least 1", o.members)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/"):
		return fmt.Errorf("-gateway %q: want scheme://host[:port], http or https, no path", o.gateway)
	case !validAddr(o.listen):
		return fmt.Errorf("-listen %q: want host:port", o.listen)
	case !validAddr(o.smtp):
		return fmt.Errorf("-smtp %q: want host:port", o.smtp)
	case o.smtpCert != "" && strings.HasPrefix(o.smtp, ":"):
		return fmt.Errorf("-smtp %q: -smtp-cert needs the host the gateway connects to", o.smtp)
	case o.storeKind != "redis" && o.storeKind != "embedded":
		return fmt.Errorf("-store %q: redis or embedded", o.storeKind)
	case o.storeKind == "redis" && len(o.redis) == 0:
		return errors.New("-redis: at least one host:port")
	case o.storeKind == "embedded" && o.embeddedPath == "":
		return errors.New("-embedded: the store file is required with -store embedded")
	case o.redisCAFile != "" && !o.redisTLS:
		return errors.New("-redis-ca-file: needs -redis-tls")
	case o.redisDB < 0:
		return fmt.Errorf("-redis-db %d: 0 or more", o.redisDB)
	case o.storeKind == "redis" && o.keyPrefix == "":
		return errors.New("-key-prefix: required (use one of the load test's own)")
	case len(strings.TrimSpace(o.key)) < 32:
		return errors.New("-key (or $TWOFACTOR_KEY): the gateway's first key, at least 32 bytes")
	case o.idPrefix == "" || strings.ContainsAny(o.idPrefix, " \t\r\n@"):
		return fmt.Errorf("-id-prefix %q: not empty, no spaces or @", o.idPrefix)
	case o.emailDomain == "" || strings.ContainsAny(o.emailDomain, " \t\r\n@"):
		return fmt.Errorf("-email-domain %q: a domain name", o.emailDomain)
	case o.seedSecret == "":
		return errors.New("-seed: not empty")
	case o.seedBatch < 1 || o.seedBatch > 100_000:
		return fmt.Errorf("-seed-batch %d: 1 to 100000", o.seedBatch)
	case o.seedWorkers < 1 || o.seedWorkers > 64:
		return fmt.Errorf("-seed-workers %d: 1 to 64", o.seedWorkers)
	case o.noStore && o.duration == 0 && o.smtpCert == "":
		return errors.New("-no-store with -duration 0: nothing to do (add -smtp-cert to make the sink's certificate)")
	case o.duration < 0:
		return fmt.Errorf("-duration %s: 0 (seed only) or more", o.duration)
	case o.concurrency < 1 || o.concurrency > 10_000:
		return fmt.Errorf("-concurrency %d: 1 to 10000", o.concurrency)
	case !(o.zipf > 1) || o.zipf > 10:
		return fmt.Errorf("-zipf %g: more than 1, at most 10", o.zipf)
	case !strings.HasPrefix(o.pagePrefix, "/") || !strings.HasSuffix(o.pagePrefix, "/"):
		return fmt.Errorf("-page-prefix %q: begins and ends with /", o.pagePrefix)
	case o.sessionCookie == "" || strings.ContainsAny(o.sessionCookie, " ;=,\t"):
		return fmt.Errorf("-session-cookie %q: a cookie name", o.sessionCookie)
	case o.period < 15*time.Second || o.period%time.Second != 0:
		return fmt.Errorf("-totp-period %s: whole seconds, at least 15s", o.period)
	case o.digits != 6 && o.digits != 8:
		return fmt.Errorf("-totp-digits %d: 6 or 8", o.digits)
	case o.skew < 0 || o.skew > 2:
		return fmt.Errorf("-totp-skew %d: 0, 1 or 2", o.skew)
	case o.cooldown < 0:
		return fmt.Errorf("-resend-cooldown %s: 0 or more", o.cooldown)
	case o.sendsPerHour < 1:
		return fmt.Errorf("-sends-per-user %d: at least 1", o.sendsPerHour)
	case o.stepUp < 2*time.Minute:
		return fmt.Errorf("-step-up %s: at least 2m", o.stepUp)
	case o.mailTimeout <= 0:
		return fmt.Errorf("-mail-timeout %s: more than 0", o.mailTimeout)
	case o.progress <= 0:
		return fmt.Errorf("-progress %s: more than 0", o.progress)
	}
	return nil
}

func (o *options) population() *population {
	return &population{n: o.members, prefix: o.idPrefix, domain: o.emailDomain, secret: []byte(o.seedSecret)}
}

// openStore opens the gateway's store as its Redis or embedded store
// module would, and returns the Redis client for pipelined seeding.
func (o *options) openStore() (store.Store, goredis.UniversalClient, func() error, error) {
	if o.storeKind == "embedded" {
		st, err := embedded.Open(o.embeddedPath, embedded.Options{})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-embedded %s: %w (is Caddy running on it? stop it to seed)", o.embeddedPath, err)
		}
		return st, nil, st.Close, nil
	}
	opts := &goredis.UniversalOptions{Addrs: o.redis, MasterName: o.redisMaster, Username: o.redisUser,
		Password: o.redisPassword, DB: o.redisDB, DialTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second}
	if o.redisTLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.redisCAFile != "" {
			pem, err := os.ReadFile(o.redisCAFile)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("-redis-ca-file: %w", err)
			}
			opts.TLSConfig.RootCAs = x509.NewCertPool()
			if !opts.TLSConfig.RootCAs.AppendCertsFromPEM(pem) {
				return nil, nil, nil, fmt.Errorf("-redis-ca-file %s: no PEM certificate", o.redisCAFile)
			}
		}
	}
	client := goredis.NewUniversalClient(opts)
	return redis.New(client, o.keyPrefix), client, client.Close, nil
}

// run seeds, serves the member site and the mail sink, waits for the
// gateway and runs the load. The report goes to out (and -json), the
// progress lines to progress.
func (o *options) run(ctx context.Context, out, progress io.Writer) (Report, error) {
	pop := o.population()
	// The sink's certificate first, so that a seed-only run makes it for
	// the gateway's ca_file.
	var sinkTLSConfig *tls.Config
	if o.smtpCert != "" {
		host, _, _ := net.SplitHostPort(o.smtp)
		var err error
		if sinkTLSConfig, err = sinkTLS(o.smtpCert, host); err != nil {
			return Report{}, fmt.Errorf("-smtp-cert: %w", err)
		}
	}
	var st store.Store
	if !o.noStore {
		var closeStore func() error
		var err error
		if st, closeStore, err = o.seed(ctx, pop, out, progress); err != nil {
			return Report{}, err
		}
		defer closeStore()
	}
	if o.duration == 0 {
		return Report{}, nil
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return Report{}, fmt.Errorf("-listen: %w", err)
	}
	srv := &http.Server{Handler: newSite(pop, o.sessionCookie), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	sink, err := startMailSink(o.smtp, sinkTLSConfig)
	if err != nil {
		return Report{}, fmt.Errorf("-smtp: %w", err)
	}
	defer sink.close()

	gw, _ := url.Parse(strings.TrimSuffix(o.gateway, "/"))
	client2 := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: o.concurrency * 2, MaxIdleConnsPerHost: o.concurrency * 2,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: o.insecure}, //nolint:gosec // -insecure, for a test deployment's own CA
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if err := waitFor(ctx, client2, gw.String()+"/app/", 30*time.Second); err != nil {
		return Report{}, fmt.Errorf("-gateway %s: %w", o.gateway, err)
	}
	r := newRunner(runConfig{
		gateway: gw, pagePrefix: o.pagePrefix, pop: pop, mail: sink, st: st, duration: o.duration, concurrency: o.concurrency,
		mix: o.mix, zipf: o.zipf, period: o.period, digits: o.digits, skew: o.skew, resendCooldown: o.cooldown,
		sendsPerHour: o.sendsPerHour, stepUp: o.stepUp, mailTimeout: o.mailTimeout, client: client2,
		progress: progress, progressEvery: o.progress,
	})
	rep := r.run(ctx)
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	fmt.Fprintln(out)
	rep.print(out)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return rep, fmt.Errorf("-json: %w", err)
		}
	}
	return rep, nil
}

// seed opens the store, checks the key and seeds the members; the store
// stays open for the run's step marker.
func (o *options) seed(ctx context.Context, pop *population, out, progress io.Writer) (store.Store, func() error, error) {
	st, client, closeStore, err := o.openStore()
	if err != nil {
		return nil, nil, err
	}
	kr, err := keyring.New([]byte(strings.TrimSpace(o.key)))
	if err != nil {
		closeStore()
		return nil, nil, fmt.Errorf("-key: %w", err)
	}
	e, err := challenge.New(st, kr, challenge.Config{}, time.Now, nil)
	if err == nil {
		if _, err = e.CheckKey(ctx, ""); err != nil {
			err = fmt.Errorf("the store under -key-prefix %q: %w (is -key the gateway's first key?)", o.keyPrefix, err)
		}
	}
	var seeded seedResult
	if err == nil {
		sd := &seeder{e: e, st: st, pop: pop, redis: client, prefix: o.keyPrefix, batch: o.seedBatch, workers: o.seedWorkers, progress: progress}
		if seeded, err = sd.run(ctx); err != nil {
			err = fmt.Errorf("seeding: %w", err)
		}
	}
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	fmt.Fprintf(out, "seeded: %d members in the store, %d written by this run in %s\n", seeded.Members, seeded.Written, seeded.Took.Round(time.Millisecond))
	if client != nil {
		if info, err := client.Info(ctx, "memory").Result(); err == nil {
			fmt.Fprintf(out, "redis used_memory: %s\n", infoField(info, "used_memory_human"))
		}
	}
	return st, closeStore, nil
}

func validAddr(a string) bool {
	_, port, err := net.SplitHostPort(a)
	return err == nil && port != ""
}

// waitFor waits until the gateway answers at all.
func waitFor(ctx context.Context, c *http.Client, u string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not reachable: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return "?"
}
