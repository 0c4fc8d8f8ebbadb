package twofactor

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// A member is queued once a day, and the check on later requests that day
// allocates nothing.
func TestSeenRecorderOncePerDay(t *testing.T) {
	s := newSeenRecorder()
	now := time.Unix(1_700_000_000, 0)
	s.note("alice", "", now)
	s.note("alice", "", now.Add(time.Hour))
	if n := len(s.queue); n != 1 {
		t.Fatalf("queued %d notes the same day, want 1", n)
	}
	if allocs := testing.AllocsPerRun(100, func() { s.note("alice", "", now) }); allocs != 0 {
		t.Fatalf("a member already noted today: %v allocations", allocs)
	}
	s.note("alice", "", now.Add(24*time.Hour))
	if n := len(s.queue); n != 2 {
		t.Fatalf("queued %d notes over two days, want 2", n)
	}
	// A full queue drops the note without remembering it, so a later
	// request queues it again.
	for i := len(s.queue); i < seenQueue; i++ {
		s.queue <- seenNote{}
	}
	s.note("bob", "", now)
	if _, ok := s.days.Get("bob"); ok {
		t.Fatal("a note dropped on a full queue counts as made")
	}
}

// A member seen all day stays noted while more members than the bound pass
// once each: they are not queued again, as they were when the set was
// cleared at its cap.
func TestSeenRecorderKeepsFrequent(t *testing.T) {
	s := newSeenRecorder()
	now := time.Unix(1_700_000_000, 0)
	var alice atomic.Int32
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case n := <-s.queue:
				if n.id == "alice" {
					alice.Add(1)
				}
			case <-stop:
				return
			}
		}
	}()
	s.note("alice", "", now)
	for i := range 3 * seenMax {
		s.note("member-"+strconv.Itoa(i), "", now)
		if i%8 == 0 {
			s.note("alice", "", now)
		}
	}
	close(stop)
	<-done
	for len(s.queue) > 0 {
		if n := <-s.queue; n.id == "alice" {
			alice.Add(1)
		}
	}
	if n := alice.Load(); n != 1 {
		t.Errorf("alice noted %d times the same day among %d other members; want once", n, 3*seenMax)
	}
	if n := s.days.Len(); n > seenMax {
		t.Errorf("%d members remembered, bound %d", n, seenMax)
	}
}
