package infra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Names are the resource names of one deployment.
type Names struct {
	EventsTable, ReadModelTable, DLQ, DLQArchive string
}

// DefaultNames are the names used when nothing is configured.
func DefaultNames() Names {
	return Names{DefaultEventsTable, DefaultReadModelTable, DefaultDLQName, DefaultDLQArchiveName}
}

// Ensure creates whatever table or queue is missing and returns the dead-letter queue's
// URL. It changes nothing that exists, so running it twice is harmless. Only for
// emulators and LocalStack: against real AWS, template.yaml owns the resources.
func Ensure(ctx context.Context, db *dynamodb.Client, q *sqs.Client, n Names) (string, error) {
	for _, in := range []*dynamodb.CreateTableInput{EventsTable(n.EventsTable), ReadModelTable(n.ReadModelTable)} {
		if err := ensureTable(ctx, db, in); err != nil {
			return "", err
		}
	}
	// TTL: idempotency records expire from the read-model table, snapshots from the events
	// table (events themselves carry no expiresAt and never expire).
	for _, table := range []string{n.ReadModelTable, n.EventsTable} {
		if _, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(table),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrExpiresAt), Enabled: aws.Bool(true)}}); err != nil {
			var already *types.ResourceInUseException
			// Enabling TTL twice is an error on DynamoDB; that is the "already done" case.
			if !errors.As(err, &already) && !isValidation(err) {
				return "", fmt.Errorf("enable TTL on %s: %w", table, err)
			}
		}
	}
	archive, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(n.DLQArchive),
		Attributes: map[string]string{"MessageRetentionPeriod": "1209600"}})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", n.DLQArchive, err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: archive.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", n.DLQArchive, err)
	}
	dlqAttrs := DLQAttributes()
	dlqAttrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":"%s","maxReceiveCount":"%d"}`,
		attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], DLQMaxReceiveCount)
	dlq, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(n.DLQ), Attributes: dlqAttrs})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", n.DLQ, err)
	}
	return aws.ToString(dlq.QueueUrl), nil
}

func isValidation(err error) bool {
	type coded interface{ ErrorCode() string }
	var c coded
	return errors.As(err, &c) && c.ErrorCode() == "ValidationException"
}

func ensureTable(ctx context.Context, db *dynamodb.Client, in *dynamodb.CreateTableInput) error {
	_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName})
	var missing *types.ResourceNotFoundException
	if err == nil {
		return nil
	}
	if !errors.As(err, &missing) {
		return fmt.Errorf("describe table %s: %w", aws.ToString(in.TableName), err)
	}
	if _, err := db.CreateTable(ctx, in); err != nil {
		var inUse *types.ResourceInUseException
		if !errors.As(err, &inUse) { // created concurrently by another process
			return fmt.Errorf("create table %s: %w", aws.ToString(in.TableName), err)
		}
	}
	w := dynamodb.NewTableExistsWaiter(db)
	return w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, 2*time.Minute)
}
