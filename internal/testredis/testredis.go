// Package testredis runs real redis-server processes on loopback for
// tests: each on a free port, in its own directory, stopped when the test
// ends.
package testredis

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/caddy-twofactor/twofactor/internal/testnet"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one running redis-server.
type Server struct {
	Addr   string
	Dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	tls    *tls.Config // how to reach a TLS-only server; nil for plain TCP
}

// Start runs redis-server with extra arguments (such as "--appendonly",
// "yes") on a free port. Without redis-server the test is skipped, unless
// TWOFACTOR_REQUIRE_REDIS=1 says it must run (CI installs it).
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	// A port found free can be taken before redis-server binds it (tests
	// run in parallel processes): then try another.
	for try := 1; ; try++ {
		s, err := start(t, testnet.FreePort(t), t.TempDir(), extra, nil)
		if err == nil {
			return s
		}
		if try == 5 {
			t.Fatal(err)
		}
	}
}

// StartAt is Start on a given port, for a server that comes up (or back)
// where clients already expect it.
func StartAt(t testing.TB, port int, extra ...string) *Server {
	t.Helper()
	return StartIn(t, port, t.TempDir(), extra...)
}

// StartIn is StartAt with the server's data directory given, so a server
// restarted in it finds what the last one persisted.
func StartIn(t testing.TB, port int, dir string, extra ...string) *Server {
	t.Helper()
	s, err := start(t, port, dir, extra, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs redis-server on port: plain TCP, or TLS only when tlsConf
// (the client side) is given and extra names the server's certificate.
func start(t testing.TB, port int, dir string, extra []string, tlsConf *tls.Config) (*Server, error) {
	t.Helper()
	bin := binary(t, "redis-server")
	ports := []string{"--port", strconv.Itoa(port)}
	if tlsConf != nil {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(port)}
	}
	args := append(ports,
		"--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	args = append(args, extra...)
	s, err := launch(exec.Command(bin, args...), port, dir, tlsConf)
	if err != nil {
		return nil, err
	}
	t.Cleanup(s.Stop)
	return s, nil
}

// launch starts cmd in dir and returns once the server answers on port;
// one that exits first is an error.
func launch(cmd *exec.Cmd, port int, dir string, tlsConf *tls.Config) (*Server, error) {
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", strings.Join(cmd.Args, " "), err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, cmd: cmd, exited: make(chan struct{}), tls: tlsConf}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.wait(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// wait returns once this server answers. A server that exited (its port
// was taken) is an error even if something else answers on the port.
func (s *Server) wait() error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, TLSConfig: s.tls})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server on %s exited at start", s.Addr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			select {
			case <-s.exited:
				return fmt.Errorf("redis-server on %s exited at start", s.Addr)
			case <-time.After(50 * time.Millisecond):
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	<-s.exited
}

// binary finds a Redis program. Without it the test is skipped, unless
// TWOFACTOR_REQUIRE_REDIS=1 says it must run (CI installs Redis).
func binary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TWOFACTOR_REQUIRE_REDIS") == "1" {
			t.Fatalf("%s not found, and TWOFACTOR_REQUIRE_REDIS=1", name)
		}
		t.Skip(name + " not installed")
	}
	return bin
}

// StartCluster runs a three-node Redis Cluster (three masters, no
// replicas) made with redis-cli --cluster create, and returns its nodes'
// addresses once the cluster reports ok.
func StartCluster(t testing.TB) []string {
	t.Helper()
	cli := binary(t, "redis-cli")
	var addrs []string
	for range 3 {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree the cluster is ready, not only the first.
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("node %s: the cluster did not become ready: %v %s", addr, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}
