package pgstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func TestClassify(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("pgstore: op: %w", &pgconn.PgError{Code: code, Message: "m"})
	}
	for _, tc := range []struct {
		name string
		err  error
		want error // the kind errors.Is must find; nil: left as it is
	}{
		{"too many connections", pg("53300"), eventstore.ErrThrottled},
		{"server starting up", pg("57P03"), eventstore.ErrThrottled},
		{"server shutting down", pg("57P01"), eventstore.ErrThrottled},
		{"connection failure", pg("08006"), eventstore.ErrThrottled},
		{"lock timeout", pg("55P03"), eventstore.ErrThrottled},
		{"deadlock", pg("40P01"), eventstore.ErrThrottled},
		{"statement timeout", pg("57014"), eventstore.ErrThrottled},
		{"unsupported unicode escape", pg("22P05"), eventstore.ErrInvalid},
		{"invalid byte sequence", pg("22021"), eventstore.ErrInvalid},
		{"program limit", pg("54000"), eventstore.ErrInvalid},
		{"syntax error", pg("42601"), nil},
		{"unique violation", pg("23505"), nil},
		{"caller's deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), nil},
		{"unknown", errors.New("boom"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if !errors.Is(got, tc.err) {
				t.Fatalf("classify dropped the cause: %v", got)
			}
			for _, kind := range []error{eventstore.ErrThrottled, eventstore.ErrInvalid} {
				if errors.Is(got, kind) != (kind == tc.want) {
					t.Fatalf("classify(%v) = %v: errors.Is(%v) = %v", tc.err, got, kind, errors.Is(got, kind))
				}
			}
			var te *eventstore.ThrottledError
			if errors.As(got, &te) && te.RetryAfter <= 0 {
				t.Fatalf("no RetryAfter hint: %v", te)
			}
		})
	}
	if classify(nil) != nil {
		t.Fatal("classify(nil) != nil")
	}
}
