package twofactor

import (
	"context"
	"sync"
	"time"
)

// background runs the app's work that outlives a request: watchers, which
// end when the app stops, and tasks such as notices, which Stop lets finish
// (within drainTimeout) so that none is lost or left running.
type background struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup

	ctx         context.Context // tasks'; cancelled after the drain
	cancel      context.CancelFunc
	watchCtx    context.Context // watchers'; cancelled first
	watchCancel context.CancelFunc
}

// drainTimeout bounds how long Stop waits for tasks in flight.
const drainTimeout = 10 * time.Second

func (b *background) start(parent context.Context) {
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(parent))
	b.watchCtx, b.watchCancel = context.WithCancel(parent)
}

// Go runs a task. One started after Stop (by a request of the old config
// still running during a reload) runs on its own.
func (b *background) Go(fn func(context.Context)) {
	b.run(fn, false)
}

// watch runs a watcher until the app stops.
func (b *background) watch(fn func(context.Context)) {
	b.run(fn, true)
}

func (b *background) run(fn func(context.Context), watcher bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.ctx == nil {
		if !watcher {
			go fn(context.Background())
		}
		return
	}
	ctx := b.ctx
	if watcher {
		ctx = b.watchCtx
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn(ctx)
	}()
}

// stop ends the watchers and waits for the tasks, cancelling those still
// running after drainTimeout.
func (b *background) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	if b.ctx == nil {
		return
	}
	b.watchCancel()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		b.cancel()
		<-done
	}
	b.cancel()
}
