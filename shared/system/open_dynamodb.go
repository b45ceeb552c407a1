package system

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/ddbstream"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// AWSClients are the clients of the DynamoDB backend.
type AWSClients struct {
	DynamoDB     *dynamodb.Client
	Streams      *dynamodbstreams.Client
	SQS          *sqs.Client
	QueueURL     string // the read models' dead-letter queue
	SagaQueueURL string // the saga's dead-letter queue
	StreamArn    string // the events table's stream (set when the poller runs)
	// Indexer writes the index table: only the read models' stream handler uses it.
	Indexer *dynamostore.Indexer
}

// openDynamoDB is the built-in "dynamodb" backend.
func openDynamoDB(ctx context.Context, c Config, log *slog.Logger) (Backend, error) {
	// The standard chain: region, credentials and the AWS_ENDPOINT_URL_* overrides the
	// SDK reads itself.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithLogger(SDKLogger(log)))
	if err != nil {
		return Backend{}, fmt.Errorf("aws config: %w", err)
	}
	if c.EndpointOverride {
		if cfg.Region == "" {
			cfg.Region = "us-east-1"
		}
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			cfg.Credentials = credentials.NewStaticCredentialsProvider("local", "local", "")
		}
	}
	return DynamoDBBackend(ctx, c, cfg, log)
}

// DynamoDBBackend opens the DynamoDB backend with an explicit AWS configuration (tests
// point it at the emulators).
func DynamoDBBackend(ctx context.Context, c Config, cfg aws.Config, log *slog.Logger, opts ...func(*dynamodb.Options)) (Backend, error) {
	clients := &AWSClients{DynamoDB: dynamodb.NewFromConfig(cfg, opts...), Streams: dynamodbstreams.NewFromConfig(cfg),
		SQS: sqs.NewFromConfig(cfg), QueueURL: c.DLQURL, SagaQueueURL: c.SagaDLQURL}
	if c.EnsureResources {
		urls, err := infra.Ensure(ctx, clients.DynamoDB, clients.SQS, infra.Names{EventsTable: c.EventsTable,
			ReadModelTable: c.ReadModelTable, IndexTable: c.IndexTable, DLQ: c.DLQName, DLQArchive: c.DLQName + "-archive",
			SagaDLQ: c.SagaDLQName, SagaDLQArchive: c.SagaDLQName + "-archive"})
		if err != nil {
			return Backend{}, fmt.Errorf("create local resources: %w", err)
		}
		if clients.QueueURL == "" {
			clients.QueueURL = urls.DLQ
		}
		if clients.SagaQueueURL == "" {
			clients.SagaQueueURL = urls.SagaDLQ
		}
	}
	// Inside Lambda the template sets both URLs, so no role needs sqs:GetQueueUrl.
	for _, q := range []struct {
		name string
		url  *string
	}{{c.DLQName, &clients.QueueURL}, {c.SagaDLQName, &clients.SagaQueueURL}} {
		if *q.url != "" {
			continue
		}
		out, err := clients.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q.name)})
		if err != nil {
			return Backend{}, fmt.Errorf("dead-letter queue %s: %w", q.name, err)
		}
		*q.url = aws.ToString(out.QueueUrl)
	}
	ix := dynamostore.IndexConfig{Table: c.IndexTable, Shards: c.IndexShards, Settle: c.IndexSettle}
	clients.Indexer = dynamostore.NewIndexer(clients.DynamoDB, ix, log)
	b := Backend{
		Store: dynamostore.New(clients.DynamoDB, c.EventsTable, dynamostore.WithSnapshotTTL(c.SnapshotTTL), dynamostore.WithIndex(ix)),
		Docs:  dynamostore.NewDocs(clients.DynamoDB, c.ReadModelTable, api.IdempotencyCollection),
		Sink:  &ddbstream.SQSSink{Client: clients.SQS, QueueURL: clients.QueueURL, SagaQueueURL: clients.SagaQueueURL},
		AWS:   clients,
	}
	if c.RebuildQueueURL != "" {
		b.Dispatcher = &ddbstream.RebuildQueue{SQS: clients.SQS, QueueURL: c.RebuildQueueURL}
	}
	if c.StreamPoller {
		desc, err := clients.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.EventsTable)})
		if err != nil || desc.Table.LatestStreamArn == nil {
			return Backend{}, fmt.Errorf("events table %s has no stream: %v", c.EventsTable, err)
		}
		clients.StreamArn = aws.ToString(desc.Table.LatestStreamArn)
	}
	if c.StreamPoller || c.QueuePoller {
		b.Loops = func(s *System) []func(context.Context) { return localMappings(s, c, clients, log) }
	}
	return b, nil
}

// localMappings stand in for template.yaml's event source mappings: the read models and
// the saga each on the events stream, with their own on-failure queue, and each
// dead-letter queue feeding its own redrive.
func localMappings(s *System, c Config, clients *AWSClients, log *slog.Logger) []func(context.Context) {
	var loops []func(context.Context)
	readModels := func(p projection.Projection) bool { return !projection.IsReactor(p) }
	if c.StreamPoller {
		for _, m := range []struct {
			keep  func(projection.Projection) bool
			queue string
		}{{readModels, clients.QueueURL}, {projection.IsReactor, clients.SagaQueueURL}} {
			p := &ddbstream.Poller{Streams: clients.Streams, StreamArn: clients.StreamArn, Handler: s.StreamHandler(m.keep).Handle,
				SQS: clients.SQS, QueueURL: m.queue, Logger: log}
			loops = append(loops, p.Run)
		}
	}
	if c.QueuePoller {
		for _, m := range []struct{ scope, queue string }{{RedriveReadModels, clients.QueueURL}, {RedriveSagas, clients.SagaQueueURL}} {
			p := &ddbstream.QueuePoller{SQS: clients.SQS, QueueURL: m.queue, Handler: s.RedriverFor(m.scope).Handle, Logger: log}
			loops = append(loops, p.Run)
		}
	}
	return loops
}

// projectorParallel is how many aggregates of a stream batch the read models' handler
// projects at once (ddbstream.Projector.Parallel).
const projectorParallel = 8

// Projector is the stream handler over every projection of the system (read models and
// sagas): what the local poller invokes.
func (s *System) Projector() *ddbstream.Projector { return s.StreamHandler(nil) }

// StreamHandler is the stream handler over the projections keep accepts (all when nil):
// the projector Lambda runs the read models, the saga Lambda the reactors.
func (s *System) StreamHandler(keep func(projection.Projection) bool) *ddbstream.Projector {
	en := s.Engine
	if keep != nil {
		en = en.Subset(keep)
	}
	p := &ddbstream.Projector{Engine: en, Decode: dynamostore.DecodeItem, Logger: s.Logger}
	// Read models do not depend on the order of events across aggregates; the saga does.
	if !slices.ContainsFunc(en.Projections(), projection.IsReactor) {
		p.Parallel = projectorParallel
	}
	// The read models' handler indexes each batch before projecting it (template.yaml
	// grants the index writes to the projector's role alone); the saga's does not.
	if s.AWS != nil && s.AWS.Indexer != nil && slices.ContainsFunc(en.Projections(), func(p projection.Projection) bool { return !projection.IsReactor(p) }) {
		p.Index = s.AWS.Indexer
	}
	return p
}

// RebuildWorker is the rebuild function's handler: it steps rebuild jobs, invocation
// after invocation, through the rebuild queue (REBUILD_QUEUE_URL).
func (s *System) RebuildWorker() *ddbstream.RebuildWorker {
	w := &ddbstream.RebuildWorker{Engine: s.Engine, Logger: s.Logger}
	if s.AWS != nil {
		w.Queue = &ddbstream.RebuildQueue{SQS: s.AWS.SQS, QueueURL: s.Config.RebuildQueueURL}
	}
	return w
}

// Redriver is the dead-letter queue consumer of the configured scope (REDRIVE_SCOPE):
// the redrive Lambda, which template.yaml deploys twice, once per queue and role.
func (s *System) Redriver() *ddbstream.Redriver { return s.RedriverFor(s.Config.RedriveScope) }

// RedriverFor is the dead-letter consumer over the projections of one scope: the read
// models (whose redrive role may not append events) or the sagas (whose may).
func (s *System) RedriverFor(scope string) *ddbstream.Redriver {
	en := s.Engine
	switch scope {
	case RedriveReadModels:
		en = en.Subset(func(p projection.Projection) bool { return !projection.IsReactor(p) })
	case RedriveSagas:
		en = en.Subset(projection.IsReactor)
	}
	r := &ddbstream.Redriver{Engine: en, Logger: s.Logger}
	if s.AWS != nil {
		r.Streams = s.AWS.Streams
	}
	return r
}
