package ddbstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecmstore/ecmstore/shared/projection"
)

// RebuildMessage is the body of a message on the rebuild queue: "step this projection's
// rebuild job". The job itself (phase, cursor, counts) is in the document store.
type RebuildMessage struct {
	Projection string `json:"projection"`
}

// RebuildQueue dispatches rebuild jobs to the rebuild function through its SQS queue
// (the API function's Engine.Dispatcher on AWS).
type RebuildQueue struct {
	SQS      *sqs.Client
	QueueURL string
}

var _ projection.Dispatcher = (*RebuildQueue)(nil)

// Dispatch sends the message that has the rebuild function step the job.
func (q *RebuildQueue) Dispatch(ctx context.Context, name string) error {
	return q.send(ctx, name, 0)
}

func (q *RebuildQueue) send(ctx context.Context, name string, delay time.Duration) error {
	body, err := json.Marshal(RebuildMessage{Projection: name})
	if err != nil {
		return err
	}
	_, err = q.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.QueueURL), MessageBody: aws.String(string(body)),
		DelaySeconds: int32(delay / time.Second)})
	if err != nil {
		return fmt.Errorf("send to the rebuild queue: %w", err)
	}
	return nil
}

// RebuildWorker is the rebuild function: for each message it steps the job until the job
// is done or the invocation nears its deadline, and then, the job being checkpointed
// after every chunk, sends itself the message that continues it in a fresh invocation.
// However long the rebuild, no invocation outlives its timeout, and an invocation that
// dies anyway leaves its message to come back after the visibility timeout and continue
// from the last checkpoint.
type RebuildWorker struct {
	Engine *projection.Engine
	Queue  *RebuildQueue
	// Margin is kept free before the invocation's deadline for the checkpoint and the
	// continuation message (default 10 s).
	Margin time.Duration
	// Retry delays the continuation after a failed chunk (default 10 s).
	Retry time.Duration
	// MaxChunks bounds the chunks of one invocation (0: only the deadline does).
	MaxChunks int
	Logger    *slog.Logger
}

// Handle processes a batch of rebuild messages (the mapping's batch size is 1; more
// are handled one after the other). A message whose continuation could not be sent is
// reported failed, so SQS delivers it again.
func (w *RebuildWorker) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	res := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	margin, retry := w.Margin, w.Retry
	if margin <= 0 {
		margin = 10 * time.Second
	}
	if retry <= 0 {
		retry = 10 * time.Second
	}
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	for _, m := range ev.Records {
		var msg RebuildMessage
		if err := json.Unmarshal([]byte(m.Body), &msg); err != nil || msg.Projection == "" {
			log.Error("rebuild message without a projection: dropped", "messageId", m.MessageId, "body", m.Body)
			continue
		}
		if _, err := w.Engine.Lookup(msg.Projection); err != nil {
			log.Error("rebuild message for an unknown projection: dropped", "messageId", m.MessageId, "err", err)
			continue
		}
		run := ctx
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			run, cancel = context.WithDeadline(ctx, dl.Add(-margin))
			defer cancel()
		}
		job, err := w.Engine.RunRebuildChunks(run, msg.Projection, w.MaxChunks)
		if !job.Active() && err == nil {
			log.Info("rebuild done", "projection", msg.Projection, "job", job.ID, "events", job.Done)
			continue
		}
		delay := time.Duration(0)
		if err != nil && run.Err() == nil {
			log.Warn("rebuild chunk failed; continuing after a pause", "projection", msg.Projection, "err", err)
			delay = retry
		}
		if err := w.Queue.send(ctx, msg.Projection, delay); err != nil {
			log.Error("rebuild continuation not sent; the message will come back", "projection", msg.Projection, "err", err)
			res.BatchItemFailures = append(res.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
	}
	return res, nil
}
