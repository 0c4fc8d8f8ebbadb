// Package testsmtp runs a real SMTP server on the loopback interface for
// tests: plain, STARTTLS or implicit TLS with a self-signed certificate,
// optionally requiring AUTH PLAIN, recording what it receives and failing
// on request.
package testsmtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/caddy-twofactor/twofactor/internal/testca"
	"github.com/caddy-twofactor/twofactor/internal/testrecord"
)

// Options choose how the server behaves.
type Options struct {
	// "none" (the default), "starttls" (STARTTLS is advertised) or
	// "implicit" (TLS from the first byte).
	TLS string
	// With "starttls": refuse MAIL until STARTTLS has been done.
	RequireTLS bool
	// When Username is set, AUTH PLAIN with these credentials is required
	// before MAIL.
	Username, Password string
}

// Message is one message the server accepted.
type Message struct {
	From    string
	To      []string
	Data    []byte // as received
	Subject string // decoded
	Text    string // the decoded text/plain part
	HTML    string // the decoded text/html part, if any
	TLS     bool   // whether the session was encrypted
}

// Server is a running test server. It is safe for concurrent use.
type Server struct {
	opts     Options
	srv      *smtp.Server
	port     int
	roots    *x509.CertPool
	certFile string
	done     chan struct{}

	msgs testrecord.Recorder[Message]

	mu       sync.Mutex
	fail     string
	delay    time.Duration
	rejected map[string]bool
}

// Start runs a server on 127.0.0.1 until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	switch opts.TLS {
	case "":
		opts.TLS = "none"
	case "none", "starttls", "implicit":
	default:
		t.Fatalf("testsmtp: unknown TLS mode %q", opts.TLS)
	}
	ca := testca.New(t, "testsmtp CA")
	s := &Server{opts: opts, done: make(chan struct{}), roots: ca.Pool, certFile: ca.File}
	tlsConfig := ca.ServerConfig(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	switch opts.TLS {
	case "starttls":
		s.srv.TLSConfig = tlsConfig
	case "implicit":
		ln = tls.NewListener(ln, tlsConfig)
	case "none":
		// Offer AUTH without TLS, as a local relay would.
		s.srv.AllowInsecureAuth = true
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		close(s.done)
		// Stop accepting and let Serve return before waiting for the
		// conversations: go-smtp counts connections in a WaitGroup that
		// must not grow while it is waited on, and closing a connection
		// in the middle of its STARTTLS handshake races inside it.
		_ = ln.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s.srv.Shutdown(ctx) != nil {
			s.srv.Close()
		}
	})
	return s
}

// Host returns the address the server listens on, "127.0.0.1".
func (s *Server) Host() string { return "127.0.0.1" }

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.port }

// Addr returns host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// RootCAs returns a pool that trusts the server's certificate.
func (s *Server) RootCAs() *x509.CertPool { return s.roots }

// CertFile returns the path of the server's certificate in PEM, for
// configurations that take a CA file.
func (s *Server) CertFile() string { return s.certFile }

// Messages returns the messages accepted so far.
func (s *Server) Messages() []Message { return s.msgs.All() }

// Wait returns the messages once there are at least n, failing the test
// if that takes longer than timeout.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	return s.msgs.Wait(t, n, timeout, "testsmtp messages")
}

// Fail makes the server fail from now on: "" behaves normally; "reject"
// answers RCPT with 550; "temporary" answers RCPT with 451; "data" answers
// the end of DATA with 554; "slow" waits for the delay set by SetDelay
// before answering the end of DATA.
func (s *Server) Fail(mode string) {
	switch mode {
	case "", "reject", "temporary", "data", "slow":
	default:
		panic("testsmtp: unknown failure mode " + mode)
	}
	s.mu.Lock()
	s.fail = mode
	s.mu.Unlock()
}

// Reject makes the server answer RCPT to these addresses with 550 from
// now on, whatever Fail says of the others; Reject() accepts every
// address again.
func (s *Server) Reject(addrs ...string) {
	s.mu.Lock()
	s.rejected = map[string]bool{}
	for _, a := range addrs {
		s.rejected[strings.ToLower(a)] = true
	}
	s.mu.Unlock()
}

func (s *Server) isRejected(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected[strings.ToLower(addr)]
}

// SetDelay sets how long "slow" waits.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

func (s *Server) mode() (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail, s.delay
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (ss *session) encrypted() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.opts.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if (identity != "" && identity != username) ||
			username != ss.s.opts.Username || password != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.RequireTLS && !ss.encrypted() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if ss.s.opts.Username != "" && !ss.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	mode, _ := ss.s.mode()
	if ss.s.isRejected(to) {
		mode = "reject"
	}
	switch mode {
	case "reject":
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case "temporary":
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	mode, delay := ss.s.mode()
	switch mode {
	case "data":
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message rejected"}
	case "slow":
		select {
		case <-time.After(delay):
		case <-ss.s.done:
			return errors.New("shutting down")
		}
	}
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data, TLS: ss.encrypted()}
	m.Subject, m.Text, m.HTML = decode(data)
	ss.s.msgs.Add(m)
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

// Decode returns the decoded subject and the text and HTML parts of a
// message as received (DATA), or what it could make of them: for the load
// test's mail sink, which reads codes from messages as they arrive.
func Decode(data []byte) (subject, text, html string) { return decode(data) }

// decode returns the decoded subject and the text and HTML parts of a
// message, or what it could make of them.
func decode(data []byte) (subject, text, html string) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return "", "", ""
	}
	dec := new(mime.WordDecoder)
	subject, err = dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		subject = msg.Header.Get("Subject")
	}
	walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &text, &html)
	return subject, text, html
}

func walk(contentType, encoding string, body io.Reader, text, html *string) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mediaType = "text/plain"
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, text, html)
		}
	}
	var r io.Reader = body
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return
	}
	// Line ends as a mail client shows them.
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch {
	case mediaType == "text/plain" && *text == "":
		*text = s
	case mediaType == "text/html" && *html == "":
		*html = s
	}
}
