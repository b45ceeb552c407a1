package system

import (
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// Registry returns the registry of every event type the product knows, with upcasters.
func Registry() *event.Registry {
	r := event.NewRegistry()
	bank.Register(r)
	return r
}

// domains builds the repositories, projections and HTTP modules of the domains beyond
// the bank (user context, orders, tasks…). It runs before the projection engine and the
// handler are built.
func (s *System) domains() {}

func (s *System) projections() []projection.Projection {
	return append([]projection.Projection{bank.Projection{}}, s.extraProjections...)
}

func (s *System) modules() []api.Module { return s.extraModules }
