// Package embedded is the embedded file store (bbolt) as a backend of package system.
// Only the local server links it, passing it explicitly, so Lambda binaries stay small:
//
//	system.Open(ctx, cfg, log, embedded.Backend())
package embedded

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Name is the backend's EVENT_STORE value.
const Name = "embedded"

// Open opens the store file ecmstore.db under c.DataDir.
func Open(_ context.Context, c system.Config, _ *slog.Logger) (system.Backend, error) {
	s, err := boltstore.Open(filepath.Join(c.DataDir, "ecmstore.db"))
	if err != nil {
		return system.Backend{}, err
	}
	return system.Backend{Store: s, Feed: s, Docs: s, Close: s.Close}, nil
}

// Backend is the option that links the backend into system.Open.
func Backend() system.Option { return system.WithBackend(Name, Open) }
