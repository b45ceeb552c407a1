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
//   - Query uses sparse GSIs on event type, aggregate type and correlation id, sorted by
//     time; reads on the command path are strongly consistent.
package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

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

	// snapshotTTL, when set, stamps snapshots with an expiry and leaves their deletion to
	// DynamoDB's TTL, so the writers need no DeleteItem on the events table at all.
	snapshotTTL time.Duration

	mu   sync.Mutex
	seen map[string]seenVersion // stream key → highest version seen to exist
}

type seenVersion struct {
	version int64
	ts      time.Time
}

const maxSeen = 10000

var _ eventstore.Backend = (*Store)(nil)

// Option configures New.
type Option func(*Store)

// WithPageSize sets the reverse-query page used to find a snapshot and its tail
// (default 128: one request while fewer events follow the newest snapshot).
func WithPageSize(n int32) Option { return func(s *Store) { s.pageSize = n } }

// WithSnapshotTTL lets DynamoDB's TTL delete snapshots this long after they were
// written (the table's TTL attribute must be expiresAt); DeleteSnapshots then does nothing.
func WithSnapshotTTL(d time.Duration) Option { return func(s *Store) { s.snapshotTTL = d } }

// New returns a store over the events table.
func New(db *dynamodb.Client, table string, opts ...Option) *Store {
	s := &Store{db: db, table: table, pageSize: 128, now: event.Now, seen: map[string]seenVersion{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) remember(key string, v int64, ts time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.seen[key]; ok && cur.version >= v {
		return
	}
	if len(s.seen) >= maxSeen {
		clear(s.seen) // a bounded memory, not a cache that must stay warm: misses cost one GetItem
	}
	s.seen[key] = seenVersion{version: v, ts: ts}
}

func (s *Store) seenVersion(key string) seenVersion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[key]
}

func (s *Store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) ([]event.Event, error) {
	if expected < eventstore.Any {
		return nil, eventstore.Invalid("expected version %d is neither a version nor a sentinel", expected)
	}
	if err := eventstore.CheckAppend(st, events); err != nil {
		return nil, err
	}
	key := st.Key()
	base := expected
	lastTS := s.seenVersion(key).ts
	switch {
	case expected == eventstore.Any:
		tail, err := s.tail(ctx, key, int32(len(events)))
		if err != nil {
			return nil, err
		}
		base = 0
		if len(tail) > 0 {
			base, lastTS = tail[len(tail)-1].Version, tail[len(tail)-1].Timestamp
		}
		if int64(len(tail)) == int64(len(events)) && eventstore.SameEvents(tail, events) {
			return tail, nil
		}
	case expected > 0 && s.seenVersion(key).version < expected:
		found, ts, err := s.exists(ctx, key, expected)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, s.conflict(ctx, st, expected)
		}
		s.remember(key, expected, ts)
		lastTS = ts
	}
	// Store-assigned timestamps never go back within a stream, even across clocks, so
	// time-ordered indexes keep each stream in version order.
	now := s.now()
	if !now.After(lastTS) {
		now = lastTS.Add(time.Microsecond)
	}
	out, err := eventstore.Prepare(st, base, events, now)
	if err != nil {
		return nil, err
	}
	if err := s.write(ctx, out); err != nil {
		var cf *conditionFailed
		if !errors.As(err, &cf) {
			return nil, err
		}
		// Either another writer got there first or this is a retry of an append that
		// already landed: the stored ids tell which.
		if cf.old != nil && len(events) == 1 {
			if e, ok, derr := DecodeItem(cf.old); derr == nil && ok && eventstore.SameEvents([]event.Event{e}, events) {
				return []event.Event{e}, nil
			}
		} else if stored, lerr := s.Load(ctx, st, eventstore.Range{From: base + 1, To: base + int64(len(events))}); lerr == nil &&
			eventstore.SameEvents(stored, events) {
			return stored, nil
		}
		return nil, s.conflict(ctx, st, expected)
	}
	last := out[len(out)-1]
	s.remember(key, last.Version, last.Timestamp)
	return out, nil
}

type conditionFailed struct {
	old map[string]types.AttributeValue
}

func (c *conditionFailed) Error() string { return "condition failed" }

func (s *Store) write(ctx context.Context, out []event.Event) error {
	items := make([]map[string]types.AttributeValue, len(out))
	for i, e := range out {
		item, err := toItem(e)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		items[i] = item
	}
	cond := aws.String("attribute_not_exists(pk)")
	if len(items) == 1 {
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: items[0],
			ConditionExpression: cond, ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return &conditionFailed{old: ccf.Item}
		}
		return mapError(err)
	}
	tx := make([]types.TransactWriteItem, len(items))
	for i, item := range items {
		tx[i] = types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.table), Item: item, ConditionExpression: cond,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}}
	}
	return retryTransaction(ctx, func() error {
		_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx})
		return err
	})
}

// retryTransaction runs a transaction, retrying TransactionConflict (another transaction
// touched the same items) with jittered backoff; a failed condition comes back as
// *conditionFailed, throttling as *eventstore.ThrottledError.
func retryTransaction(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) {
			return mapError(err)
		}
		conflict, throttled := false, false
		for _, r := range tce.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ConditionalCheckFailed":
				return &conditionFailed{old: r.Item}
			case "TransactionConflict":
				conflict = true
			case "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded":
				throttled = true
			}
		}
		if (!conflict && !throttled) || attempt >= 5 {
			if conflict || throttled {
				return &eventstore.ThrottledError{RetryAfter: time.Second, Err: err}
			}
			return fmt.Errorf("dynamodb transaction: %w", err)
		}
		d := time.Duration(10<<attempt) * time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d/2 + time.Duration(rand.Int64N(int64(d)))):
		}
	}
}

// mapError turns throttling into *eventstore.ThrottledError (after the SDK's own
// retries) and leaves other errors wrapped.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded":
			return &eventstore.ThrottledError{RetryAfter: time.Second, Err: err}
		}
	}
	return fmt.Errorf("dynamodb: %w", err)
}

func (s *Store) exists(ctx context.Context, key string, v int64) (bool, time.Time, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: key},
			infra.AttrSK: &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}},
		ProjectionExpression: aws.String("pk, ts")})
	if err != nil {
		return false, time.Time{}, mapError(err)
	}
	if out.Item == nil {
		return false, time.Time{}, nil
	}
	var it struct {
		TS string `dynamodbav:"ts"`
	}
	_ = attributevalue.UnmarshalMap(out.Item, &it)
	ts, _ := time.Parse(time.RFC3339Nano, it.TS)
	return true, ts, nil
}

// tail returns the stream's last n events in version order (snapshots skipped).
func (s *Store) tail(ctx context.Context, key string, n int32) ([]event.Event, error) {
	var out []event.Event
	var start map[string]types.AttributeValue
	for {
		page, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression: aws.String("pk = :pk"), ScanIndexForward: aws.Bool(false), Limit: aws.Int32(n + 1),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: key}},
			ExclusiveStartKey:         start})
		if err != nil {
			return nil, mapError(err)
		}
		for _, item := range page.Items {
			e, ok, err := DecodeItem(item)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, e)
				if int32(len(out)) == n {
					return reverse(out), nil
				}
			}
		}
		if page.LastEvaluatedKey == nil {
			return reverse(out), nil
		}
		start = page.LastEvaluatedKey
	}
}

func reverse(evs []event.Event) []event.Event {
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

func (s *Store) conflict(ctx context.Context, st eventstore.Stream, expected int64) error {
	tail, err := s.tail(ctx, st.Key(), 1)
	if err != nil {
		return err
	}
	var cur int64
	if len(tail) == 1 {
		cur = tail[0].Version
		s.remember(st.Key(), cur, tail[0].Timestamp)
	}
	return &eventstore.ConflictError{Stream: st, Expected: expected, Current: cur}
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	to := r.To
	if to <= 0 {
		to = 1 << 62
	}
	var out []event.Event
	var start map[string]types.AttributeValue
	for {
		page, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk":   &types.AttributeValueMemberS{Value: st.Key()},
				":from": &types.AttributeValueMemberN{Value: strconv.FormatInt(max(r.From, 1), 10)},
				":to":   &types.AttributeValueMemberN{Value: strconv.FormatInt(to, 10)}},
			ExclusiveStartKey: start})
		if err != nil {
			return nil, mapError(err)
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
				s.rememberLast(st, out)
				return out, nil
			}
			out = append(out, e)
		}
		if page.LastEvaluatedKey == nil {
			s.rememberLast(st, out)
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

func (s *Store) rememberLast(st eventstore.Stream, evs []event.Event) {
	if n := len(evs); n > 0 {
		s.remember(st.Key(), evs[n-1].Version, evs[n-1].Timestamp)
	}
}
