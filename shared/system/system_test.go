package system_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/system"
	"github.com/ecmstore/ecmstore/shared/system/embedded"
	"github.com/ecmstore/ecmstore/shared/system/postgres"
)

// backends links the backends that live in their own packages, as functions/local does.
func backends() []system.Option { return []system.Option{embedded.Backend(), postgres.Backend()} }

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
}

// start opens a system and runs its background loops for the test's duration.
func start(t *testing.T, c system.Config) *system.System {
	t.Helper()
	sys, err := system.Open(context.Background(), c, quiet(), backends()...)
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
	apitest.Run(t, func(*testing.T) http.Handler { return sys.Handler }, apitest.Validate(apitest.Contract(t)))
}

func TestAPIOnEmbedded(t *testing.T) {
	sys := start(t, system.Config{EventStore: "embedded", DataDir: t.TempDir(), SnapshotEvery: 3})
	apitest.Run(t, func(*testing.T) http.Handler { return sys.Handler }, apitest.Validate(apitest.Contract(t)))
}

// State survives a restart: the second system over the same directory answers the same,
// and its projections continue from their checkpoints.
func TestEmbeddedRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := system.Config{EventStore: "embedded", DataDir: dir, SnapshotEvery: 2}
	sys, err := system.Open(context.Background(), cfg, quiet(), backends()...)
	if err != nil {
		t.Fatal(err)
	}
	c := &apitest.Client{T: t, H: sys.Handler}
	c.Must(201, "POST", "/accounts/r1/open", map[string]any{"initialDeposit": 1000})
	c.Must(200, "POST", "/accounts/r1/deposit", map[string]any{"amount": 500})
	c.Must(200, "POST", "/accounts/r1/withdraw", map[string]any{"amount": 200})
	if err := sys.Runner.CatchUpAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}
	sys = start(t, cfg)
	c = &apitest.Client{T: t, H: sys.Handler}
	for _, path := range []string{"/accounts/r1", "/accounts/r1?consistent=true"} {
		r := c.Must(200, "GET", path, nil)
		if r.Num("balance") != "1300" || r.Num("version") != "3" {
			t.Fatalf("%s after restart: %s", path, r.Raw)
		}
	}
	r := c.Must(200, "POST", "/accounts/r1/deposit", map[string]any{"amount": 1})
	if r.Num("version") != "4" {
		t.Fatalf("append after restart: %s", r.Raw)
	}
}

func TestMain(m *testing.M) { emulator.Main(m) }
