package ddbstream

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSHandler is an SQS-triggered Lambda handler (a redrive).
type SQSHandler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)

// QueuePoller plays the part of Lambda's SQS event source mapping locally: it receives up
// to BatchSize messages, invokes the handler with Lambda's event shape, deletes the
// messages the handler did not report as failed, and leaves the failed ones to come back
// after Visibility (and, after the queue's maxReceiveCount, to move to its archive), as
// the mappings in template.yaml do with ReportBatchItemFailures.
type QueuePoller struct {
	SQS       *sqs.Client
	QueueURL  string
	QueueArn  string // the eventSourceARN handed to the handler (informational)
	Handler   SQSHandler
	BatchSize int32 // default 10
	// Visibility hides a received message this long (default 10 s): shorter than the
	// queue's own, so a message a local redrive failed on comes back soon, yet long
	// enough that its maxReceiveCount (5) takes close to a minute to move it to the
	// archive.
	Visibility time.Duration
	Logger     *slog.Logger
}

// Run polls until ctx ends.
func (p *QueuePoller) Run(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := p.Step(ctx)
		if err != nil && ctx.Err() == nil {
			p.logger().Warn("queue poller", "queue", p.QueueURL, "err", err)
		}
		if n == 0 || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (p *QueuePoller) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Step handles one batch; it returns how many messages it received.
func (p *QueuePoller) Step(ctx context.Context) (int, error) {
	batch, vis := p.BatchSize, p.Visibility
	if batch <= 0 {
		batch = 10
	}
	if vis <= 0 {
		vis = 10 * time.Second
	}
	out, err := p.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(p.QueueURL),
		MaxNumberOfMessages: batch, VisibilityTimeout: int32(vis / time.Second), WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"}})
	if err != nil {
		return 0, fmt.Errorf("receive from %s: %w", p.QueueURL, err)
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(out.Messages))}
	handles := map[string]string{}
	for i, m := range out.Messages {
		attrs := map[string]events.SQSMessageAttribute{}
		for k, a := range m.MessageAttributes {
			attrs[k] = events.SQSMessageAttribute{DataType: aws.ToString(a.DataType), StringValue: a.StringValue}
		}
		ev.Records[i] = events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes, MessageAttributes: attrs,
			EventSource: "aws:sqs", EventSourceARN: p.QueueArn}
		handles[ev.Records[i].MessageId] = ev.Records[i].ReceiptHandle
	}
	res, err := p.Handler(ctx, ev)
	if err != nil {
		return len(out.Messages), fmt.Errorf("handler: %w", err) // the whole batch comes back
	}
	for _, f := range res.BatchItemFailures {
		delete(handles, f.ItemIdentifier)
	}
	for id, h := range handles {
		if _, err := p.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(p.QueueURL), ReceiptHandle: aws.String(h)}); err != nil {
			return len(out.Messages), fmt.Errorf("delete message %s: %w", id, err)
		}
	}
	return len(out.Messages), nil
}
