package eventstore

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ecmstore/ecmstore/shared/event"
)

// Limits every backend enforces before it writes anything, so a system that runs on the
// embedded store keeps working when moved to DynamoDB: an item is at most 400 KB and a
// transaction at most 100 items and 4 MB.
const (
	MaxEventBytes      = 350 * 1024 // encoded envelope; leaves room for DynamoDB keys and index attributes
	MaxEventsPerAppend = 100
	MaxAppendBytes     = 4 * 1000 * 1000
	MaxSnapshotBytes   = MaxEventBytes // snapshot state; a snapshot is one item next to the events
)

// Limits of the fields a backend uses as or in a key or index, chosen so that every
// backend can store them: DynamoDB's GSI key attributes (partition ≤ 2048 bytes, sort ≤
// 1024), PostgreSQL's B-tree index rows (≤ ~2700 bytes), bbolt keys (≤ 32 KB, and index
// keys of the form kind value 0x00 position, stream keys Type#ID 0x00 version). Values
// that pass leave every backend's keys far below those bounds, so a backend never fails
// half-way through a write on a value another backend accepts.
const (
	// MaxTypeLength bounds event and aggregate types and ids, and event ids: 1–128
	// characters of A-Z a-z 0-9 . _ : - (event.ValidID). '#' and 0x00 are key separators.
	MaxTypeLength = 128
	// MaxTraceIDBytes bounds correlation and causation ids: 1–128 bytes of visible ASCII
	// (0x21–0x7E) other than '#'. The correlation id is an index key on every backend.
	MaxTraceIDBytes = 128
	// MaxActorBytes bounds actor and source: valid UTF-8 without NUL (PostgreSQL's jsonb
	// cannot hold \u0000), at most this many bytes.
	MaxActorBytes = 256
)

// FieldError reports a field some backend could not store as given: too long for the
// keys or indexes it goes into, holding characters they reserve, or outside what a
// backend's typed storage holds (int columns, four-digit years, jsonb). Nothing was
// written. It is an ErrInvalid (errors.Is), so the HTTP edge answers 400.
type FieldError struct {
	Event  int    // index of the event within the append; -1 for the stream or a snapshot
	Field  string // JSON name: "eventId", "metadata.correlationId", "aggregateId", ...
	Reason string // what the value must be, fit to show a client
}

func (e *FieldError) Error() string {
	if e.Event >= 0 {
		return fmt.Sprintf("%v: event %d: %s %s", ErrInvalid, e.Event, e.Field, e.Reason)
	}
	return fmt.Sprintf("%v: %s %s", ErrInvalid, e.Field, e.Reason)
}

func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

const idRule = "must be 1–128 characters of A-Z a-z 0-9 . _ : -"

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
	if err := CheckStream(s); err != nil {
		return err
	}
	if len(events) == 0 {
		return Invalid("append needs at least one event")
	}
	if len(events) > MaxEventsPerAppend {
		return &LimitError{What: "events per append", Limit: MaxEventsPerAppend, Got: len(events)}
	}
	total := 0
	seen := make(map[string]bool, len(events))
	for i, e := range events {
		if err := checkFields(i, e); err != nil {
			return err
		}
		if e.EventID != "" {
			if seen[e.EventID] {
				return Invalid("event id %s appears twice in one append", e.EventID)
			}
			seen[e.EventID] = true
		}
		if len(e.Payload) > 0 {
			if reason := checkJSON(e.Payload); reason != "" {
				return &FieldError{Event: i, Field: "payload", Reason: reason}
			}
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

// CheckStream validates a stream's identity: its type and id form the key of every event
// and snapshot of the stream.
func CheckStream(s Stream) error {
	if !event.ValidID(s.Type) {
		return &FieldError{Event: -1, Field: "aggregateType", Reason: idRule}
	}
	if !event.ValidID(s.ID) {
		return &FieldError{Event: -1, Field: "aggregateId", Reason: idRule}
	}
	return nil
}

// checkFields validates the fields of event i that backends put into keys and indexes or
// store in typed columns. Empty optional fields are left for the store to fill or omit.
func checkFields(i int, e event.Event) error {
	bad := func(field, reason string) error { return &FieldError{Event: i, Field: field, Reason: reason} }
	switch {
	case e.EventID != "" && !event.ValidID(e.EventID):
		return bad("eventId", idRule)
	case !event.ValidID(e.EventType):
		return bad("eventType", idRule)
	case e.SchemaVersion < 0 || e.SchemaVersion > math.MaxInt32:
		return bad("schemaVersion", fmt.Sprintf("must be 0–%d", math.MaxInt32))
	case !e.Timestamp.IsZero() && !validTime(e.Timestamp):
		return bad("timestamp", "must be within the years 1–9999")
	case e.Metadata.CorrelationID != "" && !validTraceID(e.Metadata.CorrelationID):
		return bad("metadata.correlationId", traceRule)
	case e.Metadata.CausationID != "" && !validTraceID(e.Metadata.CausationID):
		return bad("metadata.causationId", traceRule)
	case !validText(e.Metadata.Actor):
		return bad("metadata.actor", textRule)
	case !validText(e.Metadata.Source):
		return bad("metadata.source", textRule)
	}
	return nil
}

var (
	traceRule = fmt.Sprintf("must be 1–%d bytes of visible ASCII other than '#'", MaxTraceIDBytes)
	textRule  = fmt.Sprintf("must be valid UTF-8 without NUL, at most %d bytes", MaxActorBytes)
)

// ValidTraceID reports whether s can be a correlation or causation id: 1–MaxTraceIDBytes
// bytes of visible ASCII (0x21–0x7E) other than '#'.
func ValidTraceID(s string) bool { return validTraceID(s) }

func validTraceID(s string) bool {
	if len(s) == 0 || len(s) > MaxTraceIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '#' {
			return false
		}
	}
	return true
}

func validText(s string) bool {
	return len(s) <= MaxActorBytes && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validTime: RFC 3339 (the JSON envelope, DynamoDB's time keys) has four-digit years.
func validTime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// CheckSnapshot validates a snapshot before any backend writes it: the stream as for an
// append, a version that covers an event, a state that is JSON within MaxSnapshotBytes.
func CheckSnapshot(snap Snapshot) error {
	if err := CheckStream(snap.Stream); err != nil {
		return err
	}
	bad := func(field, reason string) error { return &FieldError{Event: -1, Field: field, Reason: reason} }
	switch {
	case snap.Version < 1:
		return bad("version", "must be at least 1: a snapshot covers an event")
	case snap.StateVersion < 0 || snap.StateVersion > math.MaxInt32:
		return bad("stateVersion", fmt.Sprintf("must be 0–%d", math.MaxInt32))
	case !validTime(snap.Timestamp):
		return bad("timestamp", "must be within the years 1–9999")
	case len(snap.State) > MaxSnapshotBytes:
		return &LimitError{What: "snapshot size", Limit: MaxSnapshotBytes, Got: len(snap.State)}
	}
	if reason := checkJSON(snap.State); reason != "" {
		return bad("state", reason)
	}
	return nil
}

// checkJSON returns why raw is not JSON every backend stores as given, or "". Beyond
// json.Valid: UTF-8 (DynamoDB strings and PostgreSQL text require it; Go's JSON scanner
// does not check), and no \u0000 or unpaired UTF-16 surrogate escapes, which
// PostgreSQL's jsonb refuses.
func checkJSON(raw []byte) string {
	switch {
	case !json.Valid(raw):
		return "must be JSON"
	case !utf8.Valid(raw):
		return "must be UTF-8"
	}
	// Outside strings valid JSON has no backslash, so every backslash starts an escape.
	pendingHigh := false
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			if pendingHigh {
				return "must not hold an unpaired UTF-16 surrogate escape"
			}
			continue
		}
		i++
		if raw[i] != 'u' {
			if pendingHigh {
				return "must not hold an unpaired UTF-16 surrogate escape"
			}
			continue
		}
		var r rune
		for _, c := range raw[i+1 : i+5] {
			r <<= 4
			switch {
			case c >= '0' && c <= '9':
				r |= rune(c - '0')
			case c >= 'a' && c <= 'f':
				r |= rune(c-'a') + 10
			default:
				r |= rune(c-'A') + 10
			}
		}
		i += 4
		switch {
		case r == 0:
			return "must not hold \\u0000 (PostgreSQL's jsonb cannot store it)"
		case r >= 0xd800 && r <= 0xdbff:
			if pendingHigh {
				return "must not hold an unpaired UTF-16 surrogate escape"
			}
			pendingHigh = true
		case r >= 0xdc00 && r <= 0xdfff:
			if !pendingHigh {
				return "must not hold an unpaired UTF-16 surrogate escape"
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return "must not hold an unpaired UTF-16 surrogate escape"
			}
		}
	}
	if pendingHigh {
		return "must not hold an unpaired UTF-16 surrogate escape"
	}
	return ""
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

// CheckFilter validates a query's filter values against the rules of what can be stored:
// a value no event can hold would otherwise be an error on one backend (a DynamoDB key
// attribute over its limit) and an empty result on another.
func CheckFilter(f Filter) error {
	bad := func(field, reason string) error { return &FieldError{Event: -1, Field: field, Reason: reason} }
	switch {
	case f.EventType != "" && !event.ValidID(f.EventType):
		return bad("eventType", idRule)
	case f.AggregateType != "" && !event.ValidID(f.AggregateType):
		return bad("aggregateType", idRule)
	case f.CorrelationID != "" && !validTraceID(f.CorrelationID):
		return bad("correlationId", traceRule)
	case !f.Since.IsZero() && !validTime(f.Since):
		return bad("since", "must be within the years 1–9999")
	case !f.Until.IsZero() && !validTime(f.Until):
		return bad("until", "must be within the years 1–9999")
	}
	return nil
}
