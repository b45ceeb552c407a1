package system

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/ddbstream"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// AWSClients are the clients of the DynamoDB backend.
type AWSClients struct {
	DynamoDB  *dynamodb.Client
	Streams   *dynamodbstreams.Client
	SQS       *sqs.Client
	QueueURL  string // the dead-letter queue
	StreamArn string // the events table's stream (set when the poller runs)
}

func init() { openers["dynamodb"] = openDynamoDB }

func openDynamoDB(ctx context.Context, c Config, log *slog.Logger) (Backend, error) {
	// The standard chain: region, credentials and the AWS_ENDPOINT_URL_* overrides the
	// SDK reads itself.
	cfg, err := config.LoadDefaultConfig(ctx)
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
		SQS: sqs.NewFromConfig(cfg), QueueURL: c.DLQURL}
	if c.EnsureResources {
		url, err := infra.Ensure(ctx, clients.DynamoDB, clients.SQS, infra.Names{EventsTable: c.EventsTable,
			ReadModelTable: c.ReadModelTable, DLQ: c.DLQName, DLQArchive: c.DLQName + "-archive"})
		if err != nil {
			return Backend{}, fmt.Errorf("create local resources: %w", err)
		}
		if clients.QueueURL == "" {
			clients.QueueURL = url
		}
	}
	if clients.QueueURL == "" {
		out, err := clients.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(c.DLQName)})
		if err != nil {
			return Backend{}, fmt.Errorf("dead-letter queue %s: %w", c.DLQName, err)
		}
		clients.QueueURL = aws.ToString(out.QueueUrl)
	}
	b := Backend{
		Store: dynamostore.New(clients.DynamoDB, c.EventsTable, dynamostore.WithSnapshotTTL(c.SnapshotTTL)),
		Docs:  dynamostore.NewDocs(clients.DynamoDB, c.ReadModelTable),
		Sink:  &ddbstream.SQSSink{Client: clients.SQS, QueueURL: clients.QueueURL},
		AWS:   clients,
	}
	if c.StreamPoller {
		desc, err := clients.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.EventsTable)})
		if err != nil || desc.Table.LatestStreamArn == nil {
			return Backend{}, fmt.Errorf("events table %s has no stream: %v", c.EventsTable, err)
		}
		clients.StreamArn = aws.ToString(desc.Table.LatestStreamArn)
		b.Loops = func(s *System) []func(context.Context) {
			p := &ddbstream.Poller{Streams: clients.Streams, StreamArn: clients.StreamArn, Handler: s.Projector().Handle,
				SQS: clients.SQS, QueueURL: clients.QueueURL, Logger: log}
			return []func(context.Context){p.Run}
		}
	}
	return b, nil
}

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
	return &ddbstream.Projector{Engine: en, Decode: dynamostore.DecodeItem, Logger: s.Logger}
}

// Redriver is the dead-letter queue consumer (the redrive Lambda).
func (s *System) Redriver() *ddbstream.Redriver {
	r := &ddbstream.Redriver{Engine: s.Engine, Logger: s.Logger}
	if s.AWS != nil {
		r.Streams = s.AWS.Streams
	}
	return r
}
