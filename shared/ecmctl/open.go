package ecmctl

import (
	"context"
	"log/slog"

	"github.com/ecmstore/ecmstore/shared/system"
	"github.com/ecmstore/ecmstore/shared/system/embedded"
	"github.com/ecmstore/ecmstore/shared/system/postgres"
)

// openSystem is the one place the CLI opens a backend. The CLI never starts the
// system's background loops: nothing projects, polls or purges while an operator
// command runs against the store.
func openSystem(ctx context.Context, c system.Config, log *slog.Logger) (*system.System, error) {
	c.StreamPoller, c.QueuePoller = false, false
	// The CLI opens every backend: the embedded and PostgreSQL ones are linked here.
	return system.Open(ctx, c, log, embedded.Backend(), postgres.Backend())
}
