package system

import (
	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/tasks"
)

func init() {
	RegisterDomain(Domain{
		Name:     "tasks",
		Register: tasks.Register,
		Build: func(s *System) ([]projection.Projection, api.Module) {
			repo := aggregate.NewRepository(s.Store, tasks.Definition, s.AggregateConfig)
			return []projection.Projection{tasks.TaskProjection{}, tasks.AnalyticsProjection{}}, tasks.HTTP{Repo: repo, Docs: s.Docs}
		},
	})
}
