package faults

import (
	"context"
	"encoding/json"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Backend wraps an event-store backend so that every operation consults p's schedule.
// The result implements eventstore.Feed when b does (it is then the feed to give the
// system as well).
func Backend(b eventstore.Backend, p *Process) eventstore.Backend {
	s := &store{b: b, p: p}
	if f, ok := b.(eventstore.Feed); ok {
		return &storeFeed{store: s, f: f}
	}
	return s
}

type store struct {
	b eventstore.Backend
	p *Process
}

func (s *store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) (out []event.Event, err error) {
	err = s.p.Do(ctx, "events.Append", func(ctx context.Context) error {
		// Each attempt gets its own copy: a store may fill ids and timestamps in place.
		out, err = s.b.Append(ctx, st, expected, append([]event.Event(nil), events...))
		return err
	})
	if err != nil {
		out = nil
	}
	return out, err
}

func (s *store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) (out []event.Event, err error) {
	err = s.p.Do(ctx, "events.Load", func(ctx context.Context) error {
		out, err = s.b.Load(ctx, st, r)
		return err
	})
	if err != nil {
		out = nil
	}
	return out, err
}

func (s *store) Query(ctx context.Context, f eventstore.Filter) (out eventstore.Page, err error) {
	err = s.p.Do(ctx, "events.Query", func(ctx context.Context) error {
		out, err = s.b.Query(ctx, f)
		return err
	})
	if err != nil {
		out = eventstore.Page{}
	}
	return out, err
}

func (s *store) FindEvent(ctx context.Context, st eventstore.Stream, id string) (v int64, found bool, err error) {
	err = s.p.Do(ctx, "events.FindEvent", func(ctx context.Context) error {
		v, found, err = s.b.FindEvent(ctx, st, id)
		return err
	})
	if err != nil {
		v, found = 0, false
	}
	return v, found, err
}

func (s *store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	return s.p.Do(ctx, "snapshots.Save", func(ctx context.Context) error { return s.b.SaveSnapshot(ctx, snap) })
}

func (s *store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (snap *eventstore.Snapshot, out []event.Event, err error) {
	err = s.p.Do(ctx, "snapshots.Load", func(ctx context.Context) error {
		snap, out, err = s.b.LoadFromSnapshot(ctx, st, r)
		return err
	})
	if err != nil {
		snap, out = nil, nil
	}
	return snap, out, err
}

func (s *store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	return s.p.Do(ctx, "snapshots.Delete", func(ctx context.Context) error { return s.b.DeleteSnapshots(ctx, st, below) })
}

type storeFeed struct {
	*store
	f eventstore.Feed
}

func (s *storeFeed) ReadAll(ctx context.Context, after uint64, limit int) (out []event.Event, err error) {
	err = s.p.Do(ctx, "feed.ReadAll", func(ctx context.Context) error {
		out, err = s.f.ReadAll(ctx, after, limit)
		return err
	})
	if err != nil {
		out = nil
	}
	return out, err
}

func (s *storeFeed) Head(ctx context.Context) (h uint64, err error) {
	err = s.p.Do(ctx, "feed.Head", func(ctx context.Context) error {
		h, err = s.f.Head(ctx)
		return err
	})
	if err != nil {
		h = 0
	}
	return h, err
}

// Docs wraps a document store so that every operation consults p's schedule. An Update
// is one operation ("docs.Update"): a fault inside a transaction would only abort it,
// which ErrorBefore already covers; LostResponse commits it and then reports failure.
func Docs(d docstore.Store, p *Process) docstore.Store { return &docs{d: d, p: p} }

type docs struct {
	d docstore.Store
	p *Process
}

func (d *docs) Update(ctx context.Context, fn func(ctx context.Context, tx docstore.Tx) error) error {
	return d.p.Do(ctx, "docs.Update", func(ctx context.Context) error { return d.d.Update(ctx, fn) })
}

func (d *docs) Get(ctx context.Context, collection, key string, dst any) (ok bool, err error) {
	err = d.p.Do(ctx, "docs.Get", func(ctx context.Context) error {
		ok, err = d.d.Get(ctx, collection, key, dst)
		return err
	})
	if err != nil {
		ok = false
	}
	return ok, err
}

func (d *docs) List(ctx context.Context, collection string, fn func(key string, raw json.RawMessage) error) error {
	return d.p.Do(ctx, "docs.List", func(ctx context.Context) error { return d.d.List(ctx, collection, fn) })
}

func (d *docs) DeleteCollection(ctx context.Context, collection string) error {
	return d.p.Do(ctx, "docs.DeleteCollection", func(ctx context.Context) error { return d.d.DeleteCollection(ctx, collection) })
}

func (d *docs) ListPage(ctx context.Context, collection, after string, limit int) (out []docstore.Doc, next string, err error) {
	err = d.p.Do(ctx, "docs.ListPage", func(ctx context.Context) error {
		out, next, err = d.d.ListPage(ctx, collection, after, limit)
		return err
	})
	if err != nil {
		out, next = nil, ""
	}
	return out, next, err
}
