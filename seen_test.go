package twofactor

import (
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
	if _, ok := s.days["bob"]; ok {
		t.Fatal("a note dropped on a full queue counts as made")
	}
}
