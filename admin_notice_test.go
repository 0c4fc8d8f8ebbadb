package twofactor

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/notify"
)

// chanSender hands each message to a channel, so a test waits for it
// without sleeping.
type chanSender chan notify.Message

func (c chanSender) Send(_ context.Context, m notify.Message) error {
	c <- m
	return nil
}

// An admin's action on a member is told to the member by email, naming the
// site and where to check their settings; without an address, nothing is
// sent.
func TestAdminNotice(t *testing.T) {
	sent := make(chanSender, 1)
	app := &App{email: sent, logger: zap.NewNop(), running: &running{}}
	app.adminNotice("alice@example.com", notify.NoticeData{Kind: "admin_reset"}) // no site yet: no handler
	app.site.Store(&noticeSite{name: "Test Members", url: "https://members.example", prefix: "/.2fa/"})
	app.adminNotice("", notify.NoticeData{Kind: "admin_sessions"})
	for kind, subject := range map[string]string{
		"admin_reset":           "reset by an administrator",
		"admin_reset_requested": "asked to reset",
		"admin_devices":         "remembered devices were forgotten",
		"admin_sessions":        "sessions were ended",
	} {
		app.adminNotice("alice@example.com", notify.NoticeData{Kind: kind})
		m := <-sent
		if m.To != "alice@example.com" || !strings.Contains(m.Subject, "[Test Members]") || !strings.Contains(m.Subject, subject) ||
			!strings.Contains(m.Text, "https://members.example/.2fa/methods") {
			t.Errorf("%s notice: %+v", kind, m)
		}
	}
	select {
	case m := <-sent:
		t.Fatalf("a notice without an address or site was sent: %+v", m)
	default:
	}
}
