package tests

// Passkeys and security keys in a real browser: headless Chromium with
// the DevTools protocol's virtual authenticators (the WebAuthn domain),
// so that navigator.credentials, the browser's origin and relying-party
// checks, user verification and the signature counter are Chromium's
// own, and the gateway receives exactly what a browser sends.
//
// WebAuthn binds credentials to a domain name, so the browser talks to
// the gateway as http://localhost:<port> (a secure context, and the
// relying party ID "localhost"), which is also the handler's site_url.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// startPasskeys runs a gateway with s whose site is also served as
// http://localhost:<port>, the address its site_url names and the one
// every client of the test (Chromium and the Go client alike) uses.
func startPasskeys(t *testing.T, s setup) *env {
	t.Helper()
	requireChromium(t)
	e := start(t, s)
	// The harness serves the site as 127.0.0.1:<port> only; Caddy
	// matches the Host, so the same site block takes localhost's name
	// too, loaded as a reload of the running config.
	cfg := e.caddyfile(s)
	site := fmt.Sprintf("http://127.0.0.1:%d {", e.port)
	if !strings.Contains(cfg, site) {
		t.Fatalf("the test config has no site block %q", site)
	}
	cfg = strings.Replace(cfg, site, fmt.Sprintf("http://127.0.0.1:%d, http://localhost:%d {", e.port, e.port), 1)
	if err := load(cfg); err != nil {
		t.Fatalf("serving the site as localhost: %v", err)
	}
	e.host = fmt.Sprintf("localhost:%d", e.port)
	e.base = "http://" + e.host
	e.waitReady()
	return e
}

// Virtual authenticators like the ones members have.
var (
	// platformPasskey is a phone's or laptop's built-in authenticator:
	// resident (discoverable) credentials, a PIN or biometric.
	platformPasskey = webauthn.VirtualAuthenticatorOptions{
		Protocol:                    webauthn.AuthenticatorProtocolCtap2,
		Ctap2version:                webauthn.Ctap2versionCtap21,
		Transport:                   webauthn.AuthenticatorTransportInternal,
		HasResidentKey:              true,
		HasUserVerification:         true,
		IsUserVerified:              true,
		AutomaticPresenceSimulation: true,
	}
	// u2fKey is an old USB security key: U2F, no resident credentials,
	// no user verification.
	u2fKey = webauthn.VirtualAuthenticatorOptions{
		Protocol:                    webauthn.AuthenticatorProtocolU2f,
		Transport:                   webauthn.AuthenticatorTransportUsb,
		AutomaticPresenceSimulation: true,
	}
	// plainKey is a CTAP2 USB security key without a PIN: no resident
	// credentials, no user verification.
	plainKey = webauthn.VirtualAuthenticatorOptions{
		Protocol:                    webauthn.AuthenticatorProtocolCtap2,
		Transport:                   webauthn.AuthenticatorTransportUsb,
		AutomaticPresenceSimulation: true,
	}
)

// authenticator is one virtual authenticator plugged into a browser.
type authenticator struct {
	c  *chrome
	id webauthn.AuthenticatorID
}

// addAuthenticator plugs a virtual authenticator into the browser; the
// browser answers navigator.credentials with it (and with any other
// plugged in) and shows no dialog.
func (c *chrome) addAuthenticator(opts webauthn.VirtualAuthenticatorOptions) *authenticator {
	c.t.Helper()
	off := false
	if _, err := chromedp.Call(c.ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: &off}); err != nil {
		c.fatalf("enabling the WebAuthn domain: %v", err)
	}
	res, err := chromedp.Call(c.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &opts})
	if err != nil {
		c.fatalf("adding a virtual authenticator: %v", err)
	}
	return &authenticator{c: c, id: res.AuthenticatorID}
}

// unplug removes the authenticator from its browser.
func (a *authenticator) unplug() {
	a.c.t.Helper()
	if _, err := chromedp.Call(a.c.ctx, webauthn.RemoveVirtualAuthenticator, webauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: a.id}); err != nil {
		a.c.fatalf("removing a virtual authenticator: %v", err)
	}
}

// credentials are the credentials the authenticator holds, with their
// private keys and counters.
func (a *authenticator) credentials() []*webauthn.Credential {
	a.c.t.Helper()
	res, err := chromedp.Call(a.c.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: a.id})
	if err != nil {
		a.c.fatalf("reading the authenticator's credentials: %v", err)
	}
	return res.Credentials
}

// only is the one credential the authenticator holds.
func (a *authenticator) only() *webauthn.Credential {
	a.c.t.Helper()
	creds := a.credentials()
	if len(creds) != 1 {
		a.c.fatalf("the authenticator holds %d credentials, want 1", len(creds))
	}
	return creds[0]
}

// add puts a credential into the authenticator: the same key synced to
// another device, or one made elsewhere.
func (a *authenticator) add(cred *webauthn.Credential) {
	a.c.t.Helper()
	rpID := cred.RpID
	if rpID == "" {
		// Chromium keeps only the hash of a non-resident credential's
		// relying party ID, and reports none.
		rpID = "localhost"
	}
	params := addCredentialParams{AuthenticatorID: a.id}
	params.Credential = credentialToAdd{
		CredentialID: cred.CredentialID, IsResidentCredential: cred.IsResidentCredential, RpID: rpID,
		PrivateKey: cred.PrivateKey, UserHandle: cred.UserHandle, SignCount: cred.SignCount,
		BackupEligibility: cred.BackupEligibility, BackupState: cred.BackupState,
		UserName: cred.UserName, UserDisplayName: cred.UserDisplayName,
	}
	if _, err := chromedp.Call(a.c.ctx, addCredential, params); err != nil {
		a.c.fatalf("adding a credential to the authenticator: %v", err)
	}
}

// credentialToAdd is webauthn.Credential without the credential-manager
// trust group fields, which Chromium refuses for authenticators without
// that extension even when they are empty or false, as cdproto always
// sends them.
type credentialToAdd struct {
	CredentialID         []byte  `json:"credentialId"`
	IsResidentCredential bool    `json:"isResidentCredential"`
	RpID                 string  `json:"rpId"`
	PrivateKey           []byte  `json:"privateKey"`
	UserHandle           []byte  `json:"userHandle,omitempty"`
	SignCount            float64 `json:"signCount"`
	BackupEligibility    bool    `json:"backupEligibility"`
	BackupState          bool    `json:"backupState"`
	UserName             string  `json:"userName,omitempty"`
	UserDisplayName      string  `json:"userDisplayName,omitempty"`
}

type addCredentialParams struct {
	AuthenticatorID webauthn.AuthenticatorID `json:"authenticatorId"`
	Credential      credentialToAdd          `json:"credential"`
}

// addCredential is WebAuthn.addCredential with credentialToAdd.
var addCredential = cdp.Command[addCredentialParams, cdp.Empty]{Method: webauthn.CommandAddCredential}

// drop removes a credential from the authenticator.
func (a *authenticator) drop(id []byte) {
	a.c.t.Helper()
	if _, err := chromedp.Call(a.c.ctx, webauthn.RemoveCredential, webauthn.RemoveCredentialParams{AuthenticatorID: a.id, CredentialID: id}); err != nil {
		a.c.fatalf("removing a credential from the authenticator: %v", err)
	}
}

// badUV makes the authenticator's answers claim no user verification
// (the UV flag cleared in what it signs), as an authenticator that
// skipped the PIN would send.
func (a *authenticator) badUV(on bool) {
	a.c.t.Helper()
	if _, err := chromedp.Call(a.c.ctx, webauthn.SetResponseOverrideBits, webauthn.SetResponseOverrideBitsParams{AuthenticatorID: a.id, IsBadUV: &on}); err != nil {
		a.c.fatalf("overriding the UV bit: %v", err)
	}
}

// ceremonyResult is what a ceremony driven in the page came to: the
// stage it stopped at (begin, browser or finish), the gateway's status
// and JSON answer there, or the browser's error name (NotAllowedError).
type ceremonyResult struct {
	Stage  string            `json:"stage"`
	Status int               `json:"status"`
	Answer map[string]string `json:"answer"`
	Error  string            `json:"error"`
}

func (r ceremonyResult) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// ceremonyJS runs a ceremony as the pages' script does: the CSRF token
// of the gateway page's forms in the X-CSRF-Token header, begin,
// navigator.credentials, finish.
const ceremonyJS = `(async (from, kind, begin, finish) => {
	const html = await (await fetch(from, {credentials: 'same-origin'})).text();
	const csrf = new DOMParser().parseFromString(html, 'text/html').querySelector('input[name="csrf"]')?.value ?? '';
	const post = async (path, body) => {
		const r = await fetch(path, {
			method: 'POST', credentials: 'same-origin',
			headers: {'X-CSRF-Token': csrf, 'Accept': 'application/json', 'Content-Type': 'application/json'},
			body: body === undefined ? null : JSON.stringify(body),
		});
		let answer = {};
		try { answer = await r.json(); } catch {}
		for (const k in answer) if (typeof answer[k] !== 'string') answer[k] = JSON.stringify(answer[k]);
		return {status: r.status, answer};
	};
	const b = await post(begin);
	if (b.status !== 200) return {stage: 'begin', ...b};
	const options = JSON.parse(b.answer.publicKey);
	let cred;
	try {
		cred = kind === 'create'
			? await navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options), signal: AbortSignal.timeout(10000)})
			: await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options), signal: AbortSignal.timeout(10000)});
	} catch (e) {
		return {stage: 'browser', status: 0, answer: {}, error: e.name + ': ' + e.message};
	}
	return {stage: 'finish', ...(await post(finish, cred.toJSON()))};
})`

// ceremonyPage is where the test's script runs: a page of the site's
// origin outside the gateway (the echo upstream), since the gateway's
// pages allow only their own scripts (by the CSP's hashes).
const ceremonyPage = "/public/passkey"

// ceremony runs a registration ("create") or a sign-in ("get") begun on
// the gateway's page from, with query added to both routes.
func (c *chrome) ceremony(from, kind, query string) ceremonyResult {
	c.t.Helper()
	if r := c.open(ceremonyPage); r.status != http.StatusOK {
		c.fatalf("the page the ceremony runs on: %s (%d)", r.url, r.status)
	}
	route := map[string]string{"create": "register", "get": "login"}[kind]
	begin := "/.2fa/webauthn/" + route + "/begin" + query
	finish := "/.2fa/webauthn/" + route + "/finish" + query
	js := fmt.Sprintf("%s(%q, %q, %q, %q)", ceremonyJS, from, kind, begin, finish)
	res, err := chromedp.Run(c.ctx, chromedp.Evaluate[ceremonyResult](js, chromedp.EvalAwaitPromise))
	if err != nil {
		c.fatalf("the %s ceremony: %v", kind, err)
	}
	return res
}

// registered checks that a registration went through and returns the
// gateway's ID of the new credential.
func (c *chrome) registered(r ceremonyResult, name string) string {
	c.t.Helper()
	if r.Stage != "finish" || r.Status != http.StatusOK || r.Answer["name"] != name || len(r.Answer["credential"]) != 32 {
		c.fatalf("registering %q: %s", name, r)
	}
	return r.Answer["credential"]
}

// upstreamHeaders opens a path of the echo upstream in the browser and
// returns the request headers it received.
func (c *chrome) upstreamHeaders(path string) (*page, http.Header) {
	c.t.Helper()
	r := c.open(path)
	if r.status != http.StatusOK || r.path != path {
		return r, nil
	}
	var echoed struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(evalJS[string](c, "the echoed request", `document.body.innerText`)), &echoed); err != nil {
		c.fatalf("the echo upstream's answer: %v", err)
	}
	return r, echoed.Headers
}

// checkThrough checks that the browser reaches the echo upstream at path
// as member id verified by method.
func (c *chrome) checkThrough(path, id, method string) {
	c.t.Helper()
	r, h := c.upstreamHeaders(path)
	if h == nil || h.Get("X-2fa-User") != id || h.Get("X-2fa-Method") != method {
		c.fatalf("opening %s: at %s (%d), the upstream saw user %q method %q; want %s verified by %s",
			path, r.url, r.status, h.Get("X-2fa-User"), h.Get("X-2fa-Method"), id, method)
	}
}

// checkNotThrough checks that the browser is stopped before the upstream
// at path, on the challenge page.
func (c *chrome) checkNotThrough(path string) {
	c.t.Helper()
	if r := c.open(path); r.path != "/.2fa/challenge" {
		c.fatalf("opening %s: at %s (%d), want the challenge", path, r.url, r.status)
	}
}

// firstPasskey registers the first passkey of the member signed in in c,
// who has no other method, and makes the recovery codes every first
// enrolment gets, ending at returnTo.
func (c *chrome) firstPasskey(returnTo, name string) string {
	c.t.Helper()
	q := "?return_to=" + url.QueryEscape(returnTo)
	res := c.ceremony("/.2fa/enrol"+q, "create", q+"&name="+url.QueryEscape(name))
	id := c.registered(res, name)
	if want := "/.2fa/recovery" + q; res.Answer["redirect"] != want {
		c.fatalf("the first passkey leads to %q, want the recovery codes at %q", res.Answer["redirect"], want)
	}
	c.open(res.Answer["redirect"])
	r := c.submit(`form[action="/.2fa/recovery"] button[type=submit]`)
	r = c.saveRecoveryCodes(r, "/.2fa/recovery")
	if r.path != returnTo {
		c.fatalf("after the recovery codes: %s (%d), want %s", r.url, r.status, returnTo)
	}
	return id
}

// signInWithPasskey signs in from the challenge for returnTo and
// returns the ceremony's result.
func (c *chrome) signInWithPasskey(returnTo string) ceremonyResult {
	c.t.Helper()
	q := "?return_to=" + url.QueryEscape(returnTo)
	return c.ceremony("/.2fa/challenge"+q, "get", q)
}

// signedInWithPasskey signs in from the challenge and follows the
// answer's redirect to returnTo, through to the upstream.
func (c *chrome) signedInWithPasskey(returnTo, id string) {
	c.t.Helper()
	res := c.signInWithPasskey(returnTo)
	if res.Stage != "finish" || res.Status != http.StatusOK || res.Answer["redirect"] != returnTo {
		c.fatalf("signing in with a passkey: %s, want the redirect to %s", res, returnTo)
	}
	c.checkThrough(returnTo, id, "webauthn")
}

// A member registers a platform passkey (a resident credential, verified
// by the device's PIN or biometric) and an old U2F security key (neither
// resident nor verified), then signs in with each in a browser of its
// own: the upstream sees the method webauthn, and the audit trail the
// credential that was used.
func TestBrowserPasskeyResidentAndSecurityKey(t *testing.T) {
	e := startPasskeys(t, setup{policy: passkeyPolicy})

	a := e.chromium(t)
	a.signIn("alice", "/echo/x")
	laptop := a.addAuthenticator(platformPasskey)
	laptopID := a.firstPasskey("/echo/x", "Laptop")
	a.checkThrough("/echo/x", "alice", "webauthn")
	resident := laptop.only()
	if !resident.IsResidentCredential || resident.RpID != "localhost" {
		a.fatalf("the laptop's credential: resident %v, relying party %q; want a resident credential for localhost", resident.IsResidentCredential, resident.RpID)
	}

	// The security key, added from the settings page (a fresh sign-in,
	// so no step-up). The laptop is put away, or the browser would ask
	// it too and it would refuse, holding an excluded credential.
	laptop.unplug()
	usb := a.addAuthenticator(u2fKey)
	keyID := a.registered(a.ceremony("/.2fa/methods", "create", "?from=settings&name=USB+key"), "USB key")
	key := usb.only()
	if key.IsResidentCredential {
		a.fatalf("the U2F key's credential is resident")
	}

	// Each in a browser of its own, as on two devices.
	for _, tc := range []struct {
		name string
		opts webauthn.VirtualAuthenticatorOptions
		cred *webauthn.Credential
		id   string
	}{
		{"the laptop's passkey", platformPasskey, resident, laptopID},
		{"the U2F key", u2fKey, key, keyID},
	} {
		b := e.chromium(t)
		b.signIn("alice", "/")
		b.checkNotThrough("/echo/x")
		b.addAuthenticator(tc.opts).add(tc.cred)
		before := auditOf(e, "verify", "alice", map[string]any{"result": "success", "method": "webauthn", "credential": tc.id[:8]})
		b.signedInWithPasskey("/echo/x", "alice")
		if n := auditOf(e, "verify", "alice", map[string]any{"result": "success", "method": "webauthn", "credential": tc.id[:8]}); n != before+1 {
			t.Fatalf("signing in with %s: %d verifications with credential %s audited, want %d", tc.name, n, tc.id[:8], before+1)
		}
		b.checkNoCSPViolations()
	}
}
