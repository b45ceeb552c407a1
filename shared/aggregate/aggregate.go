// Package aggregate loads event-sourced aggregates (latest snapshot + later events),
// runs commands against them, and appends the resulting events with optimistic
// concurrency: without a client-given expected version a conflict reloads and retries, so
// concurrent commands never lose updates; with one, the conflict goes back to the client.
package aggregate

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Definition describes an aggregate type as pure functions over its state S. S must
// round-trip through JSON when snapshots are enabled.
type Definition[S any] struct {
	Type string
	// New returns the state before the first event.
	New func(id string) S
	// Apply evolves the state by one event. It should ignore event types it does not know
	// (forward compatibility) and fail only on events it cannot decode.
	Apply func(S, event.Event) (S, error)
	// SnapshotVersion is the format of S in snapshots: bump it when S changes shape, and
	// old snapshots are ignored. 0 disables snapshots for this type.
	SnapshotVersion int
}

// Command decides which events a command produces from the current state. It returns
// rule violations as errors (see Rule) and no events for a no-op.
type Command[S any] func(state S, version int64) ([]event.Event, error)

// Loaded is an aggregate's state at Version. Last is the last event applied (nil for a
// stream that does not exist).
type Loaded[S any] struct {
	ID      string
	State   S
	Version int64
	Last    *event.Event
}

// Exists reports whether the stream has any event.
func (l Loaded[S]) Exists() bool { return l.Version > 0 }

// Result is the outcome of Execute: the new state and the events the command appended
// (none for a no-op, or the originally appended events for a recognised retry).
type Result[S any] struct {
	Loaded[S]
	Events []event.Event
}

// Options tune one Execute call.
type Options struct {
	// ExpectedVersion, when set, is the version the client saw (If-Match / x-ecm-version):
	// a mismatch is returned as a conflict instead of retried.
	ExpectedVersion *int64
	// Metadata is stamped on every event the command produces (actor, correlation…).
	Metadata event.Metadata
	// IdempotencySeed derives the event ids from a client idempotency key, so a retried
	// command is recognised by the store (same ids at the same position) or by the
	// repository (the ids already in the stream) and appends nothing.
	IdempotencySeed string
}

// Config holds repository settings shared by all aggregate types.
type Config struct {
	// SnapshotEvery takes a snapshot whenever a command crosses a multiple of this many
	// events; 0 disables snapshots.
	SnapshotEvery int
	// KeepSnapshots is how many snapshot intervals of history to keep (older snapshots are
	// garbage-collected); at least 1.
	KeepSnapshots int
	// MaxRetries bounds the reload-and-decide-again loop of a command without an expected
	// version that meets other writers (other processes: within one, commands on a stream
	// take turns); RetryWindow bounds its time. Past either, the command fails with a
	// *ContentionError (503 with Retry-After), never a version conflict.
	MaxRetries  int
	RetryWindow time.Duration
	// CacheSize is how many aggregates per type a process keeps after a command (seed
	// 001's snapshot cache): the next command on a warm aggregate decides on the kept
	// state and appends at its version without reading the store; if another process
	// appended meanwhile, the append conflicts, the entry is dropped and the command
	// reloads and decides again. 0 uses DefaultCacheSize; negative disables the cache.
	CacheSize int
	Registry  *event.Registry
	Logger    *slog.Logger
	// OnSnapshot, when set, is told of each snapshot written (metrics).
	OnSnapshot func()
}

// DefaultConfig is what the system runs with unless configured otherwise.
func DefaultConfig() Config {
	return Config{SnapshotEvery: 50, KeepSnapshots: 2, MaxRetries: 100, RetryWindow: 5 * time.Second, Logger: slog.Default()}
}

// DefaultCacheSize bounds the warm-aggregate cache of one repository.
const DefaultCacheSize = 10000

// Repository loads and changes aggregates of one type.
type Repository[S any] struct {
	def   Definition[S]
	store eventstore.Backend
	cfg   Config
	turns turns
	warm  *warmCache[S] // nil: disabled
}

// NewRepository returns a repository for def over store.
func NewRepository[S any](store eventstore.Backend, def Definition[S], cfg Config) *Repository[S] {
	if cfg.KeepSnapshots < 1 {
		cfg.KeepSnapshots = 1
	}
	if cfg.MaxRetries < 1 {
		cfg.MaxRetries = 1
	}
	if cfg.RetryWindow <= 0 {
		cfg.RetryWindow = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Repository[S]{def: def, store: store, cfg: cfg, turns: turns{m: map[string]*turn{}}}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheSize > 0 {
		r.warm = newWarmCache[S](cfg.CacheSize)
	}
	return r
}

// Type returns the aggregate type name.
func (r *Repository[S]) Type() string { return r.def.Type }

func (r *Repository[S]) stream(id string) eventstore.Stream {
	return eventstore.Stream{Type: r.def.Type, ID: id}
}

// Load returns the aggregate's current state.
func (r *Repository[S]) Load(ctx context.Context, id string) (Loaded[S], error) {
	l, err := r.load(ctx, id, eventstore.Range{})
	return l, err
}

// LoadAsOf returns the state as of an instant: the newest snapshot at or before it plus
// the events up to it, so a historical read does not replay the whole stream.
func (r *Repository[S]) LoadAsOf(ctx context.Context, id string, at time.Time) (Loaded[S], error) {
	l, err := r.load(ctx, id, eventstore.Range{Until: at})
	return l, err
}

// LoadVersion returns the state at a version.
func (r *Repository[S]) LoadVersion(ctx context.Context, id string, v int64) (Loaded[S], error) {
	l, err := r.load(ctx, id, eventstore.Range{To: v})
	return l, err
}

// load returns the state within rg: the newest usable snapshot in it plus the events after.
func (r *Repository[S]) load(ctx context.Context, id string, rg eventstore.Range) (Loaded[S], error) {
	st := r.stream(id)
	l := Loaded[S]{ID: id, State: r.def.New(id)}
	var events []event.Event
	var snap *eventstore.Snapshot
	var env snapshotEnvelope
	var err error
	if r.def.SnapshotVersion > 0 {
		snap, events, err = r.store.LoadFromSnapshot(ctx, st, rg)
		if err != nil {
			return l, fmt.Errorf("load %s: %w", st, err)
		}
		if snap != nil && snap.StateVersion == r.def.SnapshotVersion {
			if err := unmarshalSnapshot(snap.State, &env, &l.State); err != nil {
				r.cfg.Logger.Warn("ignoring undecodable snapshot", "stream", st.Key(), "version", snap.Version, "err", err)
				snap = nil
			}
		} else {
			snap = nil
		}
	}
	if snap == nil {
		l.State = r.def.New(id)
		events, err = r.store.Load(ctx, st, rg)
		if err != nil {
			return l, fmt.Errorf("load %s: %w", st, err)
		}
	} else {
		l.Version = snap.Version
		l.Last = &event.Event{EventID: env.LastEventID, Version: snap.Version, Timestamp: snap.Timestamp,
			AggregateType: r.def.Type, AggregateID: id}
	}
	if err := r.applyAll(&l, events); err != nil {
		return l, err
	}
	return l, nil
}

// applyAll applies events on top of l. An event this code cannot read stops the load: a
// state that skipped it would decide commands on a history that is not the stream's.
func (r *Repository[S]) applyAll(l *Loaded[S], events []event.Event) error {
	for i := range events {
		e := events[i]
		if e.Version != l.Version+1 {
			return fmt.Errorf("aggregate %s/%s: event version %d after %d", r.def.Type, l.ID, e.Version, l.Version)
		}
		unreadable := func(err error) error {
			return &UnreadableEventError{Type: r.def.Type, ID: l.ID, Version: e.Version, EventType: e.EventType, Err: err}
		}
		if r.cfg.Registry != nil && !r.cfg.Registry.Known(e.EventType) {
			return unreadable(event.ErrUnknownType)
		}
		s, err := r.def.Apply(l.State, e)
		if err != nil {
			return unreadable(err)
		}
		l.State, l.Version, l.Last = s, e.Version, &e
	}
	return nil
}

// Execute loads the aggregate, runs cmd and appends its events. Commands on one stream
// take turns within the process; across processes, a command without an expected
// version that meets another writer decides again on the new state, with jittered
// backoff, until Config.RetryWindow: it never answers a version conflict. A command
// with an idempotency seed takes effect once: when the store already holds its events
// (an earlier attempt landed, whatever happened since), the result is the state right
// after them and nothing is appended.
func (r *Repository[S]) Execute(ctx context.Context, id string, cmd Command[S], opts Options) (Result[S], error) {
	done, err := r.turns.take(ctx, r.stream(id).Key())
	if err != nil {
		return Result[S]{}, err
	}
	defer done()
	st := r.stream(id)
	deadline := time.Now().Add(r.cfg.RetryWindow)
	for attempt := 0; ; attempt++ {
		loaded, cached := r.warm.get(id)
		if !cached {
			if loaded, err = r.Load(ctx, id); err != nil {
				return Result[S]{}, err
			}
		}
		var drafts []event.Event
		if opts.ExpectedVersion != nil && *opts.ExpectedVersion != loaded.Version {
			err = &eventstore.ConflictError{Stream: st, Expected: *opts.ExpectedVersion, Current: loaded.Version}
		} else {
			drafts, err = cmd(loaded.State, loaded.Version)
		}
		if (err != nil || len(drafts) == 0) && cached {
			// Kept state may be stale: a refusal or a no-op is only final on the store's state.
			r.warm.drop(id)
			continue
		}
		if err != nil || len(drafts) == 0 {
			// Refused or a no-op now, but perhaps because this very command already took
			// effect: then its first answer stands.
			if opts.IdempotencySeed != "" {
				if res, ok, ferr := r.original(ctx, id, opts.IdempotencySeed); ferr != nil || ok {
					return res, ferr
				}
			}
			return Result[S]{Loaded: loaded}, err
		}
		for i := range drafts {
			r.stamp(&drafts[i], i, opts)
		}
		stored, err := r.store.Append(ctx, st, loaded.Version, drafts)
		var ce *eventstore.ConflictError
		if err != nil {
			r.warm.drop(id) // whatever went wrong, the next attempt reads the store
		}
		if errors.As(err, &ce) && cached {
			continue // stale kept state: reload and decide again, not a retry of its own
		}
		if errors.As(err, &ce) && opts.ExpectedVersion == nil {
			if attempt+1 >= r.cfg.MaxRetries || time.Now().After(deadline) {
				return Result[S]{Loaded: loaded}, &ContentionError{Type: r.def.Type, ID: id, Attempts: attempt + 1, RetryAfter: time.Second}
			}
			if err := sleep(ctx, attempt); err != nil {
				return Result[S]{Loaded: loaded}, err
			}
			continue
		}
		if err != nil {
			return Result[S]{Loaded: loaded}, err
		}
		if stored[0].Version != loaded.Version+1 {
			// The store recognised the events: an earlier attempt of this command.
			r.warm.drop(id)
			l, err := r.LoadVersion(ctx, id, stored[len(stored)-1].Version)
			return Result[S]{Loaded: l, Events: stored}, err
		}
		before := loaded.Version
		if err := r.applyAll(&loaded, stored); err != nil {
			r.warm.drop(id)
			return Result[S]{}, err
		}
		r.warm.put(id, loaded)
		r.maybeSnapshot(ctx, st, before, loaded)
		return Result[S]{Loaded: loaded, Events: stored}, nil
	}
}

// original finds the events a command with this seed appended before (their ids derive
// from the seed) and returns the state right after them.
func (r *Repository[S]) original(ctx context.Context, id, seed string) (Result[S], bool, error) {
	st := r.stream(id)
	v, ok, err := r.store.FindEvent(ctx, st, event.DerivedID(seed, 0))
	if err != nil || !ok {
		return Result[S]{}, false, err
	}
	evs, err := r.store.Load(ctx, st, eventstore.Range{From: v, To: v + eventstore.MaxEventsPerAppend - 1})
	if err != nil {
		return Result[S]{}, false, err
	}
	n := 0
	for n < len(evs) && evs[n].EventID == event.DerivedID(seed, n) {
		n++
	}
	if n == 0 {
		return Result[S]{}, false, fmt.Errorf("aggregate %s: event %s found at v%d but not loaded", st, event.DerivedID(seed, 0), v)
	}
	l, err := r.LoadVersion(ctx, id, v+int64(n)-1)
	if err != nil {
		return Result[S]{}, false, err
	}
	return Result[S]{Loaded: l, Events: evs[:n]}, true, nil
}

func (r *Repository[S]) stamp(e *event.Event, i int, opts Options) {
	md := opts.Metadata
	if e.Metadata.CausationID != "" {
		md.CausationID = e.Metadata.CausationID
	}
	e.Metadata = md
	if e.EventID == "" && opts.IdempotencySeed != "" {
		e.EventID = event.DerivedID(opts.IdempotencySeed, i)
	}
	if r.cfg.Registry != nil && e.SchemaVersion <= 1 {
		e.SchemaVersion = r.cfg.Registry.CurrentSchema(e.EventType)
	}
}

func (r *Repository[S]) maybeSnapshot(ctx context.Context, st eventstore.Stream, before int64, l Loaded[S]) {
	n := int64(r.cfg.SnapshotEvery)
	if n <= 0 || r.def.SnapshotVersion == 0 || before/n == l.Version/n {
		return
	}
	state, err := json.Marshal(l.State)
	if err == nil {
		state, err = json.Marshal(snapshotEnvelope{State: state, LastEventID: l.Last.EventID})
	}
	if err != nil {
		r.cfg.Logger.Warn("snapshot not encodable", "stream", st.Key(), "err", err)
		return
	}
	// A snapshot is an optimisation: failing to write one is logged, never returned.
	snap := eventstore.Snapshot{Stream: st, Version: l.Version, StateVersion: r.def.SnapshotVersion, Timestamp: l.Last.Timestamp, State: state}
	if err := r.store.SaveSnapshot(ctx, snap); err != nil {
		r.cfg.Logger.Warn("snapshot not saved", "stream", st.Key(), "version", l.Version, "err", err)
		return
	}
	if r.cfg.OnSnapshot != nil {
		r.cfg.OnSnapshot()
	}
	if below := l.Version - int64(r.cfg.KeepSnapshots-1)*n; below > 0 {
		if err := r.store.DeleteSnapshots(ctx, st, below); err != nil {
			r.cfg.Logger.Warn("old snapshots not deleted", "stream", st.Key(), "err", err)
		}
	}
}

// snapshotEnvelope is what a snapshot's State holds: the aggregate state and the id of
// the event it was taken at (for x-ecm-event-id after a snapshot-only load).
type snapshotEnvelope struct {
	State       json.RawMessage `json:"state"`
	LastEventID string          `json:"lastEventId"`
}

func unmarshalSnapshot(raw []byte, env *snapshotEnvelope, dst any) error {
	if err := json.Unmarshal(raw, env); err != nil {
		return err
	}
	return json.Unmarshal(env.State, dst)
}

// sleep waits a jittered, exponentially growing delay (1 ms doubling to 64 ms, plus up to
// as much again), or until ctx ends.
func sleep(ctx context.Context, attempt int) error {
	d := time.Duration(1<<min(attempt, 6)) * time.Millisecond
	d += time.Duration(rand.Int64N(int64(d)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// warmCache keeps the state each recent command left, least recently used out first.
// Only Execute reads it, and only under the stream's turn: a kept state is a guess that
// the conditional append confirms or refutes, never an answer to a read.
type warmCache[S any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recent; values *warmEntry[S]
	byID  map[string]*list.Element
}

type warmEntry[S any] struct {
	id string
	l  Loaded[S]
}

func newWarmCache[S any](max int) *warmCache[S] {
	return &warmCache[S]{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *warmCache[S]) get(id string) (Loaded[S], bool) {
	if c == nil {
		return Loaded[S]{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return Loaded[S]{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*warmEntry[S]).l, true
}

func (c *warmCache[S]) put(id string, l Loaded[S]) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		el.Value.(*warmEntry[S]).l = l
		c.order.MoveToFront(el)
		return
	}
	c.byID[id] = c.order.PushFront(&warmEntry[S]{id: id, l: l})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*warmEntry[S]).id)
	}
}

func (c *warmCache[S]) drop(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.order.Remove(el)
		delete(c.byID, id)
	}
}

// turns makes the commands on one stream take turns within a process, so that they do
// not conflict with each other; only other processes' writes cause retries.
type turns struct {
	mu sync.Mutex
	m  map[string]*turn
}

type turn struct {
	slot    chan struct{} // holds a token while a command runs
	waiters int
}

func (t *turns) take(ctx context.Context, key string) (func(), error) {
	t.mu.Lock()
	tn, ok := t.m[key]
	if !ok {
		tn = &turn{slot: make(chan struct{}, 1)}
		t.m[key] = tn
	}
	tn.waiters++
	t.mu.Unlock()
	release := func() {
		t.mu.Lock()
		if tn.waiters--; tn.waiters == 0 {
			delete(t.m, key)
		}
		t.mu.Unlock()
	}
	select {
	case tn.slot <- struct{}{}:
		return func() { <-tn.slot; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
