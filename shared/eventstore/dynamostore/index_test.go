package dynamostore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

// freshTable creates a table of its own for a test that reads a whole dimension.
func freshTable(t *testing.T, db *dynamodb.Client, in *dynamodb.CreateTableInput) string {
	t.Helper()
	ctx := context.Background()
	if _, err := db.CreateTable(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, time.Minute); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(in.TableName)
}

func suffix() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// seedSpread appends n single-event streams of one event type whose timestamps spread
// over three hours of 2019 (caller-given, so the test knows the buckets), and indexes
// them in the given order.
func seedSpread(t *testing.T, s indexed, typ string, n int, t0 time.Time) []event.Event {
	t.Helper()
	ctx := context.Background()
	var out []event.Event
	for i := range n {
		e := event.MustNew(typ, map[string]int{"i": i})
		e.Timestamp = t0.Add(time.Duration(i) * 3 * time.Hour / time.Duration(n))
		if i%5 == 0 {
			e.Timestamp = t0.Add(time.Duration(i%3) * time.Hour) // several events share a timestamp
		}
		got, err := s.Append(ctx, eventstore.Stream{Type: "Spread", ID: fmt.Sprintf("%s-%d", typ, i)}, eventstore.NoStream, []event.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
	}
	return out
}

// Pages across shards and hour buckets: every event once, in time-key order, whatever the
// page size, on each dimension (event type, aggregate type, all with a time window).
func TestIndexPagingAcrossShardsAndBuckets(t *testing.T) {
	db, events, _ := env(t)
	ix := dynamostore.IndexConfig{Table: freshTable(t, db, infra.IndexTable("paging-"+suffix())), Shards: 5}
	s := indexed{dynamostore.New(db, events, dynamostore.WithIndex(ix)), dynamostore.NewIndexer(db, ix, nil)}
	t0 := time.Date(2019, 3, 4, 10, 30, 0, 0, time.UTC)
	typ := "Spread" + suffix()
	want := seedSpread(t, s, typ, 40, t0)
	for _, tc := range []struct {
		name string
		f    eventstore.Filter
	}{
		{"event type", eventstore.Filter{EventType: typ}},
		{"aggregate type", eventstore.Filter{AggregateType: "Spread", Since: t0, Until: t0.Add(3 * time.Hour)}},
		{"all, windowed", eventstore.Filter{Since: t0, Until: t0.Add(3 * time.Hour)}},
		{"all", eventstore.Filter{}},
	} {
		for _, limit := range []int{1, 3, 7, 40, 100} {
			f := tc.f
			f.Limit = limit
			got := map[string]bool{}
			var order []event.Event
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatalf("%s/%d: paging does not end", tc.name, limit)
				}
				p, err := s.Query(context.Background(), f)
				if err != nil {
					t.Fatalf("%s/%d: %v", tc.name, limit, err)
				}
				if len(p.Events) > limit {
					t.Fatalf("%s/%d: page of %d", tc.name, limit, len(p.Events))
				}
				for _, e := range p.Events {
					if got[e.EventID] {
						t.Fatalf("%s/%d: %s on two pages", tc.name, limit, e.EventID)
					}
					got[e.EventID] = true
					order = append(order, e)
				}
				if p.NextCursor == "" {
					break
				}
				f.Cursor = p.NextCursor
			}
			if len(got) != len(want) {
				t.Fatalf("%s/%d: %d events, want %d", tc.name, limit, len(got), len(want))
			}
			for i := 1; i < len(order); i++ {
				if order[i].Timestamp.Before(order[i-1].Timestamp) {
					t.Fatalf("%s/%d: out of time order at %d", tc.name, limit, i)
				}
			}
		}
	}
}

// The feed over all events reads up to the watermark only, resumes from its checkpoint
// without duplicates, and hands the checkpoint back unchanged when there is nothing new.
// An event indexed after its timestamp fell behind the watermark is counted as late.
func TestReadIndexWatermarkAndLate(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	ix := dynamostore.IndexConfig{Table: freshTable(t, db, infra.IndexTable("feed-"+suffix())), Shards: 3, Settle: time.Hour}
	indexer := dynamostore.NewIndexer(db, ix, nil)
	s := indexed{dynamostore.New(db, events, dynamostore.WithIndex(ix)), indexer}
	old := seedSpread(t, s, "Old"+suffix(), 10, time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC))
	if got := indexer.Late(); got != int64(len(old)) {
		t.Errorf("late = %d after indexing %d events from 2018 with a 1 h settle window, want all", got, len(old))
	}
	fresh, err := s.Append(ctx, uniqueStream("fresh"), eventstore.NoStream, drafts(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := indexer.Late(); got != int64(len(old)) {
		t.Errorf("late = %d after indexing a fresh event, want %d", got, len(old))
	}
	var read []event.Event
	cursor := ""
	for pages := 0; pages < 20; pages++ {
		p, err := s.ReadIndex(ctx, cursor, 4)
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, p.Events...)
		if len(p.Events) == 0 {
			if p.Next != cursor {
				t.Fatalf("an empty read moved the checkpoint from %q to %q", cursor, p.Next)
			}
			break
		}
		cursor = p.Next
	}
	if len(read) != len(old) {
		t.Fatalf("feed read %d events, want the %d behind the watermark", len(read), len(old))
	}
	for _, e := range read {
		if e.EventID == fresh[0].EventID {
			t.Fatal("the feed returned an event newer than its watermark")
		}
	}
	// A reader with a short settle window sees the fresh event after its checkpoint.
	short := dynamostore.New(db, events, dynamostore.WithIndex(dynamostore.IndexConfig{Table: ix.Table, Shards: 3, Settle: time.Millisecond}))
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := short.ReadIndex(ctx, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) == 1 && p.Events[0].EventID == fresh[0].EventID {
			break
		}
		if len(p.Events) > 0 || time.Now().After(deadline) {
			t.Fatalf("after the checkpoint: %d events, want the fresh one", len(p.Events))
		}
		time.Sleep(10 * time.Millisecond) // the watermark is the clock: wait for it to pass the event
	}
	// A reader with fewer shards than the writer misses items (one shard of 3 holds all
	// ten streams with probability 3^-9): the count is fixed per index.
	other := dynamostore.New(db, events, dynamostore.WithIndex(dynamostore.IndexConfig{Table: ix.Table, Shards: 1}))
	if p, err := other.Query(ctx, eventstore.Filter{EventType: old[0].EventType}); err != nil || len(p.Events) == len(old) {
		t.Errorf("a reader with another shard count found %d of %d events (%v): the shard count must be fixed", len(p.Events), len(old), err)
	}
}

// Migration: events written before the index existed, to a table with the old GSIs, are
// not found until BackfillIndex has run; then Query finds each exactly once, and running
// the backfill again changes nothing.
func TestBackfillIndexOldTable(t *testing.T) {
	ctx := context.Background()
	db, _, _ := env(t)
	old := infra.EventsTable("old-events-" + suffix())
	for _, a := range []string{infra.AttrEventType, infra.AttrAggregateType, infra.AttrCorrelationID, infra.AttrTimeKey} {
		old.AttributeDefinitions = append(old.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
	}
	for idx, hash := range map[string]string{"byType": infra.AttrEventType, "byAggregateType": infra.AttrAggregateType, "byCorrelation": infra.AttrCorrelationID} {
		old.GlobalSecondaryIndexes = append(old.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{IndexName: aws.String(idx),
			KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(infra.AttrTimeKey), KeyType: types.KeyTypeRange}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}})
	}
	events := freshTable(t, db, old)
	ix := dynamostore.IndexConfig{Table: freshTable(t, db, infra.IndexTable("backfill-"+suffix())), Shards: 4}
	s := dynamostore.New(db, events, dynamostore.WithIndex(ix))
	typ := "Legacy" + suffix()
	corr := "corr-" + suffix()
	var appended int
	for i := range 12 {
		evs := drafts(1 + i%3)
		for j := range evs {
			evs[j].EventType = typ
			evs[j].Metadata.CorrelationID = corr
		}
		if _, err := s.Append(ctx, uniqueStream(fmt.Sprint("legacy", i)), eventstore.NoStream, evs); err != nil {
			t.Fatal(err)
		}
		appended += len(evs)
	}
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{Stream: uniqueStream("snap"), Version: 1, StateVersion: 1, Timestamp: event.Now(), State: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	count := func(f eventstore.Filter) int {
		t.Helper()
		n := 0
		for {
			p, err := s.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			n += len(p.Events)
			if p.NextCursor == "" {
				return n
			}
			f.Cursor = p.NextCursor
		}
	}
	if n := count(eventstore.Filter{EventType: typ}); n != 0 {
		t.Fatalf("before the backfill: %d events found, want none", n)
	}
	indexer := dynamostore.NewIndexer(db, ix, nil)
	for range 2 {
		n, err := dynamostore.BackfillIndex(ctx, db, events, indexer, 3)
		if err != nil || n != int64(appended) {
			t.Fatalf("backfill: %d events, %v; want %d", n, err, appended)
		}
		for _, f := range []eventstore.Filter{{EventType: typ, Limit: 5}, {CorrelationID: corr, Limit: 7}, {}} {
			if n := count(f); n != appended {
				t.Errorf("after the backfill, %+v: %d events, want %d", f, n, appended)
			}
		}
	}
	if indexer.Late() != 0 {
		t.Errorf("the backfill counted %d late events: history is not late", indexer.Late())
	}
}

// unprocessed answers the first `times` BatchWriteItem requests as DynamoDB does under
// throttling: nothing written, every item handed back as unprocessed.
type unprocessed struct {
	times int64
	calls atomic.Int64
}

func (u *unprocessed) option() func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("ecmUnprocessed",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if bw, ok := in.Parameters.(*dynamodb.BatchWriteItemInput); ok {
						if n := u.calls.Add(1); u.times < 0 || n <= u.times {
							return middleware.InitializeOutput{Result: &dynamodb.BatchWriteItemOutput{UnprocessedItems: bw.RequestItems}}, middleware.Metadata{}, nil
						}
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.After)
		})
	}
}

// Unprocessed items are retried until written; items DynamoDB keeps refusing make Index
// fail (so the stream batch is retried), never succeed with items missing.
func TestIndexRetriesUnprocessedItems(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	for _, tc := range []struct {
		name    string
		times   int64
		wantErr bool
	}{
		{"twice unprocessed", 2, false},
		{"always unprocessed", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unprocessed{times: tc.times}
			faulty, _, _ := env(t, u.option())
			ix := dynamostore.IndexConfig{Table: indexTbl, Shards: 4}
			st := uniqueStream("unprocessed")
			out, err := dynamostore.New(db, events).Append(ctx, st, eventstore.NoStream, drafts(3))
			if err != nil {
				t.Fatal(err)
			}
			for i := range out {
				out[i].EventType = st.ID // a type of its own to query by (the index holds what it is given)
			}
			err = dynamostore.NewIndexer(faulty, ix, nil).Index(ctx, out)
			if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, dynamostore.ErrIndexIncomplete)) {
				t.Fatalf("Index: %v, want error %v", err, tc.wantErr)
			}
			p, qerr := dynamostore.New(db, events, dynamostore.WithIndex(ix)).Query(ctx, eventstore.Filter{EventType: st.ID})
			if qerr != nil {
				t.Fatal(qerr)
			}
			if want := map[bool]int{false: 3, true: 0}[tc.wantErr]; len(p.Events) != want {
				t.Errorf("%d events indexed, want %d", len(p.Events), want)
			}
		})
	}
}

// Indexers in several processes at once write the same items and registry entries:
// puts are idempotent, nothing is lost or doubled.
func TestConcurrentIndexers(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	ix := dynamostore.IndexConfig{Table: indexTbl, Shards: 4}
	typ := "Concurrent" + suffix()
	var all []event.Event
	for i := range 6 {
		evs := drafts(4)
		for j := range evs {
			evs[j].EventType = typ
		}
		out, err := dynamostore.New(db, events).Append(ctx, uniqueStream(fmt.Sprint("conc", i)), eventstore.NoStream, evs)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, out...)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = dynamostore.NewIndexer(db, ix, nil).Index(ctx, all[w*3:])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	p, err := dynamostore.New(db, events, dynamostore.WithIndex(ix)).Query(ctx, eventstore.Filter{EventType: typ})
	if err != nil || len(p.Events) != len(all) {
		t.Fatalf("%d events, %v; want %d", len(p.Events), err, len(all))
	}
}
