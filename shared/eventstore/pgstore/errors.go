package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// classify gives PostgreSQL failures the store's error kinds, so that the HTTP edge
// answers 503 with Retry-After (or 400) instead of a 500. The original error stays in
// the chain for logs and errors.As.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "53300", // too_many_connections (server, database or role limit)
			pgErr.Code == "55P03",                        // lock_not_available: lock_timeout elapsed
			pgErr.Code == "57014",                        // query_canceled: statement_timeout elapsed
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock: retryable
			return &eventstore.ThrottledError{RetryAfter: time.Second, Err: err}
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, starting up
			strings.HasPrefix(pgErr.Code, "08"): // connection exceptions
			return &eventstore.ThrottledError{RetryAfter: 2 * time.Second, Err: err}
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "54000":
			// Data PostgreSQL refuses although it passed the store's checks: \u0000 in
			// jsonb, NUL bytes or invalid UTF-8 in text, values beyond its limits.
			return fmt.Errorf("%w: PostgreSQL rejected the data: %s: %w", eventstore.ErrInvalid, pgErr.Message, err)
		}
		return err
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return &eventstore.ThrottledError{RetryAfter: 2 * time.Second, Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller's own deadline: not the database's state
	}
	if pgconn.SafeToRetry(err) {
		// The connection failed before the request was sent: nothing happened.
		return &eventstore.ThrottledError{RetryAfter: time.Second, Err: err}
	}
	return err
}
