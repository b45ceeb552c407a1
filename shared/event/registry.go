package event

import (
	"errors"
	"fmt"
	"sync"
)

var (
	// ErrUnknownType is returned for an event type no registry entry describes.
	ErrUnknownType = errors.New("unknown event type")
	// ErrUndecodable is returned for a payload that does not decode.
	ErrUndecodable = errors.New("undecodable event payload")
	// ErrUpcast is returned when an upcaster fails or leaves the schema version unchanged.
	ErrUpcast = errors.New("upcast failed")
)

// UpcastFunc lifts an event from one schema version to the next; it must return the event
// with SchemaVersion one higher.
type UpcastFunc func(Event) (Event, error)

type upcastKey struct {
	eventType string
	from      int
}

// Registry knows the event types of a system, their current schema versions and the
// upcasters that bring older payloads up to date. It is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	current   map[string]int // eventType → current schema version
	upcasters map[upcastKey]UpcastFunc
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{current: map[string]int{}, upcasters: map[upcastKey]UpcastFunc{}}
}

// Register declares an event type and its current schema version.
func (r *Registry) Register(eventType string, currentSchema int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current[eventType] = currentSchema
}

// Upcaster registers fn to lift eventType from schema `from` to `from+1`.
func (r *Registry) Upcaster(eventType string, from int, fn UpcastFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.upcasters[upcastKey{eventType, from}] = fn
}

// Known reports whether eventType was registered.
func (r *Registry) Known(eventType string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.current[eventType]
	return ok
}

// CurrentSchema returns the schema version new events of this type are written with
// (1 for unregistered types).
func (r *Registry) CurrentSchema(eventType string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.current[eventType]; ok {
		return v
	}
	return 1
}

// Upcast applies the upcaster chain until no upcaster matches. An event already at the
// current schema is returned unchanged.
func (r *Registry) Upcast(e Event) (Event, error) {
	if r == nil {
		return e, nil
	}
	for range 1000 { // a chain longer than this is a registration loop, not a schema history
		r.mu.RLock()
		fn, ok := r.upcasters[upcastKey{e.EventType, e.SchemaVersion}]
		r.mu.RUnlock()
		if !ok {
			return e, nil
		}
		from := e.SchemaVersion
		next, err := fn(e)
		if err != nil {
			return e, fmt.Errorf("%w: %s v%d → v%d: %w", ErrUpcast, e.EventType, from, from+1, err)
		}
		if next.SchemaVersion != from+1 {
			return e, fmt.Errorf("%w: %s upcaster from v%d returned v%d", ErrUpcast, e.EventType, from, next.SchemaVersion)
		}
		e = next
	}
	return e, fmt.Errorf("%w: %s: upcaster chain does not end", ErrUpcast, e.EventType)
}

// UpcastAll upcasts a slice in place.
func (r *Registry) UpcastAll(events []Event) error {
	for i := range events {
		e, err := r.Upcast(events[i])
		if err != nil {
			return err
		}
		events[i] = e
	}
	return nil
}

// Check returns ErrUnknownType for an unregistered type (the projector parks such events).
func (r *Registry) Check(e Event) error {
	if !r.Known(e.EventType) {
		return fmt.Errorf("%w: %q (%s/%s v%d)", ErrUnknownType, e.EventType, e.AggregateType, e.AggregateID, e.Version)
	}
	return nil
}
