package orderstest_test

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/orders/orderstest"
)

// noFeed hides the memory store's global feed, so the check also runs the way it does on
// DynamoDB (projections caught up per stream, no runner).
type noFeed struct{ eventstore.Backend }

func TestUpcasting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func() eventstore.Backend
	}{
		{"memory", func() eventstore.Backend { return memstore.New() }},
		{"memory without a feed", func() eventstore.Backend { return noFeed{memstore.New()} }},
	} {
		t.Run(tc.name, func(t *testing.T) { orderstest.RunUpcasting(t, tc.backend(), memstore.NewDocs()) })
	}
}
