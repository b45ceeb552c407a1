package system_test

import (
	"context"
	"testing"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/projection/projectiontest"
	"github.com/ecmstore/ecmstore/shared/system"
)

// A rebuild cut at random points (seeded) and resumed by the next process, on every
// persistent backend: readers never see a half-built model, and the end equals a fresh
// replay. The system is opened, not started: the test is the only process delivering and
// rebuilding. On DynamoDB the appended events are indexed as the projector would.
func TestRebuildCutAtRandomPoints(t *testing.T) {
	for _, c := range []struct {
		name  string
		seeds int
		cfg   func(t *testing.T) system.Config
	}{
		{"embedded", 8, func(t *testing.T) system.Config {
			return system.Config{EventStore: "embedded", DataDir: t.TempDir()}
		}},
		{"postgres", 5, func(t *testing.T) system.Config {
			return system.Config{EventStore: "postgres", DatabaseURL: emulator.Postgres(t)}
		}},
		{"dynamodb", 3, dynamoConfig},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys, err := system.Open(context.Background(), c.cfg(t), quiet(), backends()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sys.Close() })
			env := projectiontest.Env{Store: sys.Store, Docs: sys.Docs.(*projection.Generations).Raw(), Seeds: c.seeds}
			if sys.AWS != nil {
				env.Index = func(ctx context.Context, evs []event.Event) error { return sys.AWS.Indexer.Index(ctx, evs) }
				env.Accounts, env.Events = 3, 4
			}
			projectiontest.RunRebuildCuts(t, env)
		})
	}
}
