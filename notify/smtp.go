package notify

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// SMTP TLS modes.
const (
	smtpStartTLS = "starttls"
	smtpImplicit = "implicit"
	smtpNoTLS    = "none"
)

// SMTPConfig configures an SMTP sender. Zero fields take the defaults
// given.
type SMTPConfig struct {
	Host string // required
	Port int    // default 587, or 465 when TLS is "implicit"
	// "starttls" (default): STARTTLS is required and nothing is sent
	// without it. "implicit": TLS from the first byte. "none": plain text,
	// only to a relay on this machine (a loopback address or "localhost").
	TLS string
	// SMTP AUTH credentials, used when Username is set.
	Username, Password string
	// Sender, optionally with a display name: `Example <no-reply@example.com>`.
	// Required.
	From string
	// Name given in EHLO. Default: this machine's host name.
	HELO string
	// Bounds a whole send, connection and conversation. Default 10s.
	Timeout time.Duration
	// Roots and server name for private relays and tests. Default: the
	// system roots, with ServerName set to Host.
	TLSConfig *tls.Config
}

// SMTP sends email through one SMTP server, one connection per message.
type SMTP struct {
	host, addr string
	port       int
	mode       string
	user, pass string
	from       *netmail.Address
	msgDomain  string // right-hand side of Message-IDs
	helo       string
	timeout    time.Duration
	tlsConfig  *tls.Config
}

// NewSMTP validates cfg and returns a sender. It does not connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	s := &SMTP{host: cfg.Host, mode: cfg.TLS, user: cfg.Username, pass: cfg.Password,
		helo: cfg.HELO, timeout: cfg.Timeout, port: cfg.Port}
	if s.host == "" {
		return nil, errors.New("smtp host: required")
	}
	if net.ParseIP(s.host) == nil && (strings.ContainsAny(s.host, ":/[]") || strings.ContainsFunc(s.host, unicode.IsSpace)) {
		return nil, fmt.Errorf("smtp host %q: must be a host name or IP address, without a port", s.host)
	}
	switch s.mode {
	case "":
		s.mode = smtpStartTLS
	case smtpStartTLS, smtpImplicit, smtpNoTLS:
	default:
		return nil, fmt.Errorf("smtp tls %q: must be starttls, implicit or none", cfg.TLS)
	}
	if s.mode == smtpNoTLS && !isLoopback(s.host) {
		return nil, fmt.Errorf("smtp tls \"none\": only allowed for a relay on this machine (localhost or a loopback address), not %q", s.host)
	}
	switch {
	case s.port == 0 && s.mode == smtpImplicit:
		s.port = mail.DefaultPortSSL
	case s.port == 0:
		s.port = mail.DefaultPortTLS
	case s.port < 0 || s.port > 65535:
		return nil, fmt.Errorf("smtp port %d: must be between 1 and 65535", s.port)
	}
	s.addr = net.JoinHostPort(s.host, strconv.Itoa(s.port))
	if s.pass != "" && s.user == "" {
		return nil, errors.New("smtp password: set without a username")
	}
	if cfg.From == "" {
		return nil, errors.New("smtp from: required")
	}
	from, err := netmail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("smtp from %q: %v", cfg.From, err)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at <= 0 || at == len(from.Address)-1 {
		return nil, fmt.Errorf("smtp from %q: not an address with a domain", cfg.From)
	}
	s.from, s.msgDomain = from, from.Address[at+1:]
	if s.helo != "" && strings.ContainsFunc(s.helo, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("smtp helo %q: must be a host name", s.helo)
	}
	switch {
	case s.timeout == 0:
		s.timeout = 10 * time.Second
	case s.timeout < 0:
		return nil, fmt.Errorf("smtp timeout %s: must be positive", s.timeout)
	}
	if cfg.TLSConfig != nil {
		s.tlsConfig = cfg.TLSConfig.Clone()
	} else {
		s.tlsConfig = &tls.Config{}
	}
	if s.tlsConfig.ServerName == "" {
		s.tlsConfig.ServerName = s.host
	}
	if s.tlsConfig.MinVersion < tls.VersionTLS12 {
		s.tlsConfig.MinVersion = tls.VersionTLS12
	}
	return s, nil
}

// FromAddress is the address messages come from, without the display
// name.
func (s *SMTP) FromAddress() string { return s.from.Address }

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send delivers m over a new connection, bounded by the configured timeout
// and by ctx.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg, err := s.message(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	conn := &smtpConn{deadline: deadline}
	stop := context.AfterFunc(ctx, conn.abort)
	defer stop()
	// go-mail leaves the connection open when the conversation fails before
	// the message is sent; close it whatever happened.
	defer conn.abort()

	opts := []mail.Option{
		mail.WithPort(s.port),
		mail.WithTimeout(s.timeout),
		mail.WithDialContextFunc(func(dctx context.Context, network, _ string) (net.Conn, error) {
			return conn.dial(dctx, network, s.addr, s.mode == smtpImplicit, s.tlsConfig)
		}),
		mail.WithTLSConfig(s.tlsConfig),
	}
	switch s.mode {
	case smtpStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case smtpImplicit:
		// The dialer does the handshake; go-mail must not attempt STARTTLS.
		opts = append(opts, mail.WithSSL(), mail.WithTLSPolicy(mail.NoTLS))
	case smtpNoTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if s.helo != "" {
		opts = append(opts, mail.WithHELO(s.helo))
	}
	if s.user != "" {
		opts = append(opts, mail.WithSMTPAuthCustom(&authChooser{
			user: s.user, pass: s.pass, plaintextOK: s.mode == smtpNoTLS,
		}))
	}
	client, err := mail.NewClient(s.host, opts...)
	if err != nil {
		return classed(ClassOther, fmt.Errorf("smtp %s: %w", s.addr, err))
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return classed(classifySMTP(ctx, conn.timedOut.Load(), err), fmt.Errorf("smtp %s: %w", s.addr, err))
	}
	return nil
}

func (s *SMTP) message(m Message) (*mail.Msg, error) {
	to, err := ParseEmail(m.To)
	if err != nil {
		return nil, classed(ClassInvalid, errors.New("smtp: recipient is not a valid email address"))
	}
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	msg.FromMailAddress(s.from)
	if err := msg.To(to); err != nil {
		return nil, classed(ClassInvalid, errors.New("smtp: recipient is not a valid email address"))
	}
	// go-mail encodes non-ASCII subjects (RFC 2047, UTF-8).
	msg.Subject(strings.Join(strings.Fields(m.Subject), " "))
	msg.SetDate()
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, classed(ClassOther, err)
	}
	// The sender's domain, not this machine's name, which go-mail would use.
	msg.SetMessageIDWithValue(hex.EncodeToString(id[:]) + "@" + s.msgDomain)
	msg.SetBodyString(mail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// smtpConn holds the one connection of a send. Every deadline go-mail sets
// is capped at the send's deadline, so the timeout bounds the whole
// conversation rather than each step, and cancelling the context closes the
// connection at once.
type smtpConn struct {
	deadline time.Time
	timedOut atomic.Bool

	mu      sync.Mutex
	conn    net.Conn
	aborted bool
}

func (c *smtpConn) dial(ctx context.Context, network, addr string, implicitTLS bool, cfg *tls.Config) (net.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		raw.Close()
		return nil, context.Cause(ctx)
	}
	c.conn = raw
	c.mu.Unlock()
	bc := &boundedConn{Conn: raw, owner: c}
	if err := bc.SetDeadline(c.deadline); err != nil {
		return nil, err
	}
	if !implicitTLS {
		return bc, nil
	}
	tc := tls.Client(bc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, &tlsFailure{err}
	}
	return tc, nil
}

func (c *smtpConn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborted = true
	if c.conn != nil {
		c.conn.Close()
	}
}

type boundedConn struct {
	net.Conn
	owner *smtpConn
}

func (b *boundedConn) bound(t time.Time) time.Time {
	if t.IsZero() || t.After(b.owner.deadline) {
		return b.owner.deadline
	}
	return t
}

func (b *boundedConn) SetDeadline(t time.Time) error     { return b.Conn.SetDeadline(b.bound(t)) }
func (b *boundedConn) SetReadDeadline(t time.Time) error { return b.Conn.SetReadDeadline(b.bound(t)) }
func (b *boundedConn) SetWriteDeadline(t time.Time) error {
	return b.Conn.SetWriteDeadline(b.bound(t))
}

func (b *boundedConn) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	b.note(err)
	return n, err
}

func (b *boundedConn) Write(p []byte) (int, error) {
	n, err := b.Conn.Write(p)
	b.note(err)
	return n, err
}

// note remembers a timeout, because go-mail's SendError keeps the cause
// as text only.
func (b *boundedConn) note(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		b.owner.timedOut.Store(true)
	}
}

// tlsFailure marks an implicit-TLS handshake failure.
type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return "tls handshake: " + e.err.Error() }
func (e *tlsFailure) Unwrap() error { return e.err }

// authFailure marks a failure in SMTP AUTH on this side: no usable
// mechanism, or the mechanism itself failed.
type authFailure struct{ err error }

func (e *authFailure) Error() string { return "smtp auth: " + e.err.Error() }
func (e *authFailure) Unwrap() error { return e.err }

// authChooser picks a mechanism from those the server advertises, strongest
// first, and runs go-mail's implementation of it. Choosing here instead of
// in go-mail keeps the choice independent of how the connection was
// encrypted (go-mail does not count TLS it did not set up itself) and
// marks failures as authentication failures.
type authChooser struct {
	user, pass  string
	plaintextOK bool // TLS "none", to a relay on this machine
	chosen      smtp.Auth
}

func (a *authChooser) Start(si *smtp.ServerInfo) (string, []byte, error) {
	if !si.TLS && !a.plaintextOK {
		return "", nil, &tlsFailure{errors.New("refusing to authenticate over an unencrypted connection")}
	}
	switch {
	case slices.Contains(si.Auth, "SCRAM-SHA-256"):
		a.chosen = smtp.ScramSHA256Auth(a.user, a.pass)
	case slices.Contains(si.Auth, "SCRAM-SHA-1"):
		a.chosen = smtp.ScramSHA1Auth(a.user, a.pass)
	case slices.Contains(si.Auth, "PLAIN"):
		// Encryption was checked above; go-mail's own check would refuse a
		// loopback address other than 127.0.0.1 and ::1.
		a.chosen = smtp.PlainAuth("", a.user, a.pass, si.Name, true)
	case slices.Contains(si.Auth, "LOGIN"):
		a.chosen = smtp.LoginAuth(a.user, a.pass, si.Name, true)
	case len(si.Auth) == 0:
		return "", nil, &authFailure{errors.New("server does not offer AUTH")}
	default:
		return "", nil, &authFailure{fmt.Errorf("no supported mechanism among %s", strings.Join(si.Auth, " "))}
	}
	mech, ir, err := a.chosen.Start(si)
	if err != nil {
		return "", nil, &authFailure{err}
	}
	return mech, ir, nil
}

func (a *authChooser) Next(fromServer []byte, more bool) ([]byte, error) {
	out, err := a.chosen.Next(fromServer, more)
	if err != nil {
		return nil, &authFailure{err}
	}
	return out, nil
}

// classifySMTP maps what go-mail returned to a class. Timeouts come first:
// once the deadline has passed, whatever failed failed because of it.
func classifySMTP(ctx context.Context, timedOut bool, err error) string {
	if timedOut || errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return ClassTimeout
	}
	if ctx.Err() != nil {
		return ClassOther // cancelled by the caller
	}
	var (
		sendErr *mail.SendError
		tpErr   *textproto.Error
		authErr *authFailure
	)
	switch {
	case errors.As(err, &sendErr):
		if c := smtpCodeClass(sendErr.ErrorCode(), ""); c != "" {
			return c
		}
		if sendErr.IsTemp() {
			return ClassTemporary
		}
	case errors.As(err, &tpErr):
		if c := smtpCodeClass(tpErr.Code, tpErr.Msg); c != "" {
			return c
		}
	case isTLSError(err):
		return ClassTLS
	case errors.As(err, &authErr):
		return ClassAuth
	}
	return netClass(err)
}

// smtpCodeClass classifies an SMTP reply code; "" if it says nothing.
func smtpCodeClass(code int, msg string) string {
	switch {
	case code == 530 && strings.Contains(strings.ToUpper(msg), "STARTTLS"):
		return ClassTLS
	case code == 530, code == 534, code == 535, code == 538:
		return ClassAuth
	case code >= 500 && code < 600:
		return ClassRejected
	case code >= 400 && code < 500:
		return ClassTemporary
	}
	return ""
}

func isTLSError(err error) bool {
	var (
		tf  *tlsFailure
		cv  *tls.CertificateVerificationError
		rh  tls.RecordHeaderError
		al  tls.AlertError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		inv x509.CertificateInvalidError
	)
	if errors.As(err, &tf) || errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &al) ||
		errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &inv) {
		return true
	}
	// go-mail reports a missing STARTTLS, and crypto/tls some local
	// handshake failures, as text only.
	s := err.Error()
	return strings.Contains(s, "does not support STARTTLS") || strings.Contains(s, "tls: ")
}

// netClass classifies connection-level failures shared by both transports.
func netClass(err error) string {
	var (
		dnsErr *net.DNSError
		opErr  *net.OpError
		ne     net.Error
	)
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return ClassTimeout
		}
		return ClassRefused
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return ClassRefused
	case errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return ClassRefused
	}
	return ClassOther
}

var _ Sender = (*SMTP)(nil)
