package tests

// Every page of the gateway in headless Chromium (see browser_test.go), at
// a phone's size and a desktop's, in Japanese and English, in the states a
// member or an admin meets them: each method's challenge and enrolment,
// recovery codes, settings before and after changes, passkeys (the
// challenge with one, their enrolment page, the settings with them),
// lockout, errors and the admin pages. On each, the sweep fails on:
//
//   - a page wider than the window (the member scrolls sideways);
//   - text that overflows its box: buttons, links drawn as buttons, table
//     cells, headings, list items;
//   - a desktop's width left unused: a narrow column over two screens
//     tall;
//   - a value broken across lines: a date or time, a countdown's "59 s",
//     a one-word button label such as 「ダウンロード」, a heading that
//     leaves one character alone on its last line;
//   - every violation axe-core reports for WCAG 2.1 AA. axe-core comes
//     from npm (tests/browser/package.json pins it) and is injected through
//     the DevTools protocol, so the page's Content-Security-Policy stays as
//     served and must still report no violation.
//
// A full-page screenshot of every page, size and language is kept under
// $TWOFACTOR_ARTEFACTS/sweep (default tests/artefacts/sweep), named
// <page>-<state>-<lang>-<width>x<height>.png, with faults.txt listing what
// failed. TWOFACTOR_SWEEP_REPORT=1 lists every fault without failing.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/caddy-twofactor/twofactor/examples/membersite"
	"github.com/caddy-twofactor/twofactor/internal/testwebauthn"
)

// sweepTimeout bounds the whole sweep's browser.
const sweepTimeout = 8 * time.Minute

// sweepSizes are the screens every page is checked at: a phone (emulated
// as one, with touch and the viewport meta tag honoured) and a desktop.
var sweepSizes = []struct {
	width, height int64
	mobile        bool
}{
	{390, 844, true},
	{1280, 800, false},
}

// sweepLanguages are the catalogs, as a browser asks for them.
var sweepLanguages = []struct{ lang, accept string }{
	{"en", "en-US,en;q=0.9"},
	{"ja", "ja-JP,ja;q=0.9,en;q=0.5"},
}

// axeTags are the rule sets of WCAG 2.1 level AA.
var axeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa"}

// axeDir is where `npm ci` puts axe-core, from tests/ (go test's working
// directory).
const axeDir = "browser"

// loadAxe returns axe.min.js, checking it is the version package-lock.json
// pins. Without it the sweep fails where a browser must run (CI), and
// skips elsewhere with the command that installs it.
func loadAxe(t *testing.T) (script, version string) {
	t.Helper()
	lock, err := os.ReadFile(filepath.Join(axeDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pinned struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(lock, &pinned); err != nil {
		t.Fatalf("tests/browser/package-lock.json: %v", err)
	}
	version = pinned.Packages["node_modules/axe-core"].Version
	b, err := os.ReadFile(filepath.Join(axeDir, "node_modules", "axe-core", "axe.min.js"))
	if err == nil && !strings.Contains(string(b[:min(len(b), 200)]), version) {
		err = fmt.Errorf("installed axe-core is not %s, the version package-lock.json pins", version)
	}
	if err != nil {
		msg := fmt.Sprintf("no axe-core %s (%v); run `npm ci --prefix tests/browser` from the repository's root", version, err)
		if os.Getenv("TWOFACTOR_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return string(b), version
}

// sweepMembers are the member site's members: the demo ones, and for each
// language one who goes through every page from the first enrolment on
// and one who never enrols (optional paths, errors).
func sweepMembers() []membersite.Member {
	members := membersite.DemoMembers()
	for i, l := range sweepLanguages {
		members = append(members,
			membersite.Member{ID: "new-" + l.lang, Password: "new-" + l.lang + "-password", Email: "new-" + l.lang + "@example.com",
				Phone: fmt.Sprintf("+8190111100%02d", i+1), Name: "New Member " + l.lang},
			membersite.Member{ID: "opt-" + l.lang, Password: "opt-" + l.lang + "-password", Email: "opt-" + l.lang + "@example.com",
				Name: "Optional Member " + l.lang},
			membersite.Member{ID: "key-" + l.lang, Password: "key-" + l.lang + "-password", Email: "key-" + l.lang + "@example.com",
				Name: "Passkey Member " + l.lang})
	}
	return members
}

// sweepPolicy is codePolicy (every method on /members/, the app on
// /admin/) with passkeys on, an optional path, and paths whose enrolment
// deadline is five days ahead and long past.
func sweepPolicy() string {
	return codePolicy + `
	site_url http://localhost:{PORT}
	webauthn
	protect /optional/* {
		enrolment optional
	}
	protect /soon/* {
		enrolment required from ` + time.Now().UTC().AddDate(0, 0, 5).Format(time.DateOnly) + `
	}
	protect /past/* {
		enrolment required from 2026-01-15
	}
`
}

func TestBrowserSweep(t *testing.T) {
	began := time.Now()
	c := startCodesSetup(t, setup{policy: sweepPolicy(), members: sweepMembers(), admin: true}, `resend_cooldown 10s
		hourly_sends_per_user 100
		hourly_sends_per_address off
		max_address_failures off
		max_failures 5
		reset_approval 24h
		admins {
			admin approver
		}`)
	requireChromium(t)
	axe, version := loadAxe(t)
	s := newSweep(t, c, axe)
	t.Logf("axe-core %s; screenshots in %s", version, s.dir)

	// alice is enrolled and waits for a reset an admin asked for on the
	// admin endpoint: the approvals page has something to show.
	enrolled(c.env, "alice")
	if status, msg := adminPost(t, c.env, "/two-factor/members/reset", `{"member": "alice", "reason": "lost phone, ID checked by a video call"}`); status != 202 {
		t.Fatalf("requesting a reset of alice: %d %q", status, msg)
	}
	_, adminSecret := enrolled(c.env, "admin")

	for _, l := range sweepLanguages {
		s.lang = l.lang
		s.b.setAcceptLanguage(l.accept)
		s.firstEnrolment()
		s.settings()
		s.challenges()
		s.stepUpAndDevices()
		s.signOut()
		s.passkeys()
		s.optionalAndErrors()
		s.lockout()
		s.admin(adminSecret)
	}
	s.b.checkNoCSPViolations()
	s.finish()
	t.Logf("the sweep took %s for %d screenshots", time.Since(began).Round(time.Second), s.shots)
}

// sweep walks the pages with one browser and collects what fails.
type sweep struct {
	t      *testing.T
	c      *codeEnv
	b      *chrome
	axe    string
	dir    string
	report bool
	lang   string
	faults []string
	shots  int
	seen   map[string]bool
	// secret is the app's secret of the member being swept, and recovery
	// their recovery codes, read off the page that showed them.
	secret   string
	recovery []string
}

func newSweep(t *testing.T, c *codeEnv, axe string) *sweep {
	dir := os.Getenv("TWOFACTOR_ARTEFACTS")
	if dir == "" {
		dir = "artefacts"
	}
	dir = filepath.Join(dir, "sweep")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &sweep{
		t: t, c: c, b: c.chromiumFor(t, sweepTimeout), axe: axe, dir: dir,
		report: os.Getenv("TWOFACTOR_SWEEP_REPORT") == "1", seen: map[string]bool{},
	}
}

// member is the sweep's member for the language being swept.
func (s *sweep) member(kind string) string { return kind + "-" + s.lang }

// fresh forgets every cookie: the next sign-in is a new browser's.
func (s *sweep) fresh() {
	s.t.Helper()
	if _, err := chromedp.Call(s.b.ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		s.b.fatalf("clearing cookies: %v", err)
	}
}

// signIn signs in at the member site's form as one of sweepMembers.
func (s *sweep) signIn(id, next string) *page {
	s.t.Helper()
	i := slices.IndexFunc(sweepMembers(), func(m membersite.Member) bool { return m.ID == id })
	if i < 0 {
		s.t.Fatalf("no member %s", id)
	}
	if r := s.b.open("/login?next=" + url.QueryEscape(next)); r.status != 200 {
		s.b.fatalf("the sign-in page: %s (%d)", r.url, r.status)
	}
	s.b.typeInto(`input[name="id"]`, id)
	s.b.typeInto(`input[name="password"]`, sweepMembers()[i].Password)
	return s.b.submit(`form[action="/login"] button[type=submit]`)
}

// signInAgain is a new browser's sign-in as id, a time step later, which
// the challenge meets.
func (s *sweep) signInAgain(id, step string) {
	s.t.Helper()
	s.fresh()
	s.c.nextStep()
	s.expect(s.signIn(id, "/members/"), "/.2fa/challenge", 200, step)
}

// expect stops the sweep when the browser is not where a step leads.
func (s *sweep) expect(r *page, path string, status int, step string) {
	s.t.Helper()
	if r.path != path || r.status != status {
		s.b.fatalf("%s (%s): at %s (%d), want %s (%d)", step, s.lang, r.url, r.status, path, status)
	}
}

// check checks the page the browser shows at every size and keeps its
// screenshots.
func (s *sweep) check(pageName, state string) {
	s.t.Helper()
	for _, size := range sweepSizes {
		name := fmt.Sprintf("%s-%s-%s-%dx%d", pageName, state, s.lang, size.width, size.height)
		if s.seen[name] {
			s.t.Fatalf("two steps are named %s", name)
		}
		s.seen[name] = true
		opts := []chromedp.EmulateViewportOption{}
		if size.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(s.b.ctx, chromedp.EmulateViewport(size.width, size.height, opts...)); err != nil {
			s.b.fatalf("%s: setting the viewport: %v", name, err)
		}
		for _, f := range evalJS[[]string](s.b, "the layout of "+name, layoutFaults) {
			s.fault(name, f)
		}
		for _, v := range s.runAxe(name) {
			s.fault(name, v)
		}
		png, err := chromedp.Run(s.b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			s.b.fatalf("%s: screenshot: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644); err != nil {
			s.t.Fatal(err)
		}
		s.shots++
	}
}

func (s *sweep) fault(name, what string) {
	s.t.Helper()
	line := name + ": " + what
	s.faults = append(s.faults, line)
	if !s.report {
		s.t.Error(line)
	}
}

// checkAxeWorks runs axe-core on an empty button added to the page for
// the purpose, so that a sweep with no violation means none were found,
// not that axe-core did not run or its answer was misread.
func (s *sweep) checkAxeWorks() {
	s.t.Helper()
	evalJS[bool](s.b, "adding an empty button", `(() => {
		const b = document.createElement('button');
		b.id = 'axe-self-check';
		document.body.append(b);
		return true;
	})()`)
	vs := s.runAxe("the self-check")
	evalJS[bool](s.b, "removing the empty button", `(document.getElementById('axe-self-check').remove(), true)`)
	named := func(v string) bool {
		return strings.HasPrefix(v, "axe button-name ") && strings.Contains(v, "#axe-self-check")
	}
	if !slices.ContainsFunc(vs, named) {
		s.t.Fatalf("axe-core did not report a button without a name: %q", vs)
	}
}

// runAxe injects axe-core into the page, once per document, and returns
// the WCAG 2.1 AA violations it finds, one line per rule with the
// elements at fault.
func (s *sweep) runAxe(name string) []string {
	s.t.Helper()
	if !evalJS[bool](s.b, "whether axe is loaded", `typeof window.axe === 'object'`) {
		if _, err := chromedp.Run(s.b.ctx, chromedp.Evaluate[*runtime.RemoteObject](s.axe)); err != nil {
			s.b.fatalf("%s: injecting axe-core: %v", name, err)
		}
	}
	tags, _ := json.Marshal(axeTags)
	type violation struct {
		ID    string   `json:"id"`
		Help  string   `json:"help"`
		Nodes []string `json:"nodes"`
	}
	vs, err := chromedp.Run(s.b.ctx, chromedp.Evaluate[[]violation](`axe.run(document, {
		runOnly: {type: 'tag', values: `+string(tags)+`},
		resultTypes: ['violations'],
	}).then(r => r.violations.map(v => ({
		id: v.id,
		help: v.help,
		nodes: v.nodes.map(n => n.target.join(' ') + (n.any.concat(n.all, n.none).map(c => ' — ' + c.message).join(''))),
	})))`, chromedp.EvalAwaitPromise))
	if err != nil {
		s.b.fatalf("%s: running axe-core: %v", name, err)
	}
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("axe %s (%s): %s", v.ID, v.Help, strings.Join(v.Nodes, "; ")))
	}
	return out
}

// layoutFaults measures the page as laid out: overflow, text too wide for
// its box, and values broken across lines.
const layoutFaults = `(() => {
	const faults = [];
	const de = document.documentElement;
	if (de.scrollWidth > window.innerWidth) {
		faults.push('overflow: the page is ' + de.scrollWidth + 'px wide in a ' + window.innerWidth + 'px window');
	}
	// A desktop's width left unused: a narrow column many screens tall.
	const main = document.querySelector('main');
	if (main && window.innerWidth >= 960 && de.scrollHeight > 2 * window.innerHeight && main.getBoundingClientRect().width < window.innerWidth / 2) {
		faults.push('narrow column: ' + Math.round(main.getBoundingClientRect().width) + 'px wide and ' + de.scrollHeight + 'px tall in a ' + window.innerWidth + 'x' + window.innerHeight + ' window');
	}
	// Shown to sighted members: laid out, visible, and not clipped away
	// like a table's column headers kept only for screen readers.
	const shown = el => {
		if (el.getClientRects().length === 0 || getComputedStyle(el).visibility === 'hidden') return false;
		for (let e = el; e; e = e.parentElement) if (getComputedStyle(e).clipPath !== 'none') return false;
		return true;
	};
	const label = el => {
		let s = el.tagName.toLowerCase();
		if (el.id) s += '#' + el.id;
		else if (el.classList.length) s += '.' + [...el.classList].join('.');
		return s + ' "' + el.innerText.trim().replace(/\s+/g, ' ').slice(0, 60) + '"';
	};
	// The lines a range of text takes.
	const lines = range => {
		const tops = [];
		for (const r of range.getClientRects()) {
			if (r.width > 0 && !tops.some(t => Math.abs(t - r.top) < r.height / 2)) tops.push(r.top);
		}
		return tops.length;
	};
	const boxes = 'button, a.button, td, th, summary, .badge, .ranges a, .admin-nav a, h1, h2, h3, label, dt, dd, li, p';
	for (const el of document.querySelectorAll(boxes)) {
		if (!shown(el) || getComputedStyle(el).display === 'inline') continue;
		if (el.scrollWidth > el.clientWidth + 1) {
			faults.push('text overflow: ' + label(el) + ' needs ' + el.scrollWidth + 'px in ' + el.clientWidth + 'px');
		}
	}
	// Values that must stay whole: dates, times of day with their zone,
	// countdowns. A <time>'s date and time of day may go on lines of
	// their own in a narrow column; a stamp in running text may not.
	const values = [
		/\d{4}[-\u2011]\u2060?\d{2}[-\u2011]\u2060?\d{2}(?:[^\S ]\d{2}:\d{2}(?::\d{2})?)?(?:\sUTC)?/g,
		/\d{1,2}:\d{2}\sUTC(?:[+\u2011-]\d{2}:\d{2})?/g,
		/\(available in \d+\ss\)/g,
		/（あと\u2060?\d+\u2060?秒）/g,
	];
	const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let n = walker.nextNode(); n; n = walker.nextNode()) {
		if (!n.parentElement || !shown(n.parentElement)) continue;
		for (const re of values) {
			for (const m of n.data.matchAll(re)) {
				const r = document.createRange();
				r.setStart(n, m.index);
				r.setEnd(n, m.index + m[0].length);
				if (lines(r) > 1) faults.push('broken value: "' + m[0] + '" in ' + label(n.parentElement));
			}
		}
	}
	// A button's one word, and a heading's last character alone.
	for (const el of document.querySelectorAll('button, a.button')) {
		const text = el.innerText.trim();
		if (!shown(el) || !text || /\s/.test(text) || [...text].length > 8) continue;
		const r = document.createRange();
		r.selectNodeContents(el);
		if (lines(r) > 1) faults.push('broken word: ' + label(el) + ' takes ' + lines(r) + ' lines');
	}
	for (const el of document.querySelectorAll('h1, h2, h3')) {
		if (!shown(el)) continue;
		const texts = [];
		const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
		for (let n = w.nextNode(); n; n = w.nextNode()) if (n.data.trim()) texts.push(n);
		const last = texts.at(-1);
		if (!last) continue;
		const whole = document.createRange();
		whole.selectNodeContents(el);
		if (lines(whole) < 2) continue;
		const end = last.data.trimEnd().length;
		const tail = document.createRange();
		tail.setStart(last, Math.max(0, end - 2));
		tail.setEnd(last, end);
		if (end >= 2 && lines(tail) > 1 && !/\s/.test(last.data[end - 2])) {
			faults.push('orphan: ' + label(el) + ' leaves "' + last.data[end - 1] + '" alone on its last line');
		}
	}
	return faults;
})()`

// finish writes the list of faults beside the screenshots and, in report
// mode, logs them all.
func (s *sweep) finish() {
	s.t.Helper()
	list := strings.Join(s.faults, "\n")
	if list != "" {
		list += "\n"
	}
	if err := os.WriteFile(filepath.Join(s.dir, "faults.txt"), []byte(list), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if s.report {
		s.t.Logf("%d faults on %d screenshots:\n%s", len(s.faults), s.shots, list)
	}
}

// submitTo submits the form whose action is the gateway page page.
func (s *sweep) submitTo(page string) *page {
	s.t.Helper()
	return s.b.submit(`form[action="/.2fa/` + page + `"] button[type=submit]`)
}

// mailCodeFor waits for the next code mailed after sent messages.
func (s *sweep) mailCodeFor(sent int) string {
	s.t.Helper()
	_, code := s.c.mailCode(sent + 1)
	return code
}

// readRecoveryCodes keeps the codes the page shows.
func (s *sweep) readRecoveryCodes() {
	s.t.Helper()
	s.recovery = evalJS[[]string](s.b, "the recovery codes", `[...document.querySelectorAll('ol.recovery-codes code')].map(c => c.textContent)`)
	if len(s.recovery) != 10 {
		s.b.fatalf("%d recovery codes on the page, want 10", len(s.recovery))
	}
}

// firstEnrolment: the picker, each method's first page, the app's QR code
// with a wrong code and the right one, and the first recovery codes.
func (s *sweep) firstEnrolment() {
	s.t.Helper()
	s.fresh()
	r := s.signIn(s.member("new"), "/members/")
	s.expect(r, "/.2fa/enrol", 200, "an unenrolled member signing in")
	s.checkAxeWorks()
	s.check("enrol", "first")
	s.expect(s.b.open("/.2fa/enrol/email?return_to=%2Fmembers%2F"), "/.2fa/enrol/email", 200, "the email set-up")
	s.check("enrol-email", "first")
	s.expect(s.b.open("/.2fa/enrol/sms?return_to=%2Fmembers%2F"), "/.2fa/enrol/sms", 200, "the SMS set-up")
	s.check("enrol-sms", "first")
	s.b.open("/.2fa/enrol?return_to=%2Fmembers%2F")
	s.expect(s.submitTo("enrol"), "/.2fa/enrol", 200, "Set up the app")
	s.check("enrol-app", "qr")
	secret := s.b.enrolmentSecret()
	s.b.typeInto("#code", wrongCode(s.c.code(secret, 0)))
	s.expect(s.submitTo("enrol/confirm"), "/.2fa/enrol/confirm", 401, "a wrong set-up code")
	s.check("enrol-app", "wrong-code")
	s.b.typeInto("#code", s.c.code(secret, 0))
	s.expect(s.submitTo("enrol/confirm"), "/.2fa/enrol/confirm", 200, "the right set-up code")
	s.check("recovery", "first")
	s.readRecoveryCodes()
	s.b.submit(`p.continue a`)
	s.c.nextStep()
	s.secret = secret
}

// settings: with one method, after a refused disable, after adding email
// and SMS (with their code steps), and new recovery codes.
func (s *sweep) settings() {
	s.t.Helper()
	s.expect(s.b.open("/.2fa/methods?return_to=%2Fmembers%2F"), "/.2fa/methods", 200, "settings")
	s.check("settings", "one-method")
	// The page offers no way to disable the only method, and says why; a
	// form posted anyway (from a page open since before) is refused, and
	// the refusal shows on the page and in the activity.
	if n := evalJS[int](s.b, "disable forms", `document.querySelectorAll('form[action="/.2fa/methods/remove"]').length`); n != 0 {
		s.b.fatalf("%d disable forms for the only method", n)
	}
	evalJS[bool](s.b, "a disable form posted anyway", `(() => {
		const f = document.createElement('form');
		f.method = 'post';
		f.action = '/.2fa/methods/remove';
		const fields = [['csrf', document.querySelector('input[name=csrf]').value], ['return_to', '/members/'], ['method', 'totp'], ['confirm', 'yes']];
		for (const [k, v] of fields) {
			const i = document.createElement('input');
			i.type = 'hidden';
			i.name = k;
			i.value = v;
			f.appendChild(i);
		}
		const b = document.createElement('button');
		b.type = 'submit';
		b.textContent = 'Disable';
		f.appendChild(b);
		document.body.appendChild(f);
		return true;
	})()`)
	r := s.submitTo("methods/remove")
	if r.path != "/.2fa/methods" && r.path != "/.2fa/methods/remove" {
		s.b.fatalf("disabling the only method: at %s (%d)", r.url, r.status)
	}
	s.check("settings", "refused-disable")

	// As from the settings page's links: back there, with a confirmation.
	back := url.QueryEscape("/members/") + "&from=settings"
	s.expect(s.b.open("/.2fa/enrol/email?return_to="+back), "/.2fa/enrol/email", 200, "adding email")
	s.check("enrol-email", "add")
	sent := len(s.c.codeMails())
	s.expect(s.submitTo("enrol/email"), "/.2fa/enrol/code", 200, "sending the email code")
	s.check("enrol-code", "email")
	s.b.typeInto("#code", s.mailCodeFor(sent))
	s.expect(s.submitTo("enrol/code"), "/.2fa/methods", 200, "the emailed code")
	s.check("settings", "added-email")

	s.expect(s.b.open("/.2fa/enrol/sms?return_to="+back), "/.2fa/enrol/sms", 200, "adding SMS")
	s.check("enrol-sms", "add")
	texts := len(s.c.sns.Publishes())
	s.b.typeInto("#phone", s.phone())
	s.expect(s.submitTo("enrol/sms"), "/.2fa/enrol/code", 200, "sending the SMS code")
	s.check("enrol-code", "sms")
	_, code := s.c.smsCode(texts + 1)
	s.b.typeInto("#code", code)
	s.expect(s.submitTo("enrol/code"), "/.2fa/methods", 200, "the texted code")
	s.check("settings", "added-sms")

	s.expect(s.submitTo("methods/recovery"), "/.2fa/methods/recovery", 200, "new recovery codes")
	s.check("recovery", "regenerated")
	s.readRecoveryCodes()
	s.c.clock.Advance(11 * time.Second) // past the resend wait
}

// phone is the sweep member's number as a member in Japan types it.
func (s *sweep) phone() string {
	for _, m := range sweepMembers() {
		if m.ID == s.member("new") {
			return "0" + strings.TrimPrefix(m.Phone, "+81")
		}
	}
	s.t.Fatalf("no member %s", s.member("new"))
	return ""
}

// challenges: a new browser's sign-in with each method, a wrong code,
// "Didn't get it?" and "Still nothing", and a recovery code, after which
// the member makes a new set and sees the settings page.
func (s *sweep) challenges() {
	s.t.Helper()
	s.signInAgain(s.member("new"), "an enrolled member signing in")
	s.check("challenge", "totp")
	s.b.typeInto("#code", wrongCode(s.c.code(s.secret, 0)))
	s.expect(s.submitTo("challenge"), "/.2fa/challenge", 401, "a wrong code")
	s.check("challenge", "totp-wrong-code")

	s.codeChallenge("email")
	s.check("challenge", "email-not-arrived")
	s.c.clock.Advance(11 * time.Second) // past the resend wait
	s.codeChallenge("sms")
	s.expect(s.submitTo("challenge/not-arrived"), "/.2fa/challenge/not-arrived", 200, "Still nothing")
	s.check("challenge", "sms-still-nothing")

	s.expect(s.b.open("/.2fa/challenge?method=recovery&return_to=%2Fmembers%2F"), "/.2fa/challenge", 200, "the recovery-code challenge")
	s.check("challenge", "recovery")
	s.b.typeInto("#code", s.recovery[0])
	s.expect(s.submitTo("challenge"), "/.2fa/recovery", 200, "a recovery code")
	s.check("recovery-renew", "after-recovery-code")
	s.expect(s.submitTo("recovery"), "/.2fa/recovery", 200, "the new set after a recovery code")
	s.check("recovery", "renewed")
	s.readRecoveryCodes()
	s.expect(s.b.open("/.2fa/methods?return_to=%2Fmembers%2F"), "/.2fa/methods", 200, "settings after a recovery code")
	s.check("settings", "after-recovery-code")
}

// codeChallenge: the challenge by email or SMS before and after a code
// is sent, with "Didn't get it?" opened.
func (s *sweep) codeChallenge(method string) {
	s.t.Helper()
	s.expect(s.b.open("/.2fa/challenge?method="+method+"&return_to=%2Fmembers%2F"), "/.2fa/challenge", 200, "the "+method+" challenge")
	s.check("challenge", method)
	s.expect(s.submitTo("challenge/send"), "/.2fa/challenge", 200, "sending a code by "+method)
	s.check("challenge", method+"-sent")
	evalJS[bool](s.b, "opening Didn't get it?", `(document.querySelector('details.not-arrived').open = true)`)
}

// stepUpAndDevices: a device remembered, then the settings page's fresh
// code once step_up has passed, and the settings with the device.
func (s *sweep) stepUpAndDevices() {
	s.t.Helper()
	s.signInAgain(s.member("new"), "signing in again")
	s.b.typeInto("#code", s.c.code(s.secret, 0))
	s.b.click(`input[name="remember"]`)
	s.expect(s.submitTo("challenge"), "/members/", 200, "the code, remembering the device")
	s.c.clock.Advance(11 * time.Minute)
	s.expect(s.b.open("/.2fa/methods?return_to=%2Fmembers%2F"), "/.2fa/challenge", 200, "settings after step_up")
	s.check("settings", "step-up")
	s.c.nextStep()
	s.b.typeInto("#code", s.c.code(s.secret, 0))
	s.expect(s.submitTo("challenge"), "/.2fa/methods", 200, "the fresh code")
	s.check("settings", "devices")
	s.c.nextStep()
}

// passkeys: a member whose first method is a passkey: its enrolment page
// (and an error on it), the first recovery codes, the settings with the
// passkey as the only method, the challenge with only a passkey, then
// with the app added too. The ceremonies go through the JSON routes from
// the page, answered by the software authenticator (the script's own
// calls to navigator.credentials are browser_passkey_test.go's).
func (s *sweep) passkeys() {
	s.t.Helper()
	key := testwebauthn.New(s.c.origin())
	s.fresh()
	s.expect(s.signIn(s.member("key"), "/members/"), "/.2fa/enrol", 200, "a member to set up a passkey")
	s.expect(s.b.open("/.2fa/enrol/webauthn?return_to=%2Fmembers%2F"), "/.2fa/enrol/webauthn", 200, "the passkey page")
	if !evalJS[bool](s.b, "the passkey form shown", `!document.getElementById('passkey-register').hidden`) {
		s.b.fatalf("the passkey form stays hidden in Chromium")
	}
	s.check("enrol-passkey", "first")
	// The message the script shows when the member cancels.
	evalJS[bool](s.b, "a cancelled ceremony's message", `(() => {
		const box = document.getElementById('passkey-error');
		box.textContent = document.querySelector('#passkey-messages li[data-key="passkey_cancelled"]').textContent;
		box.hidden = false;
		return true;
	})()`)
	s.check("enrol-passkey", "cancelled")
	next := s.ceremony("#passkey-register", "?return_to=%2Fmembers%2F&name="+url.QueryEscape("YubiKey 5 NFC"), key.Create)
	s.expect(s.b.open(next), "/.2fa/recovery", 200, "the recovery step after a first passkey")
	s.check("recovery-renew", "first-passkey")
	s.expect(s.submitTo("recovery"), "/.2fa/recovery", 200, "the first codes after a passkey")
	s.check("recovery", "first-passkey")
	s.expect(s.b.open("/.2fa/methods?return_to=%2Fmembers%2F"), "/.2fa/methods", 200, "settings with a passkey")
	s.check("settings", "passkey-only")

	s.signInAgain(s.member("key"), "signing in with only a passkey")
	if evalJS[bool](s.b, "the passkey section", `document.getElementById('passkey').hidden`) {
		s.b.fatalf("the passkey section stays hidden in Chromium")
	}
	s.check("challenge", "passkey-only")
	s.expect(s.b.open(s.ceremony("#passkey", "?return_to=%2Fmembers%2F", key.Get)), "/members/", 200, "signed in with the passkey")

	// The app too, from the settings page: both on the challenge.
	s.expect(s.b.open("/.2fa/enrol?return_to=%2Fmembers%2F&from=settings"), "/.2fa/enrol", 200, "adding the app")
	s.check("enrol", "with-passkey")
	s.expect(s.submitTo("enrol"), "/.2fa/enrol", 200, "Set up the app")
	secret := s.b.enrolmentSecret()
	s.b.typeInto("#code", s.c.code(secret, 0))
	s.expect(s.submitTo("enrol/confirm"), "/.2fa/methods", 200, "the app's code")
	s.check("settings", "passkey-and-app")
	s.signInAgain(s.member("key"), "signing in with a passkey and the app")
	s.check("challenge", "passkey")
}

// ceremony runs a passkey ceremony from the page the browser shows:
// begin and finish posted by the page (its cookies, its CSRF token from
// holder's fields) to holder's data-begin and data-finish with query,
// answered by answer. It returns where the answer leads.
func (s *sweep) ceremony(holder, query string, answer func([]byte) ([]byte, error)) string {
	s.t.Helper()
	post := func(to, body string) string {
		answer, err := chromedp.Run(s.b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => {
			const h = document.querySelector(%q);
			return fetch(h.getAttribute(%q) + %q, {method: 'POST', headers: {'X-CSRF-Token': h.querySelector('input[name=csrf]').value,
				'Content-Type': 'application/json'}, body: %s}).then(r => r.text());
		})()`, holder, to, query, body), chromedp.EvalAwaitPromise))
		if err != nil {
			s.b.fatalf("posting to %s's %s: %v", holder, to, err)
		}
		return answer
	}
	options := post("data-begin", "null")
	cred, err := answer([]byte(options))
	if err != nil {
		s.b.fatalf("the authenticator: %v (options %s)", err, options)
	}
	body, _ := json.Marshal(string(cred))
	var got struct{ Redirect, Error string }
	if a := post("data-finish", string(body)); json.Unmarshal([]byte(a), &got) != nil || got.Redirect == "" {
		s.b.fatalf("the passkey ceremony's finish: %s", a)
	}
	return got.Redirect
}

// signOut: the sign-out page, and where it leads.
func (s *sweep) signOut() {
	s.t.Helper()
	s.expect(s.b.open("/.2fa/logout?return_to=%2F"), "/.2fa/logout", 200, "the sign-out page")
	s.check("logout", "confirm")
	if r := s.submitTo("logout"); strings.HasPrefix(r.path, "/.2fa/") {
		s.check("logout", "done")
	}
}

// optionalAndErrors: the reminder on an optional path and before a
// deadline, enrolment after a deadline, and the error
// pages: not found, a return_to to another site, an enrolment that
// expired, a page that needs a sign-in.
func (s *sweep) optionalAndErrors() {
	s.t.Helper()
	s.fresh()
	s.signIn(s.member("opt"), "/")
	s.expect(s.b.open("/optional/page"), "/.2fa/remind", 200, "an optional path")
	s.check("remind", "optional")
	// The reminder was just put off for this browser: a new one.
	s.fresh()
	s.signIn(s.member("opt"), "/")
	s.expect(s.b.open("/soon/page"), "/.2fa/remind", 200, "a deadline five days ahead")
	s.check("remind", "deadline")
	s.expect(s.b.open("/past/page"), "/.2fa/enrol", 200, "a deadline passed")
	s.check("enrol", "deadline-passed")
	s.expect(s.b.open("/.2fa/no-such-page"), "/.2fa/no-such-page", 404, "a page that does not exist")
	s.check("error", "not-found")
	s.expect(s.b.open("/.2fa/enrol?return_to="+url.QueryEscape("https://evil.example/")), "/.2fa/enrol", 200, "a return_to elsewhere")
	s.check("error", "bad-return-to")
	s.expect(s.submitTo("enrol"), "/.2fa/enrol", 200, "Set up the app")
	secret := s.b.enrolmentSecret()
	s.c.clock.Advance(11 * time.Minute)
	s.b.typeInto("#code", s.c.code(secret, 0))
	s.expect(s.submitTo("enrol/confirm"), "/.2fa/enrol/confirm", 409, "a set-up code after enrolment_timeout")
	s.check("error", "expired")
	s.fresh()
	s.expect(s.b.open("/.2fa/methods"), "/.2fa/methods", 401, "settings without a sign-in")
	s.check("error", "signed-out")
}

// lockout: wrong codes until the account is locked.
func (s *sweep) lockout() {
	s.t.Helper()
	s.signInAgain(s.member("new"), "signing in to be locked out")
	var r *page
	for range 5 {
		s.b.typeInto("#code", wrongCode(s.c.code(s.secret, 0)))
		if r = s.submitTo("challenge"); r.status == 429 {
			break
		}
	}
	s.expect(r, "/.2fa/challenge", 429, "the last wrong code")
	s.check("lockout", "locked")
}

// admin: every admin page, in the state the sweep left the members in.
func (s *sweep) admin(secret string) {
	s.t.Helper()
	s.signInAgain("admin", "the admin signing in")
	s.b.typeInto("#code", s.c.code(secret, 0))
	s.expect(s.submitTo("challenge"), "/members/", 200, "the admin's code")
	s.c.nextStep()
	for _, p := range []struct{ path, page, state string }{
		{"/.2fa/admin/", "admin-overview", "default"},
		{"/.2fa/admin/members", "admin-members", "list"},
		{"/.2fa/admin/member?id=" + s.member("new"), "admin-member", "locked"},
		{"/.2fa/admin/member?id=alice", "admin-member", "pending-reset"},
		{"/.2fa/admin/member?id=" + s.member("opt"), "admin-member", "not-enrolled"},
		{"/.2fa/admin/audit", "admin-audit", "default"},
		{"/.2fa/admin/approvals", "admin-approvals", "pending"},
		{"/.2fa/admin/reconcile", "admin-reconcile", "form"},
	} {
		u, _ := url.Parse(p.path)
		s.expect(s.b.open(p.path), u.Path, 200, p.page)
		s.check(p.page, p.state)
	}
	if err := chromedp.Do(s.b.ctx, chromedp.SendKeys(chromedp.CSS("#ids"), "alice\nnew-en\nnobody\n")); err != nil {
		s.b.fatalf("typing the IDs: %v", err)
	}
	s.expect(s.b.submit(`form[enctype="multipart/form-data"] button[type=submit]`), "/.2fa/admin/reconcile", 200, "reconciling")
	s.check("admin-reconcile", "result")
}
