// Package embedded registers the embedded file store (bbolt) as the "embedded" backend of
// package system. Only the local server imports it, so Lambda binaries stay small.
package embedded

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

func init() {
	system.RegisterBackend("embedded", func(_ context.Context, c system.Config, _ *slog.Logger) (system.Backend, error) {
		s, err := boltstore.Open(filepath.Join(c.DataDir, "ecmstore.db"))
		if err != nil {
			return system.Backend{}, err
		}
		return system.Backend{Store: s, Feed: s, Docs: s, Close: s.Close}, nil
	})
}
