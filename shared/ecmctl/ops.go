package ecmctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Ops is what the commands that work both ways need: directly on an opened system or
// through the HTTP API.
type Ops interface {
	// Projections returns each projection's status as GET /projections serves it (kept as
	// JSON objects, so fields a newer server adds, such as rebuild progress, show).
	Projections(ctx context.Context) ([]map[string]any, error)
	// Rebuild starts (or, on a server that rebuilds in the request, runs) a rebuild.
	Rebuild(ctx context.Context, name string) (map[string]any, error)
	DeadLetters(ctx context.Context) ([]projection.DeadLetter, error)
	// Redrive re-applies one dead letter (by event id) or, with id "", all of them.
	Redrive(ctx context.Context, id string) (projection.RedriveResult, error)
	// Stream returns a stream's events (upcast), as of asOf when not zero.
	Stream(ctx context.Context, st eventstore.Stream, asOf time.Time) ([]event.Event, error)
	Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error)
}

// ErrNoDeadLetter: no dead letter has the id given.
var ErrNoDeadLetter = errors.New("no such dead letter")

// direct works on a system opened by this process (no background loops run: nothing
// projects while the CLI works).
type direct struct{ sys *system.System }

func (d direct) Projections(ctx context.Context) ([]map[string]any, error) {
	var head *uint64
	if d.sys.Feed != nil {
		h, err := d.sys.Feed.Head(ctx)
		if err != nil {
			return nil, err
		}
		head = &h
	}
	st, err := d.sys.Engine.Statuses(ctx, head)
	if err != nil {
		return nil, err
	}
	return asObjects(st)
}

func (d direct) Rebuild(ctx context.Context, name string) (map[string]any, error) {
	started := time.Now()
	if err := d.sys.Engine.Rebuild(ctx, name); err != nil {
		return nil, err
	}
	return map[string]any{"projection": name, "status": "rebuilt", "ms": time.Since(started).Milliseconds()}, nil
}

func (d direct) DeadLetters(ctx context.Context) ([]projection.DeadLetter, error) {
	return d.sys.Engine.DeadLetters(ctx)
}

func (d direct) Redrive(ctx context.Context, id string) (projection.RedriveResult, error) {
	if id == "" {
		return d.sys.Engine.Redrive(ctx)
	}
	dls, err := d.DeadLetters(ctx)
	if err != nil {
		return projection.RedriveResult{}, err
	}
	matches, err := findDeadLetters(dls, id)
	if err != nil {
		return projection.RedriveResult{}, err
	}
	res := projection.RedriveResult{Remaining: []projection.DeadLetter{}}
	for _, dl := range matches { // one event parked by several projections: each
		ok, rerr := d.sys.Engine.RedriveOne(ctx, dl.Projection, dl.Stream())
		if ok {
			res.Redriven++
		}
		err = errors.Join(err, rerr)
	}
	// What is left parked, the dead letter just tried included when it failed again.
	rest, lerr := d.DeadLetters(ctx)
	if lerr == nil {
		res.Remaining = rest
	}
	if err != nil && projection.IsTransient(err) {
		return res, err
	}
	return res, lerr
}

func (d direct) Stream(ctx context.Context, st eventstore.Stream, asOf time.Time) ([]event.Event, error) {
	return d.sys.Store.Load(ctx, st, eventstore.Range{Until: asOf})
}

func (d direct) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	return d.sys.Store.Query(ctx, f)
}

// findDeadLetters finds the dead letters of an event id (a unique prefix of one will
// do, as `dead-letters list` shows them shortened): one per projection that parked it.
func findDeadLetters(dls []projection.DeadLetter, id string) ([]projection.DeadLetter, error) {
	var exact, prefixed []projection.DeadLetter
	ids := map[string]bool{}
	for _, d := range dls {
		if d.EventID == id {
			exact = append(exact, d)
		} else if len(id) >= 4 && strings.HasPrefix(d.EventID, id) {
			prefixed = append(prefixed, d)
			ids[d.EventID] = true
		}
	}
	switch {
	case len(exact) > 0:
		return exact, nil
	case len(ids) == 1:
		return prefixed, nil
	case len(ids) == 0:
		return nil, fmt.Errorf("%w: %s", ErrNoDeadLetter, id)
	}
	return nil, fmt.Errorf("%w: %s is the prefix of %d event ids", ErrNoDeadLetter, id, len(ids))
}

func asObjects(v any) ([]map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	return out, json.Unmarshal(b, &out)
}
