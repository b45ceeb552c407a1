package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func openStore(t testing.TB, dsn string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// lockWaiters counts the sessions of the store's database waiting for a lock.
func lockWaiters(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitLockWaiters(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); lockWaiters(t, s) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d sessions wait for a lock", n)
		}
	}
}

// rawInsert writes one event the way a plain bigserial design would: position from the
// sequence, no append lock.
func rawInsert(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `INSERT INTO events (position, aggregate_type, aggregate_id, version, event_id, event_type,
		schema_version, ts, payload, metadata) VALUES (nextval('events_position'), 'T', $1, 1, $1, 'Raw', 1, now(), '{}', '{}')`, id)
	return err
}

// Transaction A draws its position and inserts, then stays uncommitted; B, from another
// process, appends after it. A feed reader polls while A is open and again after A
// commits. With the store's append pipeline B cannot commit ahead of A, so the reader
// sees A then B, each once. The control case writes the same two transactions the
// bigserial way: B commits first, the reader's checkpoint passes A's position, and A is
// never delivered: the anomaly the design exists to prevent, reproduced by this harness.
func TestLateCommitIsNeverSkipped(t *testing.T) {
	const gate = 7201550099
	for _, tc := range []struct {
		name string
		// holdA leaves A inserted and uncommitted; release commits it.
		holdA   func(t *testing.T, a *Store) (release func())
		appendB func(t *testing.T, b *Store) <-chan error
		// bFirst: B is expected to commit while A is open (the control).
		bFirst, wantSkip bool
	}{
		{
			name: "append pipeline under the advisory lock",
			holdA: func(t *testing.T, a *Store) func() {
				ctx := context.Background()
				conn, err := pgx.ConnectConfig(ctx, a.pool.Config().ConnConfig.Copy())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close(context.Background()) }) // frees A if the test fails early
				if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", gate); err != nil {
					t.Fatal(err)
				}
				a.gate = gate // A's group now waits for the gate after its inserts, before its commit
				done := make(chan error, 1)
				go func() {
					_, err := a.Append(ctx, eventstore.Stream{Type: "T", ID: "A"}, 0, []event.Event{event.MustNew("A", 1)})
					done <- err
				}()
				waitLockWaiters(t, a, 1)
				var drawn int64
				if err := conn.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_position").Scan(&drawn); err != nil || drawn == 0 {
					t.Fatalf("A has not drawn a position: %d %v", drawn, err)
				}
				return func() {
					if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", gate); err != nil {
						t.Fatal(err)
					}
					if err := <-done; err != nil {
						t.Fatalf("append A: %v", err)
					}
					_ = conn.Close(ctx)
				}
			},
			appendB: func(t *testing.T, b *Store) <-chan error {
				done := make(chan error, 1)
				go func() {
					_, err := b.Append(context.Background(), eventstore.Stream{Type: "T", ID: "B"}, 0, []event.Event{event.MustNew("B", 1)})
					done <- err
				}()
				// Wait until B queues behind A (A on the gate, B on the append lock), or
				// commits, which the harness then reports.
				for deadline := time.Now().Add(20 * time.Second); lockWaiters(t, b) < 2; {
					select {
					case err := <-done:
						out := make(chan error, 1)
						out <- err
						return out
					case <-time.After(5 * time.Millisecond):
					}
					if time.Now().After(deadline) {
						t.Fatal("B neither waits for the append lock nor commits")
					}
				}
				return done
			},
		},
		{
			name: "control: a bare sequence skips the late commit",
			holdA: func(t *testing.T, a *Store) func() {
				ctx := context.Background()
				tx, err := a.pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := rawInsert(ctx, tx, "A"); err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := tx.Commit(ctx); err != nil {
						t.Fatal(err)
					}
				}
			},
			appendB: func(t *testing.T, b *Store) <-chan error {
				done := make(chan error, 1)
				done <- pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
					return rawInsert(context.Background(), tx, "B")
				})
				return done
			},
			bFirst: true, wantSkip: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := emulator.Postgres(t)
			a, b, reader := openStore(t, dsn), openStore(t, dsn), openStore(t, dsn)
			checkpoint, err := reader.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var delivered []event.Event
			read := func() {
				evs, err := reader.ReadAll(ctx, checkpoint, 10)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range evs {
					if e.Position <= checkpoint {
						t.Fatalf("position %d delivered after checkpoint %d", e.Position, checkpoint)
					}
					checkpoint = e.Position
				}
				delivered = append(delivered, evs...)
			}

			release := tc.holdA(t, a)
			doneB := tc.appendB(t, b)
			if !tc.bFirst {
				select {
				case err := <-doneB:
					t.Fatalf("B committed while A, holding a lower position, was open: %v", err)
				case <-time.After(200 * time.Millisecond):
				}
			}
			read() // while A is open
			if !tc.bFirst && len(delivered) != 0 {
				t.Fatalf("reader saw %d events while A was uncommitted", len(delivered))
			}
			release()
			if err := <-doneB; err != nil {
				t.Fatalf("B: %v", err)
			}
			read()
			read()

			var ids []string
			for _, e := range delivered {
				ids = append(ids, e.AggregateID)
			}
			want := "[A B]"
			if tc.wantSkip {
				want = "[B]"
			}
			if got := fmt.Sprint(ids); got != want {
				t.Fatalf("reader delivered %s, want %s", got, want)
			}
			var stored int
			if err := reader.pool.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&stored); err != nil || stored != 2 {
				t.Fatalf("%d events stored (%v), want 2", stored, err)
			}
		})
	}
}
