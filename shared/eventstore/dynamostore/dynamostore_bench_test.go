package dynamostore_test

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

// BenchmarkStore runs the shared backend benchmarks (appends/s with one and eight
// writers, events/s replaying a 10 000-event stream) against DynamoDB Local: it measures
// this machine's emulator, not AWS, so it compares changes rather than sizes capacity.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) eventstore.Backend {
		db, events, _ := env(b)
		return dynamostore.New(db, events)
	})
}
