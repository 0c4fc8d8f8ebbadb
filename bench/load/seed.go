package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-twofactor/twofactor/challenge"
	"github.com/caddy-twofactor/twofactor/store"
)

// seedMarker is the store key (under the key prefix) that records how
// many members of which population are in the store, so a second run with
// the same members goes straight to the load, and an interrupted one
// carries on where it stopped.
const seedMarker = "loadtest:seeded"

// seeder writes the population into the gateway's store through the
// engine's own record format (challenge.Seed).
type seeder struct {
	e   *challenge.Engine
	st  store.Store
	pop *population
	// redis, when the store is Redis, writes each batch's records in one
	// pipeline; otherwise the engine writes them one by one.
	redis  goredis.UniversalClient
	prefix string
	// batch members per write, workers batches at once.
	batch, workers int
	progress       io.Writer
}

// seedResult says what a seed run did.
type seedResult struct {
	Members int           // in the store when done
	Written int           // records written by this run
	Took    time.Duration // this run's time
}

func (s *seeder) run(ctx context.Context) (seedResult, error) {
	began := time.Now()
	done, err := s.marked(ctx)
	if err != nil {
		return seedResult{}, err
	}
	res := seedResult{Members: max(done, s.pop.n)}
	if done >= s.pop.n {
		return res, nil
	}
	if done == 0 {
		// Never among real members: a prefix that lists members this
		// tool did not mark is someone else's.
		counts, err := s.e.CountMembers(ctx)
		if err != nil {
			return res, err
		}
		if counts.Members > 0 {
			return res, fmt.Errorf("the store already lists %d members under this key prefix and none of them is this tool's: seed only into a key prefix or database of its own (-key-prefix, -redis-db), or empty it", counts.Members)
		}
	}
	round := s.batch * s.workers
	last := time.Now()
	for from := done; from < s.pop.n; from += round {
		var wg sync.WaitGroup
		errs := make([]error, s.workers)
		written := make([]int, s.workers)
		for w := range s.workers {
			lo := from + w*s.batch
			hi := min(lo+s.batch, s.pop.n)
			if lo >= hi {
				break
			}
			wg.Go(func() { written[w], errs[w] = s.write(ctx, lo, hi) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return res, err
		}
		for _, n := range written {
			res.Written += n
		}
		to := min(from+round, s.pop.n)
		if err := s.mark(ctx, to); err != nil {
			return res, err
		}
		if s.progress != nil && (time.Since(last) >= time.Second || to == s.pop.n) {
			last = time.Now()
			el := time.Since(began)
			fmt.Fprintf(s.progress, "\rseeding: %d of %d members, %.0f a second, %s   ", to, s.pop.n,
				float64(to-done)/el.Seconds(), el.Round(time.Second))
		}
	}
	if s.progress != nil {
		fmt.Fprintln(s.progress)
	}
	res.Took = time.Since(began)
	return res, nil
}

// write seeds members lo to hi-1 and returns how many records it wrote
// (a record already there is kept).
func (s *seeder) write(ctx context.Context, lo, hi int) (int, error) {
	members := make([]challenge.SeedMember, 0, hi-lo)
	for i := lo; i < hi; i++ {
		members = append(members, challenge.SeedMember{ID: s.pop.id(i), TOTPSecret: s.pop.appKey(i), Email: true})
	}
	b, err := s.e.Seed(members, time.Now())
	if err != nil {
		return 0, err
	}
	if s.redis == nil {
		return s.e.WriteSeed(ctx, b)
	}
	pipe := s.redis.Pipeline()
	cmds := make([]*goredis.BoolCmd, len(b.Records))
	for i, r := range b.Records {
		cmds[i] = pipe.SetNX(ctx, s.prefix+r.Key, r.Value, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("seeding members %d to %d: %w", lo, hi-1, err)
	}
	written := 0
	for _, c := range cmds {
		if c.Val() {
			written++
		}
	}
	for index, entries := range b.Indexes {
		if err := s.st.IndexPut(ctx, index, entries...); err != nil {
			return written, fmt.Errorf("seeding members %d to %d: index %s: %w", lo, hi-1, index, err)
		}
	}
	return written, nil
}

// marked returns how many members of this population the store holds.
func (s *seeder) marked(ctx context.Context) (int, error) {
	raw, err := s.st.Get(ctx, seedMarker)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	fp, count, ok := strings.Cut(string(raw), " ")
	n, cerr := strconv.Atoi(count)
	if !ok || cerr != nil {
		return 0, fmt.Errorf("the store's %s is %q, not a load test's marker: use another key prefix", seedMarker, raw)
	}
	if fp != s.pop.fingerprint() {
		return 0, errors.New("this key prefix holds load test members with another -id-prefix, -email-domain or -seed: use those, or another key prefix")
	}
	return n, nil
}

func (s *seeder) mark(ctx context.Context, n int) error {
	return s.st.Set(ctx, seedMarker, []byte(s.pop.fingerprint()+" "+strconv.Itoa(n)), 0)
}
