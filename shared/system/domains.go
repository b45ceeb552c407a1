package system

import (
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// A Domain plugs one of the seeds' systems into the product. Each lives in its own file
// of this package (domain_<name>.go) and registers itself from init, so domains are added
// without touching the wiring.
type Domain struct {
	Name string
	// Register adds the domain's event types and upcasters.
	Register func(*event.Registry)
	// Build creates the domain's repositories from s (s.Store, s.Docs, s.AggregateConfig)
	// and returns its projections (read models, sagas) and HTTP module.
	Build func(s *System) ([]projection.Projection, api.Module)
}

var domains []Domain

// RegisterDomain adds a domain; call it from init.
func RegisterDomain(d Domain) { domains = append(domains, d) }

// Registry returns the registry of every event type the product knows, with upcasters.
func Registry() *event.Registry {
	r := event.NewRegistry()
	bank.Register(r)
	for _, d := range domains {
		if d.Register != nil {
			d.Register(r)
		}
	}
	return r
}

// buildDomains runs every domain's Build before the projection engine and the handler
// are assembled.
func (s *System) buildDomains() {
	for _, d := range domains {
		if d.Build == nil {
			continue
		}
		ps, m := d.Build(s)
		s.extraProjections = append(s.extraProjections, ps...)
		if m != nil {
			s.extraModules = append(s.extraModules, m)
		}
	}
}

func (s *System) projections() []projection.Projection {
	return append([]projection.Projection{bank.Projection{}}, s.extraProjections...)
}

func (s *System) modules() []api.Module { return s.extraModules }
