// Package event defines the event envelope shared by every store, projection and API,
// the registry of known event types, and the upcaster chain that lifts old payload
// schemas to the current one on every read path.
package event

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Metadata travels with every event. CorrelationID ties together everything one request
// caused; CausationID names the command or event that directly caused this one.
type Metadata struct {
	Actor         string `json:"actor,omitempty"`
	Source        string `json:"source,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
}

// Event is the stored envelope. Version is the aggregate's sequence (1, 2, 3 … no gaps);
// SchemaVersion is the payload schema that upcasters work on; Position is the global order
// on backends that have one (0 where the backend has none).
type Event struct {
	EventID       string          `json:"eventId"`
	EventType     string          `json:"eventType"`
	AggregateID   string          `json:"aggregateId"`
	AggregateType string          `json:"aggregateType"`
	Version       int64           `json:"version"`
	SchemaVersion int             `json:"schemaVersion"`
	Timestamp     time.Time       `json:"timestamp"`
	Position      uint64          `json:"position,omitempty"`
	Payload       json.RawMessage `json:"payload"`
	Metadata      Metadata        `json:"metadata"`
}

// New builds an event draft: the store fills in aggregate, version, position and, when
// left zero, timestamp and event id.
func New(eventType string, payload any) (Event, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: encode payload: %w", eventType, err)
	}
	return Event{EventType: eventType, SchemaVersion: 1, Payload: raw}, nil
}

// MustNew is New for payloads that cannot fail to encode (plain structs and maps).
func MustNew(eventType string, payload any) Event {
	e, err := New(eventType, payload)
	if err != nil {
		panic(err)
	}
	return e
}

// Decode unmarshals the payload into dst.
func (e Event) Decode(dst any) error {
	if err := json.Unmarshal(e.Payload, dst); err != nil {
		return fmt.Errorf("%w: %s v%d of %s/%s: %v", ErrUndecodable, e.EventType, e.Version, e.AggregateType, e.AggregateID, err)
	}
	return nil
}

// NewID returns a random (v4) event id.
func NewID() string { return uuid.NewString() }

// DerivedID returns a deterministic (v5) id from a seed, so that a retried command or a
// redelivered saga step produces the same event ids and the store can recognise the retry.
func DerivedID(seed string, n int) string {
	return uuid.NewSHA1(idNamespace, fmt.Appendf(nil, "%s/%d", seed, n)).String()
}

var idNamespace = uuid.MustParse("5b0c6f7e-6f1e-4c1a-9a55-2f1d0c6a7e11")

// Now is the store clock: UTC, truncated to microseconds so that every backend (PostgreSQL
// keeps microseconds) returns exactly what it was given.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ValidID reports whether s is a valid aggregate (or other resource) id:
// 1–128 characters of A-Z a-z 0-9 . _ : -, not made of dots alone. Ids become URL path
// segments, where "." and ".." are the current and parent directory: a client library,
// proxy or cache that cleans paths would send such a request to another resource.
func ValidID(s string) bool { return idPattern.MatchString(s) && strings.Trim(s, ".") != "" }
