package infra

import (
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// The dead-letter queues (the read models' and the saga's) and their archives, as
// template.yaml declares them (a test in this package compares the two). A message the
// redrive function fails on DLQMaxReceiveCount times moves on to the archive, out of the
// way of the others. Both pairs share these definitions.
const (
	DLQRetentionSeconds = 1209600 // 14 days, the SQS maximum
	DLQMaxReceiveCount  = 5
	// Six times the redrive function's timeout, as AWS advises for SQS event sources.
	DLQVisibilityTimeoutSeconds = 360
)

// DLQArchiveQueue is the definition of the archive queue.
func DLQArchiveQueue(name string) *sqs.CreateQueueInput {
	return &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"MessageRetentionPeriod": strconv.Itoa(DLQRetentionSeconds),
		"SqsManagedSseEnabled":   "true",
	}}
}

// DLQQueue is the definition of the dead-letter queue, whose redrive policy needs the
// archive's ARN.
func DLQQueue(name, archiveArn string) *sqs.CreateQueueInput {
	return &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"MessageRetentionPeriod": strconv.Itoa(DLQRetentionSeconds),
		"SqsManagedSseEnabled":   "true",
		"VisibilityTimeout":      strconv.Itoa(DLQVisibilityTimeoutSeconds),
		"RedrivePolicy":          fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, archiveArn, DLQMaxReceiveCount),
	}}
}
