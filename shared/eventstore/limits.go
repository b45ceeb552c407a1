package eventstore

import (
	"encoding/json"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
)

// Limits every backend enforces before it writes anything, so a system that runs on the
// embedded store keeps working when moved to DynamoDB: an item is at most 400 KB and a
// transaction at most 100 items and 4 MB.
const (
	MaxEventBytes      = 350 * 1024 // encoded envelope; leaves room for DynamoDB keys and index attributes
	MaxEventsPerAppend = 100
	MaxAppendBytes     = 4 * 1000 * 1000
	MaxTypeLength      = 128
)

// Prepare validates an append and fills in what the store owns: aggregate identity, event
// ids and timestamps where zero, schema version 1 where zero, and versions from
// current+1. now is the store clock. It returns copies; events is not modified.
func Prepare(s Stream, current int64, events []event.Event, now time.Time) ([]event.Event, error) {
	if err := CheckAppend(s, events); err != nil {
		return nil, err
	}
	out := make([]event.Event, len(events))
	for i, e := range events {
		e.AggregateType, e.AggregateID = s.Type, s.ID
		e.Version = current + int64(i) + 1
		e.Position = 0
		if e.EventID == "" {
			e.EventID = event.NewID()
		}
		if e.Timestamp.IsZero() {
			e.Timestamp = now
		}
		e.Timestamp = e.Timestamp.UTC().Truncate(time.Microsecond)
		if e.SchemaVersion == 0 {
			e.SchemaVersion = 1
		}
		out[i] = e
	}
	return out, nil
}

// CheckAppend validates the stream, the events and the limits; nothing is modified.
func CheckAppend(s Stream, events []event.Event) error {
	if !event.ValidID(s.ID) {
		return Invalid("aggregate id %q must be 1–128 characters of A-Z a-z 0-9 . _ : -", s.ID)
	}
	if !event.ValidID(s.Type) {
		return Invalid("aggregate type %q must be 1–128 characters of A-Z a-z 0-9 . _ : -", s.Type)
	}
	if len(events) == 0 {
		return Invalid("append needs at least one event")
	}
	if len(events) > MaxEventsPerAppend {
		return &LimitError{What: "events per append", Limit: MaxEventsPerAppend, Got: len(events)}
	}
	total := 0
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		if e.EventType == "" || len(e.EventType) > MaxTypeLength {
			return Invalid("event type must be 1–%d characters", MaxTypeLength)
		}
		if e.EventID != "" {
			if seen[e.EventID] {
				return Invalid("event id %s appears twice in one append", e.EventID)
			}
			seen[e.EventID] = true
		}
		if len(e.Payload) > 0 && !json.Valid(e.Payload) {
			return Invalid("payload of %s is not valid JSON", e.EventType)
		}
		n := EncodedSize(e)
		if n > MaxEventBytes {
			return &LimitError{What: "event size", Limit: MaxEventBytes, Got: n}
		}
		total += n
	}
	if total > MaxAppendBytes {
		return &LimitError{What: "append size", Limit: MaxAppendBytes, Got: total}
	}
	return nil
}

// EncodedSize is the size of the event's JSON envelope, the measure all limits use.
func EncodedSize(e event.Event) int {
	b, err := json.Marshal(e)
	if err != nil {
		return MaxEventBytes + 1
	}
	return len(b)
}

// SameEvents reports whether stored holds exactly the ids of prepared, in order: the test
// for an idempotent retry of an append. prepared must have its ids (see Prepare).
func SameEvents(stored, prepared []event.Event) bool {
	if len(stored) != len(prepared) {
		return false
	}
	for i := range prepared {
		if prepared[i].EventID == "" || stored[i].EventID != prepared[i].EventID {
			return false
		}
	}
	return true
}

// Recognise answers a re-append whose first event id the store holds at version held
// of stream heldIn: stored are the events from that version on (at least len(prepared)
// of them when the stream has them). The original append is returned when the ids match
// in order; anything else is a *DuplicateEventError.
func Recognise(s, heldIn Stream, held int64, stored, prepared []event.Event) ([]event.Event, error) {
	dup := &DuplicateEventError{EventID: prepared[0].EventID, Held: heldIn, Version: held}
	if heldIn != s || len(stored) < len(prepared) {
		return nil, dup
	}
	stored = stored[:len(prepared)]
	if !SameEvents(stored, prepared) {
		return nil, dup
	}
	return stored, nil
}

// AssignIDs gives every event without an id a fresh one, so the store's own retries of a
// write carry the ids of the first attempt. It returns a copy; events is not modified.
func AssignIDs(events []event.Event) []event.Event {
	out := append([]event.Event(nil), events...)
	for i := range out {
		if out[i].EventID == "" {
			out[i].EventID = event.NewID()
		}
	}
	return out
}
