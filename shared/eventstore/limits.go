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

// SameEvents reports whether stored holds exactly the ids of drafts, in order: the test
// for an idempotent retry of an append.
func SameEvents(stored, drafts []event.Event) bool {
	if len(stored) != len(drafts) {
		return false
	}
	for i := range drafts {
		if drafts[i].EventID == "" || stored[i].EventID != drafts[i].EventID {
			return false
		}
	}
	return true
}
