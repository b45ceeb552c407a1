// Package eventstore defines the contract every event-store backend implements (memory,
// the embedded file store, DynamoDB, PostgreSQL) and the errors callers can test for with
// errors.Is and errors.As. The conformance suite in eventstore/storetest proves a backend
// meets it.
package eventstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
)

// Expected-version sentinels for Append.
const (
	// NoStream: the stream must not exist yet (its version is 0).
	NoStream int64 = 0
	// Any: append at the end, whatever the current version.
	Any int64 = -1
)

// Stream names one aggregate's event stream. Type and ID together are the identity, so
// two aggregate types may use the same id.
type Stream struct {
	Type string `json:"aggregateType"`
	ID   string `json:"aggregateId"`
}

// Key is the stream's storage key ("Type#ID"): '#' cannot occur in a valid id or type.
func (s Stream) Key() string { return s.Type + "#" + s.ID }

func (s Stream) String() string { return s.Key() }

// StreamOf returns the stream an event belongs to.
func StreamOf(e event.Event) Stream { return Stream{Type: e.AggregateType, ID: e.AggregateID} }

// Range selects part of a stream. Zero values mean "no bound".
type Range struct {
	From  int64     // first version to return (inclusive); 0 or 1 = from the start
	To    int64     // last version to return (inclusive); 0 = to the end
	Until time.Time // only events with timestamp <= Until: the stream's state as of then
}

// Filter selects events across streams for Query. All set fields must match.
type Filter struct {
	EventType     string
	AggregateType string
	CorrelationID string
	Since         time.Time // timestamp >= Since
	Until         time.Time // timestamp <= Until
	Limit         int       // page size; 0 = DefaultPageSize, capped at MaxPageSize
	Cursor        string    // opaque, from a previous Page.NextCursor
}

// Matches reports whether e passes the filter (cursor and limit aside).
func (f Filter) Matches(e event.Event) bool {
	return (f.EventType == "" || e.EventType == f.EventType) &&
		(f.AggregateType == "" || e.AggregateType == f.AggregateType) &&
		(f.CorrelationID == "" || e.Metadata.CorrelationID == f.CorrelationID) &&
		(f.Since.IsZero() || !e.Timestamp.Before(f.Since)) &&
		(f.Until.IsZero() || !e.Timestamp.After(f.Until))
}

// Page is one page of a Query. NextCursor is empty on the last page.
type Page struct {
	Events     []event.Event `json:"events"`
	NextCursor string        `json:"nextCursor,omitempty"`
}

// Page size bounds for Query.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Store is an append-only event store with optimistic concurrency.
//
// Event identity is part of the contract: an event id names one event for the life of the
// store. Every event has its id before the store's first write attempt (Prepare assigns
// one where the caller left it empty), so a write whose response was lost is recognised
// when it is retried. A re-append of events whose first id the store already holds, at
// any version and whatever was appended since, is the original append: Append returns
// the events as stored then and writes nothing. Ids chosen by the caller (derived from an
// idempotency key, a saga step, an import) are recognised at any version on every
// backend; ids the store generated are known to nobody else until Append returns, so the
// only retry that can carry them is the store's own at the same version, which every
// backend recognises too.
type Store interface {
	// Append writes events to the end of the stream atomically: all of them or none.
	// expectedVersion is the stream's current version as the caller saw it, NoStream, or
	// Any. The store sets AggregateType/AggregateID from s, assigns versions (and
	// positions), and fills EventID and Timestamp where they are zero. It returns the
	// events as stored. A mismatch returns a *ConflictError. An append is identified by
	// its first event's id: re-appending an append the store holds (same ids, in order)
	// returns the stored events and writes nothing, whatever the expected version; a
	// first id held in another stream, or beside other ids, is a *DuplicateEventError.
	Append(ctx context.Context, s Stream, expectedVersion int64, events []event.Event) ([]event.Event, error)

	// Load returns the stream's events in version order within r. A stream that does not
	// exist yields no events and no error. With r.Until set, the result is the longest
	// prefix of the stream whose events are all at or before Until.
	Load(ctx context.Context, s Stream, r Range) ([]event.Event, error)

	// Query returns events across streams matching f, in a stable order (the global
	// position where the backend has one, else timestamp), one page at a time, with
	// neither duplicates nor gaps between pages. A filter without any field reads every
	// event. On DynamoDB, Query reads an index the events stream fills, so an event
	// appended a moment ago may not be found yet (dynamostore's package comment).
	Query(ctx context.Context, f Filter) (Page, error)

	// FindEvent returns the version at which stream s holds the event with this id. The
	// first id of an append with caller-chosen ids is found on every backend (some find
	// every id); found is false when the stream does not hold it (a *DuplicateEventError
	// when another stream does).
	FindEvent(ctx context.Context, s Stream, eventID string) (version int64, found bool, err error)
}

// Feed is the global, gap-free ordered log of a backend that has one (memory, embedded,
// PostgreSQL). In-process projections read it.
type Feed interface {
	// ReadAll returns up to limit events with Position > after, in position order. A
	// reader must never later see an event with a position it has already passed.
	ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error)
	// Head returns the highest position readable now (0 for an empty store).
	Head(ctx context.Context) (uint64, error)
}

// Snapshot is an aggregate's state at Version. StateVersion is the aggregate's own
// snapshot format: a loader ignores snapshots of another format.
type Snapshot struct {
	Stream       Stream          `json:"stream"`
	Version      int64           `json:"version"`
	StateVersion int             `json:"stateVersion"`
	Timestamp    time.Time       `json:"timestamp"` // timestamp of the event at Version
	State        json.RawMessage `json:"state"`
}

// Snapshots stores aggregate snapshots next to the events. Snapshots are an optimisation:
// deleting all of them must change no result.
type Snapshots interface {
	SaveSnapshot(ctx context.Context, snap Snapshot) error
	// LoadFromSnapshot returns the newest snapshot within r (Version <= r.To when set,
	// Timestamp <= r.Until when set), or nil, and the stream's events after it within r.
	// Backends that can do it in one request (DynamoDB) do.
	LoadFromSnapshot(ctx context.Context, s Stream, r Range) (*Snapshot, []event.Event, error)
	// DeleteSnapshots removes the stream's snapshots with Version < below.
	DeleteSnapshots(ctx context.Context, s Stream, below int64) error
}

// Backend is what a complete backend provides.
type Backend interface {
	Store
	Snapshots
}
