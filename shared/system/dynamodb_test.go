package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/ddbstream"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// dynamoSystem runs the system on DynamoDB Local and fauxqs, configured the way
// `make run-emulated` is: endpoint overrides in the environment, resources created at
// start, the stream poller feeding the projector.
func dynamoSystem(t *testing.T) *system.System {
	t.Helper()
	return start(t, dynamoConfig(t))
}

// dynamoConfig is dynamoSystem's configuration (the environment set for the test).
func dynamoConfig(t *testing.T) system.Config {
	t.Helper()
	ddb, q := emulator.DynamoDB(t), emulator.SQS(t)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", string(ddb))
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", string(ddb))
	t.Setenv("AWS_ENDPOINT_URL_SQS", string(q))
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	s := fmt.Sprint(time.Now().UnixNano())
	t.Setenv("EVENT_STORE", "dynamodb")
	t.Setenv("EVENTS_TABLE", "events-"+s)
	t.Setenv("READMODEL_TABLE", "models-"+s)
	t.Setenv("INDEX_TABLE", "index-"+s)
	t.Setenv("DLQ_NAME", "dlq-"+s)
	t.Setenv("SAGA_DLQ_NAME", "saga-dlq-"+s)
	t.Setenv("SNAPSHOT_EVERY", "3")
	cfg, err := system.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.EndpointOverride || !cfg.StreamPoller {
		t.Fatalf("config %+v: endpoint override and poller expected", cfg)
	}
	return cfg
}

func TestAPIOnDynamoDB(t *testing.T) {
	sys := dynamoSystem(t)
	apitest.Run(t, func(*testing.T) http.Handler { return sys.Handler }, apitest.Validate(apitest.Contract(t)))
}

// A poison event in one aggregate lands in the SQS dead-letter queue with its error while
// another aggregate's events keep projecting; after the cause is fixed, the redrive
// Lambda's handler (fed the queue's real messages) brings the read model level, and a
// second redrive changes nothing.
func TestPoisonEventRedriveOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	t.Setenv("DLQ_POLLER", "off") // this test plays the redrive's mapping itself
	sys := dynamoSystem(t)
	c := &apitest.Client{T: t, H: sys.Handler, OpenAPI: apitest.Contract(t)}
	bad, good := apitest.ID("bad"), apitest.ID("good")
	c.Must(201, "POST", "/accounts/"+bad+"/open", map[string]any{"initialDeposit": 100})
	c.Must(201, "POST", "/accounts/"+good+"/open", map[string]any{"initialDeposit": 1})
	// An event type this version of the projector does not know: poison until deployed.
	if _, err := sys.Store.Append(ctx, eventstore.Stream{Type: "BankAccount", ID: bad}, 1,
		[]event.Event{event.MustNew("InterestAccrued", map[string]string{"amount": "5"})}); err != nil {
		t.Fatal(err)
	}
	// No command is decided on a state that skipped the event: the answer names it.
	if r := c.Do("POST", "/accounts/"+bad+"/deposit", map[string]any{"amount": 10}); r.Status != 500 ||
		!strings.Contains(string(r.Raw), `"unreadable_event"`) || !strings.Contains(string(r.Raw), "version 2 (InterestAccrued)") {
		t.Fatalf("deposit on a stream with an unreadable event: %d %s", r.Status, r.Raw)
	}
	c.Must(200, "POST", "/accounts/"+good+"/deposit", map[string]any{"amount": 2}) // keeps flowing

	c.Eventually(60*time.Second, func() string {
		if g := c.Do("GET", "/accounts/"+good, nil); g.Num("balance") != "3" {
			return "other aggregate not projected: " + string(g.Raw)
		}
		return ""
	})
	var msgs []events.SQSMessage
	c.Eventually(60*time.Second, func() string {
		out, err := sys.AWS.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(sys.AWS.QueueURL),
			MaxNumberOfMessages: 10, VisibilityTimeout: 0})
		if err != nil {
			return err.Error()
		}
		for _, m := range out.Messages {
			msgs = append(msgs, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body)})
		}
		if len(msgs) == 0 {
			return "no dead letter in the queue"
		}
		return ""
	})
	var m ddbstream.Message
	if err := json.Unmarshal([]byte(msgs[0].Body), &m); err != nil || m.DeadLetter == nil {
		t.Fatalf("queue message %s: %v", msgs[0].Body, err)
	}
	if m.DeadLetter.AggregateID != bad || m.DeadLetter.Version != 2 || m.DeadLetter.EventType != "InterestAccrued" ||
		!strings.Contains(m.DeadLetter.Error, "unknown event type") || m.DeadLetter.Projection != "accounts" ||
		m.DeadLetter.Event.EventID == "" {
		t.Fatalf("dead letter %+v", m.DeadLetter)
	}
	if g := c.Must(200, "GET", "/accounts/"+bad, nil); g.Num("version") != "1" {
		t.Fatalf("parked aggregate moved on: %s", g.Raw)
	}
	dl := c.Must(200, "GET", "/dead-letters", nil)
	if !strings.Contains(string(dl.Raw), bad) {
		t.Fatalf("GET /dead-letters: %s", dl.Raw)
	}

	// Redrive before the fix: still failing, reported back to SQS.
	res, err := sys.Redriver().Handle(ctx, events.SQSEvent{Records: msgs})
	if err != nil || len(res.BatchItemFailures) != len(msgs) {
		t.Fatalf("redrive before the fix: %+v %v", res, err)
	}
	// The fix: the new event type is deployed (registered).
	sys.Registry.Register("InterestAccrued", 1)
	c.Must(200, "POST", "/accounts/"+bad+"/deposit", map[string]any{"amount": 10}) // waits behind the poison
	for round := range 2 {
		res, err := sys.Redriver().Handle(ctx, events.SQSEvent{Records: msgs})
		if err != nil || len(res.BatchItemFailures) != 0 {
			t.Fatalf("redrive %d: %+v %v", round, res, err)
		}
		g := c.Must(200, "GET", "/accounts/"+bad, nil)
		if g.Num("version") != "3" || g.Num("balance") != "110" {
			t.Fatalf("after redrive %d: %s", round, g.Raw)
		}
	}
	if dl := c.Must(200, "GET", "/dead-letters", nil); strings.Contains(string(dl.Raw), bad) {
		t.Fatalf("still parked: %s", dl.Raw)
	}
}

// An event item edited by hand into something undecodable: reads and commands on that
// account answer a clear error naming the stream and version, never a bare 500, and other
// accounts are unaffected.
func TestCorruptEventOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	sys := dynamoSystem(t)
	c := &apitest.Client{T: t, H: sys.Handler, OpenAPI: apitest.Contract(t)}
	bad := apitest.ID("corrupt")
	// Written past this process's repositories, so no warm state of it is kept: the
	// commands below read the store. (A process that kept the state of v2 from before the
	// edit decides on what v2 was when it was appended, and its append is checked by
	// version as always.)
	if _, err := sys.Store.Append(ctx, eventstore.Stream{Type: "BankAccount", ID: bad}, eventstore.NoStream, []event.Event{
		event.MustNew("AccountOpened", map[string]any{"initialDeposit": 100}),
		event.MustNew("MoneyDeposited", map[string]any{"amount": 1}),
	}); err != nil {
		t.Fatal(err)
	}
	_, err := sys.AWS.DynamoDB.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(sys.Config.EventsTable),
		Key: map[string]dbtypes.AttributeValue{"pk": &dbtypes.AttributeValueMemberS{Value: "BankAccount#" + bad},
			"sk": &dbtypes.AttributeValueMemberN{Value: "2"}},
		UpdateExpression:          aws.String("SET payload = :p"),
		ExpressionAttributeValues: map[string]dbtypes.AttributeValue{":p": &dbtypes.AttributeValueMemberS{Value: "{not json"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []apitest.Response{
		c.Do("GET", "/accounts/"+bad+"?consistent=true", nil),
		c.Do("POST", "/accounts/"+bad+"/deposit", map[string]any{"amount": 1}),
	} {
		if r.Status != 500 || r.ErrorCode() != "unreadable_event" || !strings.Contains(string(r.Raw), "BankAccount#"+bad) ||
			!strings.Contains(string(r.Raw), "version 2") {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
	}
	c.Must(201, "POST", "/accounts/"+apitest.ID("fine")+"/open", map[string]any{"initialDeposit": 1})
}

// queueDepth is every message a queue holds: visible, in flight and delayed.
func queueDepth(ctx context.Context, sys *system.System, url string) (int, error) {
	out, err := sys.AWS.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range out.Attributes {
		k, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("queue attribute %q: %w", v, err)
		}
		n += k
	}
	return n, nil
}

// A redrive through the API leaves nothing in the dead-letter queues: the queue's
// consumer (on AWS the redrive function; here the local stand-in for its mapping, which
// the system runs as `make run-emulated` does) takes a message whose dead letter is no
// longer parked as done and deletes it, without applying anything again.
func TestHTTPRedriveEmptiesTheQueueOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	sys := dynamoSystem(t)
	if !sys.Config.QueuePoller {
		t.Fatalf("config %+v: the dead-letter queue consumers should run with the emulators", sys.Config)
	}
	c := &apitest.Client{T: t, H: sys.Handler, OpenAPI: apitest.Contract(t)}
	ids := []string{apitest.ID("http-a"), apitest.ID("http-b")}
	for _, id := range ids {
		c.Must(201, "POST", "/accounts/"+id+"/open", map[string]any{"initialDeposit": 100})
		// An event type this version does not know yet: both aggregates park.
		if _, err := sys.Store.Append(ctx, eventstore.Stream{Type: "BankAccount", ID: id}, 1,
			[]event.Event{event.MustNew("InterestAccrued", map[string]string{"amount": "5"})}); err != nil {
			t.Fatal(err)
		}
		// No command decides on a state that skipped it.
		if r := c.Do("POST", "/accounts/"+id+"/deposit", map[string]any{"amount": 10}); r.Status != 500 || r.ErrorCode() != "unreadable_event" {
			t.Fatalf("deposit before the fix: %d %s", r.Status, r.Raw)
		}
	}
	queues := map[string]string{"dead letters": sys.AWS.QueueURL, "saga dead letters": sys.AWS.SagaQueueURL}
	for _, u := range []string{sys.AWS.QueueURL, sys.AWS.SagaQueueURL} {
		queues["archive of "+u] = archiveURL(t, sys, u)
	}
	total := func() (int, string) {
		sum, detail := 0, ""
		for name, u := range queues {
			n, err := queueDepth(ctx, sys, u)
			if err != nil {
				t.Fatal(err)
			}
			sum += n
			detail += fmt.Sprintf(" %s=%d", name, n)
		}
		return sum, detail
	}
	c.Eventually(60*time.Second, func() string {
		dl := c.Must(200, "GET", "/dead-letters", nil)
		for _, id := range ids {
			if !strings.Contains(string(dl.Raw), id) {
				return "not parked yet: " + id
			}
		}
		if n, detail := total(); n != 2 {
			return "messages:" + detail
		}
		return ""
	})

	sys.Registry.Register("InterestAccrued", 1) // the fix is deployed
	for _, id := range ids {
		c.Must(200, "POST", "/accounts/"+id+"/deposit", map[string]any{"amount": 10}) // projected behind the parked event
	}
	res := c.Must(200, "POST", "/dead-letters/redrive", nil)
	if res.Num("redriven") != "2" {
		t.Fatalf("redrive: %s", res.Raw)
	}
	if dl := c.Must(200, "GET", "/dead-letters", nil); strings.Contains(string(dl.Raw), ids[0]) || strings.Contains(string(dl.Raw), ids[1]) {
		t.Fatalf("still parked after the redrive: %s", dl.Raw)
	}
	// A message the consumer failed on before the fix is hidden for the local mapping's
	// visibility (10 s) before it comes back and is found done.
	c.Eventually(60*time.Second, func() string {
		if n, detail := total(); n != 0 {
			return "messages left:" + detail
		}
		return ""
	})
	for _, id := range ids {
		if a := c.Must(200, "GET", "/accounts/"+id, nil); a.Num("version") != "3" || a.Num("balance") != "110" {
			t.Fatalf("read model of %s: %s", id, a.Raw)
		}
	}
}

// archiveURL is the queue a dead-letter queue's redrive policy moves messages to.
func archiveURL(t *testing.T, sys *system.System, url string) string {
	t.Helper()
	ctx := context.Background()
	out, err := sys.AWS.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	}
	if err := json.Unmarshal([]byte(out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]), &policy); err != nil {
		t.Fatalf("redrive policy of %s: %v", url, err)
	}
	name := policy.DeadLetterTargetArn[strings.LastIndex(policy.DeadLetterTargetArn, ":")+1:]
	u, err := sys.AWS.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(u.QueueUrl)
}
