package ddbstream

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
)

// seedFile adds the golden batch as a whole and each of its records on its own.
func seedFile(f *testing.F, name string) []json.RawMessage {
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	var batch struct{ Records []json.RawMessage }
	if err := json.Unmarshal(raw, &batch); err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	return batch.Records
}

// FuzzStreamRecords: whatever a DynamoDB stream delivers, the projector neither panics
// nor fails the invocation; it reports at most one failure, naming a record of the batch
// (Lambda redelivers from there).
func FuzzStreamRecords(f *testing.F) {
	for _, rec := range seedFile(f, "stream-batch.json") {
		f.Add([]byte(`{"Records":[` + string(rec) + `]}`))
	}
	f.Add([]byte(`{"Records":[{"eventName":"INSERT","dynamodb":{"Keys":{"pk":{"S":"x"},"sk":{"N":"x"}},"NewImage":{"kind":{"S":"event"},"sk":{"N":"1e400"}}}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var batch events.DynamoDBEvent
		if json.Unmarshal(raw, &batch) != nil {
			return // the Lambda runtime refuses it before the handler
		}
		for _, r := range batch.Records {
			_, _ = ToSDK(r.Change.NewImage)
			_, _ = ToSDK(r.Change.Keys)
		}
		en, _ := newEngine(memstore.NewDocs(), memstore.New())
		p := &Projector{Engine: en, Decode: dynamostore.DecodeItem}
		res, err := p.Handle(context.Background(), batch)
		if err != nil {
			t.Fatalf("invocation failed: %v", err)
		}
		if len(res.BatchItemFailures) > 1 {
			t.Fatalf("%d failures reported; the first is where Lambda resumes", len(res.BatchItemFailures))
		}
		for _, fail := range res.BatchItemFailures {
			found := false
			for _, r := range batch.Records {
				found = found || r.Change.SequenceNumber == fail.ItemIdentifier
			}
			if !found {
				t.Fatalf("failure %q names no record of the batch", fail.ItemIdentifier)
			}
		}
	})
}

// FuzzRedriveMessage: any dead-letter message body is handled without a panic; one that
// is not a known shape is kept (ErrUnknownMessage, a batch item failure), never dropped.
func FuzzRedriveMessage(f *testing.F) {
	for _, rec := range seedFile(f, "sqs-redrive.json") {
		var m events.SQSMessage
		if err := json.Unmarshal(rec, &m); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(m.Body))
	}
	f.Add([]byte(`{"kind":"parked","deadLetter":{"projection":"nope","aggregateType":"..","aggregateId":"","version":-1}}`))
	f.Add([]byte(`{"DDBStreamBatchInfo":{"shardId":"s","approximateArrivalOfFirstRecord":"0001-01-01T00:00:00Z"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		en, _ := newEngine(memstore.NewDocs(), memstore.New())
		r := &Redriver{Engine: en}
		err := r.message(context.Background(), string(body))
		if !json.Valid(body) && !errors.Is(err, ErrUnknownMessage) {
			t.Fatalf("non-JSON body: err = %v, want ErrUnknownMessage", err)
		}
		res, herr := r.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: string(body)}}})
		if herr != nil {
			t.Fatalf("invocation failed: %v", herr)
		}
		if failed := len(res.BatchItemFailures) == 1 && res.BatchItemFailures[0].ItemIdentifier == "m"; failed != (err != nil) {
			t.Fatalf("message error %v but batch failures %+v", err, res.BatchItemFailures)
		}
	})
}
