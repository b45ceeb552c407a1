package system

import (
	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/usercontext"
)

func init() {
	RegisterDomain(Domain{
		Name:     "user-context",
		Register: usercontext.Register,
		Build: func(s *System) ([]projection.Projection, api.Module) {
			repo := aggregate.NewRepository(s.Store, usercontext.Definition, s.AggregateConfig)
			return []projection.Projection{usercontext.Projection{}}, usercontext.HTTP{Repo: repo, Docs: s.Docs}
		},
	})
}
