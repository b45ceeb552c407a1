package ddbstream

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecmstore/ecmstore/shared/projection"
)

// Message is what the dead-letter queue carries. Kind "parked" is a projection's parked
// event (with the full event unless it is too large for SQS, in which case redrive loads
// it from the events table anyway).
type Message struct {
	Kind           string                 `json:"kind"`
	DeadLetter     *projection.DeadLetter `json:"deadLetter,omitempty"`
	EventTruncated bool                   `json:"eventTruncated,omitempty"`
}

// SQS messages are at most 256 KiB; events may be up to 350 KiB.
const maxMessageBytes = 250 << 10

// SQSSink sends parked events to the dead-letter queue, and a saga's (DeadLetter.Reactor)
// to the saga's own queue when one is set: redriving those issues commands, which only
// the saga's redrive role may append.
type SQSSink struct {
	Client       *sqs.Client
	QueueURL     string
	SagaQueueURL string
}

// queueFor is the queue a dead letter belongs in.
func (s *SQSSink) queueFor(d projection.DeadLetter) string {
	if d.Reactor && s.SagaQueueURL != "" {
		return s.SagaQueueURL
	}
	return s.QueueURL
}

func (s *SQSSink) Send(ctx context.Context, d projection.DeadLetter) error {
	body, err := json.Marshal(Message{Kind: "parked", DeadLetter: &d})
	if err == nil && len(body) > maxMessageBytes {
		d.Event.Payload = nil
		body, err = json.Marshal(Message{Kind: "parked", DeadLetter: &d, EventTruncated: true})
	}
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	queue := s.queueFor(d)
	_, err = s.Client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(queue),
		MessageBody: aws.String(string(body)),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"projection": {DataType: aws.String("String"), StringValue: aws.String(d.Projection)},
			"eventType":  {DataType: aws.String("String"), StringValue: aws.String(d.EventType)},
		},
	})
	if err != nil {
		return fmt.Errorf("send dead letter to %s: %w", queue, err)
	}
	return nil
}
