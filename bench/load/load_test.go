package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	goredis "github.com/redis/go-redis/v9"

	_ "github.com/caddy-twofactor/twofactor"
	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/keyring"
	"github.com/caddy-twofactor/twofactor/store"
)

const testKey = "load-test-key-load-test-key-load-test-key"

// gatewayConfig is the site block and global options the README tells an
// operator to add, with this test's addresses.
func gatewayConfig(logPath, redisAddr string, gateway, site, smtp int, smtpCA string) string {
	return fmt.Sprintf(`{
	admin off
	persist_config off
	log {
		output file %q
		format json
	}
	two_factor {
		keys %q
		store redis {
			address %s
			key_prefix "2fa-load:"
		}
		email smtp {
			host 127.0.0.1
			port %d
			tls starttls
			ca_file %q
			from "Load test <load@example.com>"
		}
		hourly_sends_per_address off
		max_address_failures off
	}
}

http://127.0.0.1:%d {
	two_factor {
		identity endpoint http://127.0.0.1:%d/api/me {
			session_cookie load_session
		}
		site_name "Load test"
		protect /* {
			except /login
		}
	}
	reverse_proxy 127.0.0.1:%d
}
`, logPath, testKey, redisAddr, smtp, smtpCA, gateway, site, site)
}

// TestLoadSmall runs the tool as an operator would, with 200 members for a
// few seconds, against real Caddy with the plugin and a real redis-server:
// every kind runs, nothing fails, the report has every field, and a second
// seed writes nothing.
func TestLoadSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	srv := testredis.Start(t)
	gateway, site, smtp := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	// The sink's certificate, made before the gateway reads it as its
	// sender's ca_file; the tool's runs below find it and keep it.
	smtpCert := filepath.Join(t.TempDir(), "sink.pem")
	if _, err := sinkTLS(smtpCert, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(gatewayConfig(logPath, srv.Addr, gateway, site, smtp, smtpCert)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(adapted, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("Caddy's log:\n%s", b)
			}
		}
	})

	jsonPath := filepath.Join(t.TempDir(), "report.json")
	args := []string{
		"-members", "200", "-duration", "4s", "-concurrency", "4", "-progress", "500ms",
		"-gateway", fmt.Sprintf("http://127.0.0.1:%d", gateway),
		"-listen", fmt.Sprintf("127.0.0.1:%d", site), "-smtp", fmt.Sprintf("127.0.0.1:%d", smtp), "-smtp-cert", smtpCert,
		"-redis", srv.Addr, "-key", testKey, "-json", jsonPath,
		"-mix", "browse=50,app=20,email=10,settings=20",
	}
	o, err := parseOptions(args, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	rep, err := o.run(context.Background(), &out, &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", &out)

	if !strings.Contains(out.String(), "seeded: 200 members in the store, 200 written") {
		t.Errorf("seed line missing:\n%s", &out)
	}
	if !strings.Contains(progress.String(), "operations") || !strings.Contains(progress.String(), "a second") {
		t.Errorf("no progress line: %q", &progress)
	}
	checkReport(t, rep, &out, 4*time.Second)
	var fromFile Report
	if b, err := os.ReadFile(jsonPath); err != nil || json.Unmarshal(b, &fromFile) != nil || fromFile.Total.Ops != rep.Total.Ops {
		t.Errorf("-json report: %v, %+v", err, fromFile.Total)
	}

	// The gateway sees them as members: the member list's index holds 200.
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer client.Close()
	if n, err := client.ZCard(context.Background(), "2fa-load:\x00index:members").Result(); err != nil || n != 200 {
		t.Errorf("members index: %d, %v; want 200", n, err)
	}

	// A run right after: the members who used this time step's app
	// code in the first run use the next one, and nothing fails.
	o.duration = 2 * time.Second
	out.Reset()
	if rep, err = o.run(context.Background(), &out, &progress); err != nil {
		t.Fatal(err)
	}
	t.Logf("second run:\n%s", &out)
	checkReport(t, rep, &out, 2*time.Second)

	// Seeding again writes nothing.
	o.duration = 0
	out.Reset()
	if _, err := o.run(context.Background(), &out, &progress); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "seeded: 200 members in the store, 0 written") {
		t.Errorf("second seed:\n%s", &out)
	}
}

// checkReport asserts that every kind ran without an error and that the
// report, as returned and as printed in out, has every field.
func checkReport(t *testing.T, rep Report, out *bytes.Buffer, duration time.Duration) {
	t.Helper()
	if len(rep.Kinds) != int(kinds) || rep.Members != 200 || rep.Concurrency != 4 || rep.Duration < duration {
		t.Fatalf("report %+v", rep)
	}
	sum := 0
	for i, k := range rep.Kinds {
		if k.Kind != kind(i).String() {
			t.Errorf("kind %d is %q", i, k.Kind)
		}
		if k.Ops == 0 || k.PerSecond <= 0 || k.P50 <= 0 || k.P99 < k.P50 {
			t.Errorf("%s: %+v; want operations, a rate and p50 <= p99", k.Kind, k)
		}
		if k.ErrorCount() != 0 {
			t.Errorf("%s: errors %v", k.Kind, k.Errors)
		}
		if !strings.Contains(out.String(), "\n"+k.Kind+" ") {
			t.Errorf("no %s line in the report", k.Kind)
		}
		sum += k.Ops
	}
	if rep.Total.Ops != sum || rep.Total.P99 < rep.Total.P50 || rep.Total.ErrorCount() != 0 {
		t.Errorf("total %+v, kinds sum to %d", rep.Total, sum)
	}
	if !strings.Contains(out.String(), "errors: none") {
		t.Errorf("the report does not say there were no errors:\n%s", out)
	}
	if rep.CodeMails < int64(rep.Kinds[kindEmail].Ops) {
		t.Errorf("%d code mails for %d email sign-ins", rep.CodeMails, rep.Kinds[kindEmail].Ops)
	}
}

func TestOptionsNameTheBadFlag(t *testing.T) {
	base := []string{"-key", testKey}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-members", "0"}, "-members"},
		{[]string{"-gateway", "127.0.0.1:8080"}, "-gateway"},
		{[]string{"-gateway", "http://x/path"}, "-gateway"},
		{[]string{"-listen", "9090"}, "-listen"},
		{[]string{"-smtp", "localhost"}, "-smtp"},
		{[]string{"-smtp", ":2525", "-smtp-cert", "sink.pem"}, "-smtp"},
		{[]string{"-store", "memcached"}, "-store"},
		{[]string{"-redis", ""}, "-redis"},
		{[]string{"-store", "embedded"}, "-embedded"},
		{[]string{"-redis-ca-file", "ca.pem"}, "-redis-ca-file"},
		{[]string{"-key-prefix", ""}, "-key-prefix"},
		{[]string{"-key", "short"}, "-key"},
		{[]string{"-id-prefix", "a b"}, "-id-prefix"},
		{[]string{"-email-domain", "a@b"}, "-email-domain"},
		{[]string{"-seed-batch", "0"}, "-seed-batch"},
		{[]string{"-concurrency", "0"}, "-concurrency"},
		{[]string{"-zipf", "1"}, "-zipf"},
		{[]string{"-page-prefix", "/.2fa"}, "-page-prefix"},
		{[]string{"-totp-period", "10s"}, "-totp-period"},
		{[]string{"-totp-digits", "7"}, "-totp-digits"},
		{[]string{"-totp-skew", "3"}, "-totp-skew"},
		{[]string{"-step-up", "1m"}, "-step-up"},
		{[]string{"-no-store", "-duration", "0"}, "-no-store"},
		{[]string{"-mix", "browse=1,reading=2"}, "-mix"},
		{[]string{"-mix", "browse=-1"}, "-mix"},
		{[]string{"-mix", "browse=0"}, "-mix"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, err := parseOptions(append(append([]string{}, base...), tc.args...), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error naming %s", tc.args, err, tc.want)
		}
	}
	o, err := parseOptions([]string{"-mix", "app=3, email=1"}, func(k string) string {
		return map[string]string{"TWOFACTOR_KEY": testKey}[k]
	})
	if err != nil || o.mix != (mix{0, 3, 1, 0}) || o.key != testKey {
		t.Fatalf("parseOptions: %+v, %v", o, err)
	}
}

// The embedded store is seeded through the engine's WriteSeed, while Caddy
// is stopped: once, then not again.
func TestSeedEmbedded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "two_factor.db")
	o, err := parseOptions([]string{"-store", "embedded", "-embedded", path, "-members", "50", "-duration", "0", "-key", testKey},
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	seedTwice(t, o)
	// Another population under the same store is refused, naming the flags.
	o.idPrefix = "other-"
	if _, err := o.run(context.Background(), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-id-prefix") {
		t.Errorf("another population: %v", err)
	}
}

// A store whose key prefix already lists members this tool did not seed
// (a production store, say) is refused before anything is written.
func TestSeedRefusesAStoreWithOtherMembers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "two_factor.db")
	o, err := parseOptions([]string{"-store", "embedded", "-embedded", path, "-members", "50", "-duration", "0", "-key", testKey},
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	e, _, closeStore := openEngine(t, o)
	b, err := e.Seed([]challenge.SeedMember{{ID: "a-real-member", TOTPSecret: []byte("0123456789abcdefghij")}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteSeed(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	closeStore()
	_, err = o.run(context.Background(), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-key-prefix") {
		t.Fatalf("seeding among other members: %v", err)
	}
	_, st, closeStore := openEngine(t, o)
	defer closeStore()
	if _, err := st.Get(context.Background(), "loadtest:seeded"); err == nil {
		t.Error("the refused seed left its marker")
	}
}

// On a Redis Cluster the pipelined seed lands on every node, and the
// engine reads the members back: a seeded member's app code verifies.
func TestSeedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	nodes := testredis.StartCluster(t)
	o, err := parseOptions([]string{"-redis", strings.Join(nodes, ","), "-members", "300", "-duration", "0", "-key", testKey},
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	seedTwice(t, o)
	e, _, closeStore := openEngine(t, o)
	defer closeStore()
	pop := o.population()
	for _, i := range []int{0, 150, 299} {
		code, err := hotp.GenerateCodeCustom(pop.appKeyBase32(i), uint64(time.Now().Unix()/30),
			hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.VerifyTOTP(context.Background(), challenge.Actor{User: pop.id(i), IP: "192.0.2.1"}, code); err != nil {
			t.Errorf("member %d's app code: %v", i, err)
		}
	}
	c, err := e.CountMembers(context.Background())
	if err != nil || c.Members != 300 || c.ByMethod[challenge.MethodEmail] != 300 {
		t.Errorf("counts %+v, %v; want 300 members with email", c, err)
	}
}

// seedTwice seeds o's members twice: the first run writes them all, the
// second none.
// openEngine opens the tool's store and an engine on it with the test key.
func openEngine(t *testing.T, o options) (*challenge.Engine, store.Store, func() error) {
	t.Helper()
	st, _, closeStore, err := o.openStore()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New([]byte(testKey))
	if err != nil {
		closeStore()
		t.Fatal(err)
	}
	e, err := challenge.New(st, kr, challenge.Config{}, time.Now, nil)
	if err != nil {
		closeStore()
		t.Fatal(err)
	}
	return e, st, closeStore
}

func seedTwice(t *testing.T, o options) {
	t.Helper()
	for _, written := range []int{o.members, 0} {
		var out bytes.Buffer
		if _, err := o.run(context.Background(), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("seeded: %d members in the store, %d written", o.members, written); !strings.Contains(out.String(), want) {
			t.Errorf("want %q:\n%s", want, &out)
		}
	}
}
