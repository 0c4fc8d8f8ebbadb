package twofactor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
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

// surveyKeys, in the background, builds the member list's indexes if
// this store has not had them built yet (or not for these keys), and
// counts the member records still sealed under an older key, telling the
// operator whether the older keys are still needed. Both read every
// record, so each is done once: a start or reload on a store whose
// indexes are built and whose records were all found under the current
// key with the same keys reads no record. Start does not wait for it,
// and Stop cancels it.
func (a *App) surveyKeys(engine *challenge.Engine) {
	a.bg.watch(func(ctx context.Context) {
		built, err := engine.ListingBuilt(ctx)
		if err == nil && !built {
			err = engine.BuildListing(ctx)
		}
		// Said once the survey has read and written all it will, for an
		// operator waiting on a large store (and for tests, which wait
		// for the store to be still).
		surveyed := func(counted bool) {
			if !built || counted {
				a.logger.Info("keys: member records surveyed", zap.Bool("member_list_built", !built), zap.Bool("older_keys_counted", counted))
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Error("keys: cannot list the member records, so the member list may miss some and those under an older key are not counted; "+
					"for Redis, the ACL user needs +scan, +zadd, +zrem, +zrangebylex, +zlexcount and +zcard", zap.Error(err))
			}
			return
		}
		known, err := engine.StaleKnown(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Error("keys: cannot read the last count of member records under an older key", zap.Error(err))
			}
			return
		}
		if known {
			a.stale.Store(0)
			if a.keyCount() > 1 {
				a.logger.Info(noOlderKeys)
			}
			surveyed(false)
			return
		}
		s, err := engine.CountStale(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Error("keys: cannot count the member records under an older key", zap.Error(err))
			}
			return
		}
		a.stale.Store(int64(s.Count))
		surveyed(true)
		if s.Missing > 0 {
			a.logger.Error(fmt.Sprintf("keys: %s sealed under a key that is no longer configured; "+
				"those members get 503 until it is back: put it back in keys, after the current one", records(s.Missing)),
				zap.Int("records", s.Missing))
		}
		switch older := s.Count - s.Missing; {
		case older > 0:
			a.logger.Warn(fmt.Sprintf("keys: %s still sealed under an older key; keep it listed until this reaches 0 "+
				"(each moves to the current key at its member's next sign-in)", records(older)),
				zap.Int("records", older))
		case s.Count == 0 && a.keyCount() > 1:
			a.logger.Info(noOlderKeys)
		}
	})
}

// noOlderKeys says that the older keys are no longer needed: the sessions
// and remembered devices sealed under them end with them, nothing more.
const noOlderKeys = "keys: no member record is sealed under an older key; the older keys can be removed " +
	"(sessions and remembered devices from before the rotation end with them)"

// noteStale logs when the last record under an older key moves to the
// current one, so the operator need not restart Caddy to learn it.
func (a *App) noteStale(engine *challenge.Engine) {
	s := engine.StaleRecords()
	if !s.Complete {
		return
	}
	if was := a.stale.Swap(int64(s.Count)); was > 0 && s.Count == 0 && a.keyCount() > 1 {
		a.logger.Info(noOlderKeys)
	}
}

// keyCount is how many keys are configured: the generated key is one.
func (a *App) keyCount() int { return max(len(a.secrets), 1) }

// records counts member records in a sentence.
func records(n int) string {
	if n == 1 {
		return "1 member record is"
	}
	return fmt.Sprintf("%d member records are", n)
}
