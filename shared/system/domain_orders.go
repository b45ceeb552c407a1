package system

import (
	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/orders"
	"github.com/ecmstore/ecmstore/shared/projection"
)

func init() {
	RegisterDomain(Domain{
		Name:     "orders",
		Register: orders.Register,
		Build: func(s *System) ([]projection.Projection, api.Module) {
			ord := aggregate.NewRepository(s.Store, orders.Definition, s.AggregateConfig)
			prod := aggregate.NewRepository(s.Store, orders.ProductDefinition, s.AggregateConfig)
			log := aggregate.NewRepository(s.Store, orders.FulfilmentDefinition, s.AggregateConfig)
			saga := orders.Saga{Orders: ord, Products: prod, Accounts: s.Accounts, Fulfilment: log}
			return []projection.Projection{orders.OrderProjection{}, orders.ProductProjection{}, orders.CustomerProjection{}, saga},
				orders.HTTP{Orders: ord, Products: prod, Docs: s.Docs}
		},
	})
}
