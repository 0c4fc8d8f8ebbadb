package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/caddy-twofactor/twofactor/internal/testsmtp"
)

// mailSink is the SMTP server the gateway's email sender points at for the
// load test: it accepts every message and hands the code in it to the
// sign-in waiting for mail to that address. It keeps no message, so a long
// run does not grow; other mail (the gateway's notices of a new browser)
// is counted and dropped.
type mailSink struct {
	srv *smtp.Server
	ln  net.Listener

	mu      sync.Mutex
	waiting map[string]chan string // by lowercase address

	codes, other atomic.Int64
}

// codeLine is the code on a line of its own in the message's text.
var codeLine = regexp.MustCompile(`(?m)^\s*(\d{6,8})\s*$`)

// startMailSink listens on addr; with a TLS config it offers STARTTLS.
func startMailSink(addr string, tlsConfig *tls.Config) (*mailSink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &mailSink{ln: ln, waiting: map[string]chan string{}}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{m: m}, nil
	}))
	m.srv.Domain = "localhost"
	m.srv.ReadTimeout = 30 * time.Second
	m.srv.WriteTimeout = 30 * time.Second
	m.srv.MaxMessageBytes = 1 << 20
	m.srv.TLSConfig = tlsConfig
	m.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *mailSink) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		return m.srv.Close()
	}
	return nil
}

// expect registers a sign-in waiting for a code at addr; call it before
// asking the gateway to send, and cancel when done.
func (m *mailSink) expect(addr string) (<-chan string, func()) {
	addr = strings.ToLower(addr)
	ch := make(chan string, 1)
	m.mu.Lock()
	m.waiting[addr] = ch
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		if m.waiting[addr] == ch {
			delete(m.waiting, addr)
		}
		m.mu.Unlock()
	}
}

// errNoCode is a wait for a code that ended without one.
var errNoCode = errors.New("no code mail arrived")

func (m *mailSink) deliver(to []string, data []byte) {
	_, text, _ := testsmtp.Decode(data)
	code := codeLine.FindStringSubmatch(text)
	if code == nil {
		m.other.Add(1)
		return
	}
	m.codes.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, addr := range to {
		if ch, ok := m.waiting[strings.ToLower(addr)]; ok {
			select {
			case ch <- code[1]:
			default:
			}
		}
	}
}

// sinkTLS returns the sink's TLS config with a self-signed certificate
// for host (an IP address or a name), kept in certFile and certFile.key so
// the gateway's ca_file stays right across runs: made on the first run,
// read on later ones.
func sinkTLS(certFile, host string) (*tls.Config, error) {
	keyFile := certFile + ".key"
	if cert, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err == nil && leaf.VerifyHostname(host) == nil && time.Now().Before(leaf.NotAfter) {
			return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "bench/load SMTP sink"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, nil
}

type sinkSession struct {
	m  *mailSink
	to []string
}

func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.deliver(s.to, data)
	return nil
}

func (s *sinkSession) Reset()        { s.to = nil }
func (s *sinkSession) Logout() error { return nil }
