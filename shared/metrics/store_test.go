package metrics

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
)

var acct = eventstore.Stream{Type: "BankAccount", ID: "a-1"}

func opened() []event.Event {
	return []event.Event{event.MustNew("AccountOpened", map[string]int{"initialDeposit": 1})}
}

// Appends from many goroutines are all counted, once each; the wrapper keeps the feed.
func TestCountingConcurrentAppends(t *testing.T) {
	m := New()
	store := Counting(memstore.New(), m)
	if _, ok := store.(eventstore.Feed); !ok {
		t.Fatal("the counting store hides the backend's feed")
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := eventstore.Stream{Type: "Order", ID: "o-" + string(rune('a'+g))}
			for v := range 10 {
				if _, err := store.Append(context.Background(), s, int64(v), opened()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if r := m.Snapshot(0); r.EventsAppended != 80 || r.ByAggregateType["Order"] != 80 {
		t.Fatalf("appended %+v", r)
	}
}

// failing is a backend whose operations fail as told: the fault-injection case.
type failing struct {
	eventstore.Backend
	appendErr, snapErr error
}

func (f *failing) Append(ctx context.Context, s eventstore.Stream, exp int64, evs []event.Event) ([]event.Event, error) {
	if f.appendErr != nil {
		return nil, f.appendErr
	}
	return f.Backend.Append(ctx, s, exp, evs)
}

func (f *failing) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if f.snapErr != nil {
		return f.snapErr
	}
	return f.Backend.SaveSnapshot(ctx, snap)
}

func TestCountingOutcomes(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("disk on fire")
	cases := []struct {
		name                         string
		appendErr, snapErr           error
		expected                     int64
		events, conflicts, snapshots int64
		snapshotBytes                int64
	}{
		{name: "appended", expected: 0, events: 1, snapshots: 1, snapshotBytes: 7},
		{name: "version conflict", expected: 5, conflicts: 1, snapshots: 1, snapshotBytes: 7},
		{name: "storage fails", appendErr: boom, snapErr: boom},
		{name: "conflict from below", appendErr: &eventstore.ConflictError{Stream: acct, Expected: 0, Current: 1}, conflicts: 1, snapErr: boom},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := New()
			store := Counting(&failing{Backend: memstore.New(), appendErr: c.appendErr, snapErr: c.snapErr}, m)
			_, err := store.Append(ctx, acct, c.expected, opened())
			if (err == nil) != (c.events > 0) {
				t.Fatalf("append: %v", err)
			}
			_ = store.SaveSnapshot(ctx, eventstore.Snapshot{Stream: acct, Version: 1, StateVersion: 1, State: []byte(`{"a":1}`)})
			if _, _, err := store.LoadFromSnapshot(ctx, acct, eventstore.Range{}); err != nil {
				t.Fatal(err)
			}
			r := m.Snapshot(0)
			var bytes int64
			for _, d := range r.SnapshotsPerDay {
				bytes += d.Bytes
			}
			if r.EventsAppended != c.events || r.Conflicts != c.conflicts || r.SnapshotsCreated != c.snapshots ||
				bytes != c.snapshotBytes || r.AggregateLoadMs.Count != 1 {
				t.Fatalf("got %+v", r)
			}
		})
	}
}
