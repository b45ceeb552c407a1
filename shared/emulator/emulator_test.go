package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/emulator"
)

func TestMain(m *testing.M) { emulator.Main(m) }

func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

// A write to a table with a stream shows up as a stream record, read the way the stream
// poller and Lambda read it: DescribeStream, GetShardIterator, GetRecords.
func TestDynamoDBStreamRoundTrip(t *testing.T) {
	ctx := context.Background()
	ep := emulator.DynamoDB(t)
	db := emulator.DynamoDBClient(ep)
	table := unique("emulator-probe")
	out, err := db.CreateTable(ctx, infra.EventsTable(table))
	if err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	st := emulator.DynamoDBStreamsClient(ep)
	arn := out.TableDescription.LatestStreamArn
	desc, err := st.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: arn})
	if err != nil || len(desc.StreamDescription.Shards) == 0 {
		t.Fatalf("describe stream %s: %v %+v", aws.ToString(arn), err, desc)
	}
	if desc.StreamDescription.StreamViewType != streamtypes.StreamViewTypeNewImage {
		t.Errorf("stream view %s, want NEW_IMAGE", desc.StreamDescription.StreamViewType)
	}
	it, err := st.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: arn,
		ShardId: desc.StreamDescription.Shards[0].ShardId, ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: "Probe#1"}, "sk": &ddbtypes.AttributeValueMemberN{Value: "1"},
		"payload": &ddbtypes.AttributeValueMemberS{Value: "hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	iter := it.ShardIterator
	for {
		recs, err := st.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs.Records) > 0 {
			r := recs.Records[0]
			payload, _ := r.Dynamodb.NewImage["payload"].(*streamtypes.AttributeValueMemberS)
			if len(recs.Records) != 1 || r.EventName != streamtypes.OperationTypeInsert || payload == nil || payload.Value != "hello" {
				t.Fatalf("stream records: %+v", recs.Records)
			}
			t.Logf("stream record readable %v after the write", time.Since(written).Round(time.Millisecond))
			break
		}
		// An open shard always hands out a next iterator, records or not.
		if recs.NextShardIterator == nil || time.Since(written) > 10*time.Second {
			t.Fatalf("no stream record 10s after the write (next iterator %v)", recs.NextShardIterator != nil)
		}
		iter = recs.NextShardIterator
		time.Sleep(20 * time.Millisecond)
	}
}

// The dead-letter queue's life cycle on fauxqs with the same attributes as in AWS:
// create (with SSE, retention and a redrive policy), send, receive, delete, and a message
// received maxReceiveCount times without being deleted moves to the redrive target.
func TestSQSRoundTripAndRedrive(t *testing.T) {
	ctx := context.Background()
	q := emulator.SQSClient(emulator.SQS(t))
	archive, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("probe-archive"))})
	if err != nil {
		t.Fatal(err)
	}
	arnAttrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: archive.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	const maxReceives = 2
	created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("probe")), Attributes: map[string]string{
		"MessageRetentionPeriod": "1209600",
		"SqsManagedSseEnabled":   "true",
		// The SDK never sends a zero ReceiveMessageInput.VisibilityTimeout (zero means
		// "unset"), so the queue itself makes received messages visible again at once.
		"VisibilityTimeout": "0",
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`,
			arnAttrs.Attributes["QueueArn"], maxReceives),
	}})
	if err != nil {
		t.Fatal(err)
	}
	url := created.QueueUrl
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	if a := attrs.Attributes; a["MessageRetentionPeriod"] != "1209600" || a["SqsManagedSseEnabled"] != "true" ||
		!strings.Contains(a["RedrivePolicy"], arnAttrs.Attributes["QueueArn"]) {
		t.Fatalf("queue attributes: %v", a)
	}

	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, WaitTimeSeconds: 1})
	if err != nil || len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != `{"x":1}` {
		t.Fatalf("receive: %+v %v", got, err)
	}
	if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: got.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	if again, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url}); err != nil || len(again.Messages) != 0 {
		t.Fatalf("deleted message came back: %+v %v", again, err)
	}

	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= maxReceives; i++ {
		got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, WaitTimeSeconds: 1})
		if err != nil || len(got.Messages) != 1 {
			t.Fatalf("receive %d: %+v %v", i, got, err)
		}
	}
	if got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url}); err != nil || len(got.Messages) != 0 {
		t.Fatalf("receive past maxReceiveCount: %+v %v", got, err)
	}
	moved, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: archive.QueueUrl, WaitTimeSeconds: 1})
	if err != nil || len(moved.Messages) != 1 || aws.ToString(moved.Messages[0].Body) != "poison" {
		t.Fatalf("redrive target: %+v %v", moved, err)
	}

	_, err = q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(unique("absent"))})
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Fatalf("GetQueueUrl of a missing queue: %v, want QueueDoesNotExist", err)
	}
}

// Every Postgres call is a database of its own, and it is gone after the test.
func TestPostgresDatabasesAreIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := emulator.Postgres(t), emulator.Postgres(t)
	if a == b {
		t.Fatalf("two calls gave one DSN %q", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	var x int
	if err := ca.QueryRow(ctx, "SELECT x FROM only_in_a").Scan(&x); err != nil || x != 42 {
		t.Fatalf("query: %d %v", x, err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("database b sees a's table: %d %v", n, err)
	}

	var inner string
	t.Run("dropped after its test", func(t *testing.T) {
		inner = emulator.Postgres(t)
		c, err := pgx.Connect(ctx, inner)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close(ctx) // a connection left open would not stop the drop either
		leak, err := pgx.Connect(ctx, inner)
		if err != nil {
			t.Fatal(err)
		}
		_ = leak
	})
	cfg, err := pgx.ParseConfig(inner)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", cfg.Database).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s still exists after its test: %d %v", cfg.Database, n, err)
	}
}

// The servers a test process started die with it, however it dies. The helper below is
// this test binary run again: it starts fauxqs and PostgreSQL, prints their addresses and
// waits to be killed with SIGKILL, which runs no cleanup at all.
func TestServersDieWithTheTestProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartAndWait$", "-test.v")
	cmd.Env = append(withoutOverrides(os.Environ()), "ECM_EMULATOR_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var addrs []string
	buf := make([]byte, 4096)
	var text string
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(text, "helper ready") {
		if time.Now().After(deadline) {
			t.Fatalf("helper did not start its servers:\n%s", text)
		}
		n, err := out.Read(buf)
		text += string(buf[:n])
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr "); ok {
			addrs = append(addrs, addr)
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("helper printed %q", text)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err != nil {
			t.Fatalf("%s not listening while the helper runs: %v", a, err)
		} else {
			c.Close()
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// Nothing ran to remove the helper's server directory; the next server started on
	// this machine would, but this test tidies up after itself.
	stale, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("ecm-pg-%d-*", cmd.Process.Pid)))
	t.Cleanup(func() {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	})
	for _, a := range addrs {
		deadline := time.Now().Add(15 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("%s still listening 15s after its test process was killed", a)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestHelperStartAndWait(t *testing.T) {
	if os.Getenv("ECM_EMULATOR_HELPER") != "1" {
		return // only as TestServersDieWithTheTestProcess's child
	}
	sqsURL := strings.TrimPrefix(string(emulator.SQS(t)), "http://")
	cfg, err := pgx.ParseConfig(emulator.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s\naddr %s\nhelper ready\n", sqsURL, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	time.Sleep(5 * time.Minute)
}

func withoutOverrides(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "ECM_TEST_") {
			out = append(out, kv)
		}
	}
	return out
}

// The emulators listen on 127.0.0.1 only (README, localstack/emulators.sh): from any other
// address of this machine their ports refuse connections.
func TestEmulatorsListenOnLoopbackOnly(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var others []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			others = append(others, n.IP)
		}
	}
	t.Logf("addresses other than loopback: %v", others)
	for name, ep := range map[string]emulator.Endpoint{"DynamoDB Local": emulator.DynamoDB(t), "fauxqs": emulator.SQS(t)} {
		u, err := url.Parse(string(ep))
		if err != nil {
			t.Fatal(err)
		}
		if u.Hostname() != "127.0.0.1" {
			t.Errorf("%s endpoint %s is not on 127.0.0.1", name, ep)
		}
		c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
		if err != nil {
			t.Fatalf("%s not reachable on %s: %v", name, u.Host, err)
		}
		c.Close()
		for _, ip := range others {
			addr := net.JoinHostPort(ip.String(), u.Port())
			if c, err := net.DialTimeout("tcp", addr, 10*time.Second); err == nil {
				c.Close()
				t.Errorf("%s answers on %s: it listens beyond loopback", name, addr)
			}
		}
	}
}
