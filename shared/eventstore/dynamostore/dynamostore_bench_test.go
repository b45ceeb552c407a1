package dynamostore_test

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

// BenchmarkStore against DynamoDB Local measures this machine's emulator, not AWS: useful
// to compare changes, not as a capacity figure.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) eventstore.Backend {
		db, events, _ := tables(b)
		return dynamostore.New(db, events)
	})
}
