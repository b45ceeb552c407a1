package infra

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/awslabs/goformation/v7/intrinsics"
)

var update = flag.Bool("update", false, "rewrite localstack/init/{tables,queues}/*.json from the infra definitions")

const localstackInit = "../localstack/init"

// LocalStack's account and region (docker-compose.yml sets the region): the archive
// queue's ARN there is known in advance, so the dead-letter queue's JSON can name it.
func localStackQueueArn(name string) string { return "arn:aws:sqs:us-east-1:000000000000:" + name }

// cliJSON renders an SDK input as the AWS CLI's --cli-input-json: the API's field names,
// which the SDK structs share, without nulls and empty values.
func cliJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(dropEmpty(generic), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func dropEmpty(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil || e == "" {
				delete(x, k)
				continue
			}
			x[k] = dropEmpty(e)
		}
	case []any:
		for i := range x {
			x[i] = dropEmpty(x[i])
		}
	}
	return v
}

// readInput decodes a --cli-input-json file into the SDK input it stands for, rejecting
// any field the API does not have (a misspelt key would otherwise be ignored by both
// this test and, silently, by the CLI's create call's intent).
func readInput(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./infra -run LocalStack -update writes it)", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// canonicalTable orders what DynamoDB treats as sets, so only meaningful differences
// count.
func canonicalTable(in *dynamodb.CreateTableInput) *dynamodb.CreateTableInput {
	c := *in
	c.AttributeDefinitions = slices.SortedFunc(slices.Values(in.AttributeDefinitions), func(a, b types.AttributeDefinition) int {
		return cmp.Compare(aws.ToString(a.AttributeName), aws.ToString(b.AttributeName))
	})
	c.GlobalSecondaryIndexes = slices.SortedFunc(slices.Values(in.GlobalSecondaryIndexes), func(a, b types.GlobalSecondaryIndex) int {
		return cmp.Compare(aws.ToString(a.IndexName), aws.ToString(b.IndexName))
	})
	return &c
}

// The LocalStack init hook creates the tables and queues from JSON files; they must
// describe exactly what infra defines: keys, attribute definitions, indexes, stream view
// and queue attributes.
func TestLocalStackResourcesMatchInfra(t *testing.T) {
	tables := map[string]*dynamodb.CreateTableInput{
		"tables/events.json":     EventsTable(DefaultEventsTable),
		"tables/readmodels.json": ReadModelTable(DefaultReadModelTable),
		"tables/index.json":      IndexTable(DefaultIndexTable),
	}
	queues := map[string]*sqs.CreateQueueInput{
		"queues/dead-letters-archive.json":      DLQArchiveQueue(DefaultDLQArchiveName),
		"queues/dead-letters.json":              DLQQueue(DefaultDLQName, localStackQueueArn(DefaultDLQArchiveName)),
		"queues/saga-dead-letters-archive.json": DLQArchiveQueue(DefaultSagaDLQArchiveName),
		"queues/saga-dead-letters.json":         DLQQueue(DefaultSagaDLQName, localStackQueueArn(DefaultSagaDLQArchiveName)),
	}
	indexUpdate := "tables/readmodels-index.json"
	if *update {
		for file, in := range tables {
			write(t, file, cliJSON(t, in))
		}
		write(t, indexUpdate, cliJSON(t, ReadModelIndexUpdate(DefaultReadModelTable)))
		for file, in := range queues {
			write(t, file, cliJSON(t, in))
		}
	}
	var gotUpdate dynamodb.UpdateTableInput
	readInput(t, filepath.Join(localstackInit, indexUpdate), &gotUpdate)
	if g, w := cliJSON(t, &gotUpdate), cliJSON(t, ReadModelIndexUpdate(DefaultReadModelTable)); !bytes.Equal(g, w) {
		t.Errorf("%s differs from infra (go test ./infra -run LocalStack -update rewrites it):\nfile:\n%s\ninfra:\n%s", indexUpdate, g, w)
	}
	for file, want := range tables {
		var got dynamodb.CreateTableInput
		readInput(t, filepath.Join(localstackInit, file), &got)
		if g, w := cliJSON(t, canonicalTable(&got)), cliJSON(t, canonicalTable(want)); !bytes.Equal(g, w) {
			t.Errorf("%s differs from infra (go test ./infra -run LocalStack -update rewrites it):\nfile:\n%s\ninfra:\n%s", file, g, w)
		}
	}
	for file, want := range queues {
		var got sqs.CreateQueueInput
		readInput(t, filepath.Join(localstackInit, file), &got)
		if aws.ToString(got.QueueName) != aws.ToString(want.QueueName) || !reflect.DeepEqual(got.Attributes, want.Attributes) {
			t.Errorf("%s differs from infra (go test ./infra -run LocalStack -update rewrites it):\nfile: %s %v\ninfra: %s %v",
				file, aws.ToString(got.QueueName), got.Attributes, aws.ToString(want.QueueName), want.Attributes)
		}
	}
}

func write(t *testing.T, file string, data []byte) {
	t.Helper()
	path := filepath.Join(localstackInit, file)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The hook uses every JSON file, creates the archive before the queue that redrives to
// it, and turns TTL on where Ensure does.
func TestLocalStackHookUsesTheDefinitions(t *testing.T) {
	hook, err := os.ReadFile(filepath.Join(localstackInit, "ready.d", "10-resources.sh"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(hook)
	for _, want := range []string{"tables/events.json", "tables/readmodels.json", "tables/index.json", DefaultIndexTable, "tables/readmodels-index.json", IndexByCollection, "queues/dead-letters-archive.json",
		"queues/dead-letters.json", "queues/saga-dead-letters-archive.json", "queues/saga-dead-letters.json",
		AttrExpiresAt, DefaultEventsTable, DefaultReadModelTable} {
		if !strings.Contains(text, want) {
			t.Errorf("10-resources.sh does not mention %s", want)
		}
	}
	for _, q := range []string{"queues/dead-letters", "queues/saga-dead-letters"} {
		if strings.Index(text, q+"-archive.json") > strings.Index(text, q+".json") {
			t.Errorf("10-resources.sh creates %s before its redrive target", q)
		}
	}
	if fi, err := os.Stat(filepath.Join(localstackInit, "ready.d", "10-resources.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("10-resources.sh must be executable for LocalStack to run it: %v", err)
	}
}

// template.yaml declares the queues with the attributes infra creates them with on the
// emulators and LocalStack.
func TestTemplateQueuesMatchInfra(t *testing.T) {
	raw, err := os.ReadFile("../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	processed, err := intrinsics.ProcessYAML(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Resources map[string]struct {
			Type       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal(processed, &tpl); err != nil {
		t.Fatal(err)
	}
	for logical, want := range map[string]*sqs.CreateQueueInput{
		"DeadLetterQueue":            DLQQueue(DefaultDLQName, "ignored"),
		"DeadLetterArchiveQueue":     DLQArchiveQueue(DefaultDLQArchiveName),
		"SagaDeadLetterQueue":        DLQQueue(DefaultSagaDLQName, "ignored"),
		"SagaDeadLetterArchiveQueue": DLQArchiveQueue(DefaultSagaDLQArchiveName),
	} {
		res, ok := tpl.Resources[logical]
		if !ok || res.Type != "AWS::SQS::Queue" {
			t.Errorf("template.yaml has no queue %s", logical)
			continue
		}
		for attr, value := range want.Attributes {
			got := scalar(res.Properties[attr])
			if attr == "RedrivePolicy" {
				var policy map[string]any
				_ = json.Unmarshal([]byte(value), &policy)
				rp, _ := res.Properties[attr].(map[string]any)
				got, value = scalar(rp["maxReceiveCount"]), scalar(policy["maxReceiveCount"])
				attr += ".maxReceiveCount"
			}
			if got != value {
				t.Errorf("template.yaml %s.%s = %s, infra has %s", logical, attr, got, value)
			}
		}
		for attr := range res.Properties {
			if _, ok := want.Attributes[attr]; !ok && attr != "QueueName" && attr != "Tags" {
				t.Errorf("template.yaml %s sets %s, which infra's definition lacks", logical, attr)
			}
		}
	}
}

// scalar renders a template or JSON value the way SQS attributes spell it.
func scalar(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}
