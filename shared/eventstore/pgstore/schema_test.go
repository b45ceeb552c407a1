package pgstore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Migrations apply once each, whoever opens the database and however many open it at
// once, and an older database is brought up to date without losing data.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dsn string) // the database's state before the opens
		opens   int                            // concurrent Opens
		check   func(t *testing.T, s *Store)
	}{
		{
			name:  "reopen keeps data",
			opens: 1,
			prepare: func(t *testing.T, dsn string) {
				s := openStore(t, dsn)
				if _, err := s.Append(ctx, eventstore.Stream{Type: "T", ID: "kept"}, 0, []event.Event{event.MustNew("E", 1)}); err != nil {
					t.Fatal(err)
				}
				_ = s.Close()
			},
			check: func(t *testing.T, s *Store) {
				if evs, err := s.Load(ctx, eventstore.Stream{Type: "T", ID: "kept"}, eventstore.Range{}); err != nil || len(evs) != 1 {
					t.Fatalf("after reopening: %d events, %v", len(evs), err)
				}
			},
		},
		{name: "processes start together", opens: 6},
		{
			name:  "upgrade from version 1",
			opens: 2,
			prepare: func(t *testing.T, dsn string) {
				conn, err := pgx.Connect(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				for _, q := range []string{
					"CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
					migrations[0],
					"INSERT INTO schema_migrations (version) VALUES (1)",
					`INSERT INTO documents (collection, key, doc) VALUES ('c', 'old', '{"n":1}')`,
				} {
					if _, err := conn.Exec(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, s *Store) {
				var rev int64
				if err := s.pool.QueryRow(ctx, "SELECT rev FROM documents WHERE collection = 'c' AND key = 'old'").Scan(&rev); err != nil || rev != 1 {
					t.Fatalf("old document's rev = %d (%v), want 1", rev, err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := emulator.Postgres(t)
			if tc.prepare != nil {
				tc.prepare(t, dsn)
			}
			stores := make([]*Store, tc.opens)
			errs := make([]error, tc.opens)
			var wg sync.WaitGroup
			for i := range tc.opens {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stores[i], errs[i] = Open(ctx, dsn)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("open %d: %v", i, err)
				}
				t.Cleanup(func() { _ = stores[i].Close() })
			}
			rows, err := stores[0].pool.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
			if err != nil {
				t.Fatal(err)
			}
			versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
			if err != nil {
				t.Fatal(err)
			}
			var want []int
			for i := range migrations {
				want = append(want, i+1)
			}
			if fmt.Sprint(versions) != fmt.Sprint(want) {
				t.Fatalf("schema_migrations holds %v, want %v", versions, want)
			}
			if tc.check != nil {
				tc.check(t, stores[0])
			}
		})
	}
}
