package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) eventstore.Backend { return open(b, filepath.Join(b.TempDir(), "bench.db")) })
}
