package api_test

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

func mustMemory(testing.TB) system.Backend {
	s := memstore.New()
	return system.Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}
}

func streamOf(id string) eventstore.Stream {
	return eventstore.Stream{Type: bank.AggregateType, ID: id}
}
func rangeAll() eventstore.Range { return eventstore.Range{} }
