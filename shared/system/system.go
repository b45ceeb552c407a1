package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/metrics"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// System is an assembled instance of the product.
type System struct {
	Config   Config
	Logger   *slog.Logger
	Registry *event.Registry
	Store    eventstore.Backend // upcasting view of the backend
	Raw      eventstore.Backend // the backend as stored (tools and tests that write old schemas)
	Feed     eventstore.Feed    // nil on DynamoDB
	Docs     docstore.Store
	Engine   *projection.Engine
	Runner   *projection.Runner // nil on DynamoDB (the stream feeds the projector)
	Metrics  *metrics.Metrics
	// Modules are the domains assembled, in the order of their projections and routes.
	Modules []api.Module
	Handler *api.Server
	// AWS holds the clients on the DynamoDB backend (nil elsewhere).
	AWS *AWSClients
	// AggregateConfig is what every repository is built with (snapshots, retries).
	AggregateConfig aggregate.Config

	wake func()
	// Background loops Start runs (the feed runner, the stream poller…).
	loops   []func(context.Context)
	closers []func() error
}

// Backend is what an opened backend contributes.
type Backend struct {
	Store eventstore.Backend
	Feed  eventstore.Feed // optional
	Docs  docstore.Store
	Sink  projection.Sink // optional dead-letter sink
	// Wake, when set, returns a channel signalled when new events may be readable
	// (PostgreSQL LISTEN/NOTIFY).
	Wake  func(context.Context) <-chan struct{}
	Close func() error
	// Loops returns background loops that need the assembled system (the DynamoDB
	// stream poller feeding the engine).
	Loops func(*System) []func(context.Context)
	// AWS is set on the DynamoDB backend: the clients the Lambda mains need.
	AWS *AWSClients
	// Dispatcher, when set, runs rebuild jobs elsewhere (the rebuild function's queue).
	Dispatcher projection.Dispatcher
}

// Opener opens a backend by name.
type Opener func(ctx context.Context, c Config, log *slog.Logger) (Backend, error)

// Option changes what Open and Assemble build. Without options they build the standard
// product: the four domains (Domains), the memory and DynamoDB backends, the actor from
// X-Actor.
type Option func(*options)

type options struct {
	backends map[string]Opener
	domains  func(api.Env) []api.Module
	actor    func(*http.Request) string
	access   api.Access
}

func newOptions(opts []Option) options {
	o := options{
		backends: map[string]Opener{"memory": openMemory, "dynamodb": openDynamoDB},
		domains:  Domains,
		actor:    api.HeaderActor,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithBackend makes a backend available to Open under name (Config.EventStore). The
// embedded and PostgreSQL backends live in their own packages (shared/system/embedded,
// shared/system/postgres) and are passed by the mains that use them, so that binaries
// that do not (the Lambdas) do not link them.
func WithBackend(name string, open Opener) Option {
	return func(o *options) { o.backends[name] = open }
}

// WithDomains replaces the standard domains: build returns the modules over env, in the
// order of their projections and routes.
func WithDomains(build func(env api.Env) []api.Module) Option {
	return func(o *options) { o.domains = build }
}

// WithActor chooses how the handler finds the actor of a request: the Lambda behind API
// Gateway takes the JWT subject (api.JWTActor); the local server, which has no
// authorizer, the X-Actor header (api.HeaderActor, the default).
func WithActor(actor func(*http.Request) string) Option {
	return func(o *options) { o.actor = actor }
}

// WithAccess chooses who may do what (api.Access): the Lambda's JWT claims, the local
// server's loopback trust or admin token. Without it every caller is trusted as an admin,
// which only the loopback-bound local server and tests may do.
func WithAccess(a api.Access) Option {
	return func(o *options) { o.access = a }
}

func openMemory(context.Context, Config, *slog.Logger) (Backend, error) {
	s := memstore.New()
	return Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}, nil
}

// Open opens the backend c.EventStore names and assembles the system around it.
func Open(ctx context.Context, c Config, log *slog.Logger, opts ...Option) (*System, error) {
	if log == nil {
		log = slog.Default()
	}
	o := newOptions(opts)
	open, ok := o.backends[c.EventStore]
	if !ok {
		return nil, fmt.Errorf("event store %q is not linked into this binary", c.EventStore)
	}
	b, err := open(ctx, c, log)
	if err != nil {
		return nil, fmt.Errorf("open %s event store: %w", c.EventStore, err)
	}
	return assemble(c, b, log, o), nil
}

// Assemble wires a system around an opened backend.
func Assemble(c Config, b Backend, log *slog.Logger, opts ...Option) *System {
	if log == nil {
		log = slog.Default()
	}
	return assemble(c, b, log, newOptions(opts))
}

func assemble(c Config, b Backend, log *slog.Logger, o options) *System {
	// Readers get the generation-resolving view: a rebuild's swap is atomic for them.
	s := &System{Config: c, Logger: log, Registry: event.NewRegistry(), Docs: projection.NewGenerations(b.Docs), Feed: b.Feed, Metrics: metrics.New()}
	if b.Close != nil {
		s.closers = append(s.closers, b.Close)
	}
	// Counted at the store, so every writer's appends are (the saga's and the redrive's too).
	s.Raw = metrics.Counting(b.Store, s.Metrics)
	s.Store = eventstore.WithUpcasters(s.Raw, s.Registry)
	if b.Feed != nil {
		s.Feed = s.Store.(eventstore.Feed)
	}
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery, cfg.Registry, cfg.Logger = c.SnapshotEvery, s.Registry, log
	s.AggregateConfig = cfg
	// The modules' repositories hold the registry; it is complete before anything reads.
	s.Modules = o.domains(api.Env{Store: s.Store, Docs: s.Docs, Aggregate: cfg})
	var projections []projection.Projection
	for _, m := range s.Modules {
		if m.Events != nil {
			m.Events(s.Registry)
		}
		projections = append(projections, m.Projections...)
	}

	s.Engine = projection.NewEngine(s.Store, s.Docs, s.Registry, projections...)
	s.Engine.Logger, s.Engine.Sink, s.Engine.Dispatcher = log, b.Sink, b.Dispatcher
	s.Engine.OnRebuilt = s.Metrics.Rebuilt
	s.Engine.OnParked = func(d projection.DeadLetter) { s.Metrics.Parked(d.EventType) }

	if s.Feed != nil {
		s.Runner = projection.NewRunner(s.Engine, s.Feed)
		s.wake = s.Runner.Wake
		s.loops = append(s.loops, s.Runner.Run)
		if b.Wake != nil {
			s.loops = append(s.loops, func(ctx context.Context) {
				ch := b.Wake(ctx)
				for {
					select {
					case <-ctx.Done():
						return
					case <-ch:
						s.Runner.Wake()
					}
				}
			})
		}
	}
	if s.Runner == nil && b.Dispatcher == nil {
		// No feed runner (DynamoDB run locally): a loop of its own steps rebuild jobs.
		s.loops = append(s.loops, s.stepRebuilds)
	}
	if s.Runner != nil {
		s.Engine.Dispatcher = wakeRunner{s.Runner}
	}
	s.AWS = b.AWS
	if b.Loops != nil {
		s.loops = append(s.loops, b.Loops(s)...)
	}
	if b.AWS == nil { // DynamoDB's TTL expires idempotency records; elsewhere we purge them
		s.loops = append(s.loops, s.purgeIdempotency)
	}
	s.Handler = api.New(api.Deps{Store: s.Store, Feed: s.Feed, Docs: s.Docs, Engine: s.Engine,
		Metrics: s.Metrics, Logger: s.Logger, AfterAppend: s.wake, Modules: s.Modules, Actor: o.actor, Access: o.access,
		IdempotencyLease: c.IdempotencyLease})
	return s
}

func (s *System) purgeIdempotency(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := api.PurgeIdempotency(ctx, s.Docs, time.Now()); err != nil {
				s.Logger.Warn("idempotency purge", "err", err)
			} else if n > 0 {
				s.Logger.Info("idempotency records purged", "count", n)
			}
		}
	}
}

// wakeRunner has the feed runner start on a new rebuild job at once.
type wakeRunner struct{ r *projection.Runner }

func (w wakeRunner) Dispatch(context.Context, string) error { w.r.Wake(); return nil }

func (s *System) stepRebuilds(ctx context.Context) {
	for ctx.Err() == nil {
		moved, err := s.Engine.StepRebuilds(ctx)
		if err != nil && ctx.Err() == nil {
			s.Logger.Warn("rebuild", "err", err)
		}
		if moved && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AddLoop registers a background loop for Start (the DynamoDB stream poller).
func (s *System) AddLoop(fn func(context.Context)) { s.loops = append(s.loops, fn) }

// AddCloser registers a cleanup for Close.
func (s *System) AddCloser(fn func() error) { s.closers = append(s.closers, fn) }

// Start runs the background loops until ctx ends; the returned channel closes when they
// have all stopped.
func (s *System) Start(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	n := len(s.loops)
	if n == 0 {
		close(done)
		return done
	}
	finished := make(chan struct{}, n)
	for _, loop := range s.loops {
		go func() { loop(ctx); finished <- struct{}{} }()
	}
	go func() {
		for range n {
			<-finished
		}
		close(done)
	}()
	return done
}

// Close releases the backend.
func (s *System) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	return errors.Join(errs...)
}
