package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// conditionFailed is a write whose condition did not hold: item index of the request (0
// for a single write) stood in the way, old is that item as it is (ALL_OLD) when
// DynamoDB returned it.
type conditionFailed struct {
	index int
	old   map[string]types.AttributeValue
	// olds holds every item of a transaction whose condition failed, by request index.
	olds map[int]map[string]types.AttributeValue
	err  error
}

func (c *conditionFailed) Error() string { return fmt.Sprintf("dynamodb: condition failed: %v", c.err) }
func (c *conditionFailed) Unwrap() error { return c.err }

// Bounds of our own retries of what the SDK does not retry: a write that met another
// transaction on the same item (TransactionConflict), and a transaction cancelled for
// throttling.
const (
	maxContentionRetries = 6
	firstBackoff         = 10 * time.Millisecond
	// throttleRetryAfter is the hint given to clients when the store sheds load: DynamoDB
	// adapts partitions within seconds.
	throttleRetryAfter = time.Second
)

// retrying runs one DynamoDB request and maps its failure: a failed condition becomes
// *conditionFailed, contention is retried with jittered backoff a bounded number of
// times, throttling (after the SDK's own retries) becomes *eventstore.ThrottledError.
func retrying(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := classify(fn())
		var c *contention
		if !errors.As(err, &c) {
			return err
		}
		if attempt+1 >= maxContentionRetries {
			return &eventstore.ThrottledError{RetryAfter: throttleRetryAfter, Err: c.err}
		}
		if err := sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

// contention is a failure worth retrying as it is.
type contention struct{ err error }

func (c *contention) Error() string { return c.err.Error() }

func classify(err error) error {
	if err == nil {
		return nil
	}
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return &conditionFailed{old: ccf.Item, err: err}
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		retry := false
		var cf *conditionFailed
		for i, r := range tce.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ConditionalCheckFailed":
				if cf == nil {
					cf = &conditionFailed{index: i, old: r.Item, olds: map[int]map[string]types.AttributeValue{}, err: err}
				}
				cf.olds[i] = r.Item
			case "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded":
				retry = true
			}
		}
		if cf != nil {
			return cf
		}
		if retry {
			return &contention{err: err}
		}
		return fmt.Errorf("dynamodb: transaction cancelled: %w", err)
	}
	var tc *types.TransactionConflictException
	if errors.As(err, &tc) {
		return &contention{err: err}
	}
	return mapError(err)
}

// mapError turns throttling into *eventstore.ThrottledError (the SDK has already retried
// it) and wraps the rest.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded":
			return &eventstore.ThrottledError{RetryAfter: throttleRetryAfter, Err: err}
		}
	}
	return fmt.Errorf("dynamodb: %w", err)
}

// sleep waits a jittered, exponentially growing delay, or until ctx ends.
func sleep(ctx context.Context, attempt int) error {
	d := firstBackoff << min(attempt, 6)
	t := time.NewTimer(d/2 + rand.N(d))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
