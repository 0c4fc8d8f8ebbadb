package twofactor

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-twofactor/twofactor/internal/clock"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
)

func init() {
	caddy.RegisterModule(EmbeddedStore{})
}

// databases shares open embedded databases across config reloads: bbolt
// holds an exclusive file lock, so a reload must reuse the handle rather
// than open the file a second time.
var databases = caddy.NewUsagePool()

// EmbeddedStore keeps the gateway's state in a database file on this
// machine. It needs no other service and survives restarts and reloads, but
// it is not shared between machines.
type EmbeddedStore struct {
	// Path of the database file. Default: two_factor/two_factor.db in
	// Caddy's data directory.
	Path string `json:"path,omitempty"`

	*embedded.Store
	key string
}

// CaddyModule returns the Caddy module information.
func (EmbeddedStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.stores.embedded",
		New: func() caddy.Module { return new(EmbeddedStore) },
	}
}

// Provision opens the database, or reuses the handle an earlier config
// opened.
func (s *EmbeddedStore) Provision(ctx caddy.Context) error {
	path := s.Path
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "two_factor", "two_factor.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("store path %q: %w", path, err)
	}
	s.key = abs
	v, _, err := databases.LoadOrNew(abs, func() (caddy.Destructor, error) {
		db, err := embedded.Open(abs, embedded.Options{Now: clock.Now})
		if err != nil {
			return nil, err
		}
		return pooledDB{db}, nil
	})
	if err != nil {
		return fmt.Errorf("store path %q: %w", abs, err)
	}
	s.Store = v.(pooledDB).Store
	return nil
}

// Cleanup releases this config's use of the database; the last user closes
// it.
func (s *EmbeddedStore) Cleanup() error {
	if s.key == "" {
		return nil
	}
	_, err := databases.Delete(s.key)
	return err
}

type pooledDB struct{ *embedded.Store }

func (p pooledDB) Destruct() error { return p.Close() }

// Interface guards
var (
	_ store.Store        = (*EmbeddedStore)(nil)
	_ caddy.Provisioner  = (*EmbeddedStore)(nil)
	_ caddy.CleanerUpper = (*EmbeddedStore)(nil)
)
