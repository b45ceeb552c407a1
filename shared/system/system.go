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
	"github.com/ecmstore/ecmstore/shared/bank"
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
	Accounts *aggregate.Repository[bank.Account]
	Handler  *api.Server
	// AWS holds the clients on the DynamoDB backend (nil elsewhere).
	AWS *AWSClients
	// AggregateConfig is what every repository is built with (snapshots, retries).
	AggregateConfig aggregate.Config

	// Filled by domains(): the projections and HTTP modules of the seeds' other systems.
	extraProjections []projection.Projection
	extraModules     []api.Module

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

// RegisterBackend makes a backend available to Open. Memory and DynamoDB are built in;
// the embedded and PostgreSQL backends register from their own packages
// (shared/system/embedded, shared/system/postgres) so that binaries that do not use them
// (the Lambdas) do not link them.
func RegisterBackend(name string, open Opener) { openers[name] = open }

var openers = map[string]Opener{
	"memory": func(context.Context, Config, *slog.Logger) (Backend, error) {
		s := memstore.New()
		return Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}, nil
	},
}

// Open assembles the system for c.
func Open(ctx context.Context, c Config, log *slog.Logger) (*System, error) {
	if log == nil {
		log = slog.Default()
	}
	open, ok := openers[c.EventStore]
	if !ok {
		return nil, fmt.Errorf("event store %q is not linked into this binary", c.EventStore)
	}
	b, err := open(ctx, c, log)
	if err != nil {
		return nil, fmt.Errorf("open %s event store: %w", c.EventStore, err)
	}
	return Assemble(c, b, log), nil
}

// Assemble wires a system around an opened backend.
func Assemble(c Config, b Backend, log *slog.Logger) *System {
	// Readers get the generation-resolving view: a rebuild's swap is atomic for them.
	s := &System{Config: c, Logger: log, Registry: Registry(), Docs: projection.NewGenerations(b.Docs), Feed: b.Feed, Metrics: metrics.New()}
	if b.Close != nil {
		s.closers = append(s.closers, b.Close)
	}
	s.Raw = b.Store
	s.Store = eventstore.WithUpcasters(b.Store, s.Registry)
	if b.Feed != nil {
		s.Feed = s.Store.(eventstore.Feed)
	}
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery, cfg.Registry, cfg.Logger, cfg.OnSnapshot = c.SnapshotEvery, s.Registry, log, s.Metrics.SnapshotCreated
	s.AggregateConfig = cfg
	s.Accounts = aggregate.NewRepository(s.Store, bank.Definition, cfg)
	s.buildDomains()

	s.Engine = projection.NewEngine(s.Store, s.Docs, s.Registry, s.projections()...)
	s.Engine.Logger, s.Engine.Sink, s.Engine.Dispatcher = log, b.Sink, b.Dispatcher
	s.Engine.OnParked = func(d projection.DeadLetter) { s.Metrics.Parked(d.EventType) }

	var wake func()
	if s.Feed != nil {
		s.Runner = projection.NewRunner(s.Engine, s.Feed)
		wake = s.Runner.Wake
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
	s.wake = wake
	s.AWS = b.AWS
	if b.Loops != nil {
		s.loops = append(s.loops, b.Loops(s)...)
	}
	if b.AWS == nil { // DynamoDB's TTL expires idempotency records; elsewhere we purge them
		s.loops = append(s.loops, s.purgeIdempotency)
	}
	s.SetActor(api.HeaderActor)
	return s
}

// SetActor chooses how the handler finds the actor of a request (the Lambda uses the JWT
// subject; the local server, which has no authorizer, the X-Actor header).
func (s *System) SetActor(actor func(*http.Request) string) {
	s.Handler = api.New(api.Deps{Store: s.Store, Feed: s.Feed, Docs: s.Docs, Engine: s.Engine,
		Accounts: s.Accounts, Metrics: s.Metrics, Logger: s.Logger, AfterAppend: s.wake, Modules: s.modules(),
		Actor: actor})
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
