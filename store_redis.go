package twofactor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

func init() {
	caddy.RegisterModule(RedisStore{})
	// go-redis logs each failed dial on its own; the gateway reports the
	// store's state itself, so those lines go to Caddy's log at debug.
	goredis.SetLogger(redisLog{})
}

type redisLog struct{}

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("two_factor.redis").Debug(fmt.Sprintf(format, v...))
}

// RedisStore keeps the gateway's state in Redis, shared by every Caddy
// instance that points at it: one server, a Sentinel group or a Cluster.
type RedisStore struct {
	// Addresses (host:port): one for a single server, the sentinels' with
	// master_name, or several Cluster nodes. Required.
	Addresses []string `json:"addresses,omitempty"`

	// The Sentinel master name. Default: none (no Sentinel).
	MasterName string `json:"master_name,omitempty"`

	// ACL user name and password for the sentinels themselves, when they
	// require one; placeholders work. Default: none.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// ACL user name and password; use placeholders such as
	// {env.REDIS_PASSWORD}. Default: none.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// Database number (not on Cluster). Default: 0.
	DB int `json:"db,omitempty"`

	// Connect with TLS. Default: off.
	TLS bool `json:"tls,omitempty"`

	// PEM file of the certificate authorities to trust for the servers'
	// certificates, with tls. Default: the system's.
	CAFile string `json:"ca_file,omitempty"`

	// Prefix for every key, so one Redis can serve other applications.
	// Default: "2fa:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// How long to wait to connect, and for each command; a request that
	// needs Redis answers 503 after about this long when Redis does not
	// answer. Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Connections per node. Default: go-redis's (10 per CPU).
	PoolSize int `json:"pool_size,omitempty"`

	*redis.Store
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "two_factor.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision builds the client. It does not wait for Redis: commands fail
// with store.ErrUnavailable until it answers.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	if len(s.Addresses) == 0 {
		return errors.New("redis addresses: at least one host:port is required")
	}
	repl := caddy.NewReplacer()
	username, err := repl.ReplaceOrErr(s.Username, true, true)
	if err != nil {
		return fmt.Errorf("redis username: %v", err)
	}
	password, err := repl.ReplaceOrErr(s.Password, true, true)
	if err != nil {
		return fmt.Errorf("redis password: %v", err)
	}
	sentinelUser, err := repl.ReplaceOrErr(s.SentinelUsername, true, true)
	if err != nil {
		return fmt.Errorf("redis sentinel_username: %v", err)
	}
	sentinelPassword, err := repl.ReplaceOrErr(s.SentinelPassword, true, true)
	if err != nil {
		return fmt.Errorf("redis sentinel_password: %v", err)
	}
	if (sentinelUser != "" || sentinelPassword != "") && s.MasterName == "" {
		return errors.New("redis sentinel_username and sentinel_password: need master_name")
	}
	timeout := time.Duration(s.Timeout)
	if timeout == 0 {
		timeout = 500 * time.Millisecond
	}
	if timeout < 0 {
		return fmt.Errorf("redis timeout %s: must be positive", timeout)
	}
	if s.DB < 0 || s.PoolSize < 0 {
		return errors.New("redis db and pool_size: must not be negative")
	}
	if s.DB != 0 && s.MasterName == "" && len(s.Addresses) > 1 {
		return errors.New("redis db: a Cluster has only database 0")
	}
	opts := &goredis.UniversalOptions{
		Addrs: s.Addresses, MasterName: s.MasterName, Username: username, Password: password, DB: s.DB,
		SentinelUsername: sentinelUser, SentinelPassword: sentinelPassword,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
		PoolSize: s.PoolSize, ContextTimeoutEnabled: true, DialerRetries: 1,
		// No retries: a retried compare-and-swap or counter whose first
		// try did reach Redis would act twice, and each retry would add a
		// timeout to the request. A broken pooled connection is found
		// and replaced when it is taken from the pool.
		MaxRetries: -1,
	}
	if s.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CAFile != "" {
			roots, err := loadCAFile(s.CAFile)
			if err != nil {
				return fmt.Errorf("redis ca_file: %w", err)
			}
			opts.TLSConfig.RootCAs = roots
		}
	} else if s.CAFile != "" {
		return errors.New("redis ca_file: needs tls")
	}
	prefix := s.KeyPrefix
	if prefix == "" {
		prefix = "2fa:"
	}
	s.logger = ctx.Logger()
	s.Store = redis.New(goredis.NewUniversalClient(opts), prefix)
	// Each command within the timeout, whatever the client retries or
	// redirects (Cluster retries a silent node on its own).
	s.Store.Timeout = timeout
	s.Store.Log = s.logger

	if password == "" {
		s.logger.Warn("redis: no password: anything that can reach the server can read and change enrolments; set username and password")
	}
	if !s.TLS && !allLoopback(s.Addresses) {
		s.logger.Warn("redis: no tls: the gateway's state crosses the network in clear; set tls")
	}
	go s.checkEviction(ctx)
	return nil
}

// checkEviction warns, once Redis answers, when its memory policy may
// evict keys: losing enrolments would turn members into strangers, and
// losing counters would lift lockouts and sending limits. Managed Redis
// services often refuse CONFIG; that is only noted.
func (s *RedisStore) checkEviction(ctx caddy.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		policy, err := s.Client().ConfigGet(cctx, "maxmemory-policy").Result()
		cancel()
		switch {
		case err == nil:
			if p := policy["maxmemory-policy"]; p != "" && p != "noeviction" {
				s.logger.Warn("redis: maxmemory-policy may evict the gateway's keys; set noeviction",
					zap.String("maxmemory_policy", p))
			}
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
	return fmt.Sprintf("redis master=%q addresses=%q db=%d prefix=%q", s.MasterName, addrs, s.DB, s.Store.Prefix())
}

// Cleanup closes the client.
func (s *RedisStore) Cleanup() error {
	if s.Store == nil {
		return nil
	}
	return s.Close()
}

// UnmarshalCaddyfile sets up the Redis store:
//
//	store redis {
//		address <host:port>...
//		master_name <name>
//		sentinel_username <user>
//		sentinel_password <password>
//		username <user>
//		password <password>
//		db <number>
//		tls
//		ca_file <path>
//		key_prefix <prefix>
//		timeout <duration>
//		pool_size <count>
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return eachOption(d, d.Nesting(), "redis", map[string]bool{"address": true}, func(name string) error {
		switch name {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("redis: address needs at least one host:port")
			}
			s.Addresses = append(s.Addresses, args...)
			return nil
		case "master_name":
			return parseString(d, &s.MasterName)
		case "sentinel_username":
			return parseString(d, &s.SentinelUsername)
		case "sentinel_password":
			return parseString(d, &s.SentinelPassword)
		case "username":
			return parseString(d, &s.Username)
		case "password":
			return parseString(d, &s.Password)
		case "db":
			return parseInt(d, &s.DB)
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS = true
			return nil
		case "ca_file":
			return parseString(d, &s.CAFile)
		case "key_prefix":
			return parseString(d, &s.KeyPrefix)
		case "timeout":
			return parseDuration(d, &s.Timeout)
		case "pool_size":
			return parseInt(d, &s.PoolSize)
		}
		return d.Errf("redis: unknown option %q", name)
	})
}

// Interface guards
var (
	_ store.Store           = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ identified            = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)
