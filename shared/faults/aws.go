package faults

import (
	"context"
	"math/rand/v2"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"github.com/ecmstore/ecmstore/shared/ddbstream"
)

// APIOption injects p's faults at the wire of any AWS SDK client: a Finalize middleware
// after the SDK's retry and signing steps, so each attempt the SDK makes is one operation,
// named service.Operation in lower-case service ("dynamodb.PutItem",
// "dynamodb.TransactWriteItems", "sqs.SendMessage"…). ErrorBefore returns before the
// request is sent; LostResponse sends it, lets the service apply it, and returns an error
// instead of the answer. The injected errors are not of a kind the SDK retries, so the
// code above the client sees each one.
func APIOption(p *Process) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("faults",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
				middleware.FinalizeOutput, middleware.Metadata, error) {
				op := strings.ToLower(awsmiddleware.GetServiceID(ctx)) + "." + awsmiddleware.GetOperationName(ctx)
				var out middleware.FinalizeOutput
				var md middleware.Metadata
				err := p.Do(ctx, op, func(ctx context.Context) (err error) {
					out, md, err = next.HandleFinalize(ctx, in)
					return err
				})
				if err != nil {
					return middleware.FinalizeOutput{}, md, err
				}
				return out, md, nil
			}), middleware.After)
	}
}

// DynamoDBOptions injects p's faults into a DynamoDB client (see APIOption).
func DynamoDBOptions(p *Process) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, APIOption(p)) }
}

// SQSOptions injects p's faults into an SQS client (see APIOption).
func SQSOptions(p *Process) func(*sqs.Options) {
	return func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, APIOption(p)) }
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
