package twofactor

import (
	"context"
	"sync/atomic"
	"testing"
)

// Stop ends the watchers, and returns only after the tasks in flight (such
// as a notice being sent) have finished.
func TestBackgroundStopWaitsForTasks(t *testing.T) {
	var b background
	b.start(context.Background())
	watcherDone := make(chan struct{})
	b.watch(func(ctx context.Context) {
		<-ctx.Done()
		close(watcherDone)
	})
	var finished atomic.Bool
	b.Go(func(ctx context.Context) {
		// Still running when stop begins: it ends only after stop has
		// cancelled the watcher, and its context is still live.
		<-watcherDone
		if ctx.Err() != nil {
			t.Error("a task's context was cancelled before it finished")
		}
		finished.Store(true)
	})
	b.stop()
	if !finished.Load() {
		t.Fatal("stop returned before the task finished")
	}

	// Work started after stop (a request of the old config still running
	// during a reload) still runs.
	ran := make(chan struct{})
	b.Go(func(context.Context) { close(ran) })
	<-ran
}
