package projection

import (
	"context"
	"sync"
	"time"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Runner feeds projections in-process from a store's global feed, each from its own
// checkpoint. The checkpoint only bounds how much is re-read after a restart: the
// per-aggregate guards make re-reading harmless.
type Runner struct {
	Engine *Engine
	Feed   eventstore.Feed
	// Poll is the idle wait between feed reads; Wake() cuts it short.
	Poll      time.Duration
	BatchSize int

	wake chan struct{}
	once sync.Once
}

// NewRunner returns a runner polling every 200 ms unless woken.
func NewRunner(en *Engine, feed eventstore.Feed) *Runner {
	return &Runner{Engine: en, Feed: feed, Poll: 200 * time.Millisecond, BatchSize: 256}
}

func (r *Runner) init() { r.once.Do(func() { r.wake = make(chan struct{}, 1) }) }

// Wake tells the runner new events may be readable (called after appends, or on a
// PostgreSQL NOTIFY).
func (r *Runner) Wake() {
	r.init()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run processes the feed until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	r.init()
	for {
		progressed, err := r.Step(ctx)
		if err != nil && ctx.Err() == nil {
			r.Engine.Logger.Warn("projection runner", "err", err)
		}
		if progressed && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-time.After(r.Poll):
		}
	}
}

// Step reads one batch for every projection, then does one chunk of every rebuild job
// (started by this process or another, or cut short by a crash: jobs resume from their
// checkpoint); it reports whether anything made progress.
func (r *Runner) Step(ctx context.Context) (bool, error) {
	progressed := false
	for _, p := range r.Engine.projections {
		moved, err := r.stepOne(ctx, p)
		if err != nil {
			return progressed, err
		}
		progressed = progressed || moved
	}
	moved, err := r.Engine.StepRebuilds(ctx)
	return progressed || moved, err
}

func (r *Runner) stepOne(ctx context.Context, p Projection) (bool, error) {
	cp, err := r.Engine.Checkpoint(ctx, p.Name())
	if err != nil {
		return false, err
	}
	events, err := r.Feed.ReadAll(ctx, cp, r.BatchSize)
	if err != nil || len(events) == 0 {
		return false, err
	}
	if err := r.Engine.DeliverAll(ctx, p, events); err != nil {
		// Transient: the checkpoint stays before this batch; the guards make the retry
		// of what did apply harmless.
		return false, err
	}
	return true, r.Engine.saveCheckpoint(ctx, p.Name(), events[len(events)-1])
}

// CatchUpAll runs the runner until every projection has reached the head seen at the
// start (tests and start-up use it).
func (r *Runner) CatchUpAll(ctx context.Context) error {
	head, err := r.Feed.Head(ctx)
	if err != nil {
		return err
	}
	for {
		done := true
		for _, p := range r.Engine.projections {
			cp, err := r.Engine.Checkpoint(ctx, p.Name())
			if err != nil {
				return err
			}
			done = done && cp >= head
		}
		if done {
			return nil
		}
		if _, err := r.Step(ctx); err != nil {
			return err
		}
	}
}
