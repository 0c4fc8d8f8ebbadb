package challenge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-twofactor/twofactor/store"
)

// slowStore calls onGet once, after a Get has read the store and before
// its answer is used: another instance's write noticed while the answer
// is on its way.
type slowStore struct {
	store.Store
	onGet func()
}

func (s *slowStore) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.Store.Get(ctx, key)
	if s.onGet != nil {
		f := s.onGet
		s.onGet = nil
		f()
	}
	return v, err
}

// A notice that arrives while a read of the older revision is on its way
// (later than the read began, on a running clock) still stands: the
// read's answer is not cached over it.
func TestUserCacheNoticeDuringSlowRead(t *testing.T) {
	f := newFixture(t, Config{})
	if _, err := f.e.updateUser(ctx, "alice", func(u *User) error { u.Default = MethodTOTP; return nil }); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(f.e.cfg.CacheTTL) // the written copy has expired
	ss := &slowStore{Store: f.st}
	f.e.store = ss
	ss.onGet = func() {
		// 1 ms into the read, the notice of revision 2 (another
		// instance's revocation) arrives.
		f.clk.Advance(time.Millisecond)
		f.e.users.changed("alice", 2, f.e.now(), f.e.cfg.CacheTTL)
	}
	if u, err := f.e.State(ctx, "alice"); err != nil || u.Rev != 1 {
		t.Fatalf("State: %v %v", u, err)
	}
	f.clk.Advance(time.Millisecond)
	if u, ok := f.e.users.get("alice", f.e.now(), f.e.cfg.CacheTTL); ok {
		t.Errorf("after a notice of revision 2, revision %d is served from the cache (until %s)", u.Rev, f.e.cfg.CacheTTL)
	}
}

// A notice of a revision already held pins the copy held: a flood of other
// members cannot make room by evicting it, and a still slower read of an
// older revision cannot come back.
func TestUserCacheAnnouncedCopyPinned(t *testing.T) {
	const ttl = 2 * time.Second
	f := newFixture(t, Config{})
	now := f.clk.Now()
	c := newUserCache(MinCacheSize, ttl, false, f.clk.Now)
	c.put(&User{ID: "alice", Rev: 5}, now, ttl, false) // a fast read of revision 5
	c.changed("alice", 5, now, ttl)                    // the notice: already held
	for i := range 20 * MinCacheSize {
		id := fmt.Sprintf("member-%d", i)
		c.put(&User{ID: id, Rev: 1}, now, ttl, false)
		c.get(id, now, ttl)
		c.get(id, now, ttl)
	}
	c.put(&User{ID: "alice", Rev: 4}, now, ttl, false) // the slow read, begun before the write
	if u, ok := c.get("alice", now, ttl); ok && u.Rev < 5 {
		t.Errorf("revision %d served after revision 5 was announced and held", u.Rev)
	}
}
