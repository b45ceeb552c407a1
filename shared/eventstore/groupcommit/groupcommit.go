// Package groupcommit batches concurrent requests into shared commits: one goroutine
// takes a request, gathers every other one already waiting (and, when the previous group
// was shared, briefly waits for its writers to come back), and hands the whole group to
// one commit. The embedded and PostgreSQL stores use it so that concurrent appends share
// fsyncs instead of queueing for one each.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("groupcommit: closed")

// Batcher runs commit for groups of requests of type R, one group at a time.
type Batcher[R any] struct {
	// Wait bounds how long a group waits for the writers of the previous group (far less
	// than an fsync); MaxGroup bounds a group's size.
	Wait     time.Duration
	MaxGroup int

	commit   func([]R)
	reject   func(R)
	reqs     chan R
	stop     chan struct{}
	stopped  chan struct{}
	once     sync.Once
	lastSize int
	// mu makes Close wait for submissions in flight, so that no request is queued after
	// the loop has drained the queue for the last time.
	mu     sync.RWMutex
	closed bool
}

// New starts a batcher. commit must answer every request of the group; reject answers
// a request left waiting at Close.
func New[R any](commit func([]R), reject func(R)) *Batcher[R] {
	b := &Batcher[R]{Wait: 300 * time.Microsecond, MaxGroup: 512, commit: commit, reject: reject,
		reqs: make(chan R, 1024), stop: make(chan struct{}), stopped: make(chan struct{})}
	go b.loop()
	return b
}

// Submit queues a request; once queued it is committed (or rejected at Close), so the
// caller waits for its own answer however its context ends.
func (b *Batcher[R]) Submit(ctx context.Context, r R) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the batcher after the group in progress.
func (b *Batcher[R]) Close() {
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
		<-b.stopped
	})
}

func (b *Batcher[R]) loop() {
	defer close(b.stopped)
	for {
		var first R
		select {
		case first = <-b.reqs:
		case <-b.stop:
			for {
				select {
				case r := <-b.reqs:
					b.reject(r)
				default:
					return
				}
			}
		}
		group := []R{first}
		// Writers answered by the last commit are still waking up to send their next
		// request: when the last group was shared, let them join this one. A lone writer
		// never waits.
		if b.lastSize > 1 {
			timer := time.NewTimer(b.Wait)
		gather:
			for len(group) < b.lastSize {
				select {
				case r := <-b.reqs:
					group = append(group, r)
				case <-timer.C:
					break gather
				}
			}
			timer.Stop()
		}
	drain:
		for len(group) < b.MaxGroup {
			select {
			case r := <-b.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		b.lastSize = len(group)
		b.commit(group)
	}
}
