// Package testcode reads one-time codes out of messages in tests, the way
// a member reads them off their phone or mailbox.
package testcode

import (
	"regexp"
	"testing"
)

var codePattern = regexp.MustCompile(`(?:^|[^0-9])([0-9]{6})(?:[^0-9]|$)`)

// Find returns the first standalone six-digit run in text, failing the
// test if there is none.
func Find(t testing.TB, text string) string {
	t.Helper()
	m := codePattern.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no six-digit code in %q", text)
	}
	return m[1]
}
