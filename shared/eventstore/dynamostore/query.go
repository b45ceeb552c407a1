package dynamostore

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// ErrNoIndex is a cross-stream read on a store configured without an index table.
var ErrNoIndex = errors.New("dynamodb: no index table configured (INDEX_TABLE)")

// queryCursor is the position after the last returned event: its dimension, hour bucket
// and time key. Time keys are unique and every shard partition is sorted by them, so
// resuming each shard after the key gives pages with neither duplicates nor gaps.
type queryCursor struct {
	Dim    string `json:"d"`
	Bucket string `json:"b"`
	TK     string `json:"tk"`
}

// dimensionOf picks the index dimension for a filter, the most selective first: a
// correlation id names one request's events (one unsharded partition), an event type
// fewer than an aggregate type; without any, every event ("all").
func dimensionOf(f eventstore.Filter) (dim string, sharded bool) {
	switch {
	case f.CorrelationID != "":
		return correlationPK(f.CorrelationID), false
	case f.EventType != "":
		return "t#" + f.EventType, true
	case f.AggregateType != "":
		return "a#" + f.AggregateType, true
	}
	return dimAll, true
}

// bucketOfTK is the hour bucket of a time key (it starts with the fixed-width timestamp).
func bucketOfTK(tk string) (string, bool) {
	if len(tk) < len(tsLayout) {
		return "", false
	}
	ts, err := time.Parse(tsLayout, tk[:len(tsLayout)])
	if err != nil {
		return "", false
	}
	return bucketOf(ts), true
}

// Query reads the index table (see the package comment): the buckets of the window from
// the registry, every shard partition of each after the cursor, merged by time key, the
// rest of the filter applied here. Each stream comes in version order (store timestamps
// increase within a stream, and a stream stays on one shard). The index trails the
// events table by the stream's delivery and one batch: an event appended a moment ago
// may not be found yet.
func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	if err := eventstore.CheckFilter(f); err != nil {
		return eventstore.Page{}, err
	}
	limit := eventstore.PageSize(f.Limit)
	evs, last, more, err := s.scanIndex(ctx, f, limit, false)
	if err != nil {
		return eventstore.Page{}, err
	}
	page := eventstore.Page{Events: evs}
	if more {
		page.NextCursor = eventstore.EncodeCursor(last)
	}
	return page, nil
}

// IndexPage is a page of the feed over all events.
type IndexPage struct {
	Events []event.Event
	// Next is where the following read starts: after the last event of this page, or
	// where this read started when it found nothing. Checkpoint it.
	Next string
	// Watermark is the read's upper bound: only events at or before it were read.
	Watermark time.Time
}

// ReadIndex is the feed over every event on DynamoDB: up to limit events after the
// position (empty: the beginning) in time-key order, only up to the watermark now −
// Settle. Readers stay that far behind because the index trails the events table: an
// event indexed later than its timestamp plus Settle ("late", counted by the indexer)
// lands behind positions readers may already have checkpointed, and they do not see it.
// A rebuild, an export or a new projection pages through this and checkpoints Next.
func (s *Store) ReadIndex(ctx context.Context, after string, limit int) (IndexPage, error) {
	wm := s.now().Add(-s.ix.Settle).UTC()
	f := eventstore.Filter{Until: wm, Cursor: after}
	evs, last, _, err := s.scanIndex(ctx, f, eventstore.PageSize(limit), true)
	if err != nil {
		return IndexPage{}, err
	}
	page := IndexPage{Events: evs, Next: after, Watermark: wm}
	if len(evs) > 0 {
		page.Next = eventstore.EncodeCursor(last)
	}
	return page, nil
}

// scanIndex returns up to limit matching events after f.Cursor, the position after the
// last of them, and whether more match. A feed read (feed) treats a cursor beyond its
// window as "nothing yet" rather than as a cursor of another query: the watermark moves.
func (s *Store) scanIndex(ctx context.Context, f eventstore.Filter, limit int, feed bool) ([]event.Event, queryCursor, bool, error) {
	out := []event.Event{}
	if s.ix.Table == "" {
		return nil, queryCursor{}, false, ErrNoIndex
	}
	dim, sharded := dimensionOf(f)
	lo, hi := "0", "9~" // every fixed-width RFC 3339 time key sorts between these
	bLo, bHi := "0000000000", "9999999999"
	if !f.Since.IsZero() {
		lo, bLo = formatTS(f.Since), bucketOf(f.Since)
	}
	if !f.Until.IsZero() {
		hi, bHi = formatTS(f.Until)+"#~", bucketOf(f.Until) // '~' sorts after every stream-key character
	}
	if lo > hi {
		return out, queryCursor{}, false, nil // an empty window (BETWEEN would reject it)
	}
	var after string
	if f.Cursor != "" {
		var c queryCursor
		if err := eventstore.DecodeCursor(f.Cursor, &c); err != nil {
			return nil, queryCursor{}, false, err
		}
		b, ok := bucketOfTK(c.TK)
		switch {
		case c.Dim != dim || !ok || b != c.Bucket || c.TK < lo:
			return nil, queryCursor{}, false, eventstore.InvalidCursor("it belongs to another query")
		case c.TK > hi && feed:
			return out, c, false, nil
		case c.TK > hi:
			return nil, queryCursor{}, false, eventstore.InvalidCursor("it belongs to another query")
		}
		after, bLo = c.TK, c.Bucket
	}
	var last queryCursor
	take := func(item map[string]types.AttributeValue) (full bool, err error) {
		e, err := decodeIndexItem(item)
		if err != nil {
			return false, err
		}
		if !f.Matches(e) {
			return false, nil
		}
		if len(out) == limit {
			return true, nil // one match past the page: there is a next page
		}
		out = append(out, e)
		tk := item[infra.AttrSK].(*types.AttributeValueMemberS).Value
		b, _ := bucketOfTK(tk)
		last = queryCursor{Dim: dim, Bucket: b, TK: tk}
		return false, nil
	}
	if !sharded {
		m := &merger{s: s, lo: lo, hi: hi, readers: []*shardReader{{pk: dim, after: after}}}
		more, err := m.run(ctx, limit, take)
		return out, last, more, err
	}
	buckets, err := s.buckets(ctx, dim, bLo, bHi)
	if err != nil {
		return nil, queryCursor{}, false, err
	}
	for _, b := range buckets {
		m := &merger{s: s, lo: lo, hi: hi}
		for shard := range s.ix.Shards {
			r := &shardReader{pk: shardPK(dim, b, shard)}
			if b == bLo {
				r.after = after
			}
			m.readers = append(m.readers, r)
		}
		more, err := m.run(ctx, limit-len(out), take)
		if err != nil || more {
			return out, last, more, err
		}
	}
	return out, last, false, nil
}

// buckets lists a dimension's hour buckets within [lo, hi] from the registry.
func (s *Store) buckets(ctx context.Context, dim, lo, hi string) ([]string, error) {
	var out []string
	var start map[string]types.AttributeValue
	for {
		var page *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			page, err = s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.ix.Table),
				KeyConditionExpression:   aws.String("#pk = :pk AND #sk BETWEEN :lo AND :hi"),
				ExpressionAttributeNames: map[string]string{"#pk": infra.AttrPK, "#sk": infra.AttrSK},
				ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: registryPK(dim)},
					":lo": &types.AttributeValueMemberS{Value: lo}, ":hi": &types.AttributeValueMemberS{Value: hi}},
				ExclusiveStartKey: start})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, item := range page.Items {
			if b, ok := item[infra.AttrSK].(*types.AttributeValueMemberS); ok {
				out = append(out, b.Value)
			}
		}
		if page.LastEvaluatedKey == nil {
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

// shardReader pages through one index partition in time-key order.
type shardReader struct {
	pk    string
	after string // resume after this time key (first request only)
	start map[string]types.AttributeValue
	buf   []map[string]types.AttributeValue
	done  bool
}

// merger is a k-way merge of shard readers by time key.
type merger struct {
	s       *Store
	lo, hi  string
	readers []*shardReader
}

// run feeds take the merged items until take reports a full page (more = true) or the
// readers run out.
func (m *merger) run(ctx context.Context, limit int, take func(map[string]types.AttributeValue) (bool, error)) (bool, error) {
	// Each shard is asked for a share of what the page still needs (and a little more, as
	// shards are uneven); a shard that runs dry is asked again.
	per := int32(min(limit+1, (limit+1)*2/len(m.readers)+2))
	if err := m.fill(ctx, m.readers, per); err != nil {
		return false, err
	}
	h := &readerHeap{}
	for _, r := range m.readers {
		if len(r.buf) > 0 {
			heap.Push(h, r)
		}
	}
	for h.Len() > 0 {
		r := heap.Pop(h).(*shardReader)
		item := r.buf[0]
		r.buf = r.buf[1:]
		full, err := take(item)
		if err != nil || full {
			return full, err
		}
		if len(r.buf) == 0 && !r.done {
			if err := m.fill(ctx, []*shardReader{r}, per); err != nil {
				return false, err
			}
		}
		if len(r.buf) > 0 {
			heap.Push(h, r)
		}
	}
	return false, nil
}

// fill loads the next page of every reader that has none buffered, in parallel.
func (m *merger) fill(ctx context.Context, rs []*shardReader, limit int32) error {
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	for i, r := range rs {
		if len(r.buf) > 0 || r.done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.page(ctx, r, limit)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *merger) page(ctx context.Context, r *shardReader, limit int32) error {
	// Loop past empty pages (a page can end on items DynamoDB read but the key range
	// excluded only at its edges; rare, but a reader with an empty buffer must be done).
	for len(r.buf) == 0 && !r.done {
		start := r.start
		if start == nil && r.after != "" {
			start = map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: r.pk},
				infra.AttrSK: &types.AttributeValueMemberS{Value: r.after}}
		}
		var out *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			out, err = m.s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(m.s.ix.Table),
				KeyConditionExpression:   aws.String("#pk = :pk AND #sk BETWEEN :lo AND :hi"),
				ExpressionAttributeNames: map[string]string{"#pk": infra.AttrPK, "#sk": infra.AttrSK},
				ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: r.pk},
					":lo": &types.AttributeValueMemberS{Value: m.lo}, ":hi": &types.AttributeValueMemberS{Value: m.hi}},
				ExclusiveStartKey: start, Limit: aws.Int32(limit)})
			return err
		})
		if err != nil {
			return fmt.Errorf("dynamodb: query index %s: %w", r.pk, err)
		}
		r.buf = out.Items
		r.start = out.LastEvaluatedKey
		r.done = out.LastEvaluatedKey == nil
		if r.start != nil {
			r.after = ""
		}
	}
	return nil
}

type readerHeap []*shardReader

func (h readerHeap) Len() int { return len(h) }
func (h readerHeap) Less(i, j int) bool {
	return h[i].buf[0][infra.AttrSK].(*types.AttributeValueMemberS).Value < h[j].buf[0][infra.AttrSK].(*types.AttributeValueMemberS).Value
}
func (h readerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readerHeap) Push(x any)   { *h = append(*h, x.(*shardReader)) }
func (h *readerHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}
