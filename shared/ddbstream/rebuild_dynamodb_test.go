package ddbstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// A rebuild that runs while the index trails the stream misses nothing: the projector
// indexes a batch before applying it, so what the read model had applied is found in the
// index and replayed whole from the events table (including events appended since, not
// indexed yet), and what was not indexed yet had not been applied, and is applied when the
// stream delivers it. Real parts: DynamoDB Local's table, stream and index, the poller in
// Lambda's place, the real indexer and decoder.
func TestRebuildDuringIndexLagOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	ep := emulator.DynamoDB(t)
	db := emulator.DynamoDBClient(ep)
	s := fmt.Sprint(time.Now().UnixNano())
	events, index := "rb-events-"+s, "rb-index-"+s
	for _, in := range []*dynamodb.CreateTableInput{infra.EventsTable(events), infra.IndexTable(index)} {
		if _, err := db.CreateTable(ctx, in); err != nil {
			t.Fatal(err)
		}
		if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(events)})
	if err != nil {
		t.Fatal(err)
	}
	ixCfg := dynamostore.IndexConfig{Table: index, Shards: 4}
	store := dynamostore.New(db, events, dynamostore.WithIndex(ixCfg))
	docs := memstore.NewDocs()
	reg := event.NewRegistry()
	bank.Register(reg)
	en := projection.NewEngine(store, docs, reg, bank.Projection{})
	p := &Projector{Engine: en, Decode: dynamostore.DecodeItem, Index: dynamostore.NewIndexer(db, ixCfg, nil)}
	poller := &Poller{Streams: emulator.DynamoDBStreamsClient(ep), StreamArn: aws.ToString(desc.Table.LatestStreamArn), Handler: p.Handle}
	drain := func(want map[string]string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := poller.Step(ctx); err != nil {
				t.Fatal(err)
			}
			if got := balances(t, en.Docs, want); fmt.Sprint(got) == fmt.Sprint(want) {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("read model %v, want %v", got, want)
			}
		}
	}
	open := func(id string, amount int) {
		t.Helper()
		if _, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: id}, eventstore.Any,
			[]event.Event{event.MustNew(bank.AccountOpened, map[string]int{"initialDeposit": amount})}); err != nil {
			t.Fatal(err)
		}
	}
	deposit := func(id string, amount int) {
		t.Helper()
		if _, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: id}, eventstore.Any,
			[]event.Event{event.MustNew(bank.MoneyDeposited, map[string]int{"amount": amount})}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := "lag-a-"+s, "lag-b-"+s
	open(a, 10)
	drain(map[string]string{a: "10", b: ""}) // a is indexed and applied
	// The stream now lags: a deposit on a and a new account b are in the table, in no index.
	deposit(a, 5)
	open(b, 7)
	if err := en.Rebuild(ctx, "accounts"); err != nil {
		t.Fatal(err)
	}
	// a was found in the index and replayed whole from the table, its un-indexed deposit
	// included; b, never applied, is not there yet.
	if got := balances(t, en.Docs, map[string]string{a: "", b: ""}); got[a] != "15" || got[b] != "" {
		t.Fatalf("after the rebuild: %v, want a at 15 and b not yet", got)
	}
	// The stream catches up: b is indexed and applied, a's deposit not applied twice.
	drain(map[string]string{a: "15", b: "7"})

	// Redrive's on-failure sweep (CatchUpSince, when the stream has dropped a failed
	// batch's records) finds the aggregates in the index the same way: a fresh read model
	// is caught up on every indexed stream. Its bound: an event not indexed yet (c) is not
	// found, and is the stream's to deliver.
	c := "lag-c-" + s
	open(c, 3)
	fresh := memstore.NewDocs()
	sweeper := projection.NewEngine(store, fresh, reg, bank.Projection{})
	if err := sweeper.CatchUpSince(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := balances(t, sweeper.Docs, map[string]string{a: "", b: "", c: ""}); got[a] != "15" || got[b] != "7" || got[c] != "" {
		t.Fatalf("after the sweep: %v, want a at 15, b at 7, c not indexed yet", got)
	}
}

// balances reads the accounts' balances from the read model ("" where there is none).
func balances(t *testing.T, docs docstore.Store, want map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id := range want {
		var v bank.View
		ok, err := docs.Get(context.Background(), bank.AccountsCollection, id, &v)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out[id] = v.Balance.String()
		} else {
			out[id] = ""
		}
	}
	return out
}
