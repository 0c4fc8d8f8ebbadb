package notify

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var mailboxName = regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}\.(eml|txt)$`)

func TestMailboxRequiresDir(t *testing.T) {
	if _, err := NewMailbox("", zap.NewNop()); err == nil {
		t.Fatal("NewMailbox without a directory succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMailbox(file, zap.NewNop()); err == nil {
		t.Fatal("NewMailbox on a file succeeded")
	}
}

func mailboxFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestMailboxEmail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail", "box")
	core, logs := observer.New(zapcore.DebugLevel)
	mb, err := NewMailbox(dir, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// Configuring a mailbox writes nothing; the first message makes the
	// directory.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory before the first message: %v; want none", err)
	}
	m := Message{To: "alice@example.com", Subject: "【Example】確認コード", Text: "確認コード: 482913\n", HTML: "<p>482913</p>"}
	if err := mb.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v; want mode 0700", err)
	}
	names := mailboxFiles(t, dir)
	if len(names) != 1 || !mailboxName.MatchString(names[0]) || !strings.HasSuffix(names[0], ".eml") {
		t.Fatalf("files = %q, want one .eml named by time", names)
	}
	path := filepath.Join(dir, names[0])
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"From: two_factor mailbox <mailbox@localhost>\n",
		"To: alice@example.com\n",
		"Subject: =?utf-8?q?",
		"\nDate: ",
		"MIME-Version: 1.0\n",
		"Content-Type: text/plain; charset=utf-8\n",
		"\n\n確認コード: 482913\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("file lacks %q:\n%s", want, got)
		}
	}
	entries := logs.FilterMessage("development mailbox: message not delivered").All()
	if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel {
		t.Fatalf("log entries = %+v, want one warning", logs.All())
	}
	fields := entries[0].ContextMap()
	if fields["to"] != m.To || fields["subject"] != m.Subject || fields["file"] != path || fields["text"] != m.Text {
		t.Errorf("log fields = %v", fields)
	}
}

func TestMailboxSMS(t *testing.T) {
	dir := t.TempDir()
	mb, err := NewMailbox(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	text := "482913 is your Example verification code. Valid for 5 min. Do not share it."
	if err := mb.Send(context.Background(), Message{To: "+819012345678", Text: text}); err != nil {
		t.Fatal(err)
	}
	names := mailboxFiles(t, dir)
	if len(names) != 1 || !mailboxName.MatchString(names[0]) || !strings.HasSuffix(names[0], ".txt") {
		t.Fatalf("files = %q, want one .txt", names)
	}
	b, err := os.ReadFile(filepath.Join(dir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	if want := "To: +819012345678\n\n" + text + "\n"; string(b) != want {
		t.Errorf("file = %q, want %q", b, want)
	}
}

func TestMailboxRefuses(t *testing.T) {
	dir := t.TempDir()
	mb, err := NewMailbox(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"", "alice", "090-1234-5678", "alice@example.com\nBcc: eve@example.com"} {
		if err := mb.Send(context.Background(), Message{To: to, Text: "482913"}); Class(err) != ClassInvalid {
			t.Errorf("Send to %q: %v, want class %s", to, err, ClassInvalid)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := mb.Send(ctx, Message{To: "alice@example.com", Text: "482913"}); err == nil {
		t.Error("Send with a cancelled context succeeded")
	}
	if names := mailboxFiles(t, dir); len(names) != 0 {
		t.Errorf("files left behind: %q", names)
	}
}

func TestMailboxConcurrent(t *testing.T) {
	dir := t.TempDir()
	mb, err := NewMailbox(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 20)
	for range 20 {
		go func() { errs <- mb.Send(context.Background(), Message{To: "+819012345678", Text: "482913"}) }()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if names := mailboxFiles(t, dir); len(names) != 20 {
		t.Errorf("%d files, want 20 (names must not collide)", len(names))
	}
}
