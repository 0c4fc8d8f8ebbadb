package testredis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// RoundTrips counts the round trips go-redis clients make. A command sent
// alone is one, and so is a pipeline, however many commands it carries.
// On a Cluster the client splits a pipeline by node and sends the parts
// in parallel: the pipeline is one step, one round trip of latency, and
// each node it reaches counts a trip of its own. The clients' own
// housekeeping (CLUSTER SLOTS, PING, HELLO) is left out: it is not done
// for a request.
type RoundTrips struct {
	mu           sync.Mutex
	steps, trips []Trip
}

// Trip is one round trip: where it went ("cluster" for a step of a
// Cluster client, before it is split by node) and its commands, each as
// its name and first key ("incr 2fa:fail:{…}").
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
		c.AddHook(&tripHook{r: r, addr: c.Options().Addr, step: true, trip: true})
	case *redis.ClusterClient:
		c.AddHook(&tripHook{r: r, addr: "cluster", step: true})
		c.OnNewNode(func(n *redis.Client) { n.AddHook(&tripHook{r: r, addr: n.Options().Addr, trip: true}) })
	default:
		panic(fmt.Sprintf("testredis: cannot watch a %T", c))
	}
}

// Take returns the steps (round trips of latency) and the trips to each
// server made since the last Take, and starts afresh. On a standalone
// server they are the same.
func (r *RoundTrips) Take() (steps, trips []Trip) {
	r.mu.Lock()
	defer r.mu.Unlock()
	steps, trips = r.steps, r.trips
	r.steps, r.trips = nil, nil
	return steps, trips
}

// MostPerServer is the most trips that went to any one server.
func MostPerServer(trips []Trip) int {
	by := map[string]int{}
	n := 0
	for _, t := range trips {
		by[t.Addr]++
		n = max(n, by[t.Addr])
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
	r          *RoundTrips
	addr       string
	step, trip bool // what it records
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
	if h.step {
		h.r.steps = append(h.r.steps, t)
	}
	if h.trip {
		h.r.trips = append(h.r.trips, t)
	}
	h.r.mu.Unlock()
}
