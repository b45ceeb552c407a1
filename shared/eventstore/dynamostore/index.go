package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Index defaults.
const (
	// DefaultIndexShards is the number of partitions each (dimension, hour) is spread over.
	DefaultIndexShards = 32
	// DefaultSettle is how far behind now feed readers stay (see Store.ReadIndex).
	DefaultSettle = 5 * time.Second
	// batchWriteMax is BatchWriteItem's limit.
	batchWriteMax = 25
)

// IndexConfig names the index table and its layout. Shards is fixed for the life of an
// index: items are placed by it, so a reader with another count misses them (changing it
// means emptying the index and running BackfillIndex).
type IndexConfig struct {
	Table  string
	Shards int           // default DefaultIndexShards
	Settle time.Duration // default DefaultSettle
}

func (c IndexConfig) withDefaults() IndexConfig {
	if c.Shards <= 0 {
		c.Shards = DefaultIndexShards
	}
	if c.Settle <= 0 {
		c.Settle = DefaultSettle
	}
	return c
}

// Index item attributes besides the event's own: the stream key and version, which the
// index item's pk and sk replace.
const (
	attrStreamKey = "spk"
	attrVersion   = "ver"
	bucketLayout  = "2006010215"
	dimAll        = "all"
)

// bucketOf is the hour bucket of a timestamp (UTC).
func bucketOf(ts time.Time) string { return ts.UTC().Format(bucketLayout) }

// shardOf places an event on one of n shards: fnv-1a 32 of its stream key and version.
// A hot aggregate's events spread over every shard like everyone else's, so no shard
// key takes more than its share of the dimension (the capacity model checks it); the
// reader's merge by time key puts each stream back in version order (timestamps
// increase within a stream).
func shardOf(streamKey string, version int64, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(streamKey))
	_, _ = h.Write([]byte{'#'})
	_, _ = h.Write([]byte(strconv.FormatInt(version, 10)))
	return int(h.Sum32() % uint32(n))
}

func shardPK(dim, bucket string, shard int) string {
	return dim + "#" + bucket + "#" + strconv.Itoa(shard)
}

func registryPK(dim string) string { return "b#" + dim }

func correlationPK(id string) string { return "c#" + id }

// IndexPartitionKeys are the partition keys of the index items written for e with n
// shards (the capacity model drives it).
func IndexPartitionKeys(e event.Event, n int) []string {
	bucket, shard := bucketOf(e.Timestamp), shardOf(eventstore.StreamOf(e).Key(), e.Version, n)
	var pks []string
	for _, d := range dimensions(e) {
		pks = append(pks, shardPK(d, bucket, shard))
	}
	if c := e.Metadata.CorrelationID; c != "" {
		pks = append(pks, correlationPK(c))
	}
	return pks
}

// dimensions are the sharded dimensions an event is indexed under.
func dimensions(e event.Event) []string {
	return []string{dimAll, "t#" + e.EventType, "a#" + e.AggregateType}
}

// indexItems are an event's index items: the events-table item with pk and sk replaced
// (one per sharded dimension, plus one under its correlation id).
func indexItems(e event.Event, shards int) ([]map[string]types.AttributeValue, error) {
	base, err := toItem(e)
	if err != nil {
		return nil, err
	}
	streamKey := eventstore.StreamOf(e).Key()
	tk := timeKey(e.Timestamp, streamKey, e.Version)
	bucket, shard := bucketOf(e.Timestamp), shardOf(streamKey, e.Version, shards)
	var pks []string
	for _, d := range dimensions(e) {
		pks = append(pks, shardPK(d, bucket, shard))
	}
	if e.Metadata.CorrelationID != "" {
		pks = append(pks, correlationPK(e.Metadata.CorrelationID))
	}
	out := make([]map[string]types.AttributeValue, len(pks))
	for i, pk := range pks {
		item := make(map[string]types.AttributeValue, len(base)+2)
		for k, v := range base {
			item[k] = v
		}
		item[attrStreamKey] = &types.AttributeValueMemberS{Value: streamKey}
		item[attrVersion] = base[infra.AttrSK]
		item[infra.AttrPK] = &types.AttributeValueMemberS{Value: pk}
		item[infra.AttrSK] = &types.AttributeValueMemberS{Value: tk}
		out[i] = item
	}
	return out, nil
}

// decodeIndexItem turns an index item back into its event.
func decodeIndexItem(item map[string]types.AttributeValue) (event.Event, error) {
	ev := make(map[string]types.AttributeValue, len(item))
	for k, v := range item {
		ev[k] = v
	}
	ev[infra.AttrPK], ev[infra.AttrSK] = item[attrStreamKey], item[attrVersion]
	e, ok, err := DecodeItem(ev)
	if err == nil && !ok {
		err = fmt.Errorf("dynamodb: index item %v holds no event", item[infra.AttrPK])
	}
	return e, err
}

// IndexItemsSize is the billable size of the index items the indexer writes for an event
// (the registry items, once per hour and dimension, aside).
func IndexItemsSize(e event.Event, shards int) []int {
	items, err := indexItems(e, max(shards, 1))
	if err != nil {
		return nil
	}
	out := make([]int, len(items))
	for i, item := range items {
		out[i] = itemSize(item)
	}
	return out
}

// itemSize is an item's billable size: attribute names plus values (a number's value
// counted as DynamoDB does, about one byte per two digits).
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for k, v := range item {
		n += len(k)
		switch a := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(a.Value)
		case *types.AttributeValueMemberN:
			n += len(a.Value)/2 + 1
		}
	}
	return n
}

// Indexer writes the index table from events the stream delivers. Writes are idempotent
// puts, so a batch indexed twice (a retried stream batch, a backfill over indexed events)
// changes nothing. Safe for concurrent use.
type Indexer struct {
	db     *dynamodb.Client
	cfg    IndexConfig
	log    *slog.Logger
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	tries  int
	late   atomic.Int64
	mu     sync.Mutex
	bucket map[string]bool // registry items this process has written: "b#dim" + "\x00" + bucket
}

// NewIndexer returns an indexer over the index table.
func NewIndexer(db *dynamodb.Client, cfg IndexConfig, log *slog.Logger) *Indexer {
	if log == nil {
		log = slog.Default()
	}
	return &Indexer{db: db, cfg: cfg.withDefaults(), log: log, now: event.Now, sleep: sleepCtx, tries: 10,
		bucket: map[string]bool{}}
}

// Late counts the events this indexer indexed after their timestamp had already fallen
// behind the feed watermark (now − Settle): a feed reader that checkpointed past that
// timestamp does not see them (README, "The index").
func (ix *Indexer) Late() int64 { return ix.late.Load() }

// Index writes the index items of events (and the registry items of hours this process
// has not registered yet) with BatchWriteItem, 25 items per call, retrying unprocessed
// items with jittered backoff. An error means some items may be missing: the caller
// reports the batch as failed, so the stream delivers it again.
func (ix *Indexer) Index(ctx context.Context, events []event.Event) error {
	return ix.index(ctx, events, true)
}

func (ix *Indexer) index(ctx context.Context, events []event.Event, live bool) error {
	type key struct{ pk, sk string }
	seen := map[key]bool{}
	var puts []map[string]types.AttributeValue
	add := func(item map[string]types.AttributeValue) {
		k := key{item[infra.AttrPK].(*types.AttributeValueMemberS).Value, item[infra.AttrSK].(*types.AttributeValueMemberS).Value}
		if !seen[k] { // BatchWriteItem refuses a request with one key twice
			seen[k] = true
			puts = append(puts, item)
		}
	}
	var newBuckets []string
	watermark := ix.now().Add(-ix.cfg.Settle)
	var late int64
	var oldest event.Event
	for _, e := range events {
		items, err := indexItems(e, ix.cfg.Shards)
		if err != nil {
			return fmt.Errorf("dynamodb: index %s v%d: %w", eventstore.StreamOf(e), e.Version, err)
		}
		if live && e.Timestamp.Before(watermark) {
			if late == 0 || e.Timestamp.Before(oldest.Timestamp) {
				oldest = e
			}
			late++
		}
		bucket := bucketOf(e.Timestamp)
		for _, d := range dimensions(e) {
			reg := registryPK(d) + "\x00" + bucket
			ix.mu.Lock()
			known := ix.bucket[reg]
			ix.mu.Unlock()
			if !known && !seen[key{registryPK(d), bucket}] {
				newBuckets = append(newBuckets, reg)
				add(map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: registryPK(d)},
					infra.AttrSK: &types.AttributeValueMemberS{Value: bucket}})
			}
		}
		for _, item := range items {
			add(item)
		}
	}
	if late > 0 {
		ix.late.Add(late)
		ix.log.Warn("events indexed behind the feed watermark: feed readers past their timestamps miss them",
			"late", late, "oldest", eventstore.StreamOf(oldest).Key(), "version", oldest.Version,
			"timestamp", oldest.Timestamp, "watermark", watermark)
	}
	for i := 0; i < len(puts); i += batchWriteMax {
		if err := ix.batchPut(ctx, puts[i:min(i+batchWriteMax, len(puts))]); err != nil {
			return err
		}
	}
	ix.mu.Lock()
	for _, r := range newBuckets {
		ix.bucket[r] = true
	}
	ix.mu.Unlock()
	return nil
}

// ErrIndexIncomplete is returned when DynamoDB keeps leaving index items unprocessed.
var ErrIndexIncomplete = errors.New("dynamodb: index items left unprocessed")

func (ix *Indexer) batchPut(ctx context.Context, items []map[string]types.AttributeValue) error {
	reqs := make([]types.WriteRequest, len(items))
	for i, item := range items {
		reqs[i] = types.WriteRequest{PutRequest: &types.PutRequest{Item: item}}
	}
	pending := map[string][]types.WriteRequest{ix.cfg.Table: reqs}
	for attempt := 0; ; attempt++ {
		var out *dynamodb.BatchWriteItemOutput
		err := retrying(ctx, func() (err error) {
			out, err = ix.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
			return err
		})
		if err != nil {
			return fmt.Errorf("dynamodb: index: %w", err)
		}
		if len(out.UnprocessedItems[ix.cfg.Table]) == 0 {
			return nil
		}
		pending = out.UnprocessedItems
		if attempt+1 >= ix.tries {
			return fmt.Errorf("%w: %d after %d attempts", ErrIndexIncomplete, len(pending[ix.cfg.Table]), attempt+1)
		}
		// Full jitter: throttled writers spread out instead of retrying in step.
		backoff := min(50*time.Millisecond<<attempt, 2*time.Second)
		if err := ix.sleep(ctx, rand.N(backoff)+time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// BackfillIndex indexes every event of the events table: the migration step for a table
// written before the index existed (and the way to re-fill an index after changing its
// shard count). It scans the table in parallel segments (DynamoDB's parallel Scan) and
// indexes each page; puts are idempotent, so running it over indexed events, or again
// after a failure, is harmless. It returns how many events it indexed.
func BackfillIndex(ctx context.Context, db *dynamodb.Client, eventsTable string, ix *Indexer, segments int) (int64, error) {
	segments = max(segments, 1)
	var total atomic.Int64
	errs := make([]error, segments)
	var wg sync.WaitGroup
	for seg := range segments {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[seg] = backfillSegment(ctx, db, eventsTable, ix, int32(seg), int32(segments), &total)
		}()
	}
	wg.Wait()
	return total.Load(), errors.Join(errs...)
}

func backfillSegment(ctx context.Context, db *dynamodb.Client, table string, ix *Indexer, seg, of int32, total *atomic.Int64) error {
	var start map[string]types.AttributeValue
	for {
		var page *dynamodb.ScanOutput
		err := retrying(ctx, func() (err error) {
			page, err = db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table), Segment: aws.Int32(seg), TotalSegments: aws.Int32(of),
				FilterExpression: aws.String("#k = :event"), ExpressionAttributeNames: map[string]string{"#k": infra.AttrKind},
				ExpressionAttributeValues: map[string]types.AttributeValue{":event": &types.AttributeValueMemberS{Value: kindEvent}},
				ExclusiveStartKey:         start})
			return err
		})
		if err != nil {
			return fmt.Errorf("dynamodb: backfill scan segment %d: %w", seg, err)
		}
		var evs []event.Event
		for _, item := range page.Items {
			e, ok, err := DecodeItem(item)
			if err != nil {
				// A corrupt event is the projector's to park; the backfill goes on.
				ix.log.Warn("backfill: event not indexed", "pk", item[infra.AttrPK], "err", err)
				continue
			}
			if ok {
				evs = append(evs, e)
			}
		}
		// The backfill indexes history: nothing of it is "late" for a live reader.
		if err := ix.index(ctx, evs, false); err != nil {
			return err
		}
		total.Add(int64(len(evs)))
		if page.LastEvaluatedKey == nil {
			return nil
		}
		start = page.LastEvaluatedKey
	}
}
