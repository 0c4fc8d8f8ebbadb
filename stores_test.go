package twofactor

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/internal/testredis"
	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// lossyConn loses the answer to the first write that runs a script, after
// Redis has run it.
type lossyConn struct {
	net.Conn
	armed *atomic.Bool
	lost  atomic.Bool
}

func (c *lossyConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if strings.Contains(strings.ToLower(string(b)), "evalsha") && c.armed.CompareAndSwap(true, false) {
		c.lost.Store(true)
	}
	return n, err
}

func (c *lossyConn) Read(b []byte) (int, error) {
	if c.lost.Load() {
		c.Conn.Close()
		return 0, io.EOF
	}
	return c.Conn.Read(b)
}

// A pipeline whose answer is lost on Redis Cluster must fail, not be sent
// again: a counter counted twice, or a swap that ran reported as lost,
// would lock members out early and refuse right codes.
func TestRedisClusterSendsNothingTwice(t *testing.T) {
	rs := &RedisStore{Addresses: testredis.StartCluster(t), Timeout: caddy.Duration(2 * time.Second)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := rs.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	rs.opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &lossyConn{Conn: c, armed: &armed}, nil
	}
	client := goredis.NewUniversalClient(rs.opts)
	defer client.Close()
	s := redis.New(client, "t:")
	if err := s.Batch(t.Context(), store.IncrementOp("warm", 0)); err != nil { // loads the scripts
		t.Fatal(err)
	}
	inc := store.IncrementOp("n", time.Minute)
	armed.Store(true)
	if err := s.Batch(t.Context(), inc); err == nil {
		t.Errorf("a batch whose answer was lost succeeded (count %d)", inc.Count)
	}
	if v, err := client.Get(t.Context(), "t:n").Result(); err != nil || v != "1" {
		t.Errorf("the counter is %q (%v), want 1: the increment was sent again", v, err)
	}
}

// lease_records reaches the store: its notices count as in order, on one
// server only; without it, or on a Cluster, they do not.
func TestRedisLeaseRecords(t *testing.T) {
	single := testredis.Start(t).Addr
	cluster := testredis.StartCluster(t)
	for _, c := range []struct {
		name  string
		addrs []string
		lease bool
		want  bool
	}{
		{"one server", []string{single}, true, true},
		{"one server, off", []string{single}, false, false},
		{"cluster", cluster, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := &RedisStore{Addresses: c.addrs, LeaseRecords: c.lease}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := rs.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := rs.OpenStore(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.(store.Notifier).InOrder(); got != c.want {
				t.Fatalf("InOrder %t, want %t", got, c.want)
			}
		})
	}
}
