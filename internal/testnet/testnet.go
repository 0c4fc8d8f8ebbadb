// Package testnet finds loopback ports for the test servers.
package testnet

import (
	"net"
	"testing"
)

// FreePort returns a loopback port nothing listens on at the moment. Another
// process may take it before the caller binds it; callers retry on
// "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
