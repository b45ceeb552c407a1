package infra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Names are the resource names of one deployment: the tables, the read models'
// dead-letter queue and the saga's, each with its archive. IndexTable empty: no index
// table is created.
type Names struct {
	EventsTable, ReadModelTable, DLQ, DLQArchive, SagaDLQ, SagaDLQArchive string
	IndexTable                                                            string
}

// DefaultNames are the names used when nothing is configured.
func DefaultNames() Names {
	return Names{DefaultEventsTable, DefaultReadModelTable, DefaultDLQName, DefaultDLQArchiveName,
		DefaultSagaDLQName, DefaultSagaDLQArchiveName, DefaultIndexTable}
}

// QueueURLs are the URLs of the two dead-letter queues.
type QueueURLs struct{ DLQ, SagaDLQ string }

// Ensure creates whatever table or queue is missing, waits until the tables are ACTIVE,
// turns TTL on, and returns the dead-letter queues' URLs. It changes nothing that exists,
// so running it again, or from several processes at once, is harmless; an existing table
// whose keys, indexes or stream differ from the definition is an error rather than a
// surprise later. Only for emulators and LocalStack: on AWS, template.yaml owns the
// resources.
func Ensure(ctx context.Context, db *dynamodb.Client, q *sqs.Client, n Names) (QueueURLs, error) {
	var urls QueueURLs
	if n.DLQ == "" || n.DLQArchive == "" || n.SagaDLQ == "" || n.SagaDLQArchive == "" {
		return urls, fmt.Errorf("infra: every queue needs a name: %+v", n)
	}
	tables := []*dynamodb.CreateTableInput{EventsTable(n.EventsTable), ReadModelTable(n.ReadModelTable)}
	if n.IndexTable != "" {
		tables = append(tables, IndexTable(n.IndexTable))
	}
	// An events table created with the GSIs of earlier versions passes: sameTable checks
	// the indexes the definition has, and it has none.
	for _, in := range tables {
		if err := ensureTable(ctx, db, in); err != nil {
			return urls, err
		}
	}
	if err := EnsureReadModelIndex(ctx, db, n.ReadModelTable); err != nil {
		return urls, err
	}
	// Idempotency records expire from the read-model table, snapshots from the events
	// table (events carry no expiresAt and never expire).
	for _, table := range []string{n.ReadModelTable, n.EventsTable} {
		if err := ensureTTL(ctx, db, table); err != nil {
			return urls, err
		}
	}
	var err error
	if urls.DLQ, err = ensureDLQ(ctx, q, n.DLQ, n.DLQArchive); err != nil {
		return urls, err
	}
	urls.SagaDLQ, err = ensureDLQ(ctx, q, n.SagaDLQ, n.SagaDLQArchive)
	return urls, err
}

// ensureDLQ creates a dead-letter queue and, first, the archive its redrive policy names.
func ensureDLQ(ctx context.Context, q *sqs.Client, name, archive string) (string, error) {
	archiveURL, err := ensureQueue(ctx, q, DLQArchiveQueue(archive))
	if err != nil {
		return "", err
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(archiveURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", archive, err)
	}
	return ensureQueue(ctx, q, DLQQueue(name, attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]))
}

// EnsureReadModelIndex adds the listing index to a read-model table created before it
// existed (keys pk, sk as now, no index) and waits until the index is ACTIVE (backfilled):
// the first step of moving an old table to the current key schema, the second being
// dynamostore.MigrateReadModels. A table that has the index is left as it is.
func EnsureReadModelIndex(ctx context.Context, db *dynamodb.Client, table string) error {
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("describe table %s: %w", table, err)
	}
	if !hasIndex(desc.Table, IndexByCollection) {
		_, err := db.UpdateTable(ctx, ReadModelIndexUpdate(table))
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) { // in use: another process is adding it
			return fmt.Errorf("add index %s to %s: %w", IndexByCollection, table, err)
		}
	}
	for {
		desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return fmt.Errorf("describe table %s: %w", table, err)
		}
		if indexActive(desc.Table, IndexByCollection) && desc.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("index %s of %s not active: %w", IndexByCollection, table, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func hasIndex(t *types.TableDescription, name string) bool {
	return slices.ContainsFunc(t.GlobalSecondaryIndexes, func(g types.GlobalSecondaryIndexDescription) bool {
		return aws.ToString(g.IndexName) == name
	})
}

func indexActive(t *types.TableDescription, name string) bool {
	return slices.ContainsFunc(t.GlobalSecondaryIndexes, func(g types.GlobalSecondaryIndexDescription) bool {
		return aws.ToString(g.IndexName) == name && g.IndexStatus == types.IndexStatusActive
	})
}

// withoutIndex is a table definition less one index.
func withoutIndex(in *dynamodb.CreateTableInput, name string) *dynamodb.CreateTableInput {
	out := *in
	out.GlobalSecondaryIndexes = slices.DeleteFunc(slices.Clone(in.GlobalSecondaryIndexes), func(g types.GlobalSecondaryIndex) bool {
		return aws.ToString(g.IndexName) == name
	})
	return &out
}

func ensureTable(ctx context.Context, db *dynamodb.Client, in *dynamodb.CreateTableInput) error {
	name := aws.ToString(in.TableName)
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName})
	var missing *types.ResourceNotFoundException
	switch {
	case err == nil:
		if !hasIndex(desc.Table, IndexByCollection) {
			// A read-model table of the first key schema: EnsureReadModelIndex adds the
			// index, the rest must match.
			in = withoutIndex(in, IndexByCollection)
		}
		if err := sameTable(in, desc.Table); err != nil {
			return fmt.Errorf("table %s exists but %w (delete it, or configure another name)", name, err)
		}
	case errors.As(err, &missing):
		if _, err := db.CreateTable(ctx, in); err != nil {
			var inUse *types.ResourceInUseException
			if !errors.As(err, &inUse) { // in use: another process created it meanwhile
				return fmt.Errorf("create table %s: %w", name, err)
			}
		}
	default:
		return fmt.Errorf("describe table %s: %w", name, err)
	}
	// ACTIVE, not just present: writes to a CREATING table fail.
	return dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, 5*time.Minute)
}

// sameTable reports how an existing table differs from its definition in what the code
// relies on: keys, indexes and the stream.
func sameTable(want *dynamodb.CreateTableInput, got *types.TableDescription) error {
	keys := func(ks []types.KeySchemaElement) []string {
		var out []string
		for _, k := range ks {
			out = append(out, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
		}
		return out
	}
	if !slices.Equal(keys(want.KeySchema), keys(got.KeySchema)) {
		return fmt.Errorf("has the key %v, not %v", keys(got.KeySchema), keys(want.KeySchema))
	}
	for _, w := range want.GlobalSecondaryIndexes {
		i := slices.IndexFunc(got.GlobalSecondaryIndexes, func(g types.GlobalSecondaryIndexDescription) bool {
			return aws.ToString(g.IndexName) == aws.ToString(w.IndexName)
		})
		if i < 0 {
			return fmt.Errorf("has no index %s", aws.ToString(w.IndexName))
		}
		if g := got.GlobalSecondaryIndexes[i]; !slices.Equal(keys(w.KeySchema), keys(g.KeySchema)) {
			return fmt.Errorf("has the index %s on %v, not %v", aws.ToString(w.IndexName), keys(g.KeySchema), keys(w.KeySchema))
		}
	}
	if ws := want.StreamSpecification; ws != nil && aws.ToBool(ws.StreamEnabled) {
		gs := got.StreamSpecification
		if gs == nil || !aws.ToBool(gs.StreamEnabled) || gs.StreamViewType != ws.StreamViewType {
			return fmt.Errorf("has no %s stream", ws.StreamViewType)
		}
	}
	return nil
}

func ensureTTL(ctx context.Context, db *dynamodb.Client, table string) error {
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("TTL of %s: %w", table, err)
	}
	if d := ttl.TimeToLiveDescription; d != nil && (d.TimeToLiveStatus == types.TimeToLiveStatusEnabled ||
		d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		if a := aws.ToString(d.AttributeName); a != AttrExpiresAt {
			return fmt.Errorf("table %s expires items by %q, not %q", table, a, AttrExpiresAt)
		}
		return nil
	}
	_, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrExpiresAt), Enabled: aws.Bool(true)}})
	if err != nil {
		return fmt.Errorf("enable TTL on %s: %w", table, err)
	}
	return nil
}

// ensureQueue returns the queue's URL, creating the queue when there is none. An existing
// queue keeps its attributes: CreateQueue would fail on any difference.
func ensureQueue(ctx context.Context, q *sqs.Client, in *sqs.CreateQueueInput) (string, error) {
	name := aws.ToString(in.QueueName)
	got, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: in.QueueName})
	if err == nil {
		return aws.ToString(got.QueueUrl), nil
	}
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		return "", fmt.Errorf("queue %s: %w", name, err)
	}
	created, err := q.CreateQueue(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(created.QueueUrl), nil
}
