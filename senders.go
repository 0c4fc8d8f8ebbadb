package twofactor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/notify"
)

func init() {
	caddy.RegisterModule(SMTPSender{})
	caddy.RegisterModule(SNSSender{})
	caddy.RegisterModule(MailboxSender{})
}

// Senders deliver one-time codes and notices. They are guest modules of the
// two_factor app in the two_factor.senders namespace, used through
// notify.Sender (and notify.Carrier, to say which channels they carry):
// smtp for email, sns for SMS, and mailbox (development only) for either. A
// third-party module in the namespace that implements notify.Sender plugs
// in the same way.

// SMTPSender sends email through an SMTP server.
type SMTPSender struct {
	// Host name of the SMTP server. Required.
	Host string `json:"host,omitempty"`

	// Port of the SMTP server, 1 to 65535. Default: 587, or 465 with tls
	// implicit.
	Port int `json:"port,omitempty"`

	// "starttls": upgrade with STARTTLS, and refuse to send if the server
	// does not offer it. "implicit": TLS from the first byte (port 465).
	// "none": no encryption, only for a relay on this machine (localhost
	// or a loopback address). Default: starttls.
	TLS string `json:"tls,omitempty"`

	// User name for SMTP AUTH; placeholders work. Default: none (no
	// authentication).
	Username string `json:"username,omitempty"`

	// Password for SMTP AUTH; use a placeholder such as
	// {env.SMTP_PASSWORD} so it never sits in the config. Default: none.
	Password string `json:"password,omitempty"`

	// The sender, with an optional display name:
	// "Example <no-reply@example.com>". Required.
	From string `json:"from,omitempty"`

	// How long one message may take, connection included. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// PEM file of the certificate authorities to trust for the server's
	// certificate, for relays with a private CA. Default: the system's.
	CAFile string `json:"ca_file,omitempty"`

	notify.Sender `json:"-"`
}

// CaddyModule returns the Caddy module information.
func (SMTPSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.senders.smtp",
		New: func() caddy.Module { return new(SMTPSender) },
	}
}

// Provision resolves placeholders and connects nothing: each message
// opens its own connection.
func (s *SMTPSender) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	cfg := notify.SMTPConfig{
		Host: s.Host, Port: s.Port, TLS: s.TLS, From: s.From, Timeout: time.Duration(s.Timeout),
	}
	var err error
	if cfg.Username, err = repl.ReplaceOrErr(s.Username, true, true); err != nil {
		return fmt.Errorf("smtp username: %v", err)
	}
	if cfg.Password, err = repl.ReplaceOrErr(s.Password, true, true); err != nil {
		return fmt.Errorf("smtp password: %v", err)
	}
	if s.CAFile != "" {
		roots, err := loadCAFile(s.CAFile)
		if err != nil {
			return fmt.Errorf("smtp ca_file: %w", err)
		}
		cfg.TLSConfig = &tls.Config{RootCAs: roots, ServerName: s.Host, MinVersion: tls.VersionTLS12}
	}
	s.Sender, err = notify.NewSMTP(cfg)
	return err
}

// Carries reports that SMTP takes email only.
func (*SMTPSender) Carries(channel string) bool { return channel == notify.ChannelEmail }

// FromAddress is the address codes come from, for the pages' advice to
// allow it.
func (s *SMTPSender) FromAddress() string {
	if src, ok := s.Sender.(notify.Sourced); ok {
		return src.FromAddress()
	}
	return ""
}

// SNSSender sends SMS through Amazon SNS.
type SNSSender struct {
	// AWS region, such as ap-northeast-1. Required.
	Region string `json:"region,omitempty"`

	// Static access key ID, through a placeholder such as
	// {env.SNS_ACCESS_KEY_ID}; with secret_access_key. Default: the AWS
	// default chain (environment, shared config and credentials files,
	// SSO, and the instance or task role).
	AccessKeyID string `json:"access_key_id,omitempty"`

	// Secret of access_key_id, through a placeholder such as
	// {env.SNS_SECRET_ACCESS_KEY}. Default: the AWS default chain.
	SecretAccessKey string `json:"secret_access_key,omitempty"`

	// Session token of temporary static credentials. Default: none.
	SessionToken string `json:"session_token,omitempty"`

	// Alphanumeric sender ID shown on phones in countries that support
	// it (1-11 characters). Default: none.
	SenderID string `json:"sender_id,omitempty"`

	// Number to send from (E.164), where the account has one.
	// Default: none; SNS picks.
	OriginationNumber string `json:"origination_number,omitempty"`

	// URL to send to instead of the region's SNS endpoint, for an
	// SNS-compatible gateway. Default: none.
	Endpoint string `json:"endpoint,omitempty"`

	// How long one message may take, retries included. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	notify.Sender `json:"-"`
}

// CaddyModule returns the Caddy module information.
func (SNSSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.senders.sns",
		New: func() caddy.Module { return new(SNSSender) },
	}
}

// Provision resolves placeholders and reads the AWS configuration, which
// calls no AWS service.
func (s *SNSSender) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	cfg := notify.SNSConfig{
		Region: s.Region, SenderID: s.SenderID, OriginationNumber: s.OriginationNumber,
		Endpoint: s.Endpoint, Timeout: time.Duration(s.Timeout),
	}
	for _, f := range []struct {
		name string
		in   string
		out  *string
	}{
		{"access_key_id", s.AccessKeyID, &cfg.AccessKeyID},
		{"secret_access_key", s.SecretAccessKey, &cfg.SecretAccessKey},
		{"session_token", s.SessionToken, &cfg.SessionToken},
	} {
		v, err := repl.ReplaceOrErr(f.in, true, true)
		if err != nil {
			return fmt.Errorf("sns %s: %v", f.name, err)
		}
		*f.out = strings.TrimSpace(v)
	}
	loadCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	s.Sender, err = notify.NewSNS(loadCtx, cfg)
	return err
}

// Carries reports that SNS takes SMS only.
func (*SNSSender) Carries(channel string) bool { return channel == notify.ChannelSMS }

// MailboxSender writes messages to a directory and the log instead of
// delivering them. It exists for the demo and development: codes end up
// readable on disk and in the log. It is only ever used when configured by
// name, and the directory must be given.
type MailboxSender struct {
	// Directory the messages are written to, created at the first
	// message. Required.
	Dir string `json:"dir,omitempty"`

	notify.Sender `json:"-"`
}

// CaddyModule returns the Caddy module information.
func (MailboxSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.senders.mailbox",
		New: func() caddy.Module { return new(MailboxSender) },
	}
}

// Provision prepares the mailbox and warns that nothing is delivered.
func (s *MailboxSender) Provision(ctx caddy.Context) error {
	if s.Dir == "" {
		return errors.New("mailbox dir: required (the development mailbox writes codes to this directory)")
	}
	logger := ctx.Logger()
	mb, err := notify.NewMailbox(s.Dir, logger)
	if err != nil {
		return err
	}
	s.Sender = mb
	logger.Warn("development mailbox in use: codes are written to disk and the log, not delivered",
		zap.String("dir", s.Dir))
	return nil
}

// Carries reports that the mailbox takes email and SMS alike.
func (*MailboxSender) Carries(channel string) bool {
	return channel == notify.ChannelEmail || channel == notify.ChannelSMS
}

// loadCAFile reads a PEM file of certificate authorities to trust.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates found", path)
	}
	return roots, nil
}

// Interface guards
var (
	_ caddy.Provisioner = (*SMTPSender)(nil)
	_ caddy.Provisioner = (*SNSSender)(nil)
	_ caddy.Provisioner = (*MailboxSender)(nil)
	_ notify.Carrier    = (*SMTPSender)(nil)
	_ notify.Carrier    = (*SNSSender)(nil)
	_ notify.Carrier    = (*MailboxSender)(nil)
	_ notify.Sourced    = (*SMTPSender)(nil)
)
