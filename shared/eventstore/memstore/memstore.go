// Package memstore is the in-memory backend: the event store, its global feed, snapshots
// and a document store. It is for unit tests and demos; nothing survives the process.
package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Store is an in-memory event store with a global position. Safe for concurrent use.
type Store struct {
	mu        sync.RWMutex
	streams   map[string][]event.Event // stream key → events (index = version-1)
	log       []event.Event            // global order; position = index+1
	snapshots map[string][]eventstore.Snapshot
	ids       map[string]idRef // event id → where it is held
	now       func() time.Time
}

type idRef struct {
	stream  eventstore.Stream
	version int64
}

var (
	_ eventstore.Backend = (*Store)(nil)
	_ eventstore.Feed    = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		streams:   map[string][]event.Event{},
		snapshots: map[string][]eventstore.Snapshot{},
		ids:       map[string]idRef{},
		now:       event.Now,
	}
}

func (s *Store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if expected < eventstore.Any {
		return nil, eventstore.Invalid("expected version %d is neither a version nor a sentinel", expected)
	}
	if err := eventstore.CheckAppend(st, events); err != nil {
		return nil, err
	}
	events = eventstore.AssignIDs(events)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref, ok := s.ids[events[0].EventID]; ok {
		held := s.streams[ref.stream.Key()][ref.version-1:]
		return cloneOrErr(eventstore.Recognise(st, ref.stream, ref.version, held, events))
	}
	for _, e := range events[1:] {
		if ref, ok := s.ids[e.EventID]; ok {
			return nil, &eventstore.DuplicateEventError{EventID: e.EventID, Held: ref.stream, Version: ref.version}
		}
	}
	key := st.Key()
	cur := s.streams[key]
	current := int64(len(cur))
	if expected != eventstore.Any && expected != current {
		return nil, &eventstore.ConflictError{Stream: st, Expected: expected, Current: current}
	}
	out, err := eventstore.Prepare(st, current, events, s.now())
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Position = uint64(len(s.log)) + 1
		s.log = append(s.log, out[i])
		s.ids[out[i].EventID] = idRef{stream: st, version: out[i].Version}
		cur = append(cur, out[i])
	}
	s.streams[key] = cur
	return clone(out), nil
}

func cloneOrErr(evs []event.Event, err error) ([]event.Event, error) {
	if err != nil {
		return nil, err
	}
	return clone(evs), nil
}

func (s *Store) FindEvent(ctx context.Context, st eventstore.Stream, id string) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ref, ok := s.ids[id]
	switch {
	case !ok:
		return 0, false, nil
	case ref.stream != st:
		return 0, false, &eventstore.DuplicateEventError{EventID: id, Held: ref.stream, Version: ref.version}
	}
	return ref.version, true, nil
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return selectRange(s.streams[st.Key()], r), nil
}

func selectRange(evs []event.Event, r eventstore.Range) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Version < r.From || (r.To > 0 && e.Version > r.To) {
			continue
		}
		if !r.Until.IsZero() && e.Timestamp.After(r.Until) {
			break
		}
		out = append(out, e)
	}
	return clone(out)
}

func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	q, err := eventstore.StartPositionQuery(ctx, f)
	if err != nil {
		return eventstore.Page{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.log[min(q.After, uint64(len(s.log))):] {
		if !q.Take(e) {
			break
		}
	}
	page := q.Page()
	page.Events = clone(page.Events)
	return page, nil
}

func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if after >= uint64(len(s.log)) {
		return nil, nil
	}
	end := min(uint64(len(s.log)), after+uint64(eventstore.PageSize(limit)))
	return clone(s.log[after:end]), nil
}

func (s *Store) Head(ctx context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(len(s.log)), nil
}

func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.CheckSnapshot(snap); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := snap.Stream.Key()
	list := s.snapshots[key]
	i := sort.Search(len(list), func(i int) bool { return list[i].Version >= snap.Version })
	snap.State = append([]byte(nil), snap.State...)
	if i < len(list) && list[i].Version == snap.Version {
		list[i] = snap
	} else {
		list = append(list, eventstore.Snapshot{})
		copy(list[i+1:], list[i:])
		list[i] = snap
	}
	s.snapshots[key] = list
	return nil
}

func (s *Store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	s.mu.RLock()
	snap := PickSnapshot(s.snapshots[st.Key()], r)
	s.mu.RUnlock()
	return eventstore.LoadSnapshotThenEvents(ctx, s, snap, st, r)
}

// PickSnapshot returns the newest snapshot of a version-ordered list within r, or nil.
func PickSnapshot(list []eventstore.Snapshot, r eventstore.Range) *eventstore.Snapshot {
	for i := len(list) - 1; i >= 0; i-- {
		sn := list[i]
		if (r.To > 0 && sn.Version > r.To) || (!r.Until.IsZero() && sn.Timestamp.After(r.Until)) {
			continue
		}
		sn.State = append([]byte(nil), sn.State...)
		return &sn
	}
	return nil
}

func (s *Store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := st.Key()
	var keep []eventstore.Snapshot
	for _, sn := range s.snapshots[key] {
		if sn.Version >= below {
			keep = append(keep, sn)
		}
	}
	s.snapshots[key] = keep
	return nil
}

func clone(evs []event.Event) []event.Event {
	if evs == nil {
		return nil
	}
	out := make([]event.Event, len(evs))
	copy(out, evs)
	return out
}
