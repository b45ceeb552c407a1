package aggregate

import (
	"errors"
	"fmt"
)

// Sentinels for the kinds of command failure; the HTTP edge maps them to status codes.
var (
	// ErrRule: the command breaks a business rule (422).
	ErrRule = errors.New("rule violation")
	// ErrNotFound: the aggregate does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrExists: the aggregate already exists (409).
	ErrExists = errors.New("already exists")
)

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
