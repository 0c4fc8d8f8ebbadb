package tests

import (
	"crypto/sha256"
	"fmt"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// `caddy validate` and `caddy adapt --validate` load a config only to check
// it: they must open no store, write no file (not even the generated key)
// and connect to nothing, also while a running Caddy holds the same data
// directory and database.

// caddyCommand, in a child process of this test binary, makes it run as
// the caddy command with its arguments (see TestMain).
const caddyCommand = "TWOFACTOR_TEST_CADDY_COMMAND"

// caddyCmd returns the caddy command with args, its data directory in
// dataHome.
func caddyCmd(dataHome string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), caddyCommand+"=1", "XDG_DATA_HOME="+dataHome, "XDG_CONFIG_HOME="+dataHome+"/config")
	return cmd
}

// snapshot lists every file below dir with its size, mode, time and a hash
// of its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == dir {
				return filepath.SkipDir
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		entry := fmt.Sprintf("%v %d %s", info.Mode(), info.Size(), info.ModTime().Format(time.RFC3339Nano))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			entry += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[path] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s changed %s: %q → %q", what, p, before[p], v)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s removed %s", what, p)
		}
	}
}

// validates runs caddy validate and caddy adapt --validate on cfg.
func validates(t *testing.T, dataHome, cfg string) {
	t.Helper()
	for _, args := range [][]string{
		{"validate", "--config", cfg, "--adapter", "caddyfile"},
		{"adapt", "--config", cfg, "--adapter", "caddyfile", "--validate"},
	} {
		out, err := caddyCmd(dataHome, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestValidateWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dataHome := t.TempDir()
	dir := t.TempDir()
	port := testnet.FreePort(t)
	cfg := filepath.Join(dir, "Caddyfile")
	// The embedded defaults: a generated key and the database, both in
	// the data directory.
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
}
http://127.0.0.1:%d {
	two_factor {
		identity header {http.auth.user.id}
		protect /members/*
	}
	respond "ok"
}
`, port)
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}

	// Nothing running, nothing there yet: validating creates nothing.
	validates(t, dataHome, cfg)
	if _, err := os.Stat(filepath.Join(dataHome, "caddy")); !os.IsNotExist(err) {
		t.Fatalf("validating created the data directory: %v %v", err, snapshot(t, dataHome))
	}

	run := caddyCmd(dataHome, "run", "--config", cfg, "--adapter", "caddyfile")
	var out lockedBuffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = run.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = run.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("caddy run:\n%s", out.String())
		}
	})
	key := filepath.Join(dataHome, "caddy", "two_factor", "key")
	db := filepath.Join(dataHome, "caddy", "two_factor", "two_factor.db")
	// Caddy logs the first once every app has started, so the running
	// instance's own first writes (key, database, key check) are done; the
	// gateway the second once its background survey of a new store (the
	// member list's indexes, the count under older keys) has written too,
	// and the third once the day's figures (the member counts) are.
	deadline := time.Now().Add(20 * time.Second)
	for !out.contains("serving initial configuration") || !out.contains("keys: member records surveyed") ||
		!out.contains("figures: this instance's counts written") {
		select {
		case <-exited:
			t.Fatal("caddy run exited")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("caddy run did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("the running Caddy made no database: %v", err)
	}
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("the running Caddy made no key: %v", err)
	}

	// The running Caddy holds the database's lock; validating must not
	// even try to open it, nor touch anything else there.
	before := snapshot(t, dataHome)
	validates(t, dataHome, cfg)
	sameSnapshot(t, "validating beside a running Caddy", before, snapshot(t, dataHome))
}

// A config with Redis, SMTP and SNS validates without a single connection
// to any of them.
func TestValidateConnectsToNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	var accepted atomic.Int64
	listen := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	redisAddr, smtpAddr, snsAddr := listen(), listen(), listen()
	_, smtpPort, _ := net.SplitHostPort(smtpAddr)
	dataHome := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	caddyfile := fmt.Sprintf(`{
	admin off
	two_factor {
		keys "validate-test-key-validate-test-key-0123"
		store redis {
			address %s
		}
		email smtp {
			host 127.0.0.1
			port %s
			tls none
			from "Test <test@example.com>"
		}
		sms sns {
			region ap-northeast-1
			access_key_id AKIDVALIDATE
			secret_access_key validate-secret
			endpoint http://%s
		}
		email_code_ttl 5m
	}
}
http://127.0.0.1:%d {
	two_factor {
		identity endpoint http://127.0.0.1:1/api/me {
			session_cookie sid
		}
		protect /members/*
		site_name "Test"
	}
	respond "ok"
}
`, redisAddr, smtpPort, snsAddr, testnet.FreePort(t))
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	validates(t, dataHome, cfg)
	// A connection would have been accepted before the command exited;
	// one more to each listener proves they were listening all along.
	for _, a := range []string{redisAddr, smtpAddr, snsAddr} {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for accepted.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections accepted, want only the test's own 3", n)
	}
	if _, err := os.Stat(filepath.Join(dataHome, "caddy")); !os.IsNotExist(err) {
		t.Fatalf("validating wrote to the data directory: %v", snapshot(t, dataHome))
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) contains(s string) bool { return strings.Contains(l.String(), s) }
