package testredis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// RoundTrips counts the round trips go-redis clients make to each server:
// a command sent alone is one, and so is a pipeline, however many
// commands it carries. On a Cluster the client splits a pipeline by node
// and sends the parts in parallel, so each node counts one; a step of a
// sign-in costs one round trip of latency if no node counts more than one
// for it. The cluster's own housekeeping (CLUSTER SLOTS, PING) is left
// out: the client does it in the background, not for a request.
type RoundTrips struct {
	mu    sync.Mutex
	trips []Trip
}

// Trip is one round trip: the server it went to and its commands, each
// as its name and first key ("incr 2fa:fail:{…}").
type Trip struct {
	Addr     string
	Commands []string
}

func (t Trip) String() string { return t.Addr + ": " + strings.Join(t.Commands, " | ") }

// Watch counts c's round trips from now on. A ClusterClient's nodes are
// watched as the client connects to them, so Watch it before its first
// command.
func (r *RoundTrips) Watch(c redis.UniversalClient) {
	switch c := c.(type) {
	case *redis.Client:
		c.AddHook(&tripHook{r: r, addr: c.Options().Addr})
	case *redis.ClusterClient:
		c.OnNewNode(func(n *redis.Client) { n.AddHook(&tripHook{r: r, addr: n.Options().Addr}) })
	default:
		panic(fmt.Sprintf("testredis: cannot watch a %T", c))
	}
}

// Take returns the round trips counted since the last Take, and starts
// afresh.
func (r *RoundTrips) Take() []Trip {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trips
	r.trips = nil
	return t
}

// Latency is how many round trips a series of trips costs one after the
// other, counting trips to different nodes that could overlap as one: the
// most that went to any one node. It is exact for one standalone server,
// and for a Cluster when every step's pipeline reached each node at most
// once, which is how Batch sends one.
func Latency(trips []Trip) int {
	by := map[string]int{}
	for _, t := range trips {
		by[t.Addr]++
	}
	n := 0
	for _, c := range by {
		n = max(n, c)
	}
	return n
}

// Without drops the trips any of whose commands contains one of the
// words ("xadd", a key fragment).
func Without(trips []Trip, words ...string) []Trip {
	return slices.DeleteFunc(slices.Clone(trips), func(t Trip) bool {
		for _, c := range t.Commands {
			for _, w := range words {
				if strings.Contains(c, w) {
					return true
				}
			}
		}
		return false
	})
}

type tripHook struct {
	r    *RoundTrips
	addr string
}

func (h *tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.add(cmds)
		return next(ctx, cmds)
	}
}

// housekeeping are the commands a client sends on its own.
var housekeeping = []string{"cluster", "ping", "hello", "client", "readonly", "auth", "select", "command"}

func (h *tripHook) add(cmds []redis.Cmder) {
	t := Trip{Addr: h.addr}
	for _, c := range cmds {
		name := c.Name()
		if slices.Contains(housekeeping, name) {
			continue
		}
		s := name
		if args := c.Args(); len(args) > 1 {
			pos := 1
			if name == "evalsha" || name == "eval" {
				pos = 3 // script, number of keys, first key
			}
			if pos < len(args) {
				s += " " + fmt.Sprint(args[pos])
			}
		}
		t.Commands = append(t.Commands, s)
	}
	if len(t.Commands) == 0 {
		return
	}
	h.r.mu.Lock()
	h.r.trips = append(h.r.trips, t)
	h.r.mu.Unlock()
}
