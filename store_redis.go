package twofactor

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// RedisStore keeps the gateway's state in Redis, shared by every Caddy
// instance that points at it: one server, a Sentinel group or a Cluster.
type RedisStore struct {
	// Addresses (host:port): one for a single server, the sentinels' with
	// master_name, or several Cluster nodes. Required.
	Addresses []string `json:"addresses,omitempty"`

	// The Sentinel master name. Default: none (no Sentinel).
	MasterName string `json:"master_name,omitempty"`

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

	// How long to wait to connect, and for each command. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Connections per node. Default: go-redis's (10 per CPU).
	PoolSize int `json:"pool_size,omitempty"`

	*redis.Store
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
	timeout := time.Duration(s.Timeout)
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	if timeout < 0 {
		return fmt.Errorf("redis timeout %s: must be positive", timeout)
	}
	if s.DB < 0 || s.PoolSize < 0 {
		return errors.New("redis db and pool_size: must not be negative")
	}
	opts := &goredis.UniversalOptions{
		Addrs: s.Addresses, MasterName: s.MasterName, Username: username, Password: password, DB: s.DB,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolSize: s.PoolSize,
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
	s.Store = redis.New(goredis.NewUniversalClient(opts), prefix)
	return nil
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
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)
