package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// Error is a client-facing error with its status and code. Handlers return it (or a
// domain/store error, mapped in writeError) and never write error bodies themselves.
type Error struct {
	Status         int
	Code           string
	Message        string
	CurrentVersion *int64
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errBadRequest(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: fmt.Sprintf(format, args...)}
}

func errNotFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

// Refusals of the request as such, before any route runs (stable codes of the contract).
func errInvalidPath() error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_path",
		Message: "the path must be absolute, without empty, '.' or '..' segments or a trailing slash"}
}

func errInvalidUTF8(msg string) error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_utf8", Message: msg}
}

func errHeadersTooLarge() error {
	return &Error{Status: http.StatusRequestHeaderFieldsTooLarge, Code: "headers_too_large",
		Message: fmt.Sprintf("the request line and headers exceed %d bytes", MaxHeaderBytes)}
}

func errRequestTimeout() error {
	return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout", Message: "the request body did not arrive in time"}
}

// BadRequest and NotFound are for domain modules.
func BadRequest(format string, args ...any) error { return errBadRequest(format, args...) }
func NotFound(format string, args ...any) error   { return errNotFound(format, args...) }

type errorBody struct {
	Error struct {
		Code           string `json:"code"`
		Message        string `json:"message"`
		CurrentVersion *int64 `json:"currentVersion,omitempty"`
		CorrelationID  string `json:"correlationId,omitempty"`
	} `json:"error"`
}

// classify maps any error to the contract's status and code. It is the one place where
// internal errors become responses.
func classify(err error) *Error {
	var e *Error
	var rule *aggregate.RuleError
	var conflict *eventstore.ConflictError
	var exists *aggregate.ExistsError
	var throttled *eventstore.ThrottledError
	var maxBytes *http.MaxBytesError
	var limit *eventstore.LimitError
	var contention *aggregate.ContentionError
	var unreadable *aggregate.UnreadableEventError
	var dup *eventstore.DuplicateEventError
	var corrupt *eventstore.CorruptEventError
	var cursor *eventstore.CursorError
	var forbidden *ForbiddenError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &forbidden):
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: forbidden.Reason}
	case errors.As(err, &rule):
		return &Error{Status: http.StatusUnprocessableEntity, Code: rule.Code, Message: rule.Message}
	case errors.As(err, &exists):
		return &Error{Status: http.StatusConflict, Code: "already_exists", Message: exists.Error(), CurrentVersion: &exists.Current}
	case errors.As(err, &conflict):
		return &Error{Status: http.StatusConflict, Code: "version_conflict",
			Message: fmt.Sprintf("expected version %d, current version is %d", conflict.Expected, conflict.Current), CurrentVersion: &conflict.Current}
	case errors.As(err, &dup):
		return &Error{Status: http.StatusConflict, Code: "event_id_reused",
			Message: fmt.Sprintf("event id %s already belongs to %s v%d", dup.EventID, dup.Held, dup.Version)}
	case errors.As(err, &contention):
		return &Error{Status: http.StatusServiceUnavailable, Code: "contention",
			Message: "other writers kept changing this aggregate; retry after the indicated delay"}
	case errors.As(err, &unreadable):
		// The stream and version are the operator's lead; the cause stays in the log.
		return &Error{Status: http.StatusInternalServerError, Code: "unreadable_event",
			Message: fmt.Sprintf("%s/%s holds an event this server cannot apply at version %d (%s); commands on it wait until it can",
				unreadable.Type, unreadable.ID, unreadable.Version, unreadable.EventType)}
	case errors.As(err, &corrupt):
		return &Error{Status: http.StatusInternalServerError, Code: "unreadable_event",
			Message: fmt.Sprintf("%s holds a stored event that cannot be decoded at version %d; commands on it wait until it is repaired",
				corrupt.Stream, corrupt.Version)}
	case errors.Is(err, eventstore.ErrCorrupt):
		return &Error{Status: http.StatusInternalServerError, Code: "unreadable_event", Message: "a stored event cannot be decoded"}
	case errors.Is(err, aggregate.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, projection.ErrUnknownProjection):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.As(err, &maxBytes):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large", Message: fmt.Sprintf("request body exceeds %d bytes", maxBytes.Limit)}
	case errors.As(err, &limit):
		// 413 is for bodies over MaxBodyBytes; a body within it whose events would exceed a
		// store limit is a request the contract cannot take (the message names the limit).
		return &Error{Status: http.StatusUnprocessableEntity, Code: "limit_exceeded", Message: limit.Error()}
	case errors.As(err, &cursor):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_cursor", Message: cursor.Error()}
	case errors.Is(err, eventstore.ErrInvalid), errors.Is(err, docstore.ErrInvalidKey), errors.Is(err, docstore.ErrInvalidPage):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: err.Error()}
	case errors.As(err, &throttled) || errors.Is(err, eventstore.ErrThrottled):
		return &Error{Status: http.StatusServiceUnavailable, Code: "throttled", Message: "the event store is busy; retry after the indicated delay"}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	if e.Status == http.StatusServiceUnavailable {
		retry := 1.0
		var th *eventstore.ThrottledError
		var ce *aggregate.ContentionError
		switch {
		case errors.As(err, &th) && th.RetryAfter > 0:
			retry = math.Ceil(th.RetryAfter.Seconds())
		case errors.As(err, &ce) && ce.RetryAfter > 0:
			retry = math.Ceil(ce.RetryAfter.Seconds())
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(retry)))
	}
	if e.Status >= 500 {
		// The cause stays in the log (with the correlation id the client got), never in
		// the response.
		s.Logger.ErrorContext(r.Context(), "request failed", "err", err, "correlationId", CorrelationID(r.Context()),
			"method", r.Method, "path", r.URL.Path)
	}
	var body errorBody
	body.Error.Code, body.Error.Message, body.Error.CurrentVersion = e.Code, e.Message, e.CurrentVersion
	if e.Status >= 500 {
		body.Error.CorrelationID = CorrelationID(r.Context())
	}
	writeJSON(w, e.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
