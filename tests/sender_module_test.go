package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-twofactor/twofactor/internal/testcode"
	"github.com/caddy-twofactor/twofactor/internal/testrecord"
	"github.com/caddy-twofactor/twofactor/notify"
)

// A sender module from outside the plugin plugs in like the built-in ones:
// the app uses senders through notify.Sender, and asks notify.Carrier,
// when a module has it, which channels it carries.

func init() {
	caddy.RegisterModule(captureSender{})
	caddy.RegisterModule(smsOnlySender{})
}

// captured is what every captureSender was given to send.
var captured testrecord.Recorder[notify.Message]

// captureSender is a third party's sender: it records messages, and says
// nothing of channels, so it is trusted with either.
type captureSender struct{}

func (captureSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "two_factor.senders.capture", New: func() caddy.Module { return new(captureSender) }}
}

func (*captureSender) Send(_ context.Context, m notify.Message) error {
	captured.Add(m)
	return nil
}

func (*captureSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

// smsOnlySender carries SMS only.
type smsOnlySender struct{ captureSender }

func (smsOnlySender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "two_factor.senders.sms_only", New: func() caddy.Module { return new(smsOnlySender) }}
}

func (*smsOnlySender) Carries(channel string) bool { return channel == notify.ChannelSMS }

func TestThirdPartySender(t *testing.T) {
	before := len(captured.All())
	db := t.TempDir() + "/twofactor.db"
	e := start(t, setup{
		global: fmt.Sprintf("keys %q\n\t\tstore embedded %q\n\t\temail capture", testKey, db),
		policy: codePolicy, dbPath: db,
	})
	b := e.browser()
	b.login("alice")
	r := b.postPage("/.2fa/enrol/email", "/.2fa/enrol/email?return_to=%2Fmembers%2F", url.Values{"return_to": {"/members/"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/.2fa/enrol/code") {
		t.Fatalf("sending through the third-party sender: %d %q", r.status, r.location())
	}
	msgs := captured.Wait(t, before+1, 5*time.Second, "captured messages")
	m := msgs[before]
	if m.To != "alice@example.com" {
		t.Fatalf("message to %q", m.To)
	}
	r = b.postPage("/.2fa/enrol/code", "/.2fa/enrol/code?return_to=%2Fmembers%2F",
		url.Values{"return_to": {"/members/"}, "code": {testcode.Find(t, m.Text)}})
	enrolDone(t, r, "/members/")

	// A module that says it cannot carry email is refused for email,
	// naming it.
	err := load(e.caddyfile(setup{global: fmt.Sprintf("keys %q\n\t\temail sms_only", testKey), policy: codePolicy}))
	if err == nil || !strings.Contains(err.Error(), "sender two_factor.senders.sms_only cannot send email") {
		t.Fatalf("an SMS-only sender for email: %v", err)
	}
	if err := load(e.caddyfile(setup{global: fmt.Sprintf("keys %q\n\t\tstore embedded %q\n\t\tsms sms_only", testKey, db), policy: codePolicy})); err != nil {
		t.Fatalf("an SMS-only sender for SMS: %v", err)
	}
}
