package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// A slow transaction holds a position (it has inserted an event, under the append lock,
// but not committed) while another append comes in. A reader must not see the later event
// before the earlier one commits, and then sees both, in position order, exactly once.
func TestReaderNeverSkipsALateCommit(t *testing.T) {
	ctx := context.Background()
	s := open(t, emulator.Postgres(t))
	head, _ := s.Head(ctx)

	slow, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Exec(ctx, "SELECT pg_advisory_xact_lock(7201550002)"); err != nil {
		t.Fatal(err)
	}
	var slowPos int64
	if err := slow.QueryRow(ctx, "SELECT nextval('events_position')").Scan(&slowPos); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Exec(ctx, `INSERT INTO events (position, aggregate_type, aggregate_id, version, event_id, event_type,
		schema_version, ts, payload, metadata) VALUES ($1, 'T', 'slow', 1, 'slow-1', 'Slow', 1, now(), '{}', '{}')`, slowPos); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, eventstore.Stream{Type: "T", ID: "fast"}, 0, []event.Event{event.MustNew("Fast", 1)})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the fast append is now waiting for the slow one
	if evs, _ := s.ReadAll(ctx, head, 10); len(evs) != 0 {
		t.Fatalf("reader saw %d events while the earlier position was uncommitted", len(evs))
	}
	select {
	case err := <-done:
		t.Fatalf("the later append committed before the earlier one: %v", err)
	default:
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	evs, err := s.ReadAll(ctx, head, 10)
	if err != nil || len(evs) != 2 || evs[0].EventType != "Slow" || evs[1].EventType != "Fast" || evs[0].Position >= evs[1].Position {
		t.Fatalf("feed after both commits: %+v %v", evs, err)
	}
}

// Eight writers spread over two store instances (two processes' worth of connections
// and committers) and a reader following the feed concurrently: every event exactly
// once, in position order.
func TestTwoProcessesEightWritersOneReader(t *testing.T) {
	ctx := context.Background()
	dsn := emulator.Postgres(t)
	stores := []eventstore.Store{open(t, dsn), open(t, dsn)}
	reader := open(t, dsn)
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := eventstore.Stream{Type: "T", ID: fmt.Sprintf("w%d", w)}
			for i := range each {
				if _, err := stores[w%2].Append(ctx, st, int64(i), []event.Event{event.MustNew("E", i)}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	seen := map[string]bool{}
	perStream := map[string]int64{}
	var last uint64
	for done := false; ; {
		select {
		case <-finished:
			done = true
		default:
		}
		evs, err := reader.ReadAll(ctx, last, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Position <= last || seen[e.EventID] {
				t.Fatalf("position %d after %d (or repeated)", e.Position, last)
			}
			if e.Version != perStream[e.AggregateID]+1 {
				t.Fatalf("%s v%d after v%d: skipped or out of order", e.AggregateID, e.Version, perStream[e.AggregateID])
			}
			perStream[e.AggregateID] = e.Version
			seen[e.EventID], last = true, e.Position
		}
		if done && len(evs) == 0 {
			break
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("reader saw %d events, want %d", len(seen), writers*each)
	}
}
