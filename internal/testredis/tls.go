package testredis

import (
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/caddy-twofactor/twofactor/internal/testca"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
)

// StartTLS runs redis-server that accepts TLS only (its plain port is
// off), with a certificate for 127.0.0.1 signed by a CA made for the test.
// Clients are not asked for certificates. It returns the server and the
// path of the CA's PEM file, for clients to trust.
func StartTLS(t testing.TB, extra ...string) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testca.New(t, "testredis CA")
	certPEM, keyPEM := ca.Issue(t)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	testca.WriteFile(t, certFile, certPEM)
	testca.WriteFile(t, keyFile, keyPEM)
	caFile := ca.File

	client := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	args := append([]string{
		"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
	}, extra...)
	for try := 1; ; try++ {
		s, err := start(t, testnet.FreePort(t), t.TempDir(), args, client)
		if err == nil {
			return s, caFile
		}
		if try == 5 {
			t.Fatal(err)
		}
	}
}

// OtherCA writes the certificate of a CA that signs no server, and returns
// its path: a client trusting only it must refuse every server.
func OtherCA(t testing.TB) string {
	t.Helper()
	return testca.New(t, "other CA").File
}
