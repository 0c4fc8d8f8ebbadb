package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a Redis Sentinel group: a master, one replica, and three
// sentinels that agree (quorum 2) when the master is down and promote the
// replica.
type Sentinel struct {
	// Addrs are the sentinels' addresses, what a client is given.
	Addrs []string
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	// Master and Replica are the data servers as started; stopping Master
	// makes the sentinels fail over to Replica.
	Master, Replica *Server

	sentinels []*Server
}

// StartSentinel runs a Sentinel group on free loopback ports and returns it
// once every sentinel knows the master, its replica and the two other
// sentinels, so a failover can start as soon as the master is lost. The
// sentinels declare the master down after one second.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	g := &Sentinel{MasterName: "gateway"}
	// Without a delay the replica's first full sync is immediate, not
	// five seconds late (the default, to batch replicas that come up
	// together).
	g.Master = Start(t, "--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(g.Master.Addr)
	g.Replica = Start(t, "--replicaof", "127.0.0.1", port)
	waitReplicating(t, g.Replica.Addr)

	g.sentinels = startSentinels(t, g.MasterName, port)
	for _, s := range g.sentinels {
		g.Addrs = append(g.Addrs, s.Addr)
	}
	t.Cleanup(func() {
		// What the sentinels saw explains a failover that went wrong.
		if t.Failed() {
			for _, s := range g.sentinels {
				out, _ := os.ReadFile(filepath.Join(s.Dir, "sentinel.log"))
				t.Logf("sentinel %s log:\n%s", s.Addr, out)
			}
		}
	})
	for _, s := range g.sentinels {
		g.waitReady(t, s.Addr)
	}
	return g
}

// startSentinels starts three sentinels monitoring the master on
// masterPort. Each is told the others' addresses and IDs, which it would
// otherwise learn from their hello messages, sent every two seconds.
func startSentinels(t testing.TB, name, masterPort string) []*Server {
	t.Helper()
	bin := binary(t, "redis-server")
	// As in Start, a free port may be taken before a sentinel binds it;
	// then the whole group starts again, as each names the others' ports.
	for try := 1; ; try++ {
		var ports [3]int
		var ids [3]string
		for i := range ports {
			ports[i] = testnet.FreePort(t)
			id := make([]byte, 20) // 40 hex digits, like a run ID
			_, _ = rand.Read(id)
			ids[i] = hex.EncodeToString(id)
		}
		var group []*Server
		for i := range ports {
			conf := fmt.Sprintf("sentinel myid %s\n", ids[i]) +
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\n", name, masterPort) +
				fmt.Sprintf("sentinel down-after-milliseconds %s 1000\n", name) +
				fmt.Sprintf("sentinel failover-timeout %s 3000\n", name)
			for j := range ports {
				if j != i {
					conf += fmt.Sprintf("sentinel known-sentinel %s 127.0.0.1 %d %s\n", name, ports[j], ids[j])
				}
			}
			s, err := startSentinel(t, bin, ports[i], conf)
			if err != nil {
				for _, s := range group {
					s.Stop()
				}
				if try == 5 {
					t.Fatal(err)
				}
				break
			}
			group = append(group, s)
		}
		if len(group) == len(ports) {
			for _, s := range group {
				t.Cleanup(s.Stop)
			}
			return group
		}
	}
}

// startSentinel starts one sentinel with its own configuration file, in its
// own directory: Sentinel rewrites that file with what it learns.
func startSentinel(t testing.TB, bin string, port int, conf string) (*Server, error) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sentinel.conf")
	conf = "bind 127.0.0.1\ndir " + dir + "\nlogfile " + filepath.Join(dir, "sentinel.log") + "\n" + conf
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return launch(exec.Command(bin, path, "--sentinel", "--port", strconv.Itoa(port)), port, dir, nil)
}

// waitReplicating returns once the replica at addr has synced with its
// master.
func waitReplicating(t testing.TB, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not sync with its master: %v\n%s", addr, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady returns once the sentinel at addr sees the master up, and
// is connected to the replica and to both other sentinels.
func (g *Sentinel) waitReady(t testing.TB, addr string) {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := c.Master(ctx, g.MasterName).Result()
		var replicas, sentinels []map[string]string
		if err == nil {
			replicas, err = c.Replicas(ctx, g.MasterName).Result()
		}
		if err == nil {
			sentinels, err = c.Sentinels(ctx, g.MasterName).Result()
		}
		ready := err == nil && m["flags"] == "master" && m["ip"]+":"+m["port"] == g.Master.Addr &&
			len(replicas) == 1 && replicas[0]["flags"] == "slave" &&
			replicas[0]["master-link-status"] == "ok" &&
			replicas[0]["ip"]+":"+replicas[0]["port"] == g.Replica.Addr &&
			len(sentinels) == 2
		for _, s := range sentinels {
			// "disconnected" until its link is up.
			ready = ready && s["flags"] == "sentinel"
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel %s not ready: %v\nmaster: %v\nreplicas: %v\nsentinels: %v", addr, err, m, replicas, sentinels)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
