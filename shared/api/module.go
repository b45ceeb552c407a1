package api

import (
	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// Env is what a domain module is built from. It lives here, below the domains, so that
// each domain can describe itself (events, projections, routes) without knowing how the
// product is assembled, and package system can assemble them without the domains
// importing it.
type Env struct {
	Store eventstore.Backend // with upcasters applied
	Docs  docstore.Store
	// Aggregate is what every repository is built with. Its Registry is filled with the
	// events of every module (Module.Events) before anything is served or projected.
	Aggregate aggregate.Config
}

// Module is one domain as the product runs it: its event types (with upcasters), its
// projections (read models and reactors) and its HTTP routes. The product's order of
// modules is the order of their projections and routes.
type Module struct {
	Name        string
	Events      func(*event.Registry)
	Projections []projection.Projection
	Routes      func(*Server)
}
