package memstore_test

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate/repotest"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Backend { return memstore.New() })
}

func TestRepository(t *testing.T) {
	repotest.Run(t, func(t *testing.T) eventstore.Backend { return memstore.New() })
}

func TestDocs(t *testing.T) {
	doctest.Run(t, func(t *testing.T) docstore.Store { return memstore.NewDocs() })
}
