package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/internal/testcode"
	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
)

const (
	smtpUser = "mailer"
	smtpPass = "correct horse battery staple"
)

func smtpSender(t *testing.T, srv *testsmtp.Server, mode string, edit func(*SMTPConfig)) *SMTP {
	t.Helper()
	cfg := SMTPConfig{
		Host:      srv.Host(),
		Port:      srv.Port(),
		TLS:       mode,
		From:      "Example Club <no-reply@example.com>",
		Timeout:   5 * time.Second,
		TLSConfig: &tls.Config{RootCAs: srv.RootCAs()},
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewSMTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func codeEmail(t *testing.T, lang, to string) Message {
	t.Helper()
	m, err := CodeEmail(lang, CodeData{Site: "Example Club", Code: "482913", TTL: 5 * time.Minute, Purpose: "verify"})
	if err != nil {
		t.Fatal(err)
	}
	m.To = to
	return m
}

func withAuth(c *SMTPConfig) { c.Username, c.Password = smtpUser, smtpPass }

func TestSMTPStartTLSWithAuth(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", RequireTLS: true, Username: smtpUser, Password: smtpPass})
	s := smtpSender(t, srv, "starttls", withAuth)
	m := codeEmail(t, "ja", "alice@example.com")
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(t, 1, 5*time.Second)[0]
	if !got.TLS {
		t.Error("message was not sent over TLS")
	}
	if got.From != "no-reply@example.com" || len(got.To) != 1 || got.To[0] != "alice@example.com" {
		t.Errorf("envelope = %q → %q", got.From, got.To)
	}
	if got.Subject != "【Example Club】確認コード" {
		t.Errorf("subject = %q", got.Subject)
	}
	if testcode.Find(t, got.Text) != "482913" || !strings.Contains(got.Text, "誰にも教えないでください") {
		t.Errorf("text = %q", got.Text)
	}
	if !strings.Contains(got.HTML, `<p style="margin:0 0 16px;font-family:Menlo`) || !strings.Contains(got.HTML, "482913") {
		t.Errorf("HTML alternative = %q", got.HTML)
	}
	data := string(got.Data)
	for _, want := range []string{
		"Subject:",
		"=?UTF-8?q?", // RFC 2047, folded by go-mail
		"Date: ",
		"Message-ID: <",
		"@example.com>\r\n", // the sender's domain, not this host's name
		"multipart/alternative",
		`"Example Club" <no-reply@example.com>`,
	} {
		if !strings.Contains(data, want) {
			t.Errorf("message lacks %q:\n%s", want, data)
		}
	}
}

func TestSMTPEnglishTextOnly(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	s := smtpSender(t, srv, "", nil) // STARTTLS is the default
	m := Message{To: "bob@example.com", Subject: "Your verification code for Example Club", Text: "Your code is 482913.\n"}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(t, 1, 5*time.Second)[0]
	if !got.TLS || got.Subject != m.Subject || got.Text != m.Text || got.HTML != "" {
		t.Errorf("got TLS=%v subject=%q text=%q html=%q", got.TLS, got.Subject, got.Text, got.HTML)
	}
	if strings.Contains(string(got.Data), "multipart") {
		t.Error("text-only message sent as multipart")
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "implicit", Username: smtpUser, Password: smtpPass})
	s := smtpSender(t, srv, "implicit", withAuth)
	if err := s.Send(context.Background(), codeEmail(t, "en", "alice@example.com")); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(t, 1, 5*time.Second)[0]
	if !got.TLS || got.Subject != "Your verification code for Example Club" {
		t.Errorf("got TLS=%v subject=%q", got.TLS, got.Subject)
	}
}

func TestSMTPPlainToLoopback(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "none", Username: smtpUser, Password: smtpPass})
	s := smtpSender(t, srv, "none", withAuth)
	if err := s.Send(context.Background(), codeEmail(t, "en", "alice@example.com")); err != nil {
		t.Fatal(err)
	}
	if got := srv.Wait(t, 1, 5*time.Second)[0]; got.TLS {
		t.Error("plain session reported as TLS")
	}
}

func TestSMTPConcurrentSends(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", Username: smtpUser, Password: smtpPass})
	s := smtpSender(t, srv, "starttls", withAuth)
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- s.Send(context.Background(), codeEmail(t, "en", "alice@example.com")) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	srv.Wait(t, 8, 5*time.Second)
}

// sendFails sends a code email and checks the error's class, that nothing
// was delivered, and that the error does not carry the code.
func sendFails(t *testing.T, srv *testsmtp.Server, s *SMTP, class string) error {
	t.Helper()
	err := s.Send(context.Background(), codeEmail(t, "en", "alice@example.com"))
	if Class(err) != class {
		t.Fatalf("Send: %v (class %q), want class %q", err, Class(err), class)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), "482913") {
		t.Errorf("error text contains the code: %v", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d message(s) delivered", n)
	}
	return err
}

func TestSMTPRequiresSTARTTLS(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "none"})
	sendFails(t, srv, smtpSender(t, srv, "starttls", nil), ClassTLS)
}

func TestSMTPUntrustedCertificate(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	s := smtpSender(t, srv, "starttls", func(c *SMTPConfig) { c.TLSConfig = nil })
	sendFails(t, srv, s, ClassTLS)

	implicit := testsmtp.Start(t, testsmtp.Options{TLS: "implicit"})
	s = smtpSender(t, implicit, "implicit", func(c *SMTPConfig) { c.TLSConfig.ServerName = "mail.example.com" })
	sendFails(t, implicit, s, ClassTLS)
}

func TestSMTPImplicitTLSToPlainServer(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "none"})
	s := smtpSender(t, srv, "implicit", nil)
	start := time.Now()
	sendFails(t, srv, s, ClassTLS)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestSMTPWrongPassword(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", Username: smtpUser, Password: smtpPass})
	err := sendFails(t, srv, smtpSender(t, srv, "starttls", func(c *SMTPConfig) {
		c.Username, c.Password = smtpUser, "wrong"
	}), ClassAuth)
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error text contains the password: %v", err)
	}
}

func TestSMTPAuthNotOffered(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	sendFails(t, srv, smtpSender(t, srv, "starttls", withAuth), ClassAuth)
}

func TestSMTPAuthRequiredByServer(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls", Username: smtpUser, Password: smtpPass})
	sendFails(t, srv, smtpSender(t, srv, "starttls", nil), ClassAuth)
}

func TestSMTPConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s, err := NewSMTP(SMTPConfig{Host: "127.0.0.1", Port: port, From: "no-reply@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), codeEmail(t, "en", "alice@example.com"))
	if Class(err) != ClassRefused {
		t.Fatalf("Send: %v, want class %s", err, ClassRefused)
	}
	t.Logf("error: %v", err)
}

func TestSMTPRefusals(t *testing.T) {
	t.Parallel()
	for mode, class := range map[string]string{
		"reject":    ClassRejected,
		"temporary": ClassTemporary,
		"data":      ClassRejected,
	} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
			srv.Fail(mode)
			sendFails(t, srv, smtpSender(t, srv, "starttls", nil), class)
			// The same server delivers once it behaves again.
			srv.Fail("")
			if err := smtpSender(t, srv, "starttls", nil).Send(context.Background(), codeEmail(t, "en", "alice@example.com")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSMTPTimeout(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	srv.SetDelay(time.Minute)
	srv.Fail("slow")
	s := smtpSender(t, srv, "starttls", func(c *SMTPConfig) { c.Timeout = 300 * time.Millisecond })
	start := time.Now()
	err := s.Send(context.Background(), codeEmail(t, "en", "alice@example.com"))
	if Class(err) != ClassTimeout {
		t.Fatalf("Send: %v, want class %s", err, ClassTimeout)
	}
	t.Logf("error: %v", err)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %s with a 300ms timeout", d)
	}
}

func TestSMTPContextDeadline(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	srv.SetDelay(time.Minute)
	srv.Fail("slow")
	s := smtpSender(t, srv, "starttls", nil) // 5s timeout; the context is shorter
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Send(ctx, codeEmail(t, "en", "alice@example.com"))
	if Class(err) != ClassTimeout {
		t.Fatalf("Send: %v, want class %s", err, ClassTimeout)
	}
	t.Logf("error: %v", err)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %s with a 300ms deadline", d)
	}
}

func TestSMTPInvalidRecipient(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	s := smtpSender(t, srv, "starttls", nil)
	for _, to := range []string{"", "alice", "Alice <alice@example.com>", "alice@example.com\r\nBcc: eve@example.com"} {
		m := codeEmail(t, "en", to)
		if err := s.Send(context.Background(), m); Class(err) != ClassInvalid {
			t.Errorf("Send to %q: %v, want class %s", to, err, ClassInvalid)
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d message(s) delivered", n)
	}
}

func TestNewSMTPValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  SMTPConfig
		want string // in the error
	}{
		{SMTPConfig{From: "a@example.com"}, "smtp host: required"},
		{SMTPConfig{Host: "mail.example.com:587", From: "a@example.com"}, "smtp host"},
		{SMTPConfig{Host: "mail.example.com"}, "smtp from: required"},
		{SMTPConfig{Host: "mail.example.com", From: "x"}, `smtp from "x"`},
		{SMTPConfig{Host: "mail.example.com", From: "Example <no-reply>"}, "smtp from"},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", TLS: "foo"}, `smtp tls "foo": must be starttls, implicit or none`},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", TLS: "STARTTLS"}, `smtp tls "STARTTLS"`},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", TLS: "none"}, `smtp tls "none"`},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", TLS: "none", Username: "u", Password: "p"}, `smtp tls "none"`},
		{SMTPConfig{Host: "192.0.2.1", From: "a@example.com", TLS: "none"}, `smtp tls "none"`},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", Port: 70000}, "smtp port 70000"},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", Password: "p"}, "smtp password"},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", HELO: "bad name"}, "smtp helo"},
		{SMTPConfig{Host: "mail.example.com", From: "a@example.com", Timeout: -time.Second}, "smtp timeout"},
	} {
		_, err := NewSMTP(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSMTP(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []SMTPConfig{
		{Host: "mail.example.com", From: "Example <no-reply@example.com>"},
		{Host: "localhost", From: "no-reply@example.com", TLS: "none", Username: "u", Password: "p"},
		{Host: "127.0.0.2", From: "no-reply@example.com", TLS: "none"},
		{Host: "::1", From: "no-reply@example.com", TLS: "none"},
		{Host: "mail.example.com", From: "no-reply@example.com", TLS: "implicit", HELO: "app.example.com"},
	} {
		if _, err := NewSMTP(cfg); err != nil {
			t.Errorf("NewSMTP(%+v): %v", cfg, err)
		}
	}
}

func TestNewSMTPDefaults(t *testing.T) {
	t.Parallel()
	s, err := NewSMTP(SMTPConfig{Host: "mail.example.com", From: "no-reply@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if s.port != 587 || s.mode != "starttls" || s.timeout != 10*time.Second || s.tlsConfig.ServerName != "mail.example.com" {
		t.Errorf("defaults: port %d, mode %q, timeout %s, server name %q", s.port, s.mode, s.timeout, s.tlsConfig.ServerName)
	}
	s, err = NewSMTP(SMTPConfig{Host: "mail.example.com", From: "no-reply@example.com", TLS: "implicit"})
	if err != nil {
		t.Fatal(err)
	}
	if s.port != 465 {
		t.Errorf("implicit TLS port %d, want 465", s.port)
	}
}

func TestSMTPJapaneseDisplayName(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{TLS: "starttls"})
	s := smtpSender(t, srv, "starttls", func(c *SMTPConfig) { c.From = "サンプル会員サイト <no-reply@example.com>" })
	if err := s.Send(context.Background(), codeEmail(t, "ja", "alice@example.com")); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(t, 1, 5*time.Second)[0]
	msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "サンプル会員サイト" || from[0].Address != "no-reply@example.com" {
		t.Errorf("From = %v, %v (header %q)", from, err, msg.Header.Get("From"))
	}
}
