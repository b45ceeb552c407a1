// Package postgres is the PostgreSQL store as a backend of package system, passed
// explicitly by the mains that link it:
//
//	system.Open(ctx, cfg, log, postgres.Backend())
package postgres

import (
	"context"
	"log/slog"

	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Name is the backend's EVENT_STORE value.
const Name = "postgres"

// Open connects to c.DatabaseURL.
func Open(ctx context.Context, c system.Config, _ *slog.Logger) (system.Backend, error) {
	s, err := pgstore.Open(ctx, c.DatabaseURL)
	if err != nil {
		return system.Backend{}, err
	}
	// LISTEN/NOTIFY wakes the projection runner at once; its poll is the fallback.
	return system.Backend{Store: s, Feed: s, Docs: s, Wake: s.Notify, Close: s.Close}, nil
}

// Backend is the option that links the backend into system.Open.
func Backend() system.Option { return system.WithBackend(Name, Open) }
