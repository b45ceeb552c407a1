package pgstore_test

import (
	"encoding/json"
	"fmt"
	"sync"

	"context"
	"github.com/ecmstore/ecmstore/shared/event"
	"testing"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func TestMain(m *testing.M) { emulator.Main(m) }

func open(t testing.TB, dsn string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	s := open(t, emulator.Postgres(t))
	storetest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestDocs(t *testing.T) {
	s := open(t, emulator.Postgres(t))
	doctest.Run(t, func(*testing.T) docstore.Store { return s })
}

// Migrations run once: opening the same database again (as a second process would)
// changes nothing and keeps the data.
func TestMigrationsIdempotent(t *testing.T) {
	dsn := emulator.Postgres(t)
	a := open(t, dsn)
	b := open(t, dsn)
	var n int
	if err := b.Pool().QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema_migrations rows: %d %v", n, err)
	}
	_ = a
}

// PostgreSQL's jsonb refuses \u0000 in strings; such an append fails alone, and appends
// committed in the same group are unaffected.
func TestRejectedAppendFailsAlone(t *testing.T) {
	ctx := context.Background()
	s := open(t, emulator.Postgres(t))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := event.MustNew("E", map[string]string{"v": "ok"})
			if i == 3 {
				e.Payload = json.RawMessage(`{"v":"bad\u0000"}`)
			}
			_, errs[i] = s.Append(ctx, eventstore.Stream{Type: "T", ID: fmt.Sprint("s", i)}, 0, []event.Event{e})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 3) != (err != nil) {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}
