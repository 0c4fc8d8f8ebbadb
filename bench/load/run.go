package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"github.com/caddy-twofactor/twofactor/store"
)

// kind is one kind of operation the load mixes.
type kind int

const (
	kindBrowse   kind = iota // a verified member fetches a member page
	kindApp                  // sign-in with the authenticator app
	kindEmail                // sign-in with a code sent by email
	kindSettings             // a verified member opens the gateway's settings
	kinds
)

var kindNames = [kinds]string{"browse", "app", "email", "settings"}

func (k kind) String() string { return kindNames[k] }

// mix is the weight of each kind.
type mix [kinds]int

const defaultMix = "browse=75,app=10,email=5,settings=10"

// parseMix reads "browse=75,app=10,...": kinds left out weigh nothing.
func parseMix(s string) (mix, error) {
	var m mix
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		k := kinds
		for i, n := range kindNames {
			if n == name {
				k = kind(i)
			}
		}
		w, err := strconv.Atoi(weight)
		switch {
		case !ok || k == kinds:
			return m, fmt.Errorf("-mix %q: %q is not kind=weight with a kind of %s", s, part, strings.Join(kindNames[:], ", "))
		case err != nil || w < 0:
			return m, fmt.Errorf("-mix %q: the weight of %s must be a whole number, 0 or more", s, name)
		}
		m[k] = w
		total += w
	}
	if total == 0 {
		return m, fmt.Errorf("-mix %q: every weight is 0", s)
	}
	return m, nil
}

// runConfig is what one load run needs.
type runConfig struct {
	gateway     *url.URL // scheme and host of the site block under test
	pagePrefix  string   // the gateway's page prefix, "/.2fa/"
	pop         *population
	mail        *mailSink
	st          store.Store // for stepMarker; nil for none
	duration    time.Duration
	concurrency int
	mix         mix
	zipf        float64 // s of the popularity (> 1: the larger, the fewer members take most requests)
	// The gateway's settings the tool must keep to, as a member would.
	period         time.Duration // totp_period
	digits         int           // totp_digits
	skew           int           // totp_skew
	resendCooldown time.Duration // resend_cooldown
	sendsPerHour   int           // hourly_sends_per_user
	stepUp         time.Duration // step_up
	mailTimeout    time.Duration
	client         *http.Client
	progress       io.Writer
	progressEvery  time.Duration
}

// member is the tool's view of one member: what it must respect so that
// every code it types is one the gateway should accept.
type member struct {
	busy       sync.Mutex // one operation at a time, as one person
	step       int64      // the last app time step used
	mailAt     int64      // Unix seconds of the last code sent by email
	mailHour   int64      // the clock hour mails counts in
	mails      int
	b          *browser // nil until the member first signs in
	verifiedAt int64    // Unix seconds of the browser's last sign-in
}

// browser is one member's cookies, kept current from Set-Cookie. Only the
// goroutine holding the member's busy lock uses it.
type browser struct{ cookies map[string]string }

func (b *browser) header() string {
	var s strings.Builder
	for name, value := range b.cookies {
		if s.Len() > 0 {
			s.WriteString("; ")
		}
		s.WriteString(name + "=" + value)
	}
	return s.String()
}

func (b *browser) take(resp *http.Response) {
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())) {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
}

type runner struct {
	cfg     runConfig
	members []member
	weights int
	ops     atomic.Int64
	errs    atomic.Int64
	// floor is the last app time step an earlier run used (stepMarker);
	// maxStep the last this run used.
	floor    int64
	maxStep  atomic.Int64
	deadline time.Time // no operation starts after it
}

// used notes that this run used an app code of step.
func (r *runner) used(step int64) {
	for {
		had := r.maxStep.Load()
		if step <= had || r.maxStep.CompareAndSwap(had, step) {
			return
		}
	}
}

func newRunner(cfg runConfig) *runner {
	r := &runner{cfg: cfg, members: make([]member, cfg.pop.n)}
	for _, w := range cfg.mix {
		r.weights += w
	}
	return r
}

// recorder is one worker's tally, merged at the end.
type recorder struct {
	took    [kinds][]time.Duration
	errs    [kinds]map[string]int
	skipped [kinds]int
	// first counts the app sign-ins made because the member drawn to
	// browse or open the settings had no live session.
	first int
}

func newRecorder() *recorder {
	rec := &recorder{}
	for k := range kinds {
		rec.errs[k] = map[string]int{}
	}
	return rec
}

// run drives the gateway for the configured duration and reports.
// Operations still running at the end finish, so the gateway sees no
// request cut off; ctx's end (an interrupt) cuts them off.
func (r *runner) run(ctx context.Context) Report {
	r.deadline = time.Now().Add(r.cfg.duration)
	r.floor = r.lastStep(ctx)
	r.maxStep.Store(r.floor)
	began := time.Now()
	recs := make([]*recorder, r.cfg.concurrency)
	var wg sync.WaitGroup
	for w := range r.cfg.concurrency {
		recs[w] = newRecorder()
		wg.Go(func() { r.worker(ctx, uint64(w), recs[w]) })
	}
	stop := make(chan struct{})
	var background sync.WaitGroup
	if r.cfg.progress != nil {
		background.Go(func() { r.showProgress(began, stop) })
	}
	background.Go(func() { r.keepStep(stop) })
	wg.Wait()
	close(stop)
	background.Wait()
	return r.report(recs, time.Since(began))
}

// stepMarker is the store key (under the key prefix) that holds the last
// app time step a run used, so that a run started soon after another
// does not type a code the gateway has seen.
const stepMarker = "loadtest:app_step"

func (r *runner) lastStep(ctx context.Context) int64 {
	if r.cfg.st == nil {
		return 0
	}
	raw, err := r.cfg.st.Get(ctx, stepMarker)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(raw), 10, 64)
	return n
}

// keepStep writes the last step used every second and when the run ends.
func (r *runner) keepStep(stop <-chan struct{}) {
	if r.cfg.st == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	written := r.floor
	write := func() {
		if step := r.maxStep.Load(); step > written {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if r.cfg.st.Set(ctx, stepMarker, []byte(strconv.FormatInt(step, 10)), 0) == nil {
				written = step
			}
		}
	}
	for {
		select {
		case <-t.C:
			write()
		case <-stop:
			write()
			return
		}
	}
}

func (r *runner) showProgress(began time.Time, stop <-chan struct{}) {
	t := time.NewTicker(r.cfg.progressEvery)
	defer t.Stop()
	last, lastOps := began, int64(0)
	line := func(now time.Time) {
		ops := r.ops.Load()
		rate := float64(ops-lastOps) / now.Sub(last).Seconds()
		fmt.Fprintf(r.cfg.progress, "\r%5s  %9d operations  %8.0f a second  %6d errors   ",
			now.Sub(began).Round(time.Second), ops, rate, r.errs.Load())
		last, lastOps = now, ops
	}
	for {
		select {
		case now := <-t.C:
			line(now)
		case <-stop:
			line(time.Now())
			fmt.Fprintln(r.cfg.progress)
			return
		}
	}
}

func (r *runner) worker(ctx context.Context, seed uint64, rec *recorder) {
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	zipf := rand.NewZipf(rng, r.cfg.zipf, 1, uint64(len(r.members)-1))
	for ctx.Err() == nil && time.Now().Before(r.deadline) {
		k := r.pick(rng)
		if !r.op(ctx, k, zipf, rec) {
			rec.skipped[k]++
		}
	}
}

// timed runs one operation of kind k and records it; false when it did
// not run (no member could do it just now).
func (r *runner) timed(ctx context.Context, k kind, rec *recorder, op func() (cause string, done bool)) bool {
	start := time.Now()
	cause, done := op()
	took := time.Since(start)
	switch {
	case !done:
		return false
	case cause != "" && ctx.Err() != nil:
		return true // cut short by an interrupt: not counted
	}
	r.ops.Add(1)
	if cause != "" {
		r.errs.Add(1)
		rec.errs[k][cause]++
		return true
	}
	rec.took[k] = append(rec.took[k], took)
	return true
}

func (r *runner) pick(rng *rand.Rand) kind {
	n := rng.IntN(r.weights)
	for k, w := range r.cfg.mix {
		if n < w {
			return kind(k)
		}
		n -= w
	}
	return kindBrowse
}

// draws is how many popular members an operation tries before it gives
// up: they may be busy, or have used this time step's code.
const draws = 32

// claim draws members by popularity until one is free and ok, and returns
// its number, held; -1 when none was.
func (r *runner) claim(zipf *rand.Zipf, ok func(*member) bool) int {
	for range draws {
		i := int(zipf.Uint64())
		m := &r.members[i]
		if !m.busy.TryLock() {
			continue
		}
		if ok(m) {
			return i
		}
		m.busy.Unlock()
	}
	return -1
}

// op runs and records one operation of kind k; false when no member could
// do it just now (all those drawn were busy, or had used this time step's
// app code or their emails of the hour).
func (r *runner) op(ctx context.Context, k kind, zipf *rand.Zipf, rec *recorder) bool {
	now := time.Now()
	if k == kindApp || k == kindEmail {
		free := func(m *member) bool { return r.appFree(m, now) }
		if k == kindEmail {
			free = func(m *member) bool { return r.mailFree(m, now) }
		}
		i := r.claim(zipf, free)
		if i < 0 {
			return false
		}
		defer r.members[i].busy.Unlock()
		return r.timed(ctx, k, rec, func() (string, bool) { return r.signIn(ctx, i, k), true })
	}
	fresh := func(m *member) bool {
		return m.b != nil && now.Unix()-m.verifiedAt < int64((r.cfg.stepUp-time.Minute)/time.Second)
	}
	i := r.claim(zipf, fresh)
	if i < 0 {
		// A member without a live session signs in first, counted as a
		// sign-in with the app.
		if i = r.claim(zipf, func(m *member) bool { return r.appFree(m, now) }); i < 0 {
			return false
		}
		rec.first++
		var cause string
		r.timed(ctx, kindApp, rec, func() (string, bool) { cause = r.signIn(ctx, i, kindApp); return cause, true })
		if cause != "" {
			r.members[i].busy.Unlock()
			return true
		}
	}
	defer r.members[i].busy.Unlock()
	path := "/app/page-" + strconv.Itoa(int(now.UnixNano()%100))
	if k == kindSettings {
		path = r.cfg.pagePrefix + "methods"
	}
	return r.timed(ctx, k, rec, func() (string, bool) {
		status, _, _, err := r.do(ctx, r.members[i].b, http.MethodGet, path, nil)
		return r.expect("page", status, err, http.StatusOK), true
	})
}

func (r *runner) appFree(m *member, now time.Time) bool { return r.appStep(m, now) > 0 }

// appStep is the time step whose app code member m may use now, 0 for
// none. The gateway accepts each member's steps only forward, so a member
// signs in with the app once per step, as a person would. A member not
// yet signed in by this run may have used the current step in an earlier
// run (floor, from the store's marker): they use the next step, which the
// gateway's skew accepts, if it allows one.
func (r *runner) appStep(m *member, now time.Time) int64 {
	t := now.Unix() / int64(r.cfg.period/time.Second)
	switch {
	case m.step >= t:
		return 0
	case m.step == 0 && r.floor >= t:
		if r.floor == t && r.cfg.skew > 0 {
			return t + 1
		}
		return 0
	}
	return t
}

func (r *runner) mailFree(m *member, now time.Time) bool {
	s := now.Unix()
	return s-m.mailAt >= int64(r.cfg.resendCooldown/time.Second) && (m.mailHour != s/3600 || m.mails < r.cfg.sendsPerHour)
}

var (
	csrfInput     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	returnToInput = regexp.MustCompile(`name="return_to" value="([^"]*)"`)
)

// signIn signs member i in with the app or an emailed code, as a browser
// does: the member site's sign-in, the protected page that sends to the
// challenge, the challenge page, the code (sent and read from the mail
// sink first, for email), and the page it returns to.
func (r *runner) signIn(ctx context.Context, i int, k kind) string {
	m := &r.members[i]
	if m.b == nil {
		m.b = &browser{cookies: map[string]string{}}
	}
	b := m.b
	// Signing in at the member site again ends the session the gateway
	// bound to the last one.
	m.verifiedAt = 0
	const home = "/app/home"
	status, loc, _, err := r.do(ctx, b, http.MethodPost, "/login", url.Values{"id": {r.cfg.pop.id(i)}, "next": {home}})
	if cause := r.expect("member site sign-in", status, err, http.StatusSeeOther); cause != "" {
		return cause
	}
	status, loc, _, err = r.do(ctx, b, http.MethodGet, home, nil)
	if cause := r.expect("protected page", status, err, anyRedirect); cause != "" {
		return cause
	}
	if !strings.HasPrefix(loc, r.cfg.pagePrefix+"challenge") {
		return "protected page: sent to " + strings.SplitN(loc, "?", 2)[0] + ", not the challenge"
	}
	method := "totp"
	if k == kindEmail {
		method = "email"
		loc += "&method=email"
	}
	status, _, body, err := r.do(ctx, b, http.MethodGet, loc, nil)
	if cause := r.expect("challenge page", status, err, http.StatusOK); cause != "" {
		return cause
	}
	csrf, returnTo := csrfInput.FindSubmatch(body), returnToInput.FindSubmatch(body)
	if csrf == nil || returnTo == nil {
		return "challenge page: no form"
	}
	form := url.Values{"csrf": {html.UnescapeString(string(csrf[1]))}, "return_to": {html.UnescapeString(string(returnTo[1]))}, "method": {method}}
	now := time.Now()
	var code string
	if k == kindApp {
		step := r.appStep(m, now)
		if step == 0 {
			return "app code: none left for this time step" // drawn free a moment ago: the step changed since
		}
		m.step = step
		r.used(step)
		code, err = hotp.GenerateCodeCustom(r.cfg.pop.appKeyBase32(i), uint64(step), hotp.ValidateOpts{
			Digits: otp.Digits(r.cfg.digits), Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return "app code: " + err.Error()
		}
	} else {
		if m.mailHour != now.Unix()/3600 {
			m.mailHour, m.mails = now.Unix()/3600, 0
		}
		m.mailAt = now.Unix()
		m.mails++
		codes, done := r.cfg.mail.expect(r.cfg.pop.email(i))
		defer done()
		status, _, _, err = r.do(ctx, b, http.MethodPost, r.cfg.pagePrefix+"challenge/send", form)
		if cause := r.expect("send code", status, err, http.StatusSeeOther); cause != "" {
			return cause
		}
		wait := time.NewTimer(r.cfg.mailTimeout)
		defer wait.Stop()
		select {
		case code = <-codes:
		case <-wait.C:
			return fmt.Sprintf("mail: %v within %s", errNoCode, r.cfg.mailTimeout)
		case <-ctx.Done():
			return "mail: " + ctx.Err().Error()
		}
	}
	form.Set("code", code)
	status, loc, _, err = r.do(ctx, b, http.MethodPost, r.cfg.pagePrefix+"challenge", form)
	if cause := r.expect("code", status, err, http.StatusSeeOther); cause != "" {
		return cause
	}
	status, _, _, err = r.do(ctx, b, http.MethodGet, loc, nil)
	if cause := r.expect("page after sign-in", status, err, http.StatusOK); cause != "" {
		return cause
	}
	m.verifiedAt = now.Unix()
	return ""
}

// anyRedirect, as expect's want, accepts any redirection (3xx).
const anyRedirect = 300

// expect names what went wrong at step, "" when the answer was want.
func (r *runner) expect(step string, status int, err error, want int) string {
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return step + ": " + err.Error()
	case status == want, want == anyRedirect && status >= 300 && status < 400:
		return ""
	}
	what := http.StatusText(status)
	switch {
	case status == http.StatusTooManyRequests && step == "code":
		what = "locked out"
	case status == http.StatusTooManyRequests && step == "send code":
		what = "sending limited"
	case status == http.StatusUnauthorized && step == "code":
		what = "code refused"
	case status == http.StatusSeeOther && step == "page":
		what = "sent to sign in or to the challenge"
	case status == http.StatusConflict && strings.HasPrefix(step, "page"):
		what = "the gateway named another member"
	}
	return fmt.Sprintf("%s: %d %s", step, status, what)
}

// do sends one request with the browser's cookies and takes the cookies
// of the answer, whose body it reads whole.
func (r *runner) do(ctx context.Context, b *browser, method, path string, form url.Values) (int, string, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, r.cfg.gateway.String()+path, body)
	if err != nil {
		return 0, "", nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", r.cfg.gateway.String())
	}
	req.Header.Set("Accept-Language", "en")
	if c := b.header(); c != "" {
		req.Header.Set("Cookie", c)
	}
	resp, err := r.cfg.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", nil, err
	}
	b.take(resp)
	loc := resp.Header.Get("Location")
	if u, err := url.Parse(loc); err == nil && u.IsAbs() {
		loc = u.RequestURI()
	}
	return resp.StatusCode, loc, data, nil
}
