package migrate

import (
	"context"
	"fmt"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Checkpoints remember how far a copy got: the last source position whose events are all
// in the target. Losing one costs a re-read, never a duplicate.
type Checkpoints interface {
	Load(ctx context.Context) (uint64, error)
	Save(ctx context.Context, pos uint64) error
}

// DocCheckpoint keeps the checkpoint in the target's own document store, keyed by the
// source, so it travels with the target: a copy to another target starts from the
// beginning, a copy from another source too.
type DocCheckpoint struct {
	Docs   docstore.Store
	Source string // names the source, e.g. "embedded:/srv/data/ecmstore.db"
}

// CheckpointCollection is where DocCheckpoint keeps its documents.
const CheckpointCollection = "_migrate"

type checkpointDoc struct {
	Position uint64 `json:"position"`
}

func (c DocCheckpoint) Load(ctx context.Context) (uint64, error) {
	var d checkpointDoc
	_, err := c.Docs.Get(ctx, CheckpointCollection, c.Source, &d)
	return d.Position, err
}

func (c DocCheckpoint) Save(ctx context.Context, pos uint64) error {
	return c.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return tx.Put(ctx, CheckpointCollection, c.Source, checkpointDoc{Position: pos})
	})
}

// Progress is told, after every page, how many source events are done and how many there
// are in all (the head when the copy started; events appended since are copied too).
type Progress func(done, total uint64)

// Copy copies every event of the source's feed to the target, from the checkpoint on,
// and saves the checkpoint after every page. Run it again after any failure: it resumes.
func Copy(ctx context.Context, src eventstore.Feed, dst eventstore.Store, cp Checkpoints, progress Progress) (Stats, error) {
	w := &Writer{Target: dst}
	after, err := cp.Load(ctx)
	if err != nil {
		return w.Stats, fmt.Errorf("read checkpoint: %w", err)
	}
	head, err := src.Head(ctx)
	if err != nil {
		return w.Stats, fmt.Errorf("read source head: %w", err)
	}
	if progress != nil {
		progress(min(after, head), head)
	}
	for {
		page, err := src.ReadAll(ctx, after, eventstore.MaxPageSize)
		if err != nil {
			return w.Stats, fmt.Errorf("read source after %d: %w", after, err)
		}
		if len(page) == 0 {
			return w.Stats, nil
		}
		for _, e := range page {
			if err := w.Add(ctx, e); err != nil {
				return w.Stats, err
			}
		}
		if err := w.Flush(ctx); err != nil {
			return w.Stats, err
		}
		after = page[len(page)-1].Position
		if err := cp.Save(ctx, after); err != nil {
			return w.Stats, fmt.Errorf("save checkpoint %d: %w", after, err)
		}
		if progress != nil {
			progress(min(after, max(head, after)), max(head, after))
		}
	}
}

// ReadFeed calls fn for every event of a feed in position order.
func ReadFeed(ctx context.Context, src eventstore.Feed, fn func(event.Event) error) error {
	var after uint64
	for {
		page, err := src.ReadAll(ctx, after, eventstore.MaxPageSize)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		after = page[len(page)-1].Position
	}
}
