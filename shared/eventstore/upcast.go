package eventstore

import (
	"context"

	"github.com/ecmstore/ecmstore/shared/event"
)

// Upcasting wraps a backend so that every event read through it (Load, Query, ReadAll,
// LoadFromSnapshot) comes out at its current schema version. Stored events are never
// rewritten.
type Upcasting struct {
	Backend
	Registry *event.Registry
}

// WithUpcasters returns b with the registry's upcasters applied on every read path. The
// result also implements Feed when b does.
func WithUpcasters(b Backend, r *event.Registry) Backend {
	u := &Upcasting{Backend: b, Registry: r}
	if f, ok := b.(Feed); ok {
		return &upcastingFeed{Upcasting: u, feed: f}
	}
	return u
}

func (u *Upcasting) Append(ctx context.Context, s Stream, expected int64, events []event.Event) ([]event.Event, error) {
	out, err := u.Backend.Append(ctx, s, expected, events)
	if err != nil {
		return nil, err
	}
	return out, u.Registry.UpcastAll(out)
}

func (u *Upcasting) Load(ctx context.Context, s Stream, r Range) ([]event.Event, error) {
	out, err := u.Backend.Load(ctx, s, r)
	if err != nil {
		return nil, err
	}
	return out, u.Registry.UpcastAll(out)
}

func (u *Upcasting) Query(ctx context.Context, f Filter) (Page, error) {
	p, err := u.Backend.Query(ctx, f)
	if err != nil {
		return p, err
	}
	return p, u.Registry.UpcastAll(p.Events)
}

func (u *Upcasting) LoadFromSnapshot(ctx context.Context, s Stream, r Range) (*Snapshot, []event.Event, error) {
	snap, out, err := u.Backend.LoadFromSnapshot(ctx, s, r)
	if err != nil {
		return nil, nil, err
	}
	return snap, out, u.Registry.UpcastAll(out)
}

type upcastingFeed struct {
	*Upcasting
	feed Feed
}

func (u *upcastingFeed) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	out, err := u.feed.ReadAll(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	return out, u.Registry.UpcastAll(out)
}

func (u *upcastingFeed) Head(ctx context.Context) (uint64, error) { return u.feed.Head(ctx) }

// LoadSnapshotThenEvents is LoadFromSnapshot for backends that keep snapshots apart from
// events: the newest matching snapshot, then the events after it.
func LoadSnapshotThenEvents(ctx context.Context, st Store, snap *Snapshot, s Stream, r Range) (*Snapshot, []event.Event, error) {
	rr := r
	if snap != nil && snap.Version >= rr.From {
		rr.From = snap.Version + 1
	}
	events, err := st.Load(ctx, s, rr)
	if err != nil {
		return nil, nil, err
	}
	return snap, events, nil
}
