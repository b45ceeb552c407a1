package dynamostore

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	item, err := marshalSnapshot(snap)
	if err != nil {
		return err
	}
	if s.snapshotTTL > 0 {
		item[infra.AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(time.Now().Add(s.snapshotTTL).Unix(), 10)}
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item})
	return mapError(err)
}

// LoadFromSnapshot reads the partition backwards from the top (or from r.To): the events
// after the newest snapshot come first, then the snapshot itself, usually in one request.
func (s *Store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	cond := "pk = :pk"
	vals := map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: st.Key()}}
	if r.To > 0 {
		cond += " AND sk <= :hi"
		vals[":hi"] = &types.AttributeValueMemberN{Value: snapshotSK(r.To)}
	}
	var desc []event.Event
	var snap *eventstore.Snapshot
	var start map[string]types.AttributeValue
scan:
	for {
		out, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression: aws.String(cond), ExpressionAttributeValues: vals, ScanIndexForward: aws.Bool(false),
			Limit: aws.Int32(s.pageSize), ExclusiveStartKey: start})
		if err != nil {
			return nil, nil, mapError(err)
		}
		for _, item := range out.Items {
			if isSnapshot(item) {
				sn, err := decodeSnapshot(st, item)
				if err != nil {
					return nil, nil, err
				}
				if (r.To > 0 && sn.Version > r.To) || (!r.Until.IsZero() && sn.Timestamp.After(r.Until)) {
					continue
				}
				snap = &sn
				break scan
			}
			e, ok, err := DecodeItem(item)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				desc = append(desc, e)
			}
		}
		if out.LastEvaluatedKey == nil {
			break
		}
		start = out.LastEvaluatedKey
	}
	if len(desc) > 0 {
		s.remember(st.Key(), desc[0].Version, desc[0].Timestamp)
	} else if snap != nil && r.To <= 0 && r.Until.IsZero() {
		s.remember(st.Key(), snap.Version, snap.Timestamp)
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

func (s *Store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	if s.snapshotTTL > 0 {
		return nil // TTL removes them
	}
	var keys []map[string]types.AttributeValue
	var start map[string]types.AttributeValue
	for {
		out, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression: aws.String("pk = :pk AND sk < :below"),
			FilterExpression:       aws.String("kind = :snap"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: st.Key()},
				":below": &types.AttributeValueMemberN{Value: strconv.FormatInt(below, 10)},
				":snap":  &types.AttributeValueMemberS{Value: kindSnapshot}},
			ProjectionExpression: aws.String("pk, sk"), ExclusiveStartKey: start})
		if err != nil {
			return mapError(err)
		}
		keys = append(keys, out.Items...)
		if out.LastEvaluatedKey == nil {
			break
		}
		start = out.LastEvaluatedKey
	}
	return batchDelete(ctx, s.db, s.table, keys)
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
			out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
			if err != nil {
				return mapError(err)
			}
			reqs = out.UnprocessedItems[table]
			if len(reqs) > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(20<<min(attempt, 6)) * time.Millisecond):
				}
			}
		}
	}
	return nil
}
