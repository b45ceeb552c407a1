package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Engine applies events to projections, parks failures, catches up, redrives and
// rebuilds. It is safe for concurrent use.
type Engine struct {
	Store    eventstore.Store // read side: catch-up, redrive and rebuild load from here
	Docs     docstore.Store
	Registry *event.Registry // unknown event types are parked
	Sink     Sink            // optional
	Logger   *slog.Logger
	// Attempts is how many times a failing event is tried before it is parked.
	Attempts int
	// OnParked is told of every newly parked event (metrics).
	OnParked func(DeadLetter)
	// OnRebuilt is told when a rebuild job finishes, with how long it ran (metrics).
	OnRebuilt func(projection string, took time.Duration)

	projections []Projection
	byName      map[string]Projection
	// locks pause live delivery to a projection while it is rebuilt in this process.
	locks map[string]*sync.RWMutex
	// Dispatcher, when set, is told of every rebuild job started (on AWS: the rebuild
	// function's queue). Without one, StepRebuilds (the runner) does the work.
	Dispatcher Dispatcher
	// RebuildChunk is how many events a rebuild step queries at a time (default 100).
	RebuildChunk int
	// Now is the clock of rebuild jobs (default time.Now).
	Now func() time.Time

	// gens resolves the projections' generations; Docs is gens, or (for a rebuild's
	// shadow engine) the generation being built.
	gens *Generations
	// rebuildMu: one stepper per rebuild job in this process.
	rebuildMu *sync.Map
	// legacyChecked: StepRebuilds has looked for rebuilds in place left unfinished.
	legacyChecked atomic.Bool
}

// NewEngine returns an engine for the given projections. Its Docs is the
// generation-resolving view of docs (NewGenerations), which readers of the read models
// should be given too, so that a rebuild's swap is atomic for them.
func NewEngine(store eventstore.Store, docs docstore.Store, reg *event.Registry, projections ...Projection) *Engine {
	gens := NewGenerations(docs)
	gens.register(projections...)
	return newEngine(store, gens, gens, reg, projections)
}

func newEngine(store eventstore.Store, gens *Generations, docs docstore.Store, reg *event.Registry, projections []Projection) *Engine {
	e := &Engine{Store: store, Docs: docs, Registry: reg, Logger: slog.Default(), Attempts: 3,
		byName: map[string]Projection{}, locks: map[string]*sync.RWMutex{}, gens: gens, rebuildMu: &sync.Map{}}
	for _, p := range projections {
		e.projections = append(e.projections, p)
		e.byName[p.Name()] = p
		e.locks[p.Name()] = &sync.RWMutex{}
	}
	return e
}

// Projections returns the registered projections.
func (en *Engine) Projections() []Projection { return slices.Clone(en.projections) }

// Lookup returns a projection by name.
func (en *Engine) Lookup(name string) (Projection, error) {
	p, ok := en.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return p, nil
}

func follows(p Projection, aggregateType string) bool {
	return slices.Contains(p.AggregateTypes(), aggregateType)
}

// Handle delivers one event to every projection. It returns an error only for transient
// failures that the caller should retry (the event was not parked); persistent failures
// are parked and reported as the Parked outcome.
func (en *Engine) Handle(ctx context.Context, e event.Event) (map[string]Outcome, error) {
	out := map[string]Outcome{}
	var errs []error
	for _, p := range en.projections {
		o, err := en.Deliver(ctx, p, e)
		out[p.Name()] = o
		if err != nil {
			errs = append(errs, fmt.Errorf("projection %s: %w", p.Name(), err))
		}
	}
	return out, errors.Join(errs...)
}

// Deliver delivers one event to one projection: apply, fill a gap from the store, or
// park after Attempts failures. A transient error is returned for the caller to retry.
func (en *Engine) Deliver(ctx context.Context, p Projection, e event.Event) (Outcome, error) {
	if !follows(p, e.AggregateType) {
		return Ignored, nil
	}
	lock := en.locks[p.Name()]
	lock.RLock()
	defer lock.RUnlock()
	var lastErr error
	for attempt := 0; attempt < max(1, en.Attempts); attempt++ {
		o, err := en.deliver(ctx, p, e)
		if err == nil {
			return o, nil
		}
		if IsTransient(err) {
			return o, err
		}
		lastErr = err
		if attempt+1 < en.Attempts {
			backoff(ctx, attempt)
		}
	}
	if err := en.park(ctx, p, e, lastErr); err != nil {
		return Blocked, err
	}
	return Parked, nil
}

func (en *Engine) deliver(ctx context.Context, p Projection, e event.Event) (Outcome, error) {
	e, err := en.normalise(e)
	if err != nil {
		return Applied, err
	}
	o, err := en.applyBatch(ctx, p, []event.Event{e}, false, false)
	if err != nil || o != Gap {
		if o == Blocked && err == nil {
			en.renotify(ctx, p, e)
		}
		return o, err
	}
	// An earlier version never reached us (or was dropped): fill in from the store.
	if err := en.CatchUp(ctx, p, eventstore.StreamOf(e)); err != nil {
		return Gap, err
	}
	return Gap, nil
}

func (en *Engine) normalise(e event.Event) (event.Event, error) {
	if en.Registry == nil {
		return e, nil
	}
	e, err := en.Registry.Upcast(e)
	if err != nil {
		return e, err
	}
	return e, en.Registry.Check(e)
}

// applyBatch applies consecutive events of one stream in one transaction. It stops at
// the first event that is not the guard's next version and reports why. With unpark (the
// last chunk of a redrive), the same transaction that commits the read-model change and
// the guard also deletes the stream's dead letter, so a dead letter disappears exactly
// when what it held back is applied, and never before.
func (en *Engine) applyBatch(ctx context.Context, p Projection, events []event.Event, redriving, unpark bool) (Outcome, error) {
	if r, ok := p.(Reactor); ok {
		return en.react(ctx, r, events, redriving, unpark)
	}
	var outcome Outcome
	st := eventstore.StreamOf(events[0])
	shadow := true
	update := func(ctx context.Context, tx docstore.Tx) error {
		outcome = Applied
		var done []event.Event
		if !redriving {
			var dl DeadLetter
			parked, err := tx.Get(ctx, parkedCollection(p.Name()), st.Key(), &dl)
			if err != nil {
				return err
			}
			if parked {
				outcome = Blocked
				return nil
			}
		}
		var g guard
		if _, err := tx.Get(ctx, guardCollection(p.Name()), st.Key(), &g); err != nil {
			return err
		}
		applied := 0
		for _, e := range events {
			switch {
			case e.Version <= g.Version:
				continue
			case e.Version > g.Version+1:
				// Stop at the gap (what came before it stays applied); the caller fills it.
				outcome = Gap
				if err := en.applyShadow(ctx, tx, p, done, shadow); err != nil {
					return err
				}
				return en.putGuard(ctx, tx, p, st, g, applied)
			}
			if err := p.Apply(ctx, tx, e); err != nil {
				return &applyError{event: e, err: err}
			}
			g.Version = e.Version
			applied++
			done = append(done, e)
		}
		if applied == 0 {
			outcome = Duplicate
		}
		if unpark {
			held, err := en.unparkIn(ctx, tx, p, st, g.Version)
			if err != nil {
				return err
			}
			if held {
				outcome = Blocked
			}
		}
		if err := en.applyShadow(ctx, tx, p, done, shadow); err != nil {
			return err
		}
		return en.putGuard(ctx, tx, p, st, g, applied)
	}
	err := en.Docs.Update(ctx, update)
	if errors.Is(err, errShadow) {
		// The copy being built could not take these events: commit them without it (the
		// rebuild's catch-up replays them into the copy from the store).
		shadow = false
		err = en.Docs.Update(ctx, update)
	}
	return outcome, err
}

var errShadow = errors.New("the rebuild's copy could not apply the events")

// applyShadow applies events applied live to the generation a rebuild is building, in
// the same transaction, where the rebuild has replayed the stream already (its guard is
// at most a chunk behind: the few events between are loaded from the store). Elsewhere
// the rebuild's own replay and catch-up bring them. So when the copy is swapped in, it
// holds every event the active model held, and readers never see a document go back.
func (en *Engine) applyShadow(ctx context.Context, tx docstore.Tx, p Projection, events []event.Event, enabled bool) error {
	gt, ok := tx.(*genTx)
	if !ok || !enabled || len(events) == 0 {
		return nil
	}
	d, err := gt.generations(ctx, p.Name())
	if err != nil || d.Building == 0 || d.Building == d.Active {
		return err
	}
	stx := pinnedTx{tx: gt.tx, s: en.gens.pin(p, d.Building)}
	st := eventstore.StreamOf(events[0])
	var dl DeadLetter
	if parked, err := stx.Get(ctx, parkedCollection(p.Name()), st.Key(), &dl); err != nil || parked {
		return err
	}
	var g guard
	if _, err := stx.Get(ctx, guardCollection(p.Name()), st.Key(), &g); err != nil {
		return err
	}
	first := events[0].Version
	switch {
	case g.Version == 0 || first-g.Version-1 > catchUpChunk:
		return nil // not replayed yet, or far behind: the rebuild's to bring
	case first > g.Version+1:
		missing, err := en.Store.Load(ctx, st, eventstore.Range{From: g.Version + 1, To: first - 1})
		if err != nil {
			return err
		}
		for i := range missing {
			if missing[i], err = en.normalise(missing[i]); err != nil {
				return errShadow
			}
		}
		events = append(missing, events...)
	}
	applied := 0
	for _, e := range events {
		if e.Version <= g.Version {
			continue
		}
		if e.Version > g.Version+1 {
			break
		}
		if err := p.Apply(ctx, stx, e); err != nil {
			return fmt.Errorf("%w: %w", errShadow, err)
		}
		g.Version = e.Version
		applied++
	}
	if applied == 0 {
		return nil
	}
	return stx.Put(ctx, guardCollection(p.Name()), st.Key(), g)
}

// unparkIn deletes the stream's dead letter inside tx once the events up to applied are
// in, unless the dead letter holds a later event (parked meanwhile by another process):
// then it stays, and held reports it. Reading it makes the delete conditional on it
// being unchanged at commit.
func (en *Engine) unparkIn(ctx context.Context, tx docstore.Tx, p Projection, st eventstore.Stream, applied int64) (held bool, err error) {
	var dl DeadLetter
	parked, err := tx.Get(ctx, parkedCollection(p.Name()), st.Key(), &dl)
	if err != nil || !parked {
		return false, err
	}
	if dl.Version > applied {
		return true, nil
	}
	return false, tx.Delete(ctx, parkedCollection(p.Name()), st.Key())
}

func (en *Engine) putGuard(ctx context.Context, tx docstore.Tx, p Projection, st eventstore.Stream, g guard, applied int) error {
	if applied == 0 {
		return nil
	}
	return tx.Put(ctx, guardCollection(p.Name()), st.Key(), g)
}

// applyError names the event a projection failed on.
type applyError struct {
	event event.Event
	err   error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("%s v%d of %s: %v", e.event.EventType, e.event.Version, eventstore.StreamOf(e.event), e.err)
}
func (e *applyError) Unwrap() error { return e.err }

// Guard returns the last version of a stream the projection applied.
func (en *Engine) Guard(ctx context.Context, projection string, st eventstore.Stream) (int64, error) {
	var g guard
	_, err := en.Docs.Get(ctx, guardCollection(projection), st.Key(), &g)
	return g.Version, err
}

// CatchUp applies every event of the stream after the projection's guard, in order,
// loading them from the event store.
func (en *Engine) CatchUp(ctx context.Context, p Projection, st eventstore.Stream) error {
	_, err := en.catchUp(ctx, p, st, false)
	return err
}

const catchUpChunk = 10

// catchUp applies the stream's events after the guard. When redriving it applies them
// past the stream's dead letter and deletes the dead letter in the transaction of the
// last chunk (or, with nothing left to apply, on its own), reporting whether it did.
func (en *Engine) catchUp(ctx context.Context, p Projection, st eventstore.Stream, redriving bool) (unparked bool, err error) {
	from, err := en.Guard(ctx, p.Name(), st)
	if err != nil {
		return false, err
	}
	events, err := en.Store.Load(ctx, st, eventstore.Range{From: from + 1})
	if err != nil {
		return false, err
	}
	for i := range events {
		if events[i], err = en.normalise(events[i]); err != nil {
			return false, &applyError{event: events[i], err: err}
		}
	}
	if redriving && len(events) == 0 {
		return true, en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			return tx.Delete(ctx, parkedCollection(p.Name()), st.Key())
		})
	}
	for len(events) > 0 {
		n := min(catchUpChunk, len(events))
		last := n == len(events)
		o, err := en.applyBatch(ctx, p, events[:n], redriving, redriving && last)
		if err != nil {
			return false, err
		}
		switch o {
		case Blocked:
			return false, nil // parked meanwhile: redrive will continue from here
		case Gap:
			// The guard moved under us (a rebuild): nothing was unparked; a later
			// redrive starts from the new guard.
			return false, nil
		}
		events = events[n:]
		if last && redriving {
			return true, nil
		}
	}
	return false, nil
}

// park records the dead letter (first one per aggregate wins: later events wait behind
// it) and tells the sink.
func (en *Engine) park(ctx context.Context, p Projection, e event.Event, cause error) error {
	var ae *applyError
	if errors.As(cause, &ae) {
		e = ae.event // the event that really failed (during a catch-up, an earlier one)
	}
	var dl DeadLetter
	fresh := false
	err := en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		exists, err := tx.Get(ctx, parkedCollection(p.Name()), eventstore.StreamOf(e).Key(), &dl)
		if err != nil || exists {
			return err
		}
		fresh = true
		dl = DeadLetter{Projection: p.Name(), AggregateType: e.AggregateType, AggregateID: e.AggregateID,
			Version: e.Version, EventID: e.EventID, EventType: e.EventType, Error: cause.Error(),
			ParkedAt: time.Now().UTC(), Attempts: max(1, en.Attempts), Reactor: IsReactor(p), Event: e}
		return tx.Put(ctx, parkedCollection(p.Name()), eventstore.StreamOf(e).Key(), dl)
	})
	if err != nil {
		return fmt.Errorf("park %s v%d: %w", eventstore.StreamOf(e), e.Version, err)
	}
	if fresh {
		en.Logger.Error("event parked", "projection", p.Name(), "stream", eventstore.StreamOf(e).Key(),
			"version", e.Version, "eventId", e.EventID, "err", cause)
		if en.OnParked != nil {
			en.OnParked(dl)
		}
		return en.notify(ctx, p, dl)
	}
	return nil
}

// notify sends a dead letter to the sink once; a failed send is retried when the next
// delivery of that event finds it blocked.
func (en *Engine) notify(ctx context.Context, p Projection, dl DeadLetter) error {
	if en.Sink == nil || dl.Notified {
		return nil
	}
	dl.Reactor = IsReactor(p) // also for dead letters parked before the field existed
	if err := en.Sink.Send(ctx, dl); err != nil {
		return fmt.Errorf("dead-letter sink: %w", err)
	}
	return en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		var cur DeadLetter
		ok, err := tx.Get(ctx, parkedCollection(p.Name()), dl.Stream().Key(), &cur)
		if err != nil || !ok || cur.EventID != dl.EventID {
			return err
		}
		cur.Notified = true
		return tx.Put(ctx, parkedCollection(p.Name()), dl.Stream().Key(), cur)
	})
}

func (en *Engine) renotify(ctx context.Context, p Projection, e event.Event) {
	if en.Sink == nil {
		return
	}
	var dl DeadLetter
	ok, err := en.Docs.Get(ctx, parkedCollection(p.Name()), eventstore.StreamOf(e).Key(), &dl)
	if err == nil && ok && dl.EventID == e.EventID && !dl.Notified {
		if err := en.notify(ctx, p, dl); err != nil {
			en.Logger.Warn("dead letter still not sent", "projection", p.Name(), "err", err)
		}
	}
}

func backoff(ctx context.Context, attempt int) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(10<<min(attempt, 6)) * time.Millisecond):
	}
}

// Poison parks an event that cannot even be decoded, for every projection that follows
// its aggregate type, so that aggregate waits and an operator sees why.
func (en *Engine) Poison(ctx context.Context, e event.Event, cause error) error {
	var errs []error
	for _, p := range en.projections {
		if follows(p, e.AggregateType) {
			errs = append(errs, en.park(ctx, p, e, cause))
		}
	}
	return errors.Join(errs...)
}

// CatchUpStream brings every projection following the stream's aggregate type up to date
// with the store (redrive of an on-failure record).
func (en *Engine) CatchUpStream(ctx context.Context, st eventstore.Stream) error {
	var errs []error
	for _, p := range en.projections {
		if !follows(p, st.Type) {
			continue
		}
		lock := en.locks[p.Name()]
		lock.RLock()
		_, err := en.catchUp(ctx, p, st, false)
		lock.RUnlock()
		var ae *applyError
		if errors.As(err, &ae) && !IsTransient(err) {
			err = en.park(ctx, p, ae.event, err)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CatchUpSince catches up every stream with events since t, for every projection (the
// fallback when the stream records an on-failure record points at have expired). Each
// aggregate type is queried once, whatever the number of projections following it.
func (en *Engine) CatchUpSince(ctx context.Context, t time.Time) error {
	types := map[string]bool{}
	for _, p := range en.projections {
		for _, typ := range p.AggregateTypes() {
			types[typ] = true
		}
	}
	for typ := range types {
		err := en.eachStream(ctx, typ, t, func(st eventstore.Stream) error {
			if err := en.CatchUpStream(ctx, st); err != nil && IsTransient(err) {
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// DeliverAll delivers a feed batch to one projection, applying each aggregate's
// consecutive events in shared transactions (one commit per aggregate and chunk instead
// of one per event). Any trouble in a group falls back to event-by-event delivery, which
// pinpoints and parks the failing event. A transient error is returned for the caller to
// retry the batch.
func (en *Engine) DeliverAll(ctx context.Context, p Projection, events []event.Event) error {
	var order []string
	groups := map[string][]event.Event{}
	for _, e := range events {
		if !follows(p, e.AggregateType) {
			continue
		}
		k := eventstore.StreamOf(e).Key()
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	for _, k := range order {
		if err := en.deliverGroup(ctx, p, groups[k]); err != nil {
			return err
		}
	}
	return nil
}

func (en *Engine) deliverGroup(ctx context.Context, p Projection, group []event.Event) error {
	lock := en.locks[p.Name()]
	for len(group) > 0 {
		n := min(catchUpChunk, len(group))
		chunk := group[:n]
		ok := true
		for i := range chunk {
			e, err := en.normalise(chunk[i])
			if err != nil {
				ok = false
				break
			}
			chunk[i] = e
		}
		if ok {
			lock.RLock()
			o, err := en.applyBatch(ctx, p, chunk, false, false)
			lock.RUnlock()
			if err == nil && (o == Applied || o == Duplicate || o == Blocked) {
				group = group[n:]
				continue
			}
		}
		// Gap, failure or undecodable: one by one, with retries, gap filling and parking.
		for _, e := range chunk {
			if _, err := en.Deliver(ctx, p, e); err != nil {
				return err
			}
		}
		group = group[n:]
	}
	return nil
}

// Reactor is a projection with side effects beyond the document store (a saga issuing
// commands). Its React runs outside any document-store transaction (commands take their
// own locks); only its guard advances transactionally afterwards. React must therefore
// be idempotent: it may run again for an event after a crash or a rebuild.
type Reactor interface {
	Projection
	React(ctx context.Context, e event.Event) error
}

// react is applyBatch for reactors. With unpark, the dead letter goes in the transaction
// that advances the guard past the last event (or on its own when every event was
// already reacted to).
func (en *Engine) react(ctx context.Context, r Reactor, events []event.Event, redriving, unpark bool) (Outcome, error) {
	st := eventstore.StreamOf(events[0])
	if !redriving {
		var dl DeadLetter
		parked, err := en.Docs.Get(ctx, parkedCollection(r.Name()), st.Key(), &dl)
		if err != nil {
			return Applied, err
		}
		if parked {
			return Blocked, nil
		}
	}
	g, err := en.Guard(ctx, r.Name(), st)
	if err != nil {
		return Applied, err
	}
	applied, unparked := 0, false
	for i, e := range events {
		switch {
		case e.Version <= g:
			continue
		case e.Version > g+1:
			return Gap, nil
		}
		if err := r.React(ctx, e); err != nil {
			return Applied, &applyError{event: e, err: err}
		}
		final := unpark && i == len(events)-1
		held := false
		err := en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			if final {
				var err error
				if held, err = en.unparkIn(ctx, tx, r, st, e.Version); err != nil {
					return err
				}
			}
			var cur guard
			if _, err := tx.Get(ctx, guardCollection(r.Name()), st.Key(), &cur); err != nil {
				return err
			}
			if cur.Version >= e.Version {
				return nil // another delivery got there first
			}
			return tx.Put(ctx, guardCollection(r.Name()), st.Key(), guard{Version: e.Version})
		})
		if err != nil {
			return Applied, err
		}
		if held {
			return Blocked, nil
		}
		unparked = unparked || final
		g = e.Version
		applied++
	}
	if unpark && !unparked {
		held := false
		if err := en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) (err error) {
			held, err = en.unparkIn(ctx, tx, r, st, g)
			return err
		}); err != nil {
			return Applied, err
		}
		if held {
			return Blocked, nil
		}
	}
	if applied == 0 {
		return Duplicate, nil
	}
	return Applied, nil
}

// IsReactor reports whether p is a reactor (a saga) rather than a read model.
func IsReactor(p Projection) bool {
	_, ok := p.(Reactor)
	return ok
}

// Subset returns an engine over the projections keep accepts, sharing this engine's
// store, documents, registry, sink, hooks and rebuild locks (the projector and saga
// Lambdas, and the two redrives, each run a part of the system's projections; a rebuild
// through this engine pauses the subset's delivery in this process too).
func (en *Engine) Subset(keep func(Projection) bool) *Engine {
	var ps []Projection
	for _, p := range en.projections {
		if keep(p) {
			ps = append(ps, p)
		}
	}
	sub := newEngine(en.Store, en.gens, en.Docs, en.Registry, ps)
	sub.Sink, sub.Logger, sub.Attempts, sub.OnParked, sub.OnRebuilt = en.Sink, en.Logger, en.Attempts, en.OnParked, en.OnRebuilt
	sub.Dispatcher, sub.RebuildChunk, sub.Now = en.Dispatcher, en.RebuildChunk, en.Now
	sub.locks, sub.rebuildMu = en.locks, en.rebuildMu
	return sub
}
