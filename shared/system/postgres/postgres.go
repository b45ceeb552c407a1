// Package postgres registers the PostgreSQL backend as "postgres" in package system.
package postgres

import (
	"context"
	"log/slog"

	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

func init() {
	system.RegisterBackend("postgres", func(ctx context.Context, c system.Config, _ *slog.Logger) (system.Backend, error) {
		s, err := pgstore.Open(ctx, c.DatabaseURL)
		if err != nil {
			return system.Backend{}, err
		}
		// LISTEN/NOTIFY wakes the projection runner at once; its poll is the fallback.
		return system.Backend{Store: s, Feed: s, Docs: s, Wake: s.Notify, Close: s.Close}, nil
	})
}
