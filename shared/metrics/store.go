package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Counting wraps a backend so that every append through it is counted, whoever makes it
// (HTTP commands, the saga, the redrive, tools), with its conflicts, the aggregate loads'
// durations and the snapshots written with their size. The result implements
// eventstore.Feed when b does. An append the store recognises as one it already holds (a
// retry by event id) writes nothing but answers as a success, and is counted again: the
// figure is appends acknowledged.
func Counting(b eventstore.Backend, m *Metrics) eventstore.Backend {
	c := &counting{Backend: b, m: m}
	if f, ok := b.(eventstore.Feed); ok {
		return &countingFeed{counting: c, Feed: f}
	}
	return c
}

type counting struct {
	eventstore.Backend
	m *Metrics
}

type countingFeed struct {
	*counting
	eventstore.Feed
}

func (c *counting) Append(ctx context.Context, s eventstore.Stream, expected int64, evs []event.Event) ([]event.Event, error) {
	out, err := c.Backend.Append(ctx, s, expected, evs)
	switch {
	case err == nil:
		c.m.EventsAppended(s.Type, len(out))
	case errors.Is(err, eventstore.ErrConflict):
		c.m.Conflict()
	}
	return out, err
}

func (c *counting) LoadFromSnapshot(ctx context.Context, s eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	start := time.Now()
	snap, evs, err := c.Backend.LoadFromSnapshot(ctx, s, r)
	if err == nil {
		c.m.AggregateLoaded(time.Since(start))
	}
	return snap, evs, err
}

func (c *counting) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	err := c.Backend.SaveSnapshot(ctx, snap)
	if err == nil {
		c.m.SnapshotSaved(len(snap.State))
	}
	return err
}
