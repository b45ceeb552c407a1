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
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Handler is a stream-triggered Lambda handler (the projector or the saga).
type Handler func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// Poller plays the part of Lambda's DynamoDB event source mapping locally (DynamoDB Local
// has streams but no Lambda): it reads every shard from TRIM_HORIZON in order (a child
// shard only after its parent), invokes the handler with batches of the same shape Lambda
// sends, honours partial batch responses by checkpointing at the lowest failed sequence
// number, retries a failing batch MaxRetries times, and then sends Lambda's on-failure
// record to the dead-letter queue and moves on, as the mapping in template.yaml does.
type Poller struct {
	Streams   *dynamodbstreams.Client
	StreamArn string
	Handler   Handler
	BatchSize int // default 100
	MaxRetry  int // retries of a failing batch before the on-failure record; default 5
	// Idle is the longest wait when no shard has new records (default 100 ms). The wait
	// starts at MinIdle (default 10 ms) after records and doubles up to Idle, so a busy
	// stream is read again within milliseconds while an idle one costs a few requests a
	// second.
	Idle    time.Duration
	MinIdle time.Duration
	// OnFailure sends the on-failure record (nil: logged only).
	SQS      *sqs.Client
	QueueURL string
	Logger   *slog.Logger

	shards map[string]*shardState
	// discovered: when the shards were last listed; rediscover: a shard has ended, so
	// its children are to be listed now.
	discovered  time.Time
	rediscover  bool
	idleStreaks int
}

// rediscoverEvery bounds how long a poller reading records goes without listing the
// stream's shards (an idle step always lists them).
const rediscoverEvery = time.Second

type shardState struct {
	parent   string
	iterator *string
	done     bool
	retries  int
	started  bool
}

func (p *Poller) defaults() {
	if p.BatchSize <= 0 {
		p.BatchSize = 100
	}
	if p.MaxRetry <= 0 {
		p.MaxRetry = 5
	}
	if p.Idle <= 0 {
		p.Idle = 100 * time.Millisecond
	}
	if p.MinIdle <= 0 || p.MinIdle > p.Idle {
		p.MinIdle = min(10*time.Millisecond, p.Idle)
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.shards == nil {
		p.shards = map[string]*shardState{}
	}
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	p.defaults()
	for ctx.Err() == nil {
		progressed, err := p.Step(ctx)
		if err != nil && ctx.Err() == nil {
			p.Logger.Warn("stream poller", "err", err)
		}
		if progressed {
			p.idleStreaks = 0
			continue
		}
		wait := min(p.MinIdle<<min(p.idleStreaks, 16), p.Idle)
		p.idleStreaks++
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// Step discovers shards and processes at most one batch per ready shard. It reports
// whether any records were handled. While records flow, the shards are listed once a
// second (or when one ends) rather than on every step; a step that finds no records
// lists them before it reports that, so a caller stepping until nothing moves (the fault
// harness) never stops short of a new shard.
func (p *Poller) Step(ctx context.Context) (bool, error) {
	p.defaults()
	listed := false
	progressed := false
	for pass := 0; pass < 2; pass++ {
		if pass == 1 && (progressed || listed) {
			break
		}
		if pass == 1 || len(p.shards) == 0 || p.rediscover || time.Since(p.discovered) >= rediscoverEvery {
			if err := p.discover(ctx); err != nil {
				return progressed, err
			}
			listed, p.rediscover, p.discovered = true, false, time.Now()
		}
		for id, s := range p.shards {
			if s.done || !p.ready(s) {
				continue
			}
			moved, err := p.poll(ctx, id, s)
			if err != nil {
				return progressed, err
			}
			if s.done {
				p.rediscover = true
			}
			progressed = progressed || moved
		}
	}
	return progressed, nil
}

func (p *Poller) ready(s *shardState) bool {
	parent, ok := p.shards[s.parent]
	return s.parent == "" || !ok || parent.done
}

func (p *Poller) discover(ctx context.Context) error {
	var start *string
	for {
		out, err := p.Streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{
			StreamArn: aws.String(p.StreamArn), ExclusiveStartShardId: start})
		if err != nil {
			return fmt.Errorf("describe stream: %w", err)
		}
		for _, sh := range out.StreamDescription.Shards {
			id := deref(sh.ShardId)
			if _, ok := p.shards[id]; !ok {
				p.shards[id] = &shardState{parent: deref(sh.ParentShardId)}
			}
		}
		start = out.StreamDescription.LastEvaluatedShardId
		if start == nil {
			return nil
		}
	}
}

func (p *Poller) iterator(ctx context.Context, shard string, typ streamtypes.ShardIteratorType, seq *string) (*string, error) {
	out, err := p.Streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
		StreamArn: aws.String(p.StreamArn), ShardId: aws.String(shard), ShardIteratorType: typ, SequenceNumber: seq})
	if err != nil {
		return nil, fmt.Errorf("shard iterator %s: %w", shard, err)
	}
	return out.ShardIterator, nil
}

func (p *Poller) poll(ctx context.Context, id string, s *shardState) (bool, error) {
	if !s.started {
		it, err := p.iterator(ctx, id, streamtypes.ShardIteratorTypeTrimHorizon, nil)
		if err != nil {
			return false, err
		}
		s.iterator, s.started = it, true
	}
	if s.iterator == nil {
		s.done = true
		return false, nil
	}
	out, err := p.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: s.iterator, Limit: aws.Int32(int32(p.BatchSize))})
	var expired *streamtypes.ExpiredIteratorException
	if errors.As(err, &expired) {
		s.started = false // start over from the trim horizon: handlers are idempotent
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get records %s: %w", id, err)
	}
	if len(out.Records) == 0 {
		s.iterator = out.NextShardIterator
		if s.iterator == nil {
			s.done = true
		}
		return false, nil
	}
	batch := events.DynamoDBEvent{Records: make([]events.DynamoDBEventRecord, len(out.Records))}
	for i, r := range out.Records {
		batch.Records[i] = FromStreams(r, p.StreamArn)
	}
	failedAt := ""
	res, herr := p.Handler(ctx, batch)
	switch {
	case herr != nil: // a function error fails the whole batch
		failedAt = batch.Records[0].Change.SequenceNumber
	case len(res.BatchItemFailures) > 0:
		failedAt = lowest(res.BatchItemFailures)
	}
	if failedAt == "" {
		s.iterator, s.retries = out.NextShardIterator, 0
		return true, nil
	}
	s.retries++
	if s.retries <= p.MaxRetry {
		it, err := p.iterator(ctx, id, streamtypes.ShardIteratorTypeAtSequenceNumber, aws.String(failedAt))
		if err != nil {
			return true, err
		}
		s.iterator = it
		return true, nil
	}
	// Retries exhausted: hand the failed part of the batch to the on-failure destination
	// and move past it, as Lambda does.
	p.sendOnFailure(ctx, id, batch, failedAt, herr)
	s.iterator, s.retries = out.NextShardIterator, 0
	return true, nil
}

func lowest(f []events.DynamoDBBatchItemFailure) string {
	low := f[0].ItemIdentifier
	for _, x := range f[1:] {
		if seqAfter(low, x.ItemIdentifier) {
			low = x.ItemIdentifier
		}
	}
	return low
}

func (p *Poller) sendOnFailure(ctx context.Context, shard string, batch events.DynamoDBEvent, from string, herr error) {
	var rec OnFailureRecord
	rec.Version, rec.Timestamp = "1.0", time.Now().UTC().Format(time.RFC3339Nano)
	rec.RequestContext.Condition = "RetryAttemptsExhausted"
	rec.RequestContext.ApproximateInvokeCount = p.MaxRetry + 1
	rec.ResponseContext.StatusCode = 200
	if herr != nil {
		rec.ResponseContext.FunctionError = "Unhandled"
	}
	info := BatchInfo{ShardID: shard, StartSequenceNumber: from, StreamArn: p.StreamArn}
	for _, r := range batch.Records {
		if seqAfter(from, r.Change.SequenceNumber) {
			continue
		}
		if info.BatchSize == 0 {
			info.ApproximateArrivalOfFirstRecord = r.Change.ApproximateCreationDateTime.Time
		}
		info.BatchSize++
		info.EndSequenceNumber = r.Change.SequenceNumber
		info.ApproximateArrivalOfLastRecord = r.Change.ApproximateCreationDateTime.Time
	}
	rec.BatchInfo = &info
	body, _ := json.Marshal(rec)
	p.Logger.Error("stream batch failed after retries; sent to the on-failure destination", "shard", shard,
		"from", info.StartSequenceNumber, "to", info.EndSequenceNumber, "records", info.BatchSize)
	if p.SQS == nil || p.QueueURL == "" {
		return
	}
	if _, err := p.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(p.QueueURL), MessageBody: aws.String(string(body))}); err != nil {
		p.Logger.Error("on-failure record not sent", "err", err, "record", string(body))
	}
}
