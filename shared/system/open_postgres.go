package system

import (
	"context"
	"log/slog"

	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
)

func init() {
	openers["postgres"] = func(ctx context.Context, c Config, _ *slog.Logger) (Backend, error) {
		s, err := pgstore.Open(ctx, c.DatabaseURL)
		if err != nil {
			return Backend{}, err
		}
		// LISTEN/NOTIFY wakes the projection runner at once; its poll is the fallback.
		return Backend{Store: s, Feed: s, Docs: s, Wake: s.Notify, Close: s.Close}, nil
	}
}
