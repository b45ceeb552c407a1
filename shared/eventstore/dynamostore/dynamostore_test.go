package dynamostore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/aggregate/repotest"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func TestMain(m *testing.M) { emulator.Main(m) }

var (
	tablesOnce          sync.Once
	tablesErr           error
	eventsTbl, modelTbl string
	indexTbl            string
)

// env returns a client on the emulator (opts add middleware) and this test process's
// events and read-model tables, created on first use under unique names. Every test
// shares them and names its streams and collections uniquely.
func env(t testing.TB, opts ...func(*dynamodb.Options)) (*dynamodb.Client, string, string) {
	t.Helper()
	ep := emulator.DynamoDB(t)
	tablesOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		db := emulator.DynamoDBClient(ep)
		suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
		eventsTbl, modelTbl, indexTbl = "dynamostore-events-"+suffix, "dynamostore-models-"+suffix, "dynamostore-index-"+suffix
		for _, in := range []*dynamodb.CreateTableInput{infra.EventsTable(eventsTbl), infra.ReadModelTable(modelTbl), infra.IndexTable(indexTbl)} {
			if _, tablesErr = db.CreateTable(ctx, in); tablesErr != nil {
				return
			}
			if tablesErr = dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, time.Minute); tablesErr != nil {
				return
			}
		}
		_, tablesErr = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(modelTbl),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(infra.AttrExpiresAt), Enabled: aws.Bool(true)}})
	})
	if tablesErr != nil {
		t.Fatalf("create tables: %v", tablesErr)
	}
	return emulator.DynamoDBClient(ep, opts...), eventsTbl, modelTbl
}

// indexed is the store with the index written right after each append, by the code the
// stream consumer runs (Indexer.Index): the conformance suite queries what it has just
// appended, and in the running system the stream poller does this a batch later
// (shared/system's DynamoDB tests and ddbstream's cover that path).
type indexed struct {
	*dynamostore.Store
	ix *dynamostore.Indexer
}

func (s indexed) Append(ctx context.Context, st eventstore.Stream, expected int64, evs []event.Event) ([]event.Event, error) {
	out, err := s.Store.Append(ctx, st, expected, evs)
	if err == nil {
		err = s.ix.Index(ctx, out)
	}
	return out, err
}

// indexCfg is the test index: 4 shards, so merges across shards happen with few events.
func indexCfg() dynamostore.IndexConfig { return dynamostore.IndexConfig{Table: indexTbl, Shards: 4} }

// newIndexed returns a store over the test tables whose appends are indexed at once.
func newIndexed(db *dynamodb.Client, events string, opts ...dynamostore.Option) indexed {
	opts = append([]dynamostore.Option{dynamostore.WithIndex(indexCfg())}, opts...)
	return indexed{dynamostore.New(db, events, opts...), dynamostore.NewIndexer(db, indexCfg(), nil)}
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []dynamostore.Option
	}{
		{"default", nil},
		// Every expected version unknown: each append checks it with a GetItem.
		{"no seen cache", []dynamostore.Option{dynamostore.WithSeenStreams(0)}},
		// Evictions all the time, and snapshot loads that page.
		{"tiny cache and pages", []dynamostore.Option{dynamostore.WithSeenStreams(2), dynamostore.WithPageSize(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, events, _ := env(t)
			s := newIndexed(db, events, tc.opts...)
			storetest.Run(t, func(*testing.T) eventstore.Backend { return s })
		})
	}
}

func TestRepository(t *testing.T) {
	db, events, _ := env(t)
	s := dynamostore.New(db, events)
	repotest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestDocs(t *testing.T) {
	db, _, models := env(t)
	d := dynamostore.NewDocs(db, models)
	doctest.Run(t, func(*testing.T) docstore.Store { return d })
}

func uniqueStream(prefix string) eventstore.Stream {
	return eventstore.Stream{Type: "Test", ID: fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())}
}

func drafts(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = event.MustNew("Happened", map[string]int{"n": i})
	}
	return out
}

func versions(evs []event.Event) string {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Version
	}
	return fmt.Sprint(out)
}

// Two processes on one stream: whatever one of them was told, no append may leave a gap,
// and a conflict always carries the real current version.
func TestNoGapsAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	for _, tc := range []struct {
		name     string
		before   int   // events process A appends first
		warm     bool  // process B loads the stream before A appends the rest
		more     int   // events A appends after B loaded
		expected int64 // what B passes
		want     string
		current  int64 // on a conflict
	}{
		{"expected beyond the end", 3, false, 0, 5, "", 3},
		{"expected beyond the end, B saw part", 3, true, 0, 4, "", 3},
		{"expected right at the end, B never saw it", 3, false, 0, 3, "[4]", 0},
		{"expected at the end A moved to", 3, true, 2, 5, "[6]", 0},
		{"expected B saw, since overtaken", 3, true, 2, 3, "", 5},
		{"new stream at a version", 0, false, 0, 2, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := dynamostore.New(db, events), dynamostore.New(db, events)
			st := uniqueStream("gap")
			if tc.before > 0 {
				if _, err := a.Append(ctx, st, eventstore.NoStream, drafts(tc.before)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.warm {
				if _, err := b.Load(ctx, st, eventstore.Range{}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.more > 0 {
				if _, err := a.Append(ctx, st, int64(tc.before), drafts(tc.more)); err != nil {
					t.Fatal(err)
				}
			}
			out, err := b.Append(ctx, st, tc.expected, drafts(1))
			if tc.want != "" {
				if err != nil || versions(out) != tc.want {
					t.Fatalf("append at %d: %s, %v; want %s", tc.expected, versions(out), err, tc.want)
				}
			} else {
				var ce *eventstore.ConflictError
				if !errors.As(err, &ce) || ce.Current != tc.current || !errors.Is(err, eventstore.ErrConflict) {
					t.Fatalf("append at %d: %v, want a conflict at %d", tc.expected, err, tc.current)
				}
			}
			all, err := a.Load(ctx, st, eventstore.Range{})
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range all {
				if e.Version != int64(i+1) {
					t.Fatalf("stream %s after the append: %s has a gap", st, versions(all))
				}
			}
		})
	}
}

// Store-assigned timestamps never go back within a stream, even when the clock of the
// process appending next is behind the one that appended before, or behind a timestamp
// the caller gave an earlier event, so the time-sorted indexes list each stream in
// version order.
func TestTimestampsIncreasePerStream(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	st := uniqueStream("clock")
	future := event.Now().Add(time.Hour)
	for _, tc := range []struct {
		name     string
		expected int64
		given    []time.Duration // caller's timestamps, as offsets from future (-1: none)
	}{
		{"caller's timestamp ahead of the clock", eventstore.NoStream, []time.Duration{0}},
		{"known version", 1, []time.Duration{-1}},
		{"any", eventstore.Any, []time.Duration{-1}},
		{"after a given one in the batch", 3, []time.Duration{time.Minute, -1, -1}},
	} {
		evs := drafts(len(tc.given))
		for i, d := range tc.given {
			evs[i].EventType = st.ID // a type of its own, to query by
			if d >= 0 {
				evs[i].Timestamp = future.Add(d)
			}
		}
		// A new store each time: another process, nothing cached.
		out, err := newIndexed(db, events).Append(ctx, st, tc.expected, evs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, e := range out {
			if tc.given[i] < 0 && e.Timestamp.Before(future) {
				t.Errorf("%s: v%d stamped %v, before the earlier %v", tc.name, e.Version, e.Timestamp, future)
			}
		}
	}
	page, err := newIndexed(db, events).Query(ctx, eventstore.Filter{EventType: st.ID})
	if err != nil {
		t.Fatal(err)
	}
	if versions(page.Events) != "[1 2 3 4 5 6]" {
		t.Fatalf("query order %s, want [1 2 3 4 5 6]", versions(page.Events))
	}
}

func TestQueryRejects(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	s := newIndexed(db, events)
	st := uniqueStream("cursor")
	evs := drafts(3)
	for i := range evs {
		evs[i].EventType = st.ID
	}
	if _, err := s.Append(ctx, st, eventstore.NoStream, evs); err != nil {
		t.Fatal(err)
	}
	p, err := s.Query(ctx, eventstore.Filter{EventType: st.ID, Limit: 1})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %v, cursor %q", err, p.NextCursor)
	}
	if p, err := s.Query(ctx, eventstore.Filter{EventType: st.ID, Since: time.Now(), Until: time.Now().Add(-time.Hour)}); err != nil || len(p.Events) != 0 {
		t.Errorf("empty time window: %d events, %v; want none and no error", len(p.Events), err)
	}
	for _, tc := range []struct {
		name string
		f    eventstore.Filter
	}{
		{"cursor of a type query on all events", eventstore.Filter{Cursor: p.NextCursor}},
		{"cursor of another event type", eventstore.Filter{EventType: "Other", Cursor: p.NextCursor}},
		{"cursor of another index", eventstore.Filter{AggregateType: "Test", Cursor: p.NextCursor}},
		{"cursor outside the time window", eventstore.Filter{EventType: st.ID, Since: time.Now().Add(time.Hour), Cursor: p.NextCursor}},
		{"garbage cursor", eventstore.Filter{EventType: st.ID, Cursor: "e30"}},
	} {
		if _, err := s.Query(ctx, tc.f); !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// With a snapshot TTL only superseded snapshots expire: the newest carries no expiresAt
// (an aggregate idle for longer than the TTL still loads from it), the ones below the
// kept window get one when DeleteSnapshots runs, and events never do.
func TestSnapshotTTL(t *testing.T) {
	ctx := context.Background()
	db, events, _ := env(t)
	st := uniqueStream("ttl")
	expiry := func(sk string) (int64, bool) {
		t.Helper()
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(events), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: st.Key()}, infra.AttrSK: &types.AttributeValueMemberN{Value: sk}}})
		if err != nil || out.Item == nil {
			t.Fatalf("item %s: gone (%v)", sk, err)
		}
		n, ok := out.Item[infra.AttrExpiresAt].(*types.AttributeValueMemberN)
		if !ok {
			return 0, false
		}
		v, _ := strconv.ParseInt(n.Value, 10, 64)
		return v, true
	}
	s := dynamostore.New(db, events, dynamostore.WithSnapshotTTL(time.Hour))
	if _, err := s.Append(ctx, st, 0, drafts(2)); err != nil {
		t.Fatal(err)
	}
	save := func(v int64) {
		t.Helper()
		if err := s.SaveSnapshot(ctx, eventstore.Snapshot{Stream: st, Version: v, StateVersion: 1, Timestamp: time.Now(), State: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	save(50)
	if exp, ok := expiry("50.5"); ok {
		t.Fatalf("the newest snapshot expires at %d", exp)
	}
	save(100)
	if err := s.DeleteSnapshots(ctx, st, 100); err != nil {
		t.Fatal(err)
	}
	if exp, ok := expiry("100.5"); ok {
		t.Fatalf("the newest snapshot (v100) expires at %d", exp)
	}
	first, ok := expiry("50.5")
	if !ok || first <= time.Now().Unix() {
		t.Fatalf("superseded snapshot v50: expiresAt %d (set %v), want a time in the future", first, ok)
	}
	for _, sk := range []string{"1", "2"} {
		if exp, ok := expiry(sk); ok {
			t.Fatalf("event %s expires at %d", sk, exp)
		}
	}
	// Another process (no memory of what was stamped) stamps again: the expiry stands.
	later := dynamostore.New(db, events, dynamostore.WithSnapshotTTL(48*time.Hour))
	if err := later.DeleteSnapshots(ctx, st, 101); err != nil {
		t.Fatal(err)
	}
	if again, _ := expiry("50.5"); again != first {
		t.Fatalf("expiry moved from %d to %d", first, again)
	}
	if exp, ok := expiry("100.5"); !ok || exp <= first {
		t.Fatalf("v100, superseded below 101: expiresAt %d (set %v)", exp, ok)
	}
	snap, tail, err := s.LoadFromSnapshot(ctx, st, eventstore.Range{})
	if err != nil || snap == nil || snap.Version != 100 || len(tail) != 0 {
		t.Fatalf("load: snapshot %+v, %d events, %v", snap, len(tail), err)
	}
}

// Stamping superseded snapshots under concurrency and failures: stores racing on one
// stream each succeed and every snapshot keeps the first expiry it got; a snapshot gone
// meanwhile (a failed condition) is no error; a throttled stamp is a typed error that
// leaves the snapshot unstamped for the next call, which stamps it.
func TestSnapshotExpiryRacesAndFaults(t *testing.T) {
	ctx := context.Background()
	throttled := &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
	gone := &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
	expiry := func(db *dynamodb.Client, table string, st eventstore.Stream, sk string) (int64, bool) {
		t.Helper()
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: st.Key()}, infra.AttrSK: &types.AttributeValueMemberN{Value: sk}}})
		if err != nil || out.Item == nil {
			t.Fatalf("item %s: gone (%v)", sk, err)
		}
		n, ok := out.Item[infra.AttrExpiresAt].(*types.AttributeValueMemberN)
		if !ok {
			return 0, false
		}
		v, _ := strconv.ParseInt(n.Value, 10, 64)
		return v, true
	}
	for _, tc := range []struct {
		name     string
		stampers int
		fail     func(string, int) error
		want     error // nil, ErrThrottled
	}{
		{"four stores at once", 4, nil, nil},
		{"the snapshot went meanwhile", 1, on("PutItem", -1, gone), nil},
		{"throttled", 1, on("PutItem", -1, throttled), eventstore.ErrThrottled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, events, _ := env(t)
			st := uniqueStream("expiry")
			plain := dynamostore.New(db, events, dynamostore.WithSnapshotTTL(time.Hour))
			for _, v := range []int64{10, 20, 30} {
				if err := plain.SaveSnapshot(ctx, eventstore.Snapshot{Stream: st, Version: v, StateVersion: 1, Timestamp: time.Now(), State: []byte(`{}`)}); err != nil {
					t.Fatal(err)
				}
			}
			faulty := db
			if tc.fail != nil {
				inj := &injector{fail: tc.fail, count: map[string]int{}}
				faulty, _, _ = env(t, inj.option())
			}
			errs := make([]error, tc.stampers)
			var wg sync.WaitGroup
			for i := range tc.stampers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := dynamostore.New(faulty, events, dynamostore.WithSnapshotTTL(time.Duration(i+1)*time.Hour))
					errs[i] = s.DeleteSnapshots(ctx, st, 30)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				switch {
				case tc.want == nil && err != nil:
					t.Fatalf("err = %v, want success", err)
				case tc.want != nil && !errors.Is(err, tc.want):
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			}
			if exp, ok := expiry(db, events, st, "30.5"); ok {
				t.Fatalf("the newest snapshot expires at %d", exp)
			}
			if tc.fail != nil {
				for _, sk := range []string{"10.5", "20.5"} {
					if exp, ok := expiry(db, events, st, sk); ok {
						t.Fatalf("snapshot %s stamped (%d) though every stamp failed", sk, exp)
					}
				}
				if tc.want == nil {
					return
				}
				// The failed call did not mark the range clean: the next one stamps it.
				if err := plain.DeleteSnapshots(ctx, st, 30); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now().Unix()
			for _, sk := range []string{"10.5", "20.5"} {
				exp, ok := expiry(db, events, st, sk)
				if !ok || exp <= now || exp > now+int64(tc.stampers)*3600+60 {
					t.Fatalf("snapshot %s: expiresAt %d (set %v), want within the stampers' TTLs", sk, exp, ok)
				}
			}
		})
	}
}
