package twofactor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// A shared store (Redis) found empty could be new, or could have lost its
// data; the store itself cannot tell. So each machine remembers, in
// Caddy's data directory, the ID of every shared store its gateway has
// used: a restart or reload that finds one of them empty keeps the gateway
// closed instead of starting the store afresh, which would let anyone
// holding a member's password enrol their own authenticator.

// identified is implemented by stores that are shared, naming where they
// keep their data.
type identified interface {
	Identity() string
}

// knownStores is the file of store IDs by identity.
type knownStores struct{ path string }

var knownStoresMu sync.Mutex

func defaultKnownStores() knownStores {
	return knownStores{path: filepath.Join(caddy.AppDataDir(), "two_factor", "stores.json")}
}

func (k knownStores) read() (map[string]string, error) {
	b, err := os.ReadFile(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", k.path, err)
	}
	return m, nil
}

// get returns the ID last seen for identity, or "".
func (k knownStores) get(identity string) (string, error) {
	knownStoresMu.Lock()
	defer knownStoresMu.Unlock()
	m, err := k.read()
	return m[identity], err
}

// put remembers id for identity, replacing the file in one rename.
func (k knownStores) put(identity, id string) error {
	knownStoresMu.Lock()
	defer knownStoresMu.Unlock()
	m, err := k.read()
	if err != nil {
		return err
	}
	if m[identity] == id {
		return nil
	}
	m[identity] = id
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(k.path), ".stores-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), k.path)
}
