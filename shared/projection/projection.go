// Package projection turns event streams into read models, the same way on every backend:
// in-process from a store's global feed (memory, embedded, PostgreSQL) or from DynamoDB
// Streams batches in the projector Lambda.
//
// Each projection keeps, per aggregate, the last version it applied (its guard), written
// in the same document-store transaction as the read-model change. So a duplicate or
// replayed delivery changes nothing, an event never applies out of order (a gap is filled
// from the event store first), and a crash between the two is impossible. An event that
// keeps failing is parked: recorded as a dead letter with its error; that aggregate's
// later events wait behind it while other aggregates keep flowing, and redrive re-applies
// them in order from the event store (not from the 24-hour DynamoDB stream).
package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Projection builds one read model.
type Projection interface {
	// Name identifies the projection (in URLs, guards and dead letters).
	Name() string
	// AggregateTypes are the streams it follows. Every event of those streams passes
	// through the guard, in version order, even the ones Apply ignores.
	AggregateTypes() []string
	// Collections are the document collections it owns; rebuild empties them.
	Collections() []string
	// Apply changes the read model for one event inside tx. It must not have side
	// effects outside tx (the transaction may run again).
	Apply(ctx context.Context, tx docstore.Tx, e event.Event) error
}

// Outcome of delivering one event to one projection.
type Outcome int

const (
	Applied   Outcome = iota
	Duplicate         // already applied: nothing changed
	Gap               // an earlier version is missing: caught up from the store
	Blocked           // the aggregate has a parked event: this one waits behind it
	Ignored           // the projection does not follow this aggregate type
	Parked            // failed for good and parked as a dead letter
)

func (o Outcome) String() string {
	return [...]string{"applied", "duplicate", "gap", "blocked", "ignored", "parked"}[o]
}

// DeadLetter is a parked event: the first event of an aggregate a projection could not
// apply. Later events of that aggregate wait behind it. Reactor marks a saga's dead
// letter: redriving it issues commands, so it goes to the saga's own queue, whose
// redrive may append events (see ddbstream.SQSSink).
type DeadLetter struct {
	Projection    string      `json:"projection"`
	AggregateType string      `json:"aggregateType"`
	AggregateID   string      `json:"aggregateId"`
	Version       int64       `json:"version"`
	EventID       string      `json:"eventId"`
	EventType     string      `json:"eventType"`
	Error         string      `json:"error"`
	ParkedAt      time.Time   `json:"parkedAt"`
	Attempts      int         `json:"attempts"`
	Notified      bool        `json:"notified"`
	Reactor       bool        `json:"reactor,omitempty"`
	Event         event.Event `json:"event"`
}

// Stream returns the parked aggregate's stream.
func (d DeadLetter) Stream() eventstore.Stream {
	return eventstore.Stream{Type: d.AggregateType, ID: d.AggregateID}
}

// Sink is told of each newly parked event (the SQS dead-letter queue on AWS). The
// document store stays the record of what is parked; the sink is for alarms and redrive
// triggers.
type Sink interface {
	Send(ctx context.Context, d DeadLetter) error
}

// ErrUnknownProjection is returned for a projection name that is not registered.
var ErrUnknownProjection = errors.New("unknown projection")

type guard struct {
	Version int64 `json:"version"`
}

// Internal collections. Names start with "_" so they cannot clash with a projection's.
func guardCollection(p string) string  { return "_guard:" + p }
func parkedCollection(p string) string { return "_parked:" + p }

const statusCollection = "_projections"

// Status is a projection's health as reported by GET /projections.
type Status struct {
	Name       string    `json:"name"`
	Status     string    `json:"status"` // running | rebuilding | blocked
	Checkpoint uint64    `json:"checkpoint,omitempty"`
	Lag        *uint64   `json:"lag"` // events behind the feed head; null where the backend has no global order
	Parked     int       `json:"parked"`
	LastError  string    `json:"lastError,omitempty"`
	RebuiltAt  time.Time `json:"rebuiltAt,omitzero"`
	// LastRecord is the last event or stream record delivered live: how old it was when
	// it was processed is the lag on every backend, DynamoDB's stream path included.
	LastRecord *StreamPosition `json:"lastRecord"`
	// Rebuild is the latest rebuild job, running or done (absent if there never was one).
	Rebuild *RebuildProgress `json:"rebuild,omitempty"`
}

// StreamPosition is the last record live delivery processed: a feed position, or a
// DynamoDB stream record's sequence number, with the record's creation time (the
// stream's ApproximateCreationDateTime) and when it was processed.
type StreamPosition struct {
	Position       uint64    `json:"position,omitempty"`
	SequenceNumber string    `json:"sequenceNumber,omitempty"`
	CreatedAt      time.Time `json:"createdAt,omitzero"`
	ProcessedAt    time.Time `json:"processedAt"`
	// AgeSeconds is ProcessedAt − CreatedAt: how far behind live delivery was (Lambda's
	// IteratorAge).
	AgeSeconds float64 `json:"ageSeconds"`
}

type statusDoc struct {
	Rebuilding bool            `json:"rebuilding,omitempty"` // before rebuild jobs: no longer written
	RebuiltAt  time.Time       `json:"rebuiltAt,omitzero"`
	Checkpoint uint64          `json:"checkpoint"`
	LastRecord *StreamPosition `json:"lastRecord,omitempty"`
}

func decodeDeadLetter(raw json.RawMessage) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("dead letter: %w", err)
	}
	return d, nil
}

// IsTransient reports errors worth retrying as they are (throttling, optimistic-lock
// contention, timeouts) rather than parking.
func IsTransient(err error) bool {
	return errors.Is(err, eventstore.ErrThrottled) || errors.Is(err, docstore.ErrConflict) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
