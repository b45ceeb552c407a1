package eventstore

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends wrap them in the typed errors below; callers test with
// errors.Is (kind) or errors.As (details).
var (
	ErrConflict  = errors.New("version conflict")
	ErrInvalid   = errors.New("invalid request")
	ErrTooLarge  = errors.New("limit exceeded")
	ErrThrottled = errors.New("store throttled")
	ErrNotFound  = errors.New("not found")
	// ErrDuplicateEvent: an append carries an event id the store holds, but not as that
	// same append (another stream, another position in the batch, other ids beside it).
	ErrDuplicateEvent = errors.New("event id already used")
	// ErrCorrupt: a stored event cannot be decoded (edited by hand, damaged).
	ErrCorrupt = errors.New("corrupt stored event")
)

// CorruptEventError names a stored event that cannot be decoded.
type CorruptEventError struct {
	Stream  Stream
	Version int64
	Err     error
}

func (e *CorruptEventError) Error() string {
	return fmt.Sprintf("stored event %s v%d cannot be decoded: %v", e.Stream, e.Version, e.Err)
}
func (e *CorruptEventError) Is(target error) bool { return target == ErrCorrupt }
func (e *CorruptEventError) Unwrap() error        { return e.Err }

// DuplicateEventError names the event id and where the store holds it. Nothing was
// written.
type DuplicateEventError struct {
	EventID string
	Held    Stream // the stream that holds the id
	Version int64  // its version there
}

func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("event id %s is already used by %s v%d", e.EventID, e.Held, e.Version)
}

func (e *DuplicateEventError) Is(target error) bool { return target == ErrDuplicateEvent }

// ConflictError reports an expected-version mismatch and the stream's current version.
type ConflictError struct {
	Stream   Stream
	Expected int64
	Current  int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("version conflict on %s: expected %d, current %d", e.Stream, e.Expected, e.Current)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// LimitError reports a limit that an append would exceed; nothing was written.
type LimitError struct {
	What  string // "event size", "events per append", "append size"
	Limit int
	Got   int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s %d exceeds the limit of %d", e.What, e.Got, e.Limit)
}

func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// ThrottledError reports that the backend shed load after retrying; RetryAfter is a hint
// for the client.
type ThrottledError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *ThrottledError) Error() string { return fmt.Sprintf("store throttled: %v", e.Err) }
func (e *ThrottledError) Unwrap() error { return e.Err }
func (e *ThrottledError) Is(target error) bool {
	return target == ErrThrottled
}

// Invalid returns an ErrInvalid error with a message fit to show a client.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
