package ddbstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// The AWS shape of a rebuild, on DynamoDB Local and fauxqs: the API's engine starts the
// job and dispatches it to the rebuild queue; the rebuild function (invoked the way
// Lambda's SQS mapping does, with messages received from the queue) works a few chunks
// per invocation and queues its own continuation; one invocation dies mid-way and its
// message comes back after the visibility timeout; meanwhile the projector keeps
// applying the stream's records live, with no mapping disabled by hand. Readers always
// find every account whole; after the swap the projector applies to the new generation;
// the end equals a fresh replay, nothing lost or applied twice. The projector also
// records the last stream record it processed, which the API's status reports.
func TestRebuildFunctionWithLiveProjectorOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	ep, qep := emulator.DynamoDB(t), emulator.SQS(t)
	db, sq := emulator.DynamoDBClient(ep), emulator.SQSClient(qep)
	s := fmt.Sprint(time.Now().UnixNano())
	names := infra.Names{EventsTable: "rw-ev-" + s, ReadModelTable: "rw-rm-" + s, IndexTable: "rw-ix-" + s,
		DLQ: "rw-dlq-" + s, DLQArchive: "rw-dlqa-" + s, SagaDLQ: "rw-sdlq-" + s, SagaDLQArchive: "rw-sdlqa-" + s}
	if _, err := infra.Ensure(ctx, db, sq, names); err != nil {
		t.Fatal(err)
	}
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("rw-rebuild-" + s)})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(names.EventsTable)})
	if err != nil {
		t.Fatal(err)
	}
	ixCfg := dynamostore.IndexConfig{Table: names.IndexTable, Shards: 4}
	store := dynamostore.New(db, names.EventsTable, dynamostore.WithIndex(ixCfg))
	docs := dynamostore.NewDocs(db, names.ReadModelTable)
	reg := event.NewRegistry()
	bank.Register(reg)
	queue := &RebuildQueue{SQS: sq, QueueURL: aws.ToString(q.QueueUrl)}

	// Three processes on the same tables: the API function, the projector, the rebuild function.
	api := projection.NewEngine(store, docs, reg, bank.Projection{})
	api.Dispatcher = queue
	projector := &Projector{Engine: projection.NewEngine(store, docs, reg, bank.Projection{}), Decode: dynamostore.DecodeItem,
		Index: dynamostore.NewIndexer(db, ixCfg, nil)}
	poller := &Poller{Streams: emulator.DynamoDBStreamsClient(ep), StreamArn: aws.ToString(desc.Table.LatestStreamArn), Handler: projector.Handle}
	rebuilder := projection.NewEngine(store, docs, reg, bank.Projection{})
	rebuilder.RebuildChunk = 2
	invocations := 0
	worker := &RebuildWorker{Engine: rebuilder, Queue: queue, MaxChunks: 2}
	function := &QueuePoller{SQS: sq, QueueURL: aws.ToString(q.QueueUrl), BatchSize: 1, Visibility: time.Second,
		Handler: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			invocations++
			return worker.Handle(ctx, ev)
		}}

	ids := []string{"rw-a-" + s, "rw-b-" + s, "rw-c-" + s, "rw-d-" + s}
	want := map[string]int{}
	appendTo := func(id string, evs ...event.Event) {
		t.Helper()
		if _, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: id}, eventstore.Any, evs); err != nil {
			t.Fatal(err)
		}
	}
	deposit := func(id string, n int) {
		appendTo(id, event.MustNew(bank.MoneyDeposited, map[string]int{"amount": n}))
		want[id] += n
	}
	for i, id := range ids {
		appendTo(id, event.MustNew(bank.AccountOpened, map[string]int{"initialDeposit": 10 * (i + 1)}))
		want[id] = 10 * (i + 1)
		for j := range 3 {
			deposit(id, j+1)
		}
	}
	// read checks every account is there and equal to the replay of its events up to the
	// version read, and reports the balances.
	read := func() map[string]int {
		t.Helper()
		out := map[string]int{}
		for _, id := range ids {
			var v bank.View
			ok, err := api.Docs.Get(ctx, bank.AccountsCollection, id, &v)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				out[id] = -1
				continue
			}
			evs, err := store.Load(ctx, eventstore.Stream{Type: bank.AggregateType, ID: id}, eventstore.Range{To: v.Version})
			if err != nil {
				t.Fatal(err)
			}
			replay := bank.Account{ID: id}
			for _, e := range evs {
				replay, _ = bank.Evolve(replay, e)
			}
			if replay.Balance != v.Balance || replay.Version != v.Version {
				t.Fatalf("account %s read as %+v, its replay to v%d is %+v: a half-built model", id, v.Account, v.Version, replay)
			}
			out[id] = cents(t, v.Balance)
		}
		return out
	}
	drain := func() {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := poller.Step(ctx); err != nil {
				t.Fatal(err)
			}
			if got := read(); fmt.Sprint(got) == fmt.Sprint(want) {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("read model %v, want %v", got, want)
			}
		}
	}
	drain()

	// Lag on the stream path: the projector recorded its last record.
	st, err := api.Statuses(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lr := st[0].LastRecord; lr == nil || lr.SequenceNumber == "" || lr.CreatedAt.IsZero() || lr.ProcessedAt.Before(lr.CreatedAt.Add(-time.Second)) || st[0].Lag != nil {
		t.Fatalf("status after the stream was drained: %+v, last record %+v", st[0], lr)
	}

	job, started, err := api.StartRebuild(ctx, "accounts")
	if err != nil || !started || job.Phase != projection.PhaseQueued {
		t.Fatalf("start: %+v %v %v", job, started, err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	crashed := false
	for round := 0; ; round++ {
		if round%2 == 0 {
			deposit(ids[round%len(ids)], 100)
		}
		if _, err := poller.Step(ctx); err != nil {
			t.Fatal(err)
		}
		read()
		if round == 3 && !crashed {
			// An invocation that dies: its context ends before it could queue its
			// continuation, so the mapping sees a failure and the message comes back.
			dying := *function
			dying.Handler = func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
				dead, cancel := context.WithCancel(ctx)
				cancel()
				return worker.Handle(dead, ev)
			}
			if n, err := dying.Step(ctx); err != nil || n == 1 {
				crashed = n == 1
			}
		} else if _, err := function.Step(ctx); err != nil {
			t.Fatal(err)
		}
		cur, _, err := api.RebuildJob(ctx, "accounts")
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Active() {
			job = cur
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuild not done: %+v after %d invocations", cur, invocations)
		}
	}
	if job.ID == "" || job.Generation != 1 || job.Done != job.Total || invocations < 3 || !crashed {
		t.Fatalf("job %+v after %d invocations (crashed: %v): want it done in several", job, invocations, crashed)
	}
	// After the swap the projector applies to the new generation.
	deposit(ids[0], 7)
	drain()
	fresh := projection.NewEngine(store, memstore.NewDocs(), reg, bank.Projection{})
	for _, id := range ids {
		if err := fresh.CatchUpStream(ctx, eventstore.Stream{Type: bank.AggregateType, ID: id}); err != nil {
			t.Fatal(err)
		}
		var got, exp bank.View
		if _, err := api.Docs.Get(ctx, bank.AccountsCollection, id, &got); err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.Docs.Get(ctx, bank.AccountsCollection, id, &exp); err != nil {
			t.Fatal(err)
		}
		if got.Balance != exp.Balance || got.Version != exp.Version || got.LastEventID != exp.LastEventID {
			t.Fatalf("%s after the rebuild: %+v, a replay gives %+v", id, got, exp)
		}
	}
}

func cents(t *testing.T, a money.Amount) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(a.String(), &n); err != nil {
		t.Fatalf("amount %s: %v", a, err)
	}
	return n
}
