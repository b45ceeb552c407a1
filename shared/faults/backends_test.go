package faults_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/ddbstream"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/faults"
	"github.com/ecmstore/ecmstore/shared/system"
)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
}

// embeddedTarget: a fresh file store per schedule, so that a seed replays alone exactly
// as it ran in the suite; a crash abandons the System, the open file stays.
func embeddedTarget(t *testing.T) func(uint64) *faults.Target {
	dir := t.TempDir()
	return func(seed uint64) *faults.Target {
		s, err := boltstore.Open(filepath.Join(dir, fmt.Sprintf("faults-%d.db", seed)))
		if err != nil {
			t.Fatal(err)
		}
		return &faults.Target{Config: system.Config{EventStore: "embedded", SnapshotEvery: 3}, Logger: quiet(),
			Base: system.Backend{Store: s, Feed: s, Docs: s, Close: s.Close}}
	}
}

// postgresTarget: a fresh database per schedule, for the same reason.
func postgresTarget(t *testing.T) func(uint64) *faults.Target {
	return func(uint64) *faults.Target {
		s, err := pgstore.Open(context.Background(), emulator.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		return &faults.Target{Config: system.Config{EventStore: "postgres", SnapshotEvery: 3}, Logger: quiet(),
			Base: system.Backend{Store: s, Feed: s, Docs: s, Close: s.Close}}
	}
}

// dynamoTarget: DynamoDB Local and fauxqs, one pair of tables for every schedule. Each
// process gets its own DynamoDB client whose faults are injected at the wire (the SDK
// middleware); the stream is read by the local stand-in for Lambda's event source
// mapping, which outlives processes as AWS's does, and every batch it hands the
// projector comes with records repeated and shuffled.
func dynamoTarget(t *testing.T) func(uint64) *faults.Target {
	ctx := context.Background()
	ddb, q := emulator.DynamoDB(t), emulator.SQS(t)
	suffix := fmt.Sprint(time.Now().UnixNano())
	names := infra.Names{EventsTable: "fevents-" + suffix, ReadModelTable: "fmodels-" + suffix, IndexTable: "findex-" + suffix,
		DLQ: "fdlq-" + suffix, DLQArchive: "fdlq-archive-" + suffix, SagaDLQ: "fsdlq-" + suffix, SagaDLQArchive: "fsdlq-archive-" + suffix}
	db, sq := emulator.DynamoDBClient(ddb), emulator.SQSClient(q)
	url, err := infra.Ensure(ctx, db, sq, names)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(names.EventsTable)})
	if err != nil || desc.Table.LatestStreamArn == nil {
		t.Fatalf("events table stream: %v", err)
	}
	sink := &ddbstream.SQSSink{Client: sq, QueueURL: url.DLQ, SagaQueueURL: url.SagaDLQ}
	// The index the projector fills from the stream, as on AWS: rebuilds find their
	// streams in it.
	ix := dynamostore.IndexConfig{Table: names.IndexTable, Shards: 4}
	indexer := dynamostore.NewIndexer(db, ix, quiet())
	base := system.Backend{Store: dynamostore.New(db, names.EventsTable, dynamostore.WithIndex(ix)), Docs: dynamostore.NewDocs(db, names.ReadModelTable), Sink: sink}
	poller := &ddbstream.Poller{Streams: emulator.DynamoDBStreamsClient(ddb), StreamArn: aws.ToString(desc.Table.LatestStreamArn),
		MaxRetry: 3, Logger: quiet()}
	return func(uint64) *faults.Target {
		return &faults.Target{Config: system.Config{EventStore: "dynamodb", SnapshotEvery: 3}, Logger: quiet(), Base: base,
			Wrap: func(_ context.Context, p *faults.Process) (system.Backend, error) {
				c := emulator.DynamoDBClient(ddb, faults.DynamoDBOptions(p))
				return system.Backend{Store: dynamostore.New(c, names.EventsTable, dynamostore.WithIndex(ix)), Docs: dynamostore.NewDocs(c, names.ReadModelTable),
					Sink: &ddbstream.SQSSink{Client: emulator.SQSClient(q, faults.SQSOptions(p)), QueueURL: url.DLQ, SagaQueueURL: url.SagaDLQ}}, nil
			},
			Pump: func(ctx context.Context, sys *system.System, s *faults.Schedule) (bool, error) {
				proj := sys.Projector()
				proj.Index = indexer
				poller.Handler = faults.Redeliver(s, proj.Handle)
				moved, err := poller.Step(ctx)
				if err != nil {
					return moved, err
				}
				// The rebuild function's part: a chunk of any rebuild job.
				rebuilt, err := sys.Engine.StepRebuilds(ctx)
				return moved || rebuilt, err
			},
			// Batches the mapping gave up on went to the on-failure destination: their
			// redrive catches the streams up from the table, as this does.
			Settle: func(ctx context.Context, sys *system.System, streams []eventstore.Stream) error {
				for _, st := range streams {
					if err := sys.Engine.CatchUpStream(ctx, st); err != nil {
						return fmt.Errorf("catch up %s: %w", st, err)
					}
				}
				return nil
			},
		}
	}
}
