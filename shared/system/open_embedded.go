package system

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
)

func init() {
	openers["embedded"] = func(_ context.Context, c Config, _ *slog.Logger) (Backend, error) {
		s, err := boltstore.Open(filepath.Join(c.DataDir, "ecmstore.db"))
		if err != nil {
			return Backend{}, err
		}
		return Backend{Store: s, Feed: s, Docs: s, Close: s.Close}, nil
	}
}
