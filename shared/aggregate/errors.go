package aggregate

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels for the kinds of command failure; the HTTP edge maps them to status codes.
var (
	// ErrRule: the command breaks a business rule (422).
	ErrRule = errors.New("rule violation")
	// ErrNotFound: the aggregate does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrExists: the aggregate already exists (409).
	ErrExists = errors.New("already exists")
	// ErrUnreadable: the stream holds an event this code cannot apply; no command is
	// decided on a state that skipped it (500, naming the stream and version).
	ErrUnreadable = errors.New("unreadable event")
	// ErrContention: a command without an expected version kept meeting other writers
	// until its retry window closed (503 with Retry-After).
	ErrContention = errors.New("contention")
)

// UnreadableEventError names the event a load stopped at and why.
type UnreadableEventError struct {
	Type      string // aggregate type
	ID        string
	Version   int64
	EventType string
	Err       error
}

func (e *UnreadableEventError) Error() string {
	return fmt.Sprintf("%s/%s v%d (%s) cannot be applied: %v", e.Type, e.ID, e.Version, e.EventType, e.Err)
}
func (e *UnreadableEventError) Is(target error) bool { return target == ErrUnreadable }
func (e *UnreadableEventError) Unwrap() error        { return e.Err }

// ContentionError reports a command given up after Attempts conflicts; RetryAfter is a
// hint for the client.
type ContentionError struct {
	Type       string
	ID         string
	Attempts   int
	RetryAfter time.Duration
}

func (e *ContentionError) Error() string {
	return fmt.Sprintf("%s/%s: still conflicting after %d attempts", e.Type, e.ID, e.Attempts)
}
func (e *ContentionError) Is(target error) bool { return target == ErrContention }

// RuleError is a business-rule violation with a stable machine-readable code
// (insufficient_funds, account_closed, …).
type RuleError struct {
	Code    string
	Message string
}

func (e *RuleError) Error() string        { return e.Code + ": " + e.Message }
func (e *RuleError) Is(target error) bool { return target == ErrRule }

// Rule returns a RuleError.
func Rule(code, format string, args ...any) error {
	return &RuleError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotFound reports a missing aggregate.
func NotFound(typ, id string) error { return fmt.Errorf("%w: %s %s", ErrNotFound, typ, id) }

// ExistsError reports that a creating command hit an existing aggregate.
type ExistsError struct {
	Type, ID string
	Current  int64
}

func (e *ExistsError) Error() string        { return fmt.Sprintf("%s %s already exists", e.Type, e.ID) }
func (e *ExistsError) Is(target error) bool { return target == ErrExists }
