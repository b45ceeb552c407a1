package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate/repotest"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func TestMain(m *testing.M) { emulator.Main(m) }

func open(t testing.TB, dsn string, opts ...pgstore.Option) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitBlocked waits until n sessions of the store's database wait for a lock.
func waitBlocked(t *testing.T, s *pgstore.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock, want %d", waiting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConformance(t *testing.T) {
	s := open(t, emulator.Postgres(t))
	storetest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestRepository(t *testing.T) {
	s := open(t, emulator.Postgres(t))
	repotest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestDocs(t *testing.T) {
	s := open(t, emulator.Postgres(t))
	doctest.Run(t, func(*testing.T) docstore.Store { return s })
}

// Data the store's own checks accept but PostgreSQL refuses is the caller's error (400,
// not 500), and it fails alone: the appends that shared its group commit.
func TestAppendRejectedByPostgres(t *testing.T) {
	ctx := context.Background()
	s := open(t, emulator.Postgres(t))
	for _, tc := range []struct {
		name string
		bad  func(*event.Event)
	}{
		{"NUL escape in the payload", func(e *event.Event) { e.Payload = json.RawMessage(`{"v":"bad\u0000"}`) }},
		{"NUL in the metadata", func(e *event.Event) { e.Metadata.Actor = "a\x00b" }},
		{"event type not UTF-8", func(e *event.Event) { e.EventType = "E\xff" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, bad = 8, 3
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					e := event.MustNew("E", map[string]string{"v": "ok"})
					if i == bad {
						tc.bad(&e)
					}
					_, errs[i] = s.Append(ctx, eventstore.Stream{Type: "T", ID: fmt.Sprintf("rej-%d-%d", time.Now().UnixNano(), i)}, 0, []event.Event{e})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if i == bad && !errors.Is(err, eventstore.ErrInvalid) {
					t.Errorf("bad append: err = %v, want ErrInvalid", err)
				}
				if i != bad && err != nil {
					t.Errorf("append %d next to the bad one: %v", i, err)
				}
			}
		})
	}
}

// The unique (stream, version) constraint is the last line of defence against a writer
// that ignores the append lock: its violation is reported as a conflict, never a 500.
func TestUniqueViolationIsAConflict(t *testing.T) {
	ctx := context.Background()
	s := open(t, emulator.Postgres(t))
	for _, tc := range []struct {
		name        string
		commit      bool // the outside writer commits (else rolls back)
		wantCurrent int64
	}{
		{"outside writer commits", true, 1},
		{"outside writer rolls back", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := eventstore.Stream{Type: "T", ID: fmt.Sprintf("uv-%d", time.Now().UnixNano())}
			outside, err := s.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer outside.Rollback(ctx) //nolint:errcheck
			if _, err := outside.Exec(ctx, `INSERT INTO events (position, aggregate_type, aggregate_id, version, event_id,
				event_type, schema_version, ts, payload, metadata)
				VALUES (nextval('events_position'), $1, $2, 1, 'outside', 'Outside', 1, now(), '{}', '{}')`, st.Type, st.ID); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := s.Append(ctx, st, eventstore.NoStream, []event.Event{event.MustNew("Mine", 1)})
				done <- err
			}()
			waitBlocked(t, s, 1) // the append waits on the unique index for the outside writer
			if tc.commit {
				err = outside.Commit(ctx)
			} else {
				err = outside.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			err = <-done
			var ce *eventstore.ConflictError
			switch {
			case tc.commit && !errors.As(err, &ce):
				t.Fatalf("err = %v, want a *ConflictError", err)
			case tc.commit && ce.Current != tc.wantCurrent:
				t.Fatalf("conflict current = %d, want %d", ce.Current, tc.wantCurrent)
			case !tc.commit && err != nil:
				t.Fatalf("append after the outside writer rolled back: %v", err)
			}
		})
	}
}

// An unreachable server and an exhausted connection limit are throttling (503 with
// Retry-After at the edge), not internal errors.
func TestThrottled(t *testing.T) {
	ctx := context.Background()
	dsn := emulator.Postgres(t)
	admin := open(t, dsn)
	role := fmt.Sprintf("ecm_limited_%d", os.Getpid())
	// Superusers ignore connection limits; a role limited to none is refused with 53300.
	if _, err := admin.Pool().Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'pw' CONNECTION LIMIT 0`, role)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Pool().Exec(context.Background(), "DROP ROLE "+role) })
	limited, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	limited.User = url.UserPassword(role, "pw")

	for _, tc := range []struct{ name, dsn string }{
		{"nothing listening", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=5"},
		{"too many connections", limited.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pgstore.Open(ctx, tc.dsn)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			var te *eventstore.ThrottledError
			if !errors.Is(err, eventstore.ErrThrottled) || !errors.As(err, &te) || te.RetryAfter <= 0 {
				t.Fatalf("err = %v, want a ThrottledError with a RetryAfter hint", err)
			}
		})
	}
}

// Notify wakes a listener when another process appends, and its channel closes when the
// listener's context ends or the store closes.
func TestNotify(t *testing.T) {
	dsn := emulator.Postgres(t)
	writer := open(t, dsn)
	for _, tc := range []struct {
		name string
		end  func(cancel context.CancelFunc, s *pgstore.Store)
	}{
		{"context ends", func(cancel context.CancelFunc, _ *pgstore.Store) { cancel() }},
		{"store closes", func(_ context.CancelFunc, s *pgstore.Store) { _ = s.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listener := open(t, dsn)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := listener.Notify(ctx)
			select { // the first signal says the listener is up (and events may be waiting)
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("no signal when the listener connected")
			}
			for i := range 3 {
				st := eventstore.Stream{Type: "T", ID: fmt.Sprintf("n-%d-%d", time.Now().UnixNano(), i)}
				if _, err := writer.Append(context.Background(), st, 0, []event.Event{event.MustNew("E", i)}); err != nil {
					t.Fatal(err)
				}
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
					t.Fatalf("append %d not signalled", i)
				}
			}
			tc.end(cancel, listener)
			deadline := time.After(10 * time.Second)
			for {
				select {
				case _, ok := <-ch:
					if !ok {
						return
					}
				case <-deadline:
					t.Fatal("channel not closed")
				}
			}
		})
	}
}

// Eight writers spread over two store instances (two processes' connections and
// committers), with single- and multi-event appends and Any, while a projection-like
// reader follows the feed, woken by Notify with a timer as fallback, and commits its
// checkpoint in the document store: every event exactly once, in position order, and
// each stream's events in version order.
func TestEightWritersAndAProjection(t *testing.T) {
	ctx := context.Background()
	dsn := emulator.Postgres(t)
	stores := []*pgstore.Store{open(t, dsn), open(t, dsn)}
	reader := open(t, dsn)
	const writers, appends = 8, 40
	var wrote atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			st := eventstore.Stream{Type: "T", ID: fmt.Sprintf("w%d", w)}
			var v int64
			for i := range appends {
				n := 1 + i%3
				evs := make([]event.Event, n)
				for j := range evs {
					evs[j] = event.MustNew("E", map[string]int{"w": w, "i": i, "j": j})
				}
				expected := v
				if w%4 == 3 {
					expected = eventstore.Any
				}
				out, err := s.Append(ctx, st, expected, evs)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				v = out[n-1].Version
				wrote.Add(int64(n))
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	wake := reader.Notify(ctx)
	seen := map[string]bool{}
	perStream := map[string]int64{}
	var checkpoint uint64
	for done := false; ; {
		evs, err := reader.ReadAll(ctx, checkpoint, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Position <= checkpoint || seen[e.EventID] {
				t.Fatalf("position %d after %d (or delivered twice)", e.Position, checkpoint)
			}
			if e.Version != perStream[e.AggregateID]+1 {
				t.Fatalf("%s v%d after v%d: skipped or out of order", e.AggregateID, e.Version, perStream[e.AggregateID])
			}
			perStream[e.AggregateID] = e.Version
			seen[e.EventID], checkpoint = true, e.Position
		}
		if len(evs) > 0 {
			last := checkpoint
			if err := reader.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
				return tx.Put(ctx, "checkpoints", "test", map[string]uint64{"position": last})
			}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if done {
			break
		}
		select {
		case <-finished:
			done = true // one more read: the last appends committed before finished closed
		case <-wake:
		case <-time.After(50 * time.Millisecond):
		}
	}
	if int64(len(seen)) != wrote.Load() || len(seen) == 0 {
		t.Fatalf("reader saw %d events, writers wrote %d", len(seen), wrote.Load())
	}
	head, err := reader.Head(ctx)
	if err != nil || head != checkpoint {
		t.Fatalf("head %d, reader's last position %d (%v)", head, checkpoint, err)
	}
}
