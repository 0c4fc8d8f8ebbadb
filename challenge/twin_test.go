package challenge

import (
	"context"
	"sync"
	"testing"

	"github.com/caddy-twofactor/twofactor/store"
	"github.com/caddy-twofactor/twofactor/store/redis"
)

// twinStore forces the worst interleaving of one browser sending an
// enrolment code twice at once: both read the code, A takes it, B's take
// loses but B's record swap runs before A's.
type twinStore struct {
	*redis.Store
	mu              sync.Mutex
	reads, takes    int
	bothRead, aTook chan struct{}
	bDone           chan struct{}
}

func (s *twinStore) Batch(ctx context.Context, ops ...*store.Op) error {
	first := false
	for _, op := range ops {
		first = first || op.Kind == store.OpGet && op.Key == codeKey("alice")
	}
	if first && len(ops) > 1 {
		s.mu.Lock()
		s.reads++
		n := s.reads
		s.mu.Unlock()
		err := s.Store.Batch(ctx, ops...)
		if n == 2 {
			close(s.bothRead)
		}
		<-s.bothRead
		return err
	}
	if len(ops) == 2 && ops[0].Kind == store.OpCompareAndSwap && ops[0].Key == codeKey("alice") && ops[1].Key == userKey("alice") {
		s.mu.Lock()
		s.takes++
		n := s.takes
		s.mu.Unlock()
		switch n {
		case 1: // A: takes the code, swaps its record after B's
			if err := s.Store.Batch(ctx, ops[0]); err != nil {
				return err
			}
			close(s.aTook)
			<-s.bDone
			return s.Store.Batch(ctx, ops[1])
		case 2: // B
			<-s.aTook
			err := s.Store.Batch(ctx, ops...)
			close(s.bDone)
			return err
		}
	}
	return s.Store.Batch(ctx, ops...)
}

// A code submitted twice at once confirms the enrolment exactly once,
// whatever the order in which the code is taken and the record swapped.
func TestConfirmCodeTwinSubmissions(t *testing.T) {
	r := newFaultRig(t)
	r.reset(t)
	code := r.sendCode(PurposeEnrol, "mail")
	ts := &twinStore{Store: r.fs.Store, bothRead: make(chan struct{}), aTook: make(chan struct{}), bDone: make(chan struct{})}
	e := r.engine(ts)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = e.ConfirmCode(ctx, faultAlice, "mail", code) })
	}
	wg.Wait()
	if ts.takes != 2 {
		t.Fatalf("the interleaving did not happen (%d takes)", ts.takes)
	}
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("want exactly one success, got %v and %v", errs[0], errs[1])
	}
	u, _ := r.record()
	if u == nil || u.Email == nil {
		t.Fatal("the method is not enrolled")
	}
}
