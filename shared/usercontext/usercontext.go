// Package usercontext is seed 000's user context over the ECM binding: CREATE → the
// initial event, UPDATE → one change event per preference that really changed, DELETE →
// the deleted event, READ → replay (or the read model). Preference values are arbitrary
// JSON.
package usercontext

import (
	"bytes"
	"encoding/json"
	"sort"
	"unicode/utf8"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// AggregateType of user contexts (seed 000).
const AggregateType = "user-context"

// Event types, as seed 000 names them.
const (
	Created           = "context.created"
	PreferenceUpdated = "context.preference.updated"
	PreferenceRemoved = "context.preference.removed"
	Deleted           = "context.deleted"
)

// Limits on one context. A context holds up to MaxPreferences keys, but one request may
// change at most MaxChangesPerRequest of them: every change is one event and a request's
// events are one atomic append (eventstore.MaxEventsPerAppend). Both are 422s with their
// own code, naming the limit.
const (
	MaxPreferences       = 256
	MaxKeyLength         = 128
	MaxChangesPerRequest = eventstore.MaxEventsPerAppend
)

// Rule codes of the limits.
const (
	CodeTooManyPreferences = "too_many_preferences"
	CodeTooManyChanges     = "too_many_changes"
)

func tooManyPreferences() error {
	return aggregate.Rule(CodeTooManyPreferences, "a context holds at most %d preferences", MaxPreferences)
}

// Payloads. Updated carries the seed's exact shape; OldValue is null for a new key.
type (
	CreatedPayload struct {
		Preferences map[string]json.RawMessage `json:"preferences"`
	}
	UpdatedPayload struct {
		Preference string          `json:"preference"`
		OldValue   json.RawMessage `json:"old_value"`
		NewValue   json.RawMessage `json:"new_value"`
	}
	RemovedPayload struct {
		Preference string          `json:"preference"`
		OldValue   json.RawMessage `json:"old_value"`
	}
	DeletedPayload struct{}
)

// Context is the aggregate state and the read model.
type Context struct {
	ID          string                     `json:"id"`
	Preferences map[string]json.RawMessage `json:"preferences"`
	Version     int64                      `json:"version"`
	Deleted     bool                       `json:"deleted,omitempty"`
	// Owner is the principal that created the context (the actor of context.created):
	// the API's owner policy lets only it, or an admin, read or change the context.
	Owner string `json:"owner,omitempty"`
}

// Register adds the event types.
func Register(r *event.Registry) {
	for _, t := range []string{Created, PreferenceUpdated, PreferenceRemoved, Deleted} {
		r.Register(t, 1)
	}
}

// Definition is the aggregate definition.
var Definition = aggregate.Definition[Context]{
	Type:            AggregateType,
	New:             func(id string) Context { return Context{ID: id, Preferences: map[string]json.RawMessage{}} },
	Apply:           Evolve,
	SnapshotVersion: 2, // 2: Owner (snapshots without it are replayed past)
}

// Evolve applies one event.
func Evolve(c Context, e event.Event) (Context, error) {
	if c.Preferences == nil {
		c.Preferences = map[string]json.RawMessage{}
	}
	switch e.EventType {
	case Created:
		var p CreatedPayload
		if err := e.Decode(&p); err != nil {
			return c, err
		}
		c.Preferences = map[string]json.RawMessage{}
		c.Owner = e.Metadata.Actor
		for k, v := range p.Preferences {
			c.Preferences[k] = v
		}
	case PreferenceUpdated:
		var p UpdatedPayload
		if err := e.Decode(&p); err != nil {
			return c, err
		}
		next := clone(c.Preferences)
		next[p.Preference] = p.NewValue
		c.Preferences = next
	case PreferenceRemoved:
		var p RemovedPayload
		if err := e.Decode(&p); err != nil {
			return c, err
		}
		next := clone(c.Preferences)
		delete(next, p.Preference)
		c.Preferences = next
	case Deleted:
		c.Deleted = true
	default:
		return c, nil
	}
	c.Version = e.Version
	return c, nil
}

func clone(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// canonical re-encodes a JSON value so equal values compare equal (key order, spacing).
func canonical(v json.RawMessage) []byte {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return v
	}
	out, _ := json.Marshal(x)
	return out
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// validateNames checks the preference names of a request.
func validateNames(prefs map[string]json.RawMessage) error {
	for k := range prefs {
		if k == "" || len(k) > MaxKeyLength || !utf8.ValidString(k) {
			return eventstore.Invalid("preference names must be 1–%d characters", MaxKeyLength)
		}
	}
	return nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func live(c Context, v int64) error {
	if v == 0 || c.Deleted {
		return aggregate.NotFound(AggregateType, c.ID)
	}
	return nil
}

// Create is ECM CREATE: the initial event with the initial preferences. A context that
// ever existed (even deleted: its history stays) cannot be created again.
func Create(prefs map[string]json.RawMessage) aggregate.Command[Context] {
	return func(c Context, v int64) ([]event.Event, error) {
		if v > 0 {
			return nil, &aggregate.ExistsError{Type: AggregateType, ID: c.ID, Current: v}
		}
		if err := validateNames(prefs); err != nil {
			return nil, err
		}
		if len(prefs) > MaxPreferences {
			return nil, tooManyPreferences()
		}
		clean := map[string]json.RawMessage{}
		for k, val := range prefs {
			if !isNull(val) {
				clean[k] = json.RawMessage(canonical(val))
			}
		}
		return []event.Event{event.MustNew(Created, CreatedPayload{Preferences: clean})}, nil
	}
}

// Patch is ECM UPDATE: one event per preference that changes; null removes a key;
// unchanged keys produce nothing.
func Patch(changes map[string]json.RawMessage) aggregate.Command[Context] {
	return func(c Context, v int64) ([]event.Event, error) {
		if err := live(c, v); err != nil {
			return nil, err
		}
		if err := validateNames(changes); err != nil {
			return nil, err
		}
		var out []event.Event
		size := len(c.Preferences)
		for _, k := range sortedKeys(changes) {
			next := changes[k]
			old, had := c.Preferences[k]
			switch {
			case isNull(next) && had:
				out = append(out, event.MustNew(PreferenceRemoved, RemovedPayload{Preference: k, OldValue: old}))
				size--
			case isNull(next):
			case !had:
				out = append(out, event.MustNew(PreferenceUpdated, UpdatedPayload{Preference: k, OldValue: json.RawMessage("null"), NewValue: canonical(next)}))
				size++
			case !bytes.Equal(canonical(old), canonical(next)):
				out = append(out, event.MustNew(PreferenceUpdated, UpdatedPayload{Preference: k, OldValue: old, NewValue: canonical(next)}))
			}
		}
		if size > MaxPreferences {
			return nil, tooManyPreferences()
		}
		if len(out) > MaxChangesPerRequest {
			return nil, aggregate.Rule(CodeTooManyChanges, "one request may change at most %d preferences; this one changes %d",
				MaxChangesPerRequest, len(out))
		}
		return out, nil
	}
}

// Replace is PUT: the preferences become exactly prefs, by the smallest set of updated
// and removed events.
func Replace(prefs map[string]json.RawMessage) aggregate.Command[Context] {
	return func(c Context, v int64) ([]event.Event, error) {
		if err := live(c, v); err != nil {
			return nil, err
		}
		changes := map[string]json.RawMessage{}
		for k := range c.Preferences {
			changes[k] = json.RawMessage("null")
		}
		for k, val := range prefs {
			changes[k] = val
		}
		return Patch(changes)(c, v)
	}
}

// Delete is ECM DELETE.
func Delete() aggregate.Command[Context] {
	return func(c Context, v int64) ([]event.Event, error) {
		if err := live(c, v); err != nil {
			return nil, err
		}
		return []event.Event{event.MustNew(Deleted, DeletedPayload{})}, nil
	}
}
