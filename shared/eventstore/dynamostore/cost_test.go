package dynamostore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/money"
)

type costRow struct {
	name  string
	costs map[string]dynamostore.OpCost
	wcu   [2]float64 // reported: table, table and GSIs (the events table has none now)
	rcu   float64
	aws   string // write units DynamoDB bills, computed from the item sizes
}

// costs measures the requests and capacity of the operations the README quotes. DynamoDB
// Local reports consumed capacity per table and index, but bills a transaction by its
// total size and a failed conditional write as nothing, where DynamoDB bills 2 WCU per KB
// of each transactional item and 1 WCU per KB of a failed write, so the write units
// DynamoDB would bill are computed from the item sizes as well.
type costs struct {
	t       *testing.T
	counter *dynamostore.RequestCounter
	rows    []*costRow
}

// measure runs fn alone on the counted client; want, when set, is exactly the requests
// fn may send.
func (c *costs) measure(name string, want map[string]int, fn func() error) *costRow {
	c.t.Helper()
	c.counter.Reset()
	if err := fn(); err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	r := &costRow{name: name, costs: c.counter.Costs(), aws: "–"}
	r.wcu[1], r.wcu[0] = c.counter.WriteUnits()
	r.rcu, _ = c.counter.ReadUnits()
	c.rows = append(c.rows, r)
	if got := c.counter.Calls(); want != nil && !maps.Equal(got, want) {
		c.t.Errorf("%s: requests %v, want %v", name, got, want)
	}
	return r
}

func (c *costs) log() {
	c.t.Logf("| operation | requests | RCU | WCU reported (events table) | WCU billed by DynamoDB: command path / indexer, later, off the command path |")
	c.t.Logf("|---|---|---|---|---|")
	for _, r := range c.rows {
		var reqs []string
		for _, op := range slices.Sorted(maps.Keys(r.costs)) {
			reqs = append(reqs, fmt.Sprintf("%d %s", r.costs[op].Requests, op))
		}
		c.t.Logf("| %s | %s | %g | %g | %s |", r.name, strings.Join(reqs, " + "), r.rcu, r.wcu[0], r.aws)
	}
}

// billed is what DynamoDB bills for writing evs: on the command path, 1 WCU per started
// KB of each event item (2 in a transaction), the events table having no GSIs; then, off
// the command path, what the indexer writes for them (indexUnits).
func billed(evs []event.Event, transaction bool) string {
	table := tableUnits(evs, transaction)
	return fmt.Sprintf("%d / %d", table, indexUnits(evs))
}

func tableUnits(evs []event.Event, transaction bool) int {
	var table int
	for _, e := range evs {
		units := (dynamostore.ItemSize(e) + 1023) / 1024
		if transaction {
			units *= 2
		}
		table += units
	}
	return table
}

// indexUnits is what the stream consumer's BatchWriteItem bills for evs' index items: 1
// WCU per started KB of each (all, event type, aggregate type, and correlation id when
// there is one). Registry items, once per dimension and hour per process, are left out.
func indexUnits(evs []event.Event) int {
	n := 0
	for _, e := range evs {
		for _, size := range dynamostore.IndexItemsSize(e, dynamostore.DefaultIndexShards) {
			n += (size + 1023) / 1024
		}
	}
	return n
}

// billedGuarded is an append with its id guard (a small item, one unit) in one
// transaction: two units per item.
func billedGuarded(evs []event.Event) string {
	return fmt.Sprintf("%d / %d", tableUnits(evs, true)+2, indexUnits(evs))
}

// billedFailed is what DynamoDB bills for a conditional put of evs that fails: the table
// write only, and nothing reaches the stream, so nothing is indexed.
func billedFailed(evs []event.Event) string {
	return fmt.Sprintf("%d / 0", tableUnits(evs, false))
}

func TestRequestCosts(t *testing.T) {
	ctx := context.Background()
	counter := dynamostore.NewRequestCounter()
	db, events, models := env(t, counter.Option())
	c := &costs{t: t, counter: counter}
	defer c.log()
	cold := func() *dynamostore.Store { return dynamostore.New(db, events) } // a new process: nothing seen

	// A typical event: a deposit with full metadata.
	deposit := func() []event.Event {
		e := event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: money.Amount(12345)})
		e.Metadata = event.Metadata{Actor: "user-123", Source: "api", CorrelationID: event.NewID(), CausationID: event.NewID()}
		return []event.Event{e}
	}
	long := uniqueStream("long")
	store := cold()
	for v := int64(0); v < 1000; v += 100 {
		if _, err := store.Append(ctx, long, v, drafts(100)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := store.Load(ctx, long, eventstore.Range{})
	if err != nil || len(all) != 1000 {
		t.Fatalf("load: %d events, %v", len(all), err)
	}
	if err := store.SaveSnapshot(ctx, eventstore.Snapshot{Stream: long, Version: 995, StateVersion: 1,
		Timestamp: all[994].Timestamp, State: []byte(`{"balance":"995.00"}`)}); err != nil {
		t.Fatal(err)
	}

	// (a) The command path: a load, then a single-event append of at most 1 KB.
	var appended []event.Event
	warm := cold()
	if _, err := warm.Load(ctx, long, eventstore.Range{From: 990}); err != nil {
		t.Fatal(err)
	}
	a := c.measure("(a) single-event append after a load", map[string]int{"PutItem": 1}, func() (err error) {
		appended, err = warm.Append(ctx, long, 1000, deposit())
		return err
	})
	a.aws = billed(appended, false)
	// The command path is one write unit for an event of up to 1 KB: the events table
	// has no GSIs (DynamoDB Local would report their writes in the second figure).
	if size := dynamostore.ItemSize(appended[0]); size > 1024 || a.wcu[0] != 1 || a.wcu[1] != 1 || tableUnits(appended, false) != 1 {
		t.Errorf("(a): a %d-byte event item cost %g table WCU, %g with indexes, want 1 and 1", size, a.wcu[0], a.wcu[1])
	}
	// The indexer's writes, later and off the command path: one item per dimension (all,
	// event type, aggregate type) and one under the correlation id, each under 1 KB.
	if sizes := dynamostore.IndexItemsSize(appended[0], dynamostore.DefaultIndexShards); len(sizes) != 4 || indexUnits(appended) != 4 {
		t.Errorf("(a): index items %v (%d WCU), want 4 items of 1 WCU", sizes, indexUnits(appended))
	}
	c.measure("(a') the indexer: the same event indexed from the stream (BatchWriteItem)", map[string]int{"BatchWriteItem": 1}, func() error {
		return dynamostore.NewIndexer(db, indexCfg(), nil).Index(ctx, appended)
	}).aws = fmt.Sprintf("0 / %d", indexUnits(appended))

	// (b) A cold load of a long stream with a snapshot 5 events from its end.
	b := c.measure("(b) LoadFromSnapshot, 1001 events, snapshot at 995, cold process", map[string]int{"Query": 1}, func() error {
		snap, evs, err := cold().LoadFromSnapshot(ctx, long, eventstore.Range{})
		if err == nil && (snap == nil || snap.Version != 995 || versions(evs) != "[996 997 998 999 1000 1001]") {
			err = fmt.Errorf("snapshot %v and events %s", snap, versions(evs))
		}
		return err
	})

	small := c.measure("(b) the same with WithPageSize(16)", map[string]int{"Query": 1}, func() error {
		_, _, err := dynamostore.New(db, events, dynamostore.WithPageSize(16)).LoadFromSnapshot(ctx, long, eventstore.Range{})
		return err
	})
	if small.rcu >= b.rcu {
		t.Errorf("a page of 16 read %g RCU, one of 128 %g: the page limit does not bound the read", small.rcu, b.rcu)
	}

	// (c) An expected version this process has never seen is checked first.
	var out []event.Event
	r := c.measure("(c) append at an expected version not seen by this process", map[string]int{"GetItem": 1, "PutItem": 1}, func() (err error) {
		out, err = cold().Append(ctx, long, 1001, deposit())
		return err
	})
	r.aws = billed(out, false)

	r = c.measure("append with expected version Any", map[string]int{"Query": 1, "PutItem": 1}, func() (err error) {
		out, err = warm.Append(ctx, long, eventstore.Any, deposit())
		return err
	})
	r.aws = billed(out, false)
	// A failed conditional write is billed as a write of the item it would have put.
	r = c.measure("conflicting append (stale expected version)", map[string]int{"PutItem": 1, "Query": 1}, func() error {
		_, err := warm.Append(ctx, long, 1000, deposit())
		if !errors.Is(err, eventstore.ErrConflict) {
			return fmt.Errorf("err = %v, want a conflict", err)
		}
		return nil
	})
	r.aws = billedFailed(appended)
	// Handing the stored events back is a re-append of caller-chosen ids: one transaction
	// with the id guard, settled by the event item that stands in the way.
	r = c.measure("retried single-event append (idempotent)", map[string]int{"TransactWriteItems": 1}, func() error {
		_, err := warm.Append(ctx, long, 1000, appended)
		return err
	})
	r.aws = billedFailed(appended)
	// A command with an Idempotency-Key: its event id is derived from the key, so the
	// append claims it with a guard item in the same transaction.
	keyedStream := uniqueStream("keyed")
	keyed := deposit()
	keyed[0].EventID = event.DerivedID(event.NewID(), 0)
	r = c.measure("command with an Idempotency-Key (event + id guard, one transaction)", map[string]int{"TransactWriteItems": 1}, func() (err error) {
		out, err = warm.Append(ctx, keyedStream, eventstore.NoStream, keyed)
		return err
	})
	r.aws = billedGuarded(out)
	// Its retry after a crash, decided again on a newer version: the guard stands in the
	// way and names the original, read once.
	r = c.measure("the keyed command retried after a crash, at a later version", map[string]int{"TransactWriteItems": 1, "Query": 1}, func() (err error) {
		got, err := warm.Append(ctx, keyedStream, 1, keyed)
		if err == nil && (len(got) != 1 || got[0].Version != out[0].Version) {
			err = fmt.Errorf("retry returned %+v, want the original v%d", got, out[0].Version)
		}
		return err
	})
	r.aws = billedFailed(keyed)
	r = c.measure("10-event append (one transaction)", map[string]int{"TransactWriteItems": 1}, func() (err error) {
		out, err = warm.Append(ctx, long, 1003, drafts(10))
		return err
	})
	r.aws = billed(out, true)
	// The item that stood in the way (ALL_OLD) settles a conflict without reading the
	// other versions; a retry reads them once to be sure they are all ours.
	c.measure("conflicting 3-event append", map[string]int{"TransactWriteItems": 1, "Query": 1}, func() error {
		_, err := warm.Append(ctx, long, 1003, drafts(3))
		if !errors.Is(err, eventstore.ErrConflict) {
			return fmt.Errorf("err = %v, want a conflict", err)
		}
		return nil
	})
	c.measure("retried 10-event append (idempotent)", map[string]int{"TransactWriteItems": 1, "Query": 1}, func() error {
		again, err := warm.Append(ctx, long, 1003, out)
		if err == nil && versions(again) != versions(out) {
			err = fmt.Errorf("retry returned %s, want %s", versions(again), versions(out))
		}
		return err
	})
	c.measure("Load of 1013 events", nil, func() error {
		_, err := warm.Load(ctx, long, eventstore.Range{})
		return err
	})
	typ := uniqueStream("QueryType").ID
	var typed []event.Event
	for i := range 3 {
		evs := drafts(50)
		for j := range evs {
			evs[j].EventType = typ
		}
		out, err := warm.Append(ctx, uniqueStream(fmt.Sprint("q", i)), eventstore.NoStream, evs)
		if err != nil {
			t.Fatal(err)
		}
		typed = append(typed, out...)
	}
	indexed := newIndexed(db, events)
	if err := indexed.ix.Index(ctx, typed); err != nil {
		t.Fatal(err)
	}
	// One registry read, then each of the index's shards of the event's hour (the test
	// index has 4), read in parallel.
	c.measure("Query, a page of 100 by event type (index: registry + 4 shards)", map[string]int{"Query": 5}, func() error {
		p, err := indexed.Query(ctx, eventstore.Filter{EventType: typ, Limit: 100})
		if err == nil && (len(p.Events) != 100 || p.NextCursor == "") {
			err = fmt.Errorf("%d events, cursor %q", len(p.Events), p.NextCursor)
		}
		return err
	})
	for _, v := range []int64{1005, 1010} {
		if err := warm.SaveSnapshot(ctx, eventstore.Snapshot{Stream: long, Version: v, StateVersion: 1, Timestamp: event.Now(), State: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	first := c.measure("DeleteSnapshots below 1005 (first in this process)", nil, func() error { return warm.DeleteSnapshots(ctx, long, 1005) })
	again := c.measure("DeleteSnapshots below 1010 (reads from 1005 up only)", nil, func() error { return warm.DeleteSnapshots(ctx, long, 1010) })
	if again.rcu >= first.rcu {
		t.Errorf("second DeleteSnapshots read %g RCU, the first %g: the cleaned part was read again", again.rcu, first.rcu)
	}

	commandCosts(t, c, db, events)

	d := dynamostore.NewDocs(db, models)
	coll := uniqueStream("docs").ID
	c.measure("docs: Update writing one document blind", map[string]int{"PutItem": 1}, func() error {
		return d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, coll, "a", counterDoc{N: 1}) })
	})
	c.measure("docs: Update reading and writing one document", map[string]int{"GetItem": 1, "PutItem": 1}, func() error {
		return d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			var x counterDoc
			if _, err := tx.Get(ctx, coll, "a", &x); err != nil {
				return err
			}
			return tx.Put(ctx, coll, "a", counterDoc{N: x.N + 1})
		})
	})
	c.measure("docs: Update reading a guard, writing two documents", map[string]int{"GetItem": 1, "TransactWriteItems": 1}, func() error {
		return d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			var x counterDoc
			if _, err := tx.Get(ctx, coll, "guard", &x); err != nil {
				return err
			}
			if err := tx.Put(ctx, coll, "guard", counterDoc{N: x.N + 1}); err != nil {
				return err
			}
			return tx.Put(ctx, coll, "model", counterDoc{N: x.N + 1})
		})
	})
}

// commandCosts: a command on an aggregate with a current snapshot, in a cold process, is
// one Query (snapshot and tail) and one PutItem, whatever the stream's length.
func commandCosts(t *testing.T, c *costs, db *dynamodb.Client, events string) {
	ctx := context.Background()
	store := dynamostore.New(db, events)
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery = 50
	repo := aggregate.NewRepository[bank.Account](store, bank.Definition, cfg)
	id := uniqueStream("cmd").ID
	if _, err := repo.Execute(ctx, id, bank.Open(0), aggregate.Options{}); err != nil {
		t.Fatal(err)
	}
	st := eventstore.Stream{Type: bank.AggregateType, ID: id}
	for v := int64(1); v < 1001; v += 100 {
		evs := make([]event.Event, 100)
		for i := range evs {
			evs[i] = event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: money.Amount(1)})
		}
		if _, err := store.Append(ctx, st, v, evs); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 { // crosses a multiple of SnapshotEvery: a current snapshot exists
		if _, err := repo.Execute(ctx, id, bank.Deposit(1, ""), aggregate.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	coldRepo := aggregate.NewRepository[bank.Account](dynamostore.New(db, events), bank.Definition, cfg)
	var res aggregate.Result[bank.Account]
	r := c.measure("command on a 1051-event aggregate with a current snapshot, cold process", map[string]int{"Query": 1, "PutItem": 1}, func() (err error) {
		res, err = coldRepo.Execute(ctx, id, bank.Deposit(1, ""), aggregate.Options{})
		return err
	})
	r.aws = billed(res.Events, false)
	// The same process again: it kept the state its last command left, decides on it and
	// appends at its version; the conditional put is the only request.
	r = c.measure("the next command on it, warm process", map[string]int{"PutItem": 1}, func() (err error) {
		res, err = coldRepo.Execute(ctx, id, bank.Deposit(1, ""), aggregate.Options{})
		return err
	})
	r.aws = billed(res.Events, false)
	// Another process appended meanwhile: the put conflicts, the command reloads and
	// decides again (the kept state is only ever a guess the condition checks).
	if _, err := repo.Execute(ctx, id, bank.Deposit(1, ""), aggregate.Options{}); err != nil {
		t.Fatal(err)
	}
	r = c.measure("a warm process after another one appended", map[string]int{"PutItem": 2, "Query": 2}, func() (err error) {
		res, err = coldRepo.Execute(ctx, id, bank.Deposit(1, ""), aggregate.Options{})
		return err
	})
	r.aws = billed(res.Events, false)
	if l, err := coldRepo.Load(ctx, id); err != nil || l.State.Balance != 1054 {
		t.Fatalf("balance %s (%v), want 1054: no deposit lost or doubled", l.State.Balance, err)
	}
}
