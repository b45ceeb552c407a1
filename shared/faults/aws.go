package faults

import (
	"context"
	"math/rand/v2"

	"github.com/aws/aws-lambda-go/events"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/ecmstore/ecmstore/shared/ddbstream"
)

// DynamoDBOptions injects p's faults at the wire of a DynamoDB client: a Finalize
// middleware after the SDK's retry and signing steps, so each attempt the SDK makes is
// one operation ("dynamodb.PutItem", "dynamodb.TransactWriteItems"…). ErrorBefore
// returns before the request is sent; LostResponse sends it, lets DynamoDB apply it, and
// returns an error instead of the answer. The injected errors are not of a kind the SDK
// retries, so the store above sees each one.
func DynamoDBOptions(p *Process) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("faults",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
					out middleware.FinalizeOutput, md middleware.Metadata, err error) {
					op := "dynamodb." + awsmiddleware.GetOperationName(ctx)
					ferr := p.Do(ctx, op, func(ctx context.Context) error {
						out, md, err = next.HandleFinalize(ctx, in)
						return err
					})
					if ferr != nil && err == nil {
						// A fault replaced a successful answer (or no request was sent).
						return middleware.FinalizeOutput{}, md, ferr
					}
					if ferr != nil {
						return out, md, ferr
					}
					return out, md, err
				}), middleware.After)
		})
	}
}

// Redeliver wraps a stream handler so that each batch it is given arrives with some
// records repeated and all of them shuffled, as at-least-once delivery with retries and
// a resharded stream can show them. The schedule's seed decides both.
func Redeliver(s *Schedule, h ddbstream.Handler) ddbstream.Handler {
	return func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		recs := append([]events.DynamoDBEventRecord(nil), ev.Records...)
		s.Rand(func(r *rand.Rand) {
			for _, rec := range ev.Records {
				if r.IntN(4) == 0 {
					recs = append(recs, rec)
				}
			}
			r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		})
		return h(ctx, events.DynamoDBEvent{Records: recs})
	}
}
