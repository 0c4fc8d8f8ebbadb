package tests

import (
	"strings"
	"testing"
	"time"
)

// A lost phone in a real browser (see browser_test.go): "Use a recovery
// code" on the challenge, the code typed loosely, then the new set the
// member must save before the member page opens, however long they take
// to get to it. The renewal step and the codes page work under the pages'
// Content-Security-Policy.
func TestBrowserRecoverySignIn(t *testing.T) {
	e := start(t, setup{})
	requireChromium(t)
	alice, _ := enrolled(e, "alice")
	codes := alice.recovery

	c := e.chromium(t)
	console := c.watchConsole()
	if r := c.signIn("alice", "/"); r.path != "/" || r.status != 200 {
		c.fatalf("after signing in with next=/: %s (%d)", r.url, r.status)
	}
	r := c.open("/members/")
	if r.path != "/.2fa/challenge" || r.status != 200 {
		c.fatalf("an enrolled member on a new browser is at %s (%d), want the challenge page", r.url, r.status)
	}
	r = c.submit(`a[href*="method=recovery"]`)
	if r.path != "/.2fa/challenge" || r.query.Get("method") != "recovery" || r.status != 200 {
		c.fatalf("after Use a recovery code: %s (%d)", r.url, r.status)
	}
	c.typeInto("#code", " "+strings.ToLower(strings.ReplaceAll(codes[0], "-", " ")))
	r = c.submit(`form[action="/.2fa/challenge"] button[type=submit]`)
	if r.path != "/.2fa/recovery" || r.query.Get("return_to") != "/members/" || r.status != 200 {
		c.fatalf("after the recovery code: %s (%d), want the step that asks for a new set", r.url, r.status)
	}
	c.checkStyled()

	// The member page waits until the new set is made, which needs no
	// other code past step_up.
	e.clock.Advance(11 * time.Minute)
	if r := c.open("/members/"); r.path != "/.2fa/recovery" || r.status != 200 {
		c.fatalf("the member page before the new set: %s (%d)", r.url, r.status)
	}
	r = c.submit(`form[action="/.2fa/recovery"] button[type=submit]`)
	r = c.saveRecoveryCodes(r, "/.2fa/recovery")
	c.checkMembersVia(r, "alice", "recovery")
	c.checkNoCSPViolations()
	console.checkClean(t)
}
