package groupcommit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type req struct {
	n    int
	done chan error
}

// Concurrent submitters share commits, and every request is answered exactly once.
func TestGroupsShareCommits(t *testing.T) {
	var commits, answered atomic.Int64
	b := New(func(g []req) {
		commits.Add(1)
		time.Sleep(time.Millisecond) // an fsync
		for _, r := range g {
			answered.Add(1)
			r.done <- nil
		}
	}, func(r req) { r.done <- ErrClosed })
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := req{n: w*each + i, done: make(chan error, 1)}
				if err := b.Submit(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
				if err := <-r.done; err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b.Close()
	if answered.Load() != writers*each {
		t.Fatalf("answered %d of %d", answered.Load(), writers*each)
	}
	if c := commits.Load(); c > writers*each/3 {
		t.Fatalf("%d commits for %d requests: groups are not being shared", c, writers*each)
	}
	if err := b.Submit(context.Background(), req{done: make(chan error, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after close: %v", err)
	}
}
