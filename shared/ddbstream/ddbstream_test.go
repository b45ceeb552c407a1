package ddbstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// testDecoder reads the item layout of testdata (the DynamoDB backend's real decoder is
// exercised end to end against DynamoDB Local in the system tests).
func testDecoder(item map[string]ddb.AttributeValue) (event.Event, bool, error) {
	var raw struct {
		Kind          string `dynamodbav:"kind"`
		EventID       string `dynamodbav:"eventId"`
		EventType     string `dynamodbav:"eventType"`
		AggregateType string `dynamodbav:"aggregateType"`
		PK            string `dynamodbav:"pk"`
		SK            int64  `dynamodbav:"sk"`
		SchemaVersion int    `dynamodbav:"schemaVersion"`
		Timestamp     string `dynamodbav:"timestamp"`
		Payload       string `dynamodbav:"payload"`
	}
	if k, ok := item["kind"].(*ddb.AttributeValueMemberS); ok && k.Value != "event" {
		return event.Event{}, false, nil
	}
	if err := attributevalue.UnmarshalMap(item, &raw); err != nil {
		return event.Event{}, true, err
	}
	ts, err := time.Parse(time.RFC3339Nano, raw.Timestamp)
	if err != nil {
		return event.Event{}, true, err
	}
	id := raw.PK[len(raw.AggregateType)+1:]
	return event.Event{EventID: raw.EventID, EventType: raw.EventType, AggregateType: raw.AggregateType, AggregateID: id,
		Version: raw.SK, SchemaVersion: raw.SchemaVersion, Timestamp: ts, Payload: json.RawMessage(raw.Payload)}, true, nil
}

// flakyDocs fails every update touching acc-3 with a transient conflict.
type flakyDocs struct{ *memstore.Docs }

type flakyTx struct{ docstore.Tx }

func (d flakyDocs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	return d.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return fn(ctx, flakyTx{tx}) })
}

func (t flakyTx) Put(ctx context.Context, c, k string, v any) error {
	if k == "acc-3" {
		return docstore.ErrConflict
	}
	return t.Tx.Put(ctx, c, k, v)
}

type recordingSink struct{ sent []projection.DeadLetter }

func (s *recordingSink) Send(_ context.Context, d projection.DeadLetter) error {
	s.sent = append(s.sent, d)
	return nil
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func assertGolden(t *testing.T, name string, got any) {
	t.Helper()
	var want, have any
	readJSON(t, name, &want)
	raw, _ := json.Marshal(got)
	_ = json.Unmarshal(raw, &have)
	w, _ := json.Marshal(want)
	h, _ := json.Marshal(have)
	if string(w) != string(h) {
		t.Fatalf("response %s, golden %s", h, w)
	}
}

func newEngine(docs docstore.Store, store eventstore.Store) (*projection.Engine, *recordingSink) {
	reg := event.NewRegistry()
	bank.Register(reg)
	en := projection.NewEngine(store, docs, reg, bank.Projection{})
	en.Attempts = 1
	s := &recordingSink{}
	en.Sink = s
	return en, s
}

// The projector applies good records, skips snapshots, parks the poison record with its
// error, and stops at the first transient failure, reporting it as the lowest failed
// sequence number (so Lambda redelivers it and what follows, in order).
func TestProjectorGolden(t *testing.T) {
	docs := memstore.NewDocs()
	en, sink := newEngine(flakyDocs{docs}, memstore.New())
	p := &Projector{Engine: en, Decode: testDecoder}
	var batch events.DynamoDBEvent
	readJSON(t, "stream-batch.json", &batch)
	res, err := p.Handle(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	assertGolden(t, "stream-batch.response.golden.json", res)

	var a bank.View
	if ok, _ := docs.Get(context.Background(), bank.AccountsCollection, "acc-1", &a); !ok || a.Balance.String() != "1000" {
		t.Fatalf("acc-1 not projected: %+v", a)
	}
	if ok, _ := docs.Get(context.Background(), bank.AccountsCollection, "acc-4", &a); ok {
		t.Fatal("a record after the failed one was applied: Lambda redelivers it, order must hold")
	}
	if len(sink.sent) != 1 || sink.sent[0].AggregateID != "acc-2" || sink.sent[0].Error == "" || sink.sent[0].Event.EventID == "" {
		t.Fatalf("dead letters sent: %+v", sink.sent)
	}
}

func TestRedriveGolden(t *testing.T) {
	ctx := context.Background()
	docs, store := memstore.NewDocs(), memstore.New()
	en, _ := newEngine(docs, store)
	// acc-2's stored event is fine now (the cause was fixed); it was parked earlier.
	evs, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "acc-2"}, 0,
		[]event.Event{event.MustNew(bank.AccountOpened, map[string]int{"initialDeposit": 3})})
	if err != nil {
		t.Fatal(err)
	}
	if err := en.Poison(ctx, evs[0], errors.New("undecodable")); err != nil {
		t.Fatal(err)
	}
	r := &Redriver{Engine: en}
	var msgs events.SQSEvent
	readJSON(t, "sqs-redrive.json", &msgs)
	for range 2 { // twice: the second run changes nothing
		res, err := r.Handle(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		assertGolden(t, "sqs-redrive.response.golden.json", res)
		var a bank.View
		if ok, _ := docs.Get(ctx, bank.AccountsCollection, "acc-2", &a); !ok || a.Balance.String() != "3" || a.Version != 1 {
			t.Fatalf("acc-2 after redrive: %+v", a)
		}
		if dls, _ := en.DeadLetters(ctx); len(dls) != 0 {
			t.Fatalf("still parked: %+v", dls)
		}
	}
}

func TestConvertRoundTrip(t *testing.T) {
	var batch events.DynamoDBEvent
	readJSON(t, "stream-batch.json", &batch)
	item, err := ToSDK(batch.Records[0].Change.NewImage)
	if err != nil {
		t.Fatal(err)
	}
	e, ok, err := testDecoder(item)
	if err != nil || !ok || e.Version != 1 || e.AggregateID != "acc-1" || string(e.Payload) != `{"initialDeposit":1000}` {
		t.Fatalf("decoded %+v %v %v", e, ok, err)
	}
}

// recordingIndexer stands in for dynamostore.Indexer in this unit test of the handler's
// order of work (the real indexer runs against DynamoDB Local in dynamostore's and the
// system's tests).
type recordingIndexer struct {
	got  []event.Event
	fail error
}

func (r *recordingIndexer) Index(_ context.Context, evs []event.Event) error {
	r.got = append(r.got, evs...)
	return r.fail
}

// The batch is indexed before anything is projected: every event record (no snapshot,
// no undecodable record) in one call. When indexing fails, every record of the batch is
// reported as failed and nothing is projected, so Lambda delivers the whole batch again.
func TestProjectorIndexesFirst(t *testing.T) {
	var batch events.DynamoDBEvent
	readJSON(t, "stream-batch.json", &batch)
	for _, tc := range []struct {
		name      string
		fail      error
		projected bool
	}{
		{"indexed", nil, true},
		{"index fails", errors.New("throttled"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := memstore.NewDocs()
			en, _ := newEngine(flakyDocs{docs}, memstore.New())
			ix := &recordingIndexer{fail: tc.fail}
			p := &Projector{Engine: en, Decode: testDecoder, Index: ix}
			res, err := p.Handle(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, rec := range batch.Records {
				item, _ := ToSDK(rec.Change.NewImage)
				if e, ok, err := testDecoder(item); rec.EventName == "INSERT" && ok && err == nil {
					want = append(want, e.AggregateID+"/"+e.EventType)
				}
			}
			var got []string
			for _, e := range ix.got {
				got = append(got, e.AggregateID+"/"+e.EventType)
			}
			if len(want) == 0 || len(want) == len(batch.Records) || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("indexed %v, want the batch's decodable events %v (of %d records)", got, want, len(batch.Records))
			}
			var a bank.View
			ok, _ := docs.Get(context.Background(), bank.AccountsCollection, "acc-1", &a)
			if ok != tc.projected {
				t.Fatalf("acc-1 projected: %v, want %v", ok, tc.projected)
			}
			if !tc.projected && len(res.BatchItemFailures) != len(batch.Records) {
				t.Fatalf("failures %+v, want every record of the batch", res.BatchItemFailures)
			}
		})
	}
}

// In parallel mode a transient failure stops its own aggregate only: the other
// aggregates of the batch are applied, the failed record is reported (the same answer
// as in order), the poison record is parked, and the redelivery from the reported record
// applies the rest once, skipping what was applied already.
func TestProjectorParallelFailure(t *testing.T) {
	ctx := context.Background()
	docs := memstore.NewDocs()
	flaky := true
	en, sink := newEngine(switchDocs{Docs: docs, flaky: &flaky}, memstore.New())
	p := &Projector{Engine: en, Decode: testDecoder, Parallel: 4}
	var batch events.DynamoDBEvent
	readJSON(t, "stream-batch.json", &batch)
	res, err := p.Handle(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	assertGolden(t, "stream-batch.response.golden.json", res)
	balance := func(id string) string {
		var a bank.View
		if ok, _ := docs.Get(ctx, bank.AccountsCollection, id, &a); !ok {
			return "absent"
		}
		return a.Balance.String()
	}
	for id, want := range map[string]string{"acc-1": "1000", "acc-3": "absent", "acc-4": "7"} {
		if got := balance(id); got != want {
			t.Fatalf("%s: balance %s, want %s", id, got, want)
		}
	}
	if len(sink.sent) != 1 || sink.sent[0].AggregateID != "acc-2" {
		t.Fatalf("dead letters sent: %+v", sink.sent)
	}
	// Lambda redelivers from the lowest failed record on.
	flaky = false
	var rest events.DynamoDBEvent
	for _, r := range batch.Records {
		if !seqAfter("114", r.Change.SequenceNumber) {
			rest.Records = append(rest.Records, r)
		}
	}
	if res, err := p.Handle(ctx, rest); err != nil || len(res.BatchItemFailures) != 0 {
		t.Fatalf("redelivery: %+v, %v", res, err)
	}
	for id, want := range map[string]string{"acc-3": "5", "acc-4": "7"} {
		if got := balance(id); got != want {
			t.Fatalf("after redelivery %s: balance %s, want %s (applied once)", id, got, want)
		}
	}
}

// switchDocs fails acc-3's updates transiently while *flaky.
type switchDocs struct {
	*memstore.Docs
	flaky *bool
}

func (d switchDocs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	if !*d.flaky {
		return d.Docs.Update(ctx, fn)
	}
	return d.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return fn(ctx, flakyTx{tx}) })
}

// Many aggregates, several events each, projected in parallel (run with -race): every
// read model ends at the fold of its own events, each applied once, and a second delivery
// of the whole batch changes nothing.
func TestProjectorParallelOrderPerAggregate(t *testing.T) {
	ctx := context.Background()
	docs := memstore.NewDocs()
	en, _ := newEngine(docs, memstore.New())
	p := &Projector{Engine: en, Decode: testDecoder, Parallel: 8}
	var batch events.DynamoDBEvent
	seq := 1000
	const accounts, deposits = 20, 5
	for v := 1; v <= deposits+1; v++ {
		for a := range accounts {
			typ, payload := "MoneyDeposited", fmt.Sprintf(`{"amount":%d}`, v)
			if v == 1 {
				typ, payload = "AccountOpened", `{"initialDeposit":0}`
			}
			seq++
			batch.Records = append(batch.Records, streamRecord(fmt.Sprintf("acc-%d", a), v, typ, payload, strconv.Itoa(seq)))
		}
	}
	for round := range 2 {
		if res, err := p.Handle(ctx, batch); err != nil || len(res.BatchItemFailures) != 0 {
			t.Fatalf("round %d: %+v, %v", round, res, err)
		}
		for a := range accounts {
			var v bank.View
			if ok, _ := docs.Get(ctx, bank.AccountsCollection, fmt.Sprintf("acc-%d", a), &v); !ok || v.Version != deposits+1 ||
				v.Balance.String() != "20" {
				t.Fatalf("round %d: acc-%d = %+v, want version %d, balance 20 (2+3+4+5+6)", round, a, v, deposits+1)
			}
		}
	}
}

func streamRecord(id string, v int, typ, payload, seq string) events.DynamoDBEventRecord {
	pk := events.NewStringAttribute("BankAccount#" + id)
	return events.DynamoDBEventRecord{EventName: "INSERT", EventID: seq, Change: events.DynamoDBStreamRecord{
		SequenceNumber: seq, Keys: map[string]events.DynamoDBAttributeValue{"pk": pk, "sk": events.NewNumberAttribute(strconv.Itoa(v))},
		NewImage: map[string]events.DynamoDBAttributeValue{"pk": pk, "sk": events.NewNumberAttribute(strconv.Itoa(v)),
			"kind": events.NewStringAttribute("event"), "eventId": events.NewStringAttribute(fmt.Sprintf("e-%s-%d", id, v)),
			"eventType": events.NewStringAttribute(typ), "aggregateType": events.NewStringAttribute("BankAccount"),
			"schemaVersion": events.NewNumberAttribute("1"), "timestamp": events.NewStringAttribute("2024-01-01T00:00:00Z"),
			"payload": events.NewStringAttribute(payload)}}}
}
