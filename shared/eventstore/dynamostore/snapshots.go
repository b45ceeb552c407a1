package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// SaveSnapshot writes the snapshot without an expiry, whatever the snapshot TTL: the
// newest snapshot must outlive any idle period, or an aggregate untouched for longer
// than the TTL would replay its whole stream. Superseded snapshots get their expiry
// from DeleteSnapshots.
func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.CheckSnapshot(snap); err != nil {
		return err
	}
	item, err := marshalSnapshot(snap, 0)
	if err != nil {
		return fmt.Errorf("dynamodb: encode snapshot of %s v%d: %w", snap.Stream, snap.Version, err)
	}
	return retrying(ctx, func() error {
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item})
		return err
	})
}

// LoadFromSnapshot reads the partition backwards from the top (or from r.To): the events
// after the newest snapshot come first, then the snapshot itself — one request while
// fewer than a page of events follow it. It pages on only when they do, or when no
// snapshot fits the range (then it returns the whole stream, as Load would).
func (s *Store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	key := st.Key()
	kc := expression.Key(infra.AttrPK).Equal(expression.Value(key))
	if r.To > 0 {
		kc = kc.And(expression.Key(infra.AttrSK).LessThanEqual(expression.Value(snapshotSK(r.To))))
	}
	expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
	if err != nil {
		return nil, nil, fmt.Errorf("dynamodb: build key condition: %w", err)
	}
	var desc []event.Event // newest first
	var snap *eventstore.Snapshot
	var start map[string]types.AttributeValue
pages:
	for {
		var page *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			page, err = s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
				KeyConditionExpression: expr.KeyCondition(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
				ScanIndexForward: aws.Bool(false), Limit: aws.Int32(s.pageSize), ExclusiveStartKey: start})
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		for _, item := range page.Items {
			if isSnapshot(item) {
				sn, err := decodeSnapshot(st, item)
				if err != nil {
					return nil, nil, err
				}
				if !r.Until.IsZero() && sn.Timestamp.After(r.Until) {
					continue
				}
				snap = &sn
				break pages
			}
			e, ok, err := DecodeItem(item)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				desc = append(desc, e)
			}
		}
		if page.LastEvaluatedKey == nil {
			break
		}
		start = page.LastEvaluatedKey
	}
	switch {
	case len(desc) > 0:
		s.seen.observe(key, desc[0].Version, desc[0].Timestamp)
	case snap != nil:
		// Snapshots are taken of loaded state, so the version a snapshot covers exists.
		s.seen.observe(key, snap.Version, snap.Timestamp)
	}
	from := max(r.From, 1)
	if snap != nil {
		from = max(from, snap.Version+1)
	}
	var events []event.Event
	for i := len(desc) - 1; i >= 0; i-- {
		e := desc[i]
		if e.Version < from {
			continue
		}
		if !r.Until.IsZero() && e.Timestamp.After(r.Until) {
			break
		}
		events = append(events, e)
	}
	return snap, events, nil
}

// DeleteSnapshots finds the snapshot items below `below` with a Query and deletes them in
// batches, or, with a snapshot TTL, stamps them with their expiry and leaves the deletion
// to DynamoDB. The Query reads the events in that part of the partition too (a filter
// does not reduce what is read), so the store remembers how far down it has already
// cleaned and reads only the part above on later calls.
func (s *Store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	key := st.Key()
	floor := s.seen.get(key).snapshotFloor
	if below <= max(floor, 1) {
		return nil
	}
	b := expression.NewBuilder().
		WithKeyCondition(expression.Key(infra.AttrPK).Equal(expression.Value(key)).
			And(expression.Key(infra.AttrSK).Between(expression.Value(floor), expression.Value(below)))).
		WithFilter(expression.Name(infra.AttrKind).Equal(expression.Value(kindSnapshot)))
	if s.snapshotTTL == 0 {
		// Deleting needs the keys only; stamping rewrites the whole item.
		b = b.WithProjection(expression.NamesList(expression.Name(infra.AttrPK), expression.Name(infra.AttrSK)))
	}
	expr, err := b.Build()
	if err != nil {
		return fmt.Errorf("dynamodb: build query: %w", err)
	}
	var keys []map[string]types.AttributeValue
	var start map[string]types.AttributeValue
	for {
		var page *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			page, err = s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
				KeyConditionExpression: expr.KeyCondition(), FilterExpression: expr.Filter(), ProjectionExpression: expr.Projection(),
				ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(), ExclusiveStartKey: start})
			return err
		})
		if err != nil {
			return err
		}
		keys = append(keys, page.Items...)
		if page.LastEvaluatedKey == nil {
			break
		}
		start = page.LastEvaluatedKey
	}
	if s.snapshotTTL > 0 {
		err = s.expireSnapshots(ctx, keys)
	} else {
		err = batchDelete(ctx, s.db, s.table, keys)
	}
	if err != nil {
		return err
	}
	// The snapshot of version below-1 sits at below-0.5, inside the range just cleaned,
	// while the event at `below` (an integer) was included only as the bound.
	s.seen.snapshotsDeleted(key, below)
	return nil
}

// expireSnapshots gives superseded snapshot items their expiry. It rewrites each with
// PutItem, which the appending roles hold already, rather than UpdateItem: IAM cannot
// tell a snapshot item from an event (they share the partition key, and no condition
// key exposes the sort key's fraction), so an UpdateItem grant able to set expiresAt
// could expire events too. The write is conditional on the item still being an
// unexpired snapshot, so it can never turn an event into something TTL deletes, nor
// push an expiry already set further out. A TTL of DynamoDB's is approximate (deletion
// within days of expiresAt): until then the snapshot is still valid and still used.
func (s *Store) expireSnapshots(ctx context.Context, items []map[string]types.AttributeValue) error {
	expiresAt := &types.AttributeValueMemberN{Value: strconv.FormatInt(s.now().Add(s.snapshotTTL).Unix(), 10)}
	cond, err := expression.NewBuilder().WithCondition(expression.And(
		expression.AttributeExists(expression.Name(infra.AttrPK)),
		expression.Name(infra.AttrKind).Equal(expression.Value(kindSnapshot)),
		expression.AttributeNotExists(expression.Name(infra.AttrExpiresAt)))).Build()
	if err != nil {
		return fmt.Errorf("dynamodb: build condition: %w", err)
	}
	for _, item := range items {
		if _, set := item[infra.AttrExpiresAt]; set || !isSnapshot(item) {
			continue
		}
		stamped := maps.Clone(item)
		stamped[infra.AttrExpiresAt] = expiresAt
		err := retrying(ctx, func() error {
			_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: stamped,
				ConditionExpression: cond.Condition(), ExpressionAttributeNames: cond.Names(), ExpressionAttributeValues: cond.Values()})
			return err
		})
		var ccf *types.ConditionalCheckFailedException
		if err != nil && !errors.As(err, &ccf) { // failed condition: stamped or gone meanwhile
			return fmt.Errorf("dynamodb: expire snapshot: %w", err)
		}
	}
	return nil
}

// batchDelete deletes keys 25 at a time, resending unprocessed items with backoff.
func batchDelete(ctx context.Context, db *dynamodb.Client, table string, keys []map[string]types.AttributeValue) error {
	for len(keys) > 0 {
		n := min(25, len(keys))
		reqs := make([]types.WriteRequest, n)
		for i, k := range keys[:n] {
			reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
		}
		keys = keys[n:]
		for attempt := 0; len(reqs) > 0; attempt++ {
			var out *dynamodb.BatchWriteItemOutput
			err := retrying(ctx, func() (err error) {
				out, err = db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
				return err
			})
			if err != nil {
				return err
			}
			reqs = out.UnprocessedItems[table]
			if len(reqs) == 0 {
				break
			}
			if attempt+1 >= maxUnprocessedRetries {
				return &eventstore.ThrottledError{RetryAfter: throttleRetryAfter,
					Err: fmt.Errorf("dynamodb: %d deletes still unprocessed after %d attempts", len(reqs), attempt+1)}
			}
			if err := sleep(ctx, attempt); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxUnprocessedRetries bounds the resending of a batch's unprocessed items (DynamoDB
// returns them when a partition is throttled).
const maxUnprocessedRetries = 10
