package twofactor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/clock"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/embedded"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

func init() {
	caddy.RegisterModule(EmbeddedStore{})
	caddy.RegisterModule(RedisStore{})
}

// StoreModule is a guest module of the two_factor app in the
// two_factor.stores namespace. Provision only reads its configuration; the
// app opens the store when it starts, so validating a config opens no
// database and no connection. Caddy's Cleanup closes it.
type StoreModule interface {
	caddy.Module
	// OpenStore opens the store. Work it starts in the background ends
	// with ctx, which ends when the app stops.
	OpenStore(ctx context.Context) (store.Store, error)
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

	key string // the absolute path, once opened
}

// CaddyModule returns the Caddy module information.
func (EmbeddedStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.stores.embedded",
		New: func() caddy.Module { return new(EmbeddedStore) },
	}
}

// Provision applies the default path.
func (s *EmbeddedStore) Provision(caddy.Context) error {
	if s.Path == "" {
		s.Path = filepath.Join(caddy.AppDataDir(), "two_factor", "two_factor.db")
	}
	return nil
}

// OpenStore opens the database, or reuses the handle an earlier config
// opened.
func (s *EmbeddedStore) OpenStore(context.Context) (store.Store, error) {
	abs, err := filepath.Abs(s.Path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", s.Path, err)
	}
	v, _, err := databases.LoadOrNew(abs, func() (caddy.Destructor, error) {
		db, err := embedded.Open(abs, embedded.Options{Now: clock.Now})
		if err != nil {
			return nil, err
		}
		return pooledDB{db}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", abs, err)
	}
	s.key = abs
	return v.(pooledDB).Store, nil
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

// RedisStore keeps the gateway's state in Redis, shared by every Caddy
// instance that points at it: one server, a Sentinel group or a Cluster.
type RedisStore struct {
	// Addresses (host:port): one for a single server, the sentinels' with
	// master_name, or several Cluster nodes. Required.
	Addresses []string `json:"addresses,omitempty"`

	// The Sentinel master name. Default: none (no Sentinel).
	MasterName string `json:"master_name,omitempty"`

	// ACL user name for the sentinels themselves, when they require one;
	// needs master_name. Placeholders work. Default: none.
	SentinelUsername string `json:"sentinel_username,omitempty"`

	// Password of sentinel_username; use a placeholder such as
	// {env.SENTINEL_PASSWORD}. Default: none.
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// ACL user name. Placeholders work. Default: none (the default user).
	Username string `json:"username,omitempty"`

	// Password; use a placeholder such as {env.REDIS_PASSWORD}.
	// Default: none.
	Password string `json:"password,omitempty"`

	// Database number, 0 or more (not on Cluster). Default: 0.
	DB int `json:"db,omitempty"`

	// Connect with TLS 1.2 or later. Default: false.
	TLS bool `json:"tls,omitempty"`

	// PEM file of the certificate authorities to trust for the servers'
	// certificates; needs tls. Default: the system's.
	CAFile string `json:"ca_file,omitempty"`

	// Prefix for every key and for the change channel, so one Redis can
	// serve other applications. Default: 2fa:.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// How long to wait to connect, and for each command; a request that
	// needs Redis answers 503 after about this long when Redis does not
	// answer. Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Connections per node, 0 or more (0 for go-redis's default, 10 per
	// CPU). Default: 0.
	PoolSize int `json:"pool_size,omitempty"`

	// Keep members' records in memory while this instance's change
	// notices are confirmed to arrive (up to 5 min), instead of reading
	// each active member's record every 2 s; a change still reaches
	// every instance within 2 s. Only where notices arrive in the order
	// Redis ran them: one server or a Sentinel group reached directly,
	// not through a proxy that may send connections to different
	// servers. Ignored on Cluster. Default: false.
	LeaseRecords bool `json:"lease_records,omitempty"`

	opts   *goredis.UniversalOptions
	store  *redis.Store
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

const (
	defaultRedisTimeout = 500 * time.Millisecond
	defaultKeyPrefix    = "2fa:"
)

// Provision resolves placeholders and prepares the client's options. It
// connects to nothing.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	var creds [4]string
	for i, f := range []struct{ name, in string }{
		{"username", s.Username}, {"password", s.Password},
		{"sentinel_username", s.SentinelUsername}, {"sentinel_password", s.SentinelPassword},
	} {
		v, err := repl.ReplaceOrErr(f.in, true, true)
		if err != nil {
			return fmt.Errorf("redis %s: %v", f.name, err)
		}
		creds[i] = v
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(defaultRedisTimeout)
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = defaultKeyPrefix
	}
	timeout := time.Duration(s.Timeout)
	s.opts = &goredis.UniversalOptions{
		Addrs: s.Addresses, MasterName: s.MasterName, Username: creds[0], Password: creds[1], DB: s.DB,
		SentinelUsername: creds[2], SentinelPassword: creds[3],
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
		PoolSize: s.PoolSize, ContextTimeoutEnabled: true, DialerRetries: 1,
		// No retries: a retried compare-and-swap or counter whose first
		// try did reach Redis would act twice, and each retry would add a
		// timeout to the request. A broken pooled connection is found
		// and replaced when it is taken from the pool.
		MaxRetries: -1,
		// Nor on Cluster, where MaxRetries does not stop the client: it
		// sends a node's whole pipeline again when the answer was lost,
		// commands that had run included. A MOVED or ASK (slots being
		// moved) then fails the request, closed, and the client reloads
		// the slot map for the next one.
		MaxRedirects: -1,
	}
	if s.TLS {
		s.opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CAFile != "" {
			roots, err := loadCAFile(s.CAFile)
			if err != nil {
				return fmt.Errorf("redis ca_file: %w", err)
			}
			s.opts.TLSConfig.RootCAs = roots
		}
	}
	return nil
}

// Validate checks the options.
func (s *RedisStore) Validate() error {
	switch {
	case len(s.Addresses) == 0:
		return errors.New("redis addresses: at least one host:port is required")
	case (s.opts.SentinelUsername != "" || s.opts.SentinelPassword != "") && s.MasterName == "":
		return errors.New("redis sentinel_username and sentinel_password: need master_name")
	case s.Timeout < 0:
		return fmt.Errorf("redis timeout %s: must be positive", time.Duration(s.Timeout))
	case s.DB < 0 || s.PoolSize < 0:
		return errors.New("redis db and pool_size: must not be negative")
	case s.DB != 0 && s.MasterName == "" && len(s.Addresses) > 1:
		return errors.New("redis db: a Cluster has only database 0")
	case !s.TLS && s.CAFile != "":
		return errors.New("redis ca_file: needs tls")
	}
	for _, a := range s.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redis address %q: not host:port", a)
		}
	}
	return nil
}

// redisLogOnce routes go-redis's logger, one per process, to Caddy's log
// at debug: it logs each failed dial, and the gateway reports the store's
// state itself. It is set when a Redis store opens, never merely because
// the plugin is compiled in.
var redisLogOnce sync.Once

type redisLog struct{}

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("two_factor.redis").Debug(fmt.Sprintf(format, v...))
}

// OpenStore builds the client. It does not wait for Redis: commands fail
// with store.ErrUnavailable until it answers.
func (s *RedisStore) OpenStore(ctx context.Context) (store.Store, error) {
	redisLogOnce.Do(func() { goredis.SetLogger(redisLog{}) })
	s.store = redis.New(goredis.NewUniversalClient(s.opts), s.KeyPrefix)
	// Each command within the timeout, whatever the client retries or
	// redirects (Cluster retries a silent node on its own).
	s.store.Timeout = time.Duration(s.Timeout)
	s.store.Log = s.logger
	s.store.Ordered = s.LeaseRecords

	if s.opts.Password == "" {
		s.logger.Warn("redis: no password: anything that can reach the server can read and change enrolments; set username and password")
	}
	if !s.TLS && !allLoopback(s.Addresses) {
		s.logger.Warn("redis: no tls: the gateway's state crosses the network in clear; set tls")
	}
	go s.checkEviction(ctx)
	return s.store, nil
}

// checkEviction warns, once Redis answers, when its memory policy may
// evict keys: losing enrolments would turn members into strangers, and
// losing counters would lift lockouts and sending limits. Managed Redis
// services often refuse CONFIG; that is only noted.
func (s *RedisStore) checkEviction(ctx context.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		policy, err := s.store.Client().ConfigGet(cctx, "maxmemory-policy").Result()
		cancel()
		switch {
		case err == nil:
			if p := policy["maxmemory-policy"]; p != "" && p != "noeviction" {
				s.logger.Warn("redis: maxmemory-policy may evict the gateway's keys; set noeviction",
					zap.String("maxmemory_policy", p))
			}
			return
		case ctx.Err() != nil:
			return
		case !errors.Is(err, context.DeadlineExceeded) && !isConnError(err):
			s.logger.Info("redis: cannot read maxmemory-policy; make sure it is noeviction", zap.Error(err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// isConnError tells a Redis that could not be reached from one that
// answered with an error.
func isConnError(err error) bool {
	var netErr net.Error
	var redisErr goredis.Error
	return errors.As(err, &netErr) || !errors.As(err, &redisErr)
}

func allLoopback(addrs []string) bool {
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return false
		}
		ip, err := netip.ParseAddr(host)
		if host != "localhost" && (err != nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// Identity names the data this store reaches: the same servers, database
// and key prefix are the same store, however else it is configured.
func (s *RedisStore) Identity() string {
	addrs := slices.Clone(s.Addresses)
	slices.Sort(addrs)
	return fmt.Sprintf("redis master=%q addresses=%q db=%d prefix=%q", s.MasterName, addrs, s.DB, s.KeyPrefix)
}

// Cleanup closes the client, if the store was opened.
func (s *RedisStore) Cleanup() error {
	if s.store == nil {
		return nil
	}
	return s.store.Close()
}

// Interface guards
var (
	_ StoreModule        = (*EmbeddedStore)(nil)
	_ caddy.Provisioner  = (*EmbeddedStore)(nil)
	_ caddy.CleanerUpper = (*EmbeddedStore)(nil)
	_ StoreModule        = (*RedisStore)(nil)
	_ caddy.Provisioner  = (*RedisStore)(nil)
	_ caddy.Validator    = (*RedisStore)(nil)
	_ caddy.CleanerUpper = (*RedisStore)(nil)
	_ sharedStore        = (*RedisStore)(nil)
)
