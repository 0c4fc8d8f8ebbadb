package tests

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testcode"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
	"github.com/caddy-twofactor/twofactor/internal/testsns"
)

// Gateway instances in processes of their own, as behind a load balancer:
// the test binary starts copies of itself, each running one Caddy from a
// config file, all on one Redis. They share nothing but Redis, and keep
// real time.

// instanceConfig names, in a child process, the Caddy JSON config it runs.
const instanceConfig = "TWOFACTOR_TEST_INSTANCE_CONFIG"

// runInstance is the child's side: serve the config until told to stop.
func runInstance(path string) int {
	cfg, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	if err := caddy.Load(cfg, true); err != nil {
		fmt.Fprintln(os.Stderr, "loading config:", err)
		return 3
	}
	<-stop
	return 0
}

// instance is one gateway process.
type instance struct {
	*env
	cfgPath, outPath string
	cmd              *exec.Cmd
	exited           chan struct{}
}

// startInstances runs n gateways with the global and policy lines in
// front of one member site with members.
func startInstances(t *testing.T, n int, global, policy string, members []membersite.Member) []*instance {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	site := membersite.New(members)
	siteSrv := httptestServer(t, site)
	echoSrv := httptestServer(t, http.HandlerFunc(echo))
	var out []*instance
	for i := range n {
		out = append(out, startInstance(t, i, &env{t: t, site: site, siteURL: siteSrv, echoURL: echoSrv}, setup{global: global, policy: policy}))
	}
	return out
}

// startInstance runs gateway i in a process of its own in front of the
// member site and echo upstream of base, with s's global and policy
// lines.
func startInstance(t *testing.T, i int, base *env, s setup) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{
		env: &env{t: t, site: base.site, siteURL: base.siteURL, echoURL: base.echoURL,
			logPath: filepath.Join(dir, "caddy.log"), dbPath: filepath.Join(dir, "unused.db")},
		cfgPath: filepath.Join(dir, "caddy.json"),
		outPath: filepath.Join(dir, "output"),
	}
	for try := 1; ; try++ {
		in.port = testnet.FreePort(t)
		in.host = fmt.Sprintf("127.0.0.1:%d", in.port)
		in.base = "http://" + in.host
		err := in.launch(s)
		if err == nil {
			break
		}
		if try == 5 {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			for _, p := range []string{in.outPath, in.logPath} {
				if b, err := os.ReadFile(p); err == nil {
					t.Logf("instance %d, %s:\n%s", i, filepath.Base(p), b)
				}
			}
		}
	})
	return in
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln, err := listen(0)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// launch starts the process and waits until it serves.
func (in *instance) launch(s setup) error {
	adapted, err := adapt(in.caddyfile(s))
	if err != nil {
		in.t.Fatalf("adapting: %v", err)
	}
	if err := os.WriteFile(in.cfgPath, adapted, 0o600); err != nil {
		in.t.Fatal(err)
	}
	out, err := os.Create(in.outPath)
	if err != nil {
		in.t.Fatal(err)
	}
	defer out.Close()
	in.cmd = exec.Command(os.Args[0], "-test.run=^$")
	in.cmd.Env = append(os.Environ(), instanceConfig+"="+in.cfgPath)
	in.cmd.Stdout, in.cmd.Stderr = out, out
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.exited = make(chan struct{})
	go func() { _ = in.cmd.Wait(); close(in.exited) }()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-in.exited:
			b, _ := os.ReadFile(in.outPath)
			return fmt.Errorf("exited at start: %s", b)
		default:
		}
		if resp, err := c.Get(in.base + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.stop()
	return fmt.Errorf("did not start within 20s")
}

// stop ends the process as an operator's restart would (SIGTERM).
func (in *instance) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.exited
	}
	in.cmd = nil
}

// on returns the browser pointed at another gateway, same cookies: one
// person whose requests a load balancer sends here or there.
func (b *browser) on(e *env) *browser {
	c := *b
	c.e = e
	return &c
}

// loginAs signs id in at the member site directly (members beyond the
// demo's have no password) and gives the browser the site's cookie.
func (b *browser) loginAs(id string) {
	b.t.Helper()
	token, err := b.e.site.Login(id)
	if err != nil {
		b.t.Fatal(err)
	}
	b.setCookie(membersite.SessionCookie, token)
}

// realCode is the authenticator app's code steps time steps from now.
func realCode(t *testing.T, secret string, steps int) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, time.Now().Add(time.Duration(steps)*30*time.Second), totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolApp sets up the authenticator app in real time and returns its
// secret; the code used is the current step's.
func (b *browser) enrolApp(returnTo string) string {
	b.t.Helper()
	return b.enrolWith(returnTo, func(secret string) string { return realCode(b.t.(*testing.T), secret, 0) })
}

// addEmail adds email codes for alice, signed in and verified, with the
// n-th code mailed to her.
func (b *browser) addEmail(box mailbox, n int) {
	b.t.Helper()
	r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusSeeOther {
		b.t.Fatalf("adding email: %d %s", r.status, r.body)
	}
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to=%2Fmembers%2F",
		url.Values{"return_to": {"/members/"}, "code": {box.code("alice@example.com", n)}})
	enrolDone(b.t, r, "/members/")
}

// mailbox finds codes in what the SMTP server received, by recipient.
type mailbox struct {
	t    *testing.T
	mail *testsmtp.Server
}

// code waits for the n-th code message to addr.
func (m mailbox) code(addr string, n int) string {
	m.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []testsmtp.Message
		for _, msg := range m.mail.Messages() {
			if sixDigits.MatchString(msg.Text) && len(msg.To) == 1 && msg.To[0] == addr {
				got = append(got, msg)
			}
		}
		if len(got) >= n {
			return testcode.Find(m.t, got[n-1].Text)
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("no code message %d to %s", n, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// untilRefused requests path through b until the gateway stops passing
// it, and returns how long that took from since. It fails the test after
// limit.
func untilRefused(t *testing.T, b *browser, path string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for {
		if s, _ := b.upstream(path); s != http.StatusOK {
			return time.Since(since)
		}
		if time.Since(since) > limit {
			t.Fatalf("%s still passes %s after the revocation", path, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestInstancesShareOneRedis(t *testing.T) {
	srv := testredis.Start(t)
	mail := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: "mailer", Password: "mailer-password"})
	sns := testsns.Start(t)
	const rounds = 30
	members := membersite.DemoMembers()
	for i := range rounds {
		id := fmt.Sprintf("m%02d", i)
		members = append(members, membersite.Member{ID: id, Email: id + "@example.com", Name: "Member " + id})
	}
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t}\n", testKey, srv.Addr) +
		senders(mail, sns, "hourly_sends_per_address off\n\t\tmax_address_failures off")
	ins := startInstances(t, 2, global, codePolicy, members)
	a, b := ins[0], ins[1]
	box := mailbox{t: t, mail: mail}

	// Enrol on A (the app, then email), pass the challenge on B.
	alice := a.browser()
	alice.login("alice")
	secret := alice.enrolApp("/members/")
	alice.addEmail(box, 1)

	onB := b.browser()
	onB.login("alice")
	next := realCode(t, secret, 1) // the enrolment used this step's code
	if r := onB.verify(next, "/members/", false); r.status != http.StatusSeeOther {
		t.Fatalf("challenge on B after enrolling on A: %d %s", r.status, r.body)
	}
	if s, _ := onB.upstream("/echo/x"); s != http.StatusOK {
		t.Fatalf("B after verifying: %d", s)
	}
	// RP-8: the code used on B is a replay on A.
	replay := a.browser()
	replay.login("alice")
	if r := replay.verify(next, "/members/", false); r.status != http.StatusUnauthorized {
		t.Fatalf("replay on A of a code used on B: %d", r.status)
	}

	// A device remembered on B, used by a browser with only its cookie.
	dev := b.browser()
	dev.login("alice")
	if r := dev.send("email", "/members/"); r.status != http.StatusSeeOther {
		t.Fatalf("sending on B: %d %s", r.status, r.body)
	}
	code := box.code("alice@example.com", 2)
	tok := dev.csrf("/.2fa/challenge?method=email&return_to=%2Fmembers%2F")
	if r := dev.post("/.2fa/challenge", url.Values{"csrf": {tok}, "return_to": {"/members/"}, "method": {"email"}, "code": {code}, "remember": {"1"}}); r.status != http.StatusSeeOther {
		t.Fatalf("verifying on B with remember: %d %s", r.status, r.body)
	}
	device := deviceOnly(t, b, dev)

	// Revocation on A stops B: every remembered device forgotten ...
	forgot := untilRefused(t, device, "/echo/x", forgetDevicesOn(t, a, onB), 5*time.Second)

	// ... and a method disabled, which ends every other session.
	start := time.Now()
	if r := alice.removeMethod("email", true); r.status != http.StatusSeeOther {
		t.Fatalf("disabling email on A: %d %s", r.status, r.body)
	}
	disabled := untilRefused(t, onB, "/echo/x", start, 5*time.Second)
	t.Logf("revocation on A seen by B after: devices forgotten %s, method disabled %s (each including A's own request)",
		forgot.Round(time.Microsecond), disabled.Round(time.Microsecond))

	// BF-6: wrong codes on A and B count together, and across a restart
	// of A. (Bob enrols the app on A.)
	bob := a.browser()
	bob.login("bob")
	bobSecret := bob.enrolApp("/members/")
	wrong := wrongCode(realCode(t, bobSecret, 1))
	guess := func(in *instance) int {
		g := in.browser()
		g.login("bob")
		return g.verify(wrong, "/members/", false).status
	}
	for i := range 3 {
		if s := guess(a); s != http.StatusUnauthorized {
			t.Fatalf("wrong code %d on A: %d", i+1, s)
		}
	}
	a.stop()
	if err := a.launch(setup{global: global, policy: codePolicy}); err != nil {
		t.Fatalf("restarting A: %v", err)
	}
	if s := guess(b); s != http.StatusUnauthorized {
		t.Fatalf("wrong code 4 on B: %d", s)
	}
	if s := guess(b); s != http.StatusTooManyRequests {
		t.Fatalf("wrong code 5 on B, after 3 on A and a restart of A: %d, want the lockout", s)
	}
	right := a.browser()
	right.login("bob")
	// The challenge page shows the lockout instead of a form; any page's
	// token will do.
	form := url.Values{"csrf": {right.csrf("/.2fa/logout")}, "return_to": {"/members/"}, "code": {realCode(t, bobSecret, 1)}}
	if r := right.post("/.2fa/challenge", form); r.status != http.StatusTooManyRequests {
		t.Fatalf("right code on A while locked: %d", r.status)
	}

	// CC-2 across processes: one emailed code submitted at once, twice to
	// each instance, succeeds exactly once, round after round.
	for i := range rounds {
		id := fmt.Sprintf("m%02d", i)
		addr := id + "@example.com"
		m := a.browser()
		m.loginAs(id)
		r := m.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}})
		if r.status != http.StatusSeeOther {
			t.Fatalf("%s: adding email: %d %s", id, r.status, r.body)
		}
		r = m.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}, "code": {box.code(addr, 1)}})
		enrolDone(t, r, "/members/")

		v := a.browser()
		v.loginAs(id)
		if r := v.send("email", "/members/"); r.status != http.StatusSeeOther {
			t.Fatalf("%s: sending on A: %d %s", id, r.status, r.body)
		}
		code := box.code(addr, 2)
		const page = "/.2fa/challenge?method=email&return_to=%2Fmembers%2F"
		tokens := map[*instance]string{a: v.csrf(page), b: v.on(b.env).csrf(page)}
		var wg sync.WaitGroup
		gate := make(chan struct{})
		statuses := make([]int, 4)
		for j := range statuses {
			in := ins[j%2]
			form := url.Values{"csrf": {tokens[in]}, "return_to": {"/members/"}, "method": {"email"}, "code": {code}}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				statuses[j] = rawPost(v, in, "/.2fa/challenge", form)
			}()
		}
		close(gate)
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			if s == http.StatusSeeOther {
				ok++
			}
		}
		if ok != 1 {
			t.Fatalf("%s: %d successes for one code across A and B: %v", id, ok, statuses)
		}
	}
}

// rawPost posts without failing the test from a goroutine; -1 is a
// transport error.
func rawPost(b *browser, in *instance, path string, form url.Values) int {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, in.base+path, bytes.NewBufferString(form.Encode()))
	if err != nil {
		return -1
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", in.base)
	req.Header.Set("Accept-Language", b.lang)
	resp, err := b.c.Do(req)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// With lease_records, B keeps its copy of a member's record past 2 s, and
// a change made on A still reaches B at once: devices forgotten on A stop
// a remembered device on B.
func TestInstancesLeaseRecords(t *testing.T) {
	srv := testredis.Start(t)
	global := fmt.Sprintf("keys %q\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tlease_records\n\t\t}\n", testKey, srv.Addr)
	ins := startInstances(t, 2, global, codePolicy, membersite.DemoMembers())
	a, b := ins[0], ins[1]
	alice := a.browser()
	alice.login("alice")
	secret := alice.enrolApp("/members/")
	onB := b.browser()
	onB.login("alice")
	if r := onB.verify(realCode(t, secret, 1), "/members/", true); r.status != http.StatusSeeOther {
		t.Fatalf("challenge on B, remembering the device: %d %s", r.status, r.body)
	}
	device := deviceOnly(t, b, onB)
	start := forgetDevicesOn(t, a, onB)
	t.Logf("devices forgotten on A, refused on B after %s", untilRefused(t, device, "/echo/x", start, 5*time.Second).Round(time.Microsecond))
}

// deviceOnly is a browser signed in to the member site as alice on in,
// with only the remembered-device cookie of from, which must pass.
func deviceOnly(t *testing.T, in *instance, from *browser) *browser {
	t.Helper()
	device := in.browser()
	device.login("alice")
	device.setCookie("2fa_device", from.cookie("2fa_device").Value)
	if s, h := device.upstream("/echo/x"); s != http.StatusOK || h.Get("X-2fa-Method") != "device" {
		t.Fatalf("remembered device: %d %v", s, h)
	}
	return device
}

// forgetDevicesOn forgets every remembered device of the member of
// settings, through in's settings page, and returns when it began.
func forgetDevicesOn(t *testing.T, in *instance, settings *browser) time.Time {
	t.Helper()
	page := settings.on(in.env).get("/.2fa/methods?return_to=%2Fmembers%2F")
	if page.status != http.StatusOK {
		t.Fatalf("settings page: %d", page.status)
	}
	start := time.Now()
	if r := settings.on(in.env).post("/.2fa/methods/devices", url.Values{"csrf": {inputValue(page.body, "csrf")}, "return_to": {"/members/"}, "all": {"1"}}); r.status != http.StatusSeeOther {
		t.Fatalf("forgetting devices: %d %s", r.status, r.body)
	}
	return start
}
