package ddbstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// OnFailureRecord is what Lambda sends to an on-failure destination when a stream batch
// exhausts its retries: only where the batch was, not its records.
type OnFailureRecord struct {
	Version        string `json:"version"`
	Timestamp      string `json:"timestamp"`
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionARN            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	BatchInfo *BatchInfo `json:"DDBStreamBatchInfo"`
}

// BatchInfo locates a failed batch in the stream.
type BatchInfo struct {
	ShardID                         string    `json:"shardId"`
	StartSequenceNumber             string    `json:"startSequenceNumber"`
	EndSequenceNumber               string    `json:"endSequenceNumber"`
	ApproximateArrivalOfFirstRecord time.Time `json:"approximateArrivalOfFirstRecord"`
	ApproximateArrivalOfLastRecord  time.Time `json:"approximateArrivalOfLastRecord"`
	BatchSize                       int       `json:"batchSize"`
	StreamArn                       string    `json:"streamArn"`
}

// Redriver consumes a dead-letter queue. Its engine holds the projections of that queue
// (the read models', or the saga's): a message for another projection is failed, not
// run with a role that lacks what it needs.
type Redriver struct {
	Engine *projection.Engine
	// Streams reads the records an on-failure record points at (nil: always sweep).
	Streams *dynamodbstreams.Client
	Logger  *slog.Logger
}

// Handle re-applies what each message names, in order, from the events table. A message
// whose aggregate still fails is reported as a batch item failure: SQS delivers it again
// later, and after the queue's maxReceiveCount moves it to the archive queue; the parked
// record stays visible in GET /dead-letters either way. Running it twice changes nothing.
func (r *Redriver) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	res := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for _, m := range ev.Records {
		if err := r.message(ctx, m.Body); err != nil {
			r.logger().Error("dead letter not redriven", "messageId", m.MessageId, "err", err)
			res.BatchItemFailures = append(res.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
	}
	return res, nil
}

func (r *Redriver) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// ErrUnknownMessage is a dead-letter message of no known shape: it is failed (and so
// kept by SQS) rather than dropped.
var ErrUnknownMessage = errors.New("unknown dead-letter message")

func (r *Redriver) message(ctx context.Context, body string) error {
	var probe struct {
		Kind       string                 `json:"kind"`
		DeadLetter *projection.DeadLetter `json:"deadLetter"`
		BatchInfo  *BatchInfo             `json:"DDBStreamBatchInfo"`
	}
	if err := json.Unmarshal([]byte(body), &probe); err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownMessage, err)
	}
	switch {
	case probe.Kind == "parked" && probe.DeadLetter != nil:
		// A message whose dead letter is no longer parked is done, and the message is
		// dropped without touching the read model. This is what makes a redrive through
		// the API (POST /dead-letters/redrive) leave no message behind: the API cannot
		// delete the message itself (it would need ReceiveMessage on the queue and would
		// race this consumer for messages in flight), so the message's next delivery
		// here removes it. Nothing can be lost: the document store, not the queue, is the
		// record of what is parked, and a dead letter leaves it only in the transaction
		// that applied what it held back (projection.Engine.RedriveOne; a failed
		// catch-up after it parks again, with a new message). Nothing can be applied
		// twice: this path applies nothing, and every other path is version-guarded.
		// The check is per aggregate, not per event id: a redrive that fails on a later
		// event moves the same dead letter on to that event without a new message, and
		// this message must keep it in view.
		d := probe.DeadLetter
		parked, err := r.Engine.IsParked(ctx, d.Projection, d.Stream())
		if err != nil {
			return err
		}
		if !parked {
			r.logger().Info("dead letter already redriven", "projection", d.Projection, "stream", d.Stream().Key(), "version", d.Version)
			return nil
		}
		ok, err := r.Engine.RedriveOne(ctx, probe.DeadLetter.Projection, probe.DeadLetter.Stream())
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s still fails", probe.DeadLetter.Stream())
		}
		return nil
	case probe.BatchInfo != nil:
		return r.onFailure(ctx, *probe.BatchInfo)
	}
	return ErrUnknownMessage
}

// onFailure re-applies the aggregates of a failed batch: it reads the batch's records
// from the stream to learn which aggregates they belong to, then catches each up from the
// events table. When the stream no longer has them (24-hour retention), it catches up
// every aggregate with events since the batch arrived.
func (r *Redriver) onFailure(ctx context.Context, b BatchInfo) error {
	streamsSeen, err := r.batchStreams(ctx, b)
	if err != nil {
		r.logger().Warn("stream records unavailable; sweeping since the batch arrived", "shard", b.ShardID, "err", err)
		return r.Engine.CatchUpSince(ctx, b.ApproximateArrivalOfFirstRecord.Add(-time.Minute))
	}
	var errs []error
	for _, st := range streamsSeen {
		errs = append(errs, r.Engine.CatchUpStream(ctx, st))
	}
	return errors.Join(errs...)
}

func (r *Redriver) batchStreams(ctx context.Context, b BatchInfo) ([]eventstore.Stream, error) {
	if r.Streams == nil {
		return nil, errors.New("no streams client")
	}
	it, err := r.Streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
		StreamArn: aws.String(b.StreamArn), ShardId: aws.String(b.ShardID),
		ShardIteratorType: streamtypes.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(b.StartSequenceNumber),
	})
	if err != nil {
		return nil, err
	}
	var out []eventstore.Stream
	seen := map[string]bool{}
	iter := it.ShardIterator
	for iter != nil {
		page, err := r.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			return nil, err
		}
		for _, rec := range page.Records {
			seq := deref(rec.Dynamodb.SequenceNumber)
			if seqAfter(seq, b.EndSequenceNumber) {
				return out, nil
			}
			lr := FromStreams(rec, b.StreamArn)
			if e, err := eventFromKeys(lr.Change.Keys); err == nil && !seen[eventstore.StreamOf(e).Key()] {
				seen[eventstore.StreamOf(e).Key()] = true
				out = append(out, eventstore.StreamOf(e))
			}
			if seq == b.EndSequenceNumber {
				return out, nil
			}
		}
		if len(page.Records) == 0 {
			break
		}
		iter = page.NextShardIterator
	}
	return out, nil
}

// seqAfter compares stream sequence numbers (decimal strings of varying length).
func seqAfter(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}
