package twofactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/challenge"
)

// The store's checks: at start, that the keys read what it holds; then,
// every second, that it still holds the gateway's data.
//
// A shared store (Redis) found empty could be new, or could have lost its
// data; the store itself cannot tell. So each machine remembers, in
// Caddy's data directory, the ID of every shared store its gateway has
// used: a restart or reload that finds one of them empty keeps the gateway
// closed instead of starting the store afresh, which would let anyone
// holding a member's password enrol their own authenticator.

var errWrongKey = errors.New("keys: the configured keys cannot decrypt the data already in the store; " +
	"configure the key that wrote it (a replaced key can stay listed after the new one)")

const (
	keyCheckTimeout = 5 * time.Second
	storeCheckEvery = time.Second
)

// checkKey runs the engine's key check against the ID this machine
// remembers for a shared store, and remembers the ID it finds.
func (a *App) checkKey(ctx context.Context, engine *challenge.Engine) error {
	if a.storeIdentity == "" {
		_, err := engine.CheckKey(ctx, "")
		return err
	}
	known, err := a.knownStores.get(a.storeIdentity)
	if err != nil {
		return fmt.Errorf("store: reading the IDs of stores used before: %w", err)
	}
	id, err := engine.CheckKey(ctx, known)
	if err != nil {
		return err
	}
	if err := a.knownStores.put(a.storeIdentity, id); err != nil {
		a.logger.Warn("store: cannot remember the store's ID; a restart that finds it empty will take it for new",
			zap.String("file", a.knownStores.path), zap.Error(err))
	}
	return nil
}

// reportLost closes the gateway on a store that lost its data, saying so
// once, loudly, with what to do.
func (a *App) reportLost(err error) {
	if a.lost.Swap(true) {
		return
	}
	accept := "reload Caddy (caddy reload --force) to start with an empty store"
	if a.storeIdentity != "" {
		accept = fmt.Sprintf("delete the store's entry from %s on every machine and reload Caddy "+
			"(caddy reload --force) to start with an empty store", a.knownStores.path)
	}
	a.logger.Error("STORE DATA LOST: the store no longer holds the gateway's data, so enrolments may be gone; "+
		"protected paths answer 503. Restore the store's data (the gateway opens again by itself), or "+
		accept+", in which every member enrols again", zap.Error(err))
}

// watchStore opens the gateway once the key check passes (when the store
// was down at start), then keeps checking that the store still holds its
// data. A store that lost it (flushed, restarted without persistence, or
// started afresh by another instance) closes the gateway: every member
// would otherwise look never enrolled. It opens again if the data comes
// back (a backup restored).
func (a *App) watchStore(ctx context.Context, engine *challenge.Engine) {
	t := time.NewTicker(storeCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		checkCtx, cancel := context.WithTimeout(ctx, keyCheckTimeout)
		var err error
		if a.ready.Load() {
			err = engine.Intact(checkCtx)
		} else {
			err = a.checkKey(checkCtx, engine)
		}
		cancel()
		switch {
		case err == nil:
			if !a.ready.Swap(true) {
				a.logger.Info("store available")
				a.surveyKeys(engine)
			}
			if a.lost.Swap(false) {
				a.logger.Info("store data back; the gateway is open again")
			}
			a.noteStale(engine)
		case errors.Is(err, challenge.ErrStoreLost):
			a.reportLost(err)
		case errors.Is(err, challenge.ErrWrongKey):
			// Closed until Caddy is given the key (a reload).
			a.ready.Store(false)
			a.logger.Error("store cannot be used", zap.Error(errWrongKey))
			return
		}
	}
}

// sharedStore is implemented by store modules whose data other machines
// share, naming where they keep it.
type sharedStore interface {
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
