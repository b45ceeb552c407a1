// Package infra holds the one definition of the cloud resources the system needs: the
// events table, the stream-fed index table, the read-model table and the dead-letter
// queues. Tests, `make run` against
// emulators and the LocalStack init hook create them from here; a test proves
// template.yaml declares the same keys, indexes and stream view.
package infra

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Default resource names (overridden by EVENTS_TABLE, INDEX_TABLE, READMODEL_TABLE,
// DLQ_NAME, SAGA_DLQ_NAME).
const (
	DefaultEventsTable    = "ecm-events"
	DefaultIndexTable     = "ecm-index"
	DefaultReadModelTable = "ecm-readmodels"
	DefaultDLQName        = "ecm-dead-letters"
	DefaultDLQArchiveName = "ecm-dead-letters-archive"
	// The saga's dead letters have their own queue, consumed by a redrive whose role may
	// append events (a redriven saga step issues commands); the read models' redrive may
	// not (SAGA_DLQ_NAME overrides the name).
	DefaultSagaDLQName        = "ecm-saga-dead-letters"
	DefaultSagaDLQArchiveName = "ecm-saga-dead-letters-archive"
)

// Attribute names of the events table.
//
// One item per event: pk = stream key ("Type#ID"), sk = version (a number). A snapshot of
// version v is stored in the same partition at sk = v + 0.5, so it sorts just above the
// event it covers and one reverse Query returns the newest snapshot and the events after
// it. Snapshot items carry kind = "snapshot" and the projector skips them.
//
// The events table has no GSIs: a GSI with ProjectionType ALL is another full write of
// every event on the command path, and a GSI keyed on the event type puts every event of
// a type on one partition key (about 1,000 write units a second for the whole system).
// Appending an event of up to 1 KB costs one write unit. Queries across streams read the
// index table instead, which the stream consumer fills (see IndexTable). Tables created
// by earlier versions still have the GSIs byType, byAggregateType and byCorrelation; no
// code uses them and they can be dropped (README, "Migrating to the index table").
const (
	AttrPK            = "pk"
	AttrSK            = "sk"
	AttrKind          = "kind" // "event" | "snapshot"
	AttrEventType     = "eventType"
	AttrAggregateType = "aggregateType"
	AttrCorrelationID = "correlationId"
	AttrTimeKey       = "tk" // timestamp (fixed-width RFC 3339, µs) + "#" + stream key + "#" + version: unique and time-ordered

	// Read-model table: one document per partition, pk = collection + "#" + key and
	// sk = collection (the pair names one (collection, key) even when a name holds "#"),
	// so no collection is a hot key. The document is in "doc" with a revision "rev" for
	// optimistic updates; "expiresAt" (epoch seconds) is the TTL attribute (idempotency
	// records expire); "v" = 2 marks this shape (version 1 had pk = collection, sk = key;
	// dynamostore.MigrateReadModels rewrites it).
	//
	// Listing goes through the sparse GSI byCollection: lpk = collection + "#" + shard
	// (shard = FNV-1a 32 of the key mod ReadModelListShards, in decimal), lsk = key. A
	// listing queries every shard and merges by key. Collections never listed on DynamoDB
	// (idempotency records, written on the command path) carry no lpk/lsk, so their writes
	// cost no index write.
	AttrDoc       = "doc"
	AttrRev       = "rev"
	AttrExpiresAt = "expiresAt"
	AttrShape     = "v"
	AttrListPK    = "lpk"
	AttrListSK    = "lsk"

	IndexByCollection = "byCollection" // lpk, lsk

	// ReadModelListShards is the number of index partitions a collection is spread over:
	// each takes at most its share of a collection's writes, and a page reads all of them.
	ReadModelListShards = 16
)

// EventsTable is the events table definition: keys and the stream, no GSIs.
func EventsTable(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSK), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
		StreamSpecification: &types.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: types.StreamViewTypeNewImage,
		},
	}
}

// IndexTable is the definition of the index table the stream consumer writes
// (dynamostore.Indexer) and cross-stream queries read: pk S, sk S, no GSIs, no stream.
//
// Keys (the design is dynamostore's package comment):
//   - "<dim>#<YYYYMMDDHH>#<shard>", sk = tk, for the dimensions "all", "t#<eventType>" and
//     "a#<aggregateType>": the hour bucket of the event's timestamp (UTC), and the shard
//     fnv-1a(stream key) mod INDEX_SHARDS. A key receives (one type's events in one hour)
//     / shards, and nothing grows with total traffic. The shard count is fixed per
//     deployment: changing it means emptying and re-filling the index (BackfillIndex).
//   - "c#<correlationId>", sk = tk: one request's fan-out, unsharded.
//   - "b#<dim>", sk = "<YYYYMMDDHH>": the bucket registry, one item per dimension and hour
//     with events, so readers skip empty hours. Written once per process and bucket.
//
// Each index item carries the whole event, so a query needs no second read.
func IndexTable(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
	}
}

// ReadModelTable is the read-model table definition.
func ReadModelTable(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrListPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrListSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{ReadModelListIndex()},
	}
}

// ReadModelListIndex is the read-model table's listing index. ALL: a page of documents is
// one query per shard, with no read back to the table.
func ReadModelListIndex() types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName: aws.String(IndexByCollection),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrListPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrListSK), KeyType: types.KeyTypeRange},
		},
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
	}
}

// ReadModelIndexUpdate adds the listing index to a read-model table created without it
// (infra.EnsureReadModelIndex, and the LocalStack hook from its JSON rendering).
func ReadModelIndexUpdate(table string) *dynamodb.UpdateTableInput {
	gsi := ReadModelListIndex()
	var attrs []types.AttributeDefinition
	for _, a := range ReadModelTable(table).AttributeDefinitions {
		if n := aws.ToString(a.AttributeName); n == AttrListPK || n == AttrListSK {
			attrs = append(attrs, a)
		}
	}
	return &dynamodb.UpdateTableInput{TableName: aws.String(table), AttributeDefinitions: attrs,
		GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
			IndexName: gsi.IndexName, KeySchema: gsi.KeySchema, Projection: gsi.Projection}}}}
}
