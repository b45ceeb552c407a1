package system_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/system"
)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
}

// start opens a system and runs its background loops for the test's duration.
func start(t *testing.T, c system.Config) *system.System {
	t.Helper()
	sys, err := system.Open(context.Background(), c, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := sys.Start(ctx)
	t.Cleanup(func() { cancel(); <-done; _ = sys.Close() })
	return sys
}

func TestAPIOnMemory(t *testing.T) {
	sys := start(t, system.Config{EventStore: "memory", SnapshotEvery: 3})
	apitest.Run(t, func(*testing.T) http.Handler { return sys.Handler })
}
