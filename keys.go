package twofactor

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-twofactor/twofactor/keyring"
)

// keyring returns the configured keys, or loads or creates the generated
// key when none is configured. It runs in Start: creating the key file is
// a side effect `caddy validate` must not have.
func (a *App) keyring() (*keyring.Keyring, error) {
	secrets := a.secrets
	if len(secrets) == 0 {
		k, err := loadOrCreateKeyFile(generatedKeyPath())
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		secrets = [][]byte{k}
	}
	kr, err := keyring.New(secrets...)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return kr, nil
}

// generatedKeyPath is where the generated key lives: Caddy's data
// directory, as for its certificates.
func generatedKeyPath() string {
	return filepath.Join(caddy.AppDataDir(), "two_factor", "key")
}

// loadOrCreateKeyFile returns the key in path, creating it with a random
// key (mode 0600) on first use. O_EXCL makes two processes starting at once
// agree on one key.
func loadOrCreateKeyFile(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		k := []byte(strings.TrimSpace(string(b)))
		if len(k) < keyring.MinKeyLength {
			return nil, fmt.Errorf("generated key file %s is damaged (%d bytes); restore it from a backup", path, len(k))
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading generated key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	k := base64.StdEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return loadOrCreateKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("creating generated key: %w", err)
	}
	if _, err := f.WriteString(k + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	// Losing this file would make every enrolment unreadable.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return []byte(k), nil
}
