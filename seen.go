package twofactor

import (
	"context"
	"sync"
	"time"

	"github.com/caddy-twofactor/twofactor/cache"
	"github.com/caddy-twofactor/twofactor/challenge"
)

// Members seen on a protected path, so admins see who has not enrolled.
// A request only looks the member up in memory; a member is noted at most
// once a day per instance, and the note is written by one goroutine in
// the background, so no request waits on the store for it.

// seenMax bounds the members remembered as noted; past it the least seen
// are forgotten first, which costs at most one more note for each.
const seenMax = 100_000

// seenQueue bounds the notes waiting to be written. When it is full a
// note is dropped and the member noted again on their next request.
const seenQueue = 1024

type seenNote struct {
	id    string
	email string // the identity's address, for the member list's search
	at    time.Time
	flush chan struct{} // non-nil: a marker, closed when reached
}

// seenRecorder notes members seen, a day at a time. The queue is never
// closed, so a request of an old config still running after Stop cannot
// panic sending to it; stop tells the writer to drain it and return.
type seenRecorder struct {
	mu       sync.Mutex                  // queueing a note and marking it noted are one step
	days     *cache.Cache[string, int64] // member ID → day (Unix days) last noted
	queue    chan seenNote
	stop     chan struct{}
	stopOnce sync.Once
}

func newSeenRecorder() *seenRecorder {
	return &seenRecorder{days: cache.New[string, int64](cache.Options{Size: seenMax}), queue: make(chan seenNote, seenQueue), stop: make(chan struct{})}
}

// note queues a note that id was seen at now with the identity's address
// email, unless one was queued today (an address changed at the member
// site is noted the next day).
// In the common case it is one lookup without a lock, without
// allocating: it runs on every protected request.
func (s *seenRecorder) note(id, email string, now time.Time) {
	day := now.Unix() / 86400
	if d, ok := s.days.Get(id); ok && d == day {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.days.Get(id); ok && d == day {
		return
	}
	select {
	case s.queue <- seenNote{id: id, email: email, at: now}:
		s.days.Set(id, day)
	default: // full: noted on a later request
	}
}

// run writes the notes until close, then those still queued.
func (s *seenRecorder) run(ctx context.Context, e *challenge.Engine) {
	for {
		select {
		case n := <-s.queue:
			s.write(ctx, e, n)
		case <-s.stop:
			for {
				select {
				case n := <-s.queue:
					s.write(ctx, e, n)
				default:
					return
				}
			}
		}
	}
}

func (s *seenRecorder) write(ctx context.Context, e *challenge.Engine, n seenNote) {
	if n.flush != nil {
		close(n.flush)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Best effort: a note lost to a store outage comes again the next day
	// the member visits.
	_ = e.RecordSeen(wctx, n.id, n.email, n.at)
}

// flush waits until the notes queued before it are written, so a listing
// shows every member this instance has seen.
func (s *seenRecorder) flush(ctx context.Context) {
	done := make(chan struct{})
	select {
	case s.queue <- seenNote{flush: done}:
	case <-s.stop:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-s.stop:
	case <-ctx.Done():
	}
}

// close makes run write what is queued and return.
func (s *seenRecorder) close() {
	s.stopOnce.Do(func() { close(s.stop) })
}

// flushSeen writes out the members noted and not yet recorded, for the
// admin pages' list; nothing before Start has made the recorder.
func (a *App) flushSeen(ctx context.Context) {
	if a.seen != nil {
		a.seen.flush(ctx)
	}
}
