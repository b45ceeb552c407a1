// Package api is the public HTTP contract (openapi.yaml at the repository root) as one
// net/http handler. The local server serves it directly; functions/api serves it to API
// Gateway (HTTP API, payload v2) through an adapter, so both run the same code.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/metrics"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// Deps is everything the handler needs; package system wires it.
type Deps struct {
	Store   eventstore.Backend // with upcasters applied
	Feed    eventstore.Feed    // nil where the backend has no global order
	Docs    docstore.Store
	Engine  *projection.Engine
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Actor returns the authenticated principal of a request. The local server (no
	// authorizer) reads X-Actor; the Lambda reads the JWT subject from API Gateway.
	Actor func(*http.Request) string
	// Access decides who may do what (access.go); the zero value trusts every caller.
	Access Access
	// AfterAppend is called after every successful command (wakes in-process projections).
	AfterAppend func()
	// Modules add the domains' routes, in this order, after the operational ones.
	Modules []Module
	// Now is the clock (tests).
	Now func() time.Time
	// IdempotencyLease is how long a keyed command's pending record stays claimed by the
	// process running it without a renewal (default DefaultIdempotencyLease): after a
	// crash, how long retries of its key answer 409 request_in_progress. The running
	// process renews the claim every IdempotencyRenew (default a third of the lease; it
	// must stay well below the lease, or a live request's claim lapses between renewals).
	IdempotencyLease time.Duration
	IdempotencyRenew time.Duration
}

// Server is the handler. Create it with New.
type Server struct {
	Deps
	mux      *http.ServeMux
	handler  http.Handler
	patterns []string
	running  runningKeys // idempotency keys this server is running (idempotency.go)
}

// MaxBodyBytes bounds request bodies (413 beyond).
const MaxBodyBytes = 256 << 10

// New builds the handler.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	if d.Actor == nil {
		d.Actor = HeaderActor
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Access.Principal == nil {
		actor := d.Actor
		d.Access.Principal = func(r *http.Request) Principal { return Principal{Subject: actor(r), Admin: true} }
	} else {
		// The events' actor is the principal's subject, whatever Actor said.
		principal := d.Access.Principal
		d.Actor = func(r *http.Request) string { return principal(r).Subject }
	}
	s := &Server{Deps: d, mux: http.NewServeMux()}
	s.routes()
	for _, m := range d.Modules {
		if m.Routes != nil {
			m.Routes(s)
		}
	}
	s.Handle("/", func(w http.ResponseWriter, r *http.Request) error {
		return errNotFound("no route for %s %s", r.Method, r.URL.Path)
	})
	s.handler = s.middleware(s.mux)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// HandlerFunc is a handler that returns its error for the central mapping.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// Handle registers a route (Go 1.22 pattern syntax, e.g. "POST /accounts/{id}/open").
func (s *Server) Handle(pattern string, h HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// Patterns returns every pattern registered with Handle, in registration order, the
// catch-all "/" (404 not_found) included: the served routes, as the contract test
// compares them with openapi.yaml.
func (s *Server) Patterns() []string { return append([]string(nil), s.patterns...) }

// HeaderActor takes the actor from X-Actor, "anonymous" without one: for the local
// server only, which has no authorizer. One the store cannot keep as given (too long, not
// UTF-8) is refused with 400 by the store's field check, not silently replaced: the
// client would otherwise find its events under another actor.
func HeaderActor(r *http.Request) string {
	if a := r.Header.Get("X-Actor"); a != "" {
		return a
	}
	return "anonymous"
}

func (s *Server) routes() {
	s.Handle("GET /healthz", s.health)
	s.Handle("GET /events", s.queryEvents)
	s.Handle("GET /projections", s.projections)
	s.Handle("GET /projections/{name}", s.projection)
	s.Handle("POST /projections/{name}/rebuild", s.rebuild)
	s.Handle("GET /dead-letters", s.deadLetters)
	s.Handle("POST /dead-letters/redrive", s.redrive)
	s.Handle("GET /metrics", s.prometheus)
	s.Handle("GET /metrics.json", s.metrics)
	s.opsPageRoutes()
}

type ctxKey int

const (
	correlationKey ctxKey = iota
	idempotencyKey
)

// CorrelationID returns the request's correlation id.
func CorrelationID(ctx context.Context) string {
	v, _ := ctx.Value(correlationKey).(string)
	return v
}
