package emulator_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/emulator"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// A table with a stream: an item written shows up as a stream record.
func TestDynamoDBWithStreams(t *testing.T) {
	ctx := context.Background()
	ep := emulator.DynamoDB(t)
	db := emulator.DynamoDBClient(ep)
	out, err := db.CreateTable(ctx, infra.EventsTable("emulator-probe"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("emulator-probe"), Item: map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: "T#1"}, "sk": &ddbtypes.AttributeValueMemberN{Value: "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	st := emulator.DynamoDBStreamsClient(ep)
	arn := out.TableDescription.LatestStreamArn
	desc, err := st.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: arn})
	if err != nil || len(desc.StreamDescription.Shards) == 0 {
		t.Fatalf("describe stream: %v", err)
	}
	it, err := st.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: arn,
		ShardId: desc.StreamDescription.Shards[0].ShardId, ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil || len(recs.Records) != 1 || recs.Records[0].EventName != streamtypes.OperationTypeInsert {
		t.Fatalf("stream records: %+v %v", recs, err)
	}
}

func TestSQS(t *testing.T) {
	ctx := context.Background()
	q := emulator.SQSClient(emulator.SQS(t))
	created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("probe")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: created.QueueUrl, WaitTimeSeconds: 1})
	if err != nil || len(got.Messages) != 1 || *got.Messages[0].Body != `{"x":1}` {
		t.Fatalf("receive: %+v %v", got, err)
	}
	if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: created.QueueUrl, ReceiptHandle: got.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresDatabasesAreIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := emulator.Postgres(t), emulator.Postgres(t)
	if a == b || !strings.Contains(a, "127.0.0.1") {
		t.Fatalf("DSNs %q %q", a, b)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "create table only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "select count(*) from pg_tables where tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("database b sees a's table: %d %v", n, err)
	}
}
