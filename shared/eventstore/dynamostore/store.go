// Package dynamostore is the DynamoDB backend: one item per event (pk = stream key,
// sk = version), so DynamoDB Streams carries one record per event.
//
//   - A single-event append is one conditional PutItem (attribute_not_exists) with
//     ReturnValuesOnConditionCheckFailure=ALL_OLD: a failed write tells, at no read cost,
//     whether it was a conflict or a retry of the same event (same id at that version is
//     an idempotent success). Multi-event appends are one TransactWriteItems.
//   - A conditional put of version e+1 cannot check that version e exists, so the store
//     remembers the highest version it has seen exist per stream (versions are never
//     deleted). The command path loads before it appends, so it gets the single put;
//     an expected version the store has not seen costs one GetItem first.
//   - Snapshots sit in the stream's partition at sk = version + 0.5, so one reverse Query
//     returns the newest snapshot and the events after it.
//   - The events table has no GSIs: an event of up to 1 KB costs one write unit on the
//     command path (a keyed command adds its id-guard item in the same transaction).
//     Reads on the command path are strongly consistent.
//
// # The index
//
// Cross-stream reads (Query, ReadIndex) use a second table the stream consumer fills: the
// projector indexes each stream batch (Indexer.Index, BatchWriteItem of idempotent puts)
// before it projects it. Its keys:
//
//   - "<dim>#<YYYYMMDDHH>#<shard>", sk = tk, for the dimensions "all", "t#<eventType>"
//     and "a#<aggregateType>": the hour bucket of the event's timestamp (UTC) and shard =
//     fnv-1a 32 of the stream key mod S (INDEX_SHARDS, default 16). S is fixed for the
//     life of an index: changing it means emptying the index and re-filling it with
//     BackfillIndex. tk is the time key (fixed-width timestamp # stream key # version):
//     unique and time ordered, so every partition is sorted and shards merge by it.
//   - "c#<correlationId>", sk = tk: unsharded, as a correlation id's events are bounded
//     by one request's fan-out.
//   - "b#<dim>", sk = "<YYYYMMDDHH>": the bucket registry, so readers skip empty hours;
//     written once per dimension and bucket per process (an in-memory set), never per
//     event.
//
// Each index item carries the whole event (the events-table item's attributes, with the
// stream key and version in spk and ver), so a query needs no second read. The write rate
// of one index key is bounded by (events of one type or aggregate type in one hour) / S,
// or by one request's fan-out: nothing grows with total traffic.
//
// The index trails the events table by the stream's delivery plus one batch (typically
// well under a second; more while the projector is failing, throttled or behind). Query
// finds what is indexed; ReadIndex, the feed over all events, reads only up to the
// watermark now − Settle (default 5 s), so an event indexed within Settle of its
// timestamp is never skipped by a reader checkpointing behind the watermark. The indexer
// counts (Indexer.Late) and logs events it indexes already behind the watermark; a feed
// reader past their timestamps misses them, and a rebuild started later finds them.
//
// Completeness: the projector indexes a batch before it projects it, so every event a
// read model has applied is in the index. A rebuild (projection.Engine.Rebuild) finds the
// streams to replay in the index and replays each whole from the events table; events not
// yet indexed when it ran have not been applied either, and the projector applies them
// when the stream delivers them (version-guarded, once). Tables written before the index
// existed are indexed by BackfillIndex (infra/cmd/backfillindex).
package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Store is the DynamoDB event store. Safe for concurrent use.
type Store struct {
	db       *dynamodb.Client
	table    string
	pageSize int32
	now      func() time.Time
	seen     *seenCache

	// snapshotTTL, when set, stamps superseded snapshots with an expiry and leaves their
	// deletion to DynamoDB's TTL, so the writers need no DeleteItem on the events table.
	snapshotTTL time.Duration

	// ix is the index table cross-stream reads use (empty Table: Query fails).
	ix IndexConfig
}

var _ eventstore.Backend = (*Store)(nil)

// Option configures New.
type Option func(*Store)

// WithPageSize sets the reverse-query page used to find a snapshot and its tail
// (default 128: one request while fewer events follow the newest snapshot).
func WithPageSize(n int32) Option {
	return func(s *Store) {
		if n > 0 {
			s.pageSize = n
		}
	}
}

// WithSeenStreams bounds how many streams the store remembers the highest existing
// version of (default DefaultSeenStreams). 0 remembers none: every append with an
// expected version then checks it with a GetItem.
func WithSeenStreams(n int) Option { return func(s *Store) { s.seen = newSeenCache(n) } }

// WithSnapshotTTL lets DynamoDB's TTL delete superseded snapshots this long after they
// were superseded (the table's TTL attribute must be expiresAt): DeleteSnapshots stamps
// them with expiresAt instead of deleting them, and the newest snapshot never expires.
func WithSnapshotTTL(d time.Duration) Option { return func(s *Store) { s.snapshotTTL = d } }

// WithIndex names the index table Query and ReadIndex read (see the package comment).
func WithIndex(c IndexConfig) Option { return func(s *Store) { s.ix = c.withDefaults() } }

// New returns a store over the events table.
func New(db *dynamodb.Client, table string, opts ...Option) *Store {
	s := &Store{db: db, table: table, pageSize: 128, now: event.Now, seen: newSeenCache(DefaultSeenStreams)}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) ([]event.Event, error) {
	if expected < eventstore.Any {
		return nil, eventstore.Invalid("expected version %d is neither a version nor a sentinel", expected)
	}
	if err := eventstore.CheckAppend(st, events); err != nil {
		return nil, err
	}
	// Ids the caller chose can come back in another call at another version (a command
	// retried after a crash), so the append's first id is claimed by a guard item written
	// in the same transaction. Ids the store generates only come back in this call's own
	// retries, at the same version, where the item in the way tells.
	guarded := events[0].EventID != ""
	events = eventstore.AssignIDs(events)
	key := st.Key()
	known := s.seen.get(key)
	base, floor := expected, known.ts
	switch {
	case expected == eventstore.Any:
		last, err := s.last(ctx, key)
		if err != nil {
			return nil, err
		}
		base = 0
		if last != nil {
			base, floor = last.Version, last.Timestamp
		}
	case expected > known.version:
		// Nothing proves version `expected` exists, and a put at expected+1 would happily
		// create a gap: check it first.
		ts, ok, err := s.versionAt(ctx, key, expected)
		if err != nil {
			return nil, err
		}
		if !ok {
			return s.conflictOrHeld(ctx, st, expected, events, guarded)
		}
		s.seen.observe(key, expected, ts)
		floor = ts
	}
	out, err := eventstore.Prepare(st, base, events, stamp(s.now(), floor))
	if err != nil {
		return nil, err
	}
	// Store-assigned timestamps do not go back behind one the caller gave an earlier event
	// of the batch either.
	latest := floor
	for i := range out {
		if events[i].Timestamp.IsZero() && out[i].Timestamp.Before(latest) {
			out[i].Timestamp = latest
		}
		if out[i].Timestamp.After(latest) {
			latest = out[i].Timestamp
		}
	}
	err = s.write(ctx, out, guarded)
	var cf *conditionFailed
	switch {
	case err == nil:
		last := out[len(out)-1]
		s.seen.observe(key, last.Version, last.Timestamp)
		return out, nil
	case !errors.As(err, &cf):
		return nil, err
	}
	if g, ok := cf.olds[len(out)]; guarded && ok {
		return s.recognise(ctx, st, g, out)
	}
	// The event items stood in the way: ours if this is a resend of an append that
	// landed without a guard (its ids were the store's, handed back to the caller).
	if stored, ok, err := s.landed(ctx, st, out, cf); err != nil || ok {
		return stored, err
	}
	return s.conflictOrHeld(ctx, st, expected, out, guarded)
}

// conflictOrHeld answers an append that cannot go where it was asked to: the original
// append when its first id is held (a retry whose expected version is stale), else a
// conflict.
func (s *Store) conflictOrHeld(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event, guarded bool) ([]event.Event, error) {
	if guarded {
		g, err := s.guard(ctx, events[0].EventID)
		if err != nil {
			return nil, err
		}
		if g != nil {
			return s.recognise(ctx, st, g, events)
		}
	}
	return nil, s.conflict(ctx, st, expected)
}

// recognise returns the append a guard item points at, when events are that append.
func (s *Store) recognise(ctx context.Context, st eventstore.Stream, item map[string]types.AttributeValue, events []event.Event) ([]event.Event, error) {
	held, v, err := decodeGuard(item)
	if err != nil {
		return nil, err
	}
	var stored []event.Event
	if held == st {
		if stored, err = s.Load(ctx, held, eventstore.Range{From: v, To: v + int64(len(events)) - 1}); err != nil {
			return nil, err
		}
	}
	return eventstore.Recognise(st, held, v, stored, events)
}

// guard reads the guard item of an event id (nil when there is none).
func (s *Store) guard(ctx context.Context, id string) (map[string]types.AttributeValue, error) {
	var out *dynamodb.GetItemOutput
	err := retrying(ctx, func() (err error) {
		out, err = s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			Key: eventKey(guardPK(id), 0)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// FindEvent reads the id's guard item: ids the caller chose are found, ids the store
// generated have none.
func (s *Store) FindEvent(ctx context.Context, st eventstore.Stream, id string) (int64, bool, error) {
	item, err := s.guard(ctx, id)
	if err != nil || item == nil {
		return 0, false, err
	}
	held, v, err := decodeGuard(item)
	switch {
	case err != nil:
		return 0, false, err
	case held != st:
		return 0, false, &eventstore.DuplicateEventError{EventID: id, Held: held, Version: v}
	}
	return v, true, nil
}

// stamp is the store clock for one append: now, but never at or before the previous
// event's timestamp, so that store-assigned timestamps increase within a stream even
// across processes with skewed clocks, and the time-sorted indexes keep each stream in
// version order.
func stamp(now, floor time.Time) time.Time {
	if now.After(floor) {
		return now
	}
	return floor.Add(time.Microsecond)
}

// landed tells a retry of this very append (the SDK resent a write whose response was
// lost) from a conflict after a failed condition: the item that stood in the way
// (ALL_OLD) is compared first, at no read cost; only when it is one of ours does a
// multi-event append read the other versions to be sure.
func (s *Store) landed(ctx context.Context, st eventstore.Stream, out []event.Event, cf *conditionFailed) ([]event.Event, bool, error) {
	if cf.old != nil && cf.index < len(out) {
		old, isEvent, err := DecodeItem(cf.old)
		if err != nil {
			return nil, false, err
		}
		if !isEvent || old.EventID != out[cf.index].EventID {
			return nil, false, nil
		}
		if len(out) == 1 {
			s.seen.observe(st.Key(), old.Version, old.Timestamp)
			return []event.Event{old}, true, nil
		}
	}
	stored, err := s.Load(ctx, st, eventstore.Range{From: out[0].Version, To: out[len(out)-1].Version})
	if err != nil {
		return nil, false, err
	}
	return stored, eventstore.SameEvents(stored, out), nil
}

func (s *Store) write(ctx context.Context, out []event.Event, guarded bool) error {
	cond, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(infra.AttrPK))).Build()
	if err != nil {
		return fmt.Errorf("dynamodb: build condition: %w", err)
	}
	items := make([]map[string]types.AttributeValue, len(out), len(out)+1)
	for i, e := range out {
		if items[i], err = toItem(e); err != nil {
			return fmt.Errorf("dynamodb: encode %s v%d: %w", eventstore.StreamOf(e), e.Version, err)
		}
	}
	if guarded {
		g, err := guardItem(out)
		if err != nil {
			return err
		}
		items = append(items, g)
	}
	if len(items) == 1 {
		return retrying(ctx, func() error {
			_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: items[0],
				ConditionExpression: cond.Condition(), ExpressionAttributeNames: cond.Names(),
				ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
			return err
		})
	}
	tx := make([]types.TransactWriteItem, len(items))
	for i, item := range items {
		tx[i] = types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.table), Item: item,
			ConditionExpression: cond.Condition(), ExpressionAttributeNames: cond.Names(),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}}
	}
	// The SDK gives the request one ClientRequestToken for all its retries, so a
	// transaction whose response was lost is not applied twice.
	return retrying(ctx, func() error {
		_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx})
		return err
	})
}

// versionAt reads whether version v of the stream exists and, if so, its timestamp.
func (s *Store) versionAt(ctx context.Context, key string, v int64) (time.Time, bool, error) {
	proj, err := expression.NewBuilder().WithProjection(expression.NamesList(expression.Name(infra.AttrSK), expression.Name(attrTS))).Build()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("dynamodb: build projection: %w", err)
	}
	var out *dynamodb.GetItemOutput
	err = retrying(ctx, func() (err error) {
		out, err = s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			Key: eventKey(key, v), ProjectionExpression: proj.Projection(), ExpressionAttributeNames: proj.Names()})
		return err
	})
	if err != nil || out.Item == nil {
		return time.Time{}, false, err
	}
	var it struct {
		TS string `dynamodbav:"ts"`
	}
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return time.Time{}, false, fmt.Errorf("dynamodb: decode %s v%d: %w", key, v, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, it.TS)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("dynamodb: decode %s v%d: timestamp %q", key, v, it.TS)
	}
	return ts, true, nil
}

// last returns the stream's last event, or nil for a stream that does not exist. The
// page of two covers a snapshot sorted above it.
func (s *Store) last(ctx context.Context, key string) (*event.Event, error) {
	kc, err := expression.NewBuilder().WithKeyCondition(expression.Key(infra.AttrPK).Equal(expression.Value(key))).Build()
	if err != nil {
		return nil, fmt.Errorf("dynamodb: build key condition: %w", err)
	}
	var start map[string]types.AttributeValue
	for {
		var page *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			page, err = s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
				KeyConditionExpression: kc.KeyCondition(), ExpressionAttributeNames: kc.Names(), ExpressionAttributeValues: kc.Values(),
				ScanIndexForward: aws.Bool(false), Limit: aws.Int32(2), ExclusiveStartKey: start})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, item := range page.Items {
			e, ok, err := DecodeItem(item)
			if err != nil {
				return nil, err
			}
			if ok {
				s.seen.observe(key, e.Version, e.Timestamp)
				return &e, nil
			}
		}
		if page.LastEvaluatedKey == nil {
			return nil, nil
		}
		start = page.LastEvaluatedKey
	}
}

// conflict builds the conflict error with the stream's current version, read now (the
// failure path only).
func (s *Store) conflict(ctx context.Context, st eventstore.Stream, expected int64) error {
	last, err := s.last(ctx, st.Key())
	if err != nil {
		return err
	}
	var cur int64
	if last != nil {
		cur = last.Version
	}
	return &eventstore.ConflictError{Stream: st, Expected: expected, Current: cur}
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	to := r.To
	if to <= 0 {
		to = maxVersion
	}
	if to < r.From {
		return nil, nil
	}
	key := st.Key()
	kc, err := expression.NewBuilder().WithKeyCondition(expression.Key(infra.AttrPK).Equal(expression.Value(key)).
		And(expression.Key(infra.AttrSK).Between(expression.Value(max(r.From, 1)), expression.Value(to)))).Build()
	if err != nil {
		return nil, fmt.Errorf("dynamodb: build key condition: %w", err)
	}
	var out []event.Event
	defer func() {
		if n := len(out); n > 0 {
			s.seen.observe(key, out[n-1].Version, out[n-1].Timestamp)
		}
	}()
	var start map[string]types.AttributeValue
	for {
		var page *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			page, err = s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
				KeyConditionExpression: kc.KeyCondition(), ExpressionAttributeNames: kc.Names(), ExpressionAttributeValues: kc.Values(),
				ExclusiveStartKey: start})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, item := range page.Items {
			e, ok, err := DecodeItem(item)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			if !r.Until.IsZero() && e.Timestamp.After(r.Until) {
				return out, nil
			}
			out = append(out, e)
		}
		if page.LastEvaluatedKey == nil {
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

// maxVersion is above any version a stream can reach and exact as a DynamoDB number.
const maxVersion int64 = 1 << 62
