package dynamostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

// Docs is the document store on the read-model table (pk = collection, sk = key, doc =
// JSON, rev = revision). Update is optimistic: it records what fn read and commits its
// writes on the condition that none of it changed (a ConditionCheck for what was only
// read), rerunning fn on a conflict.
type Docs struct {
	db    *dynamodb.Client
	table string
}

var _ docstore.Store = (*Docs)(nil)

// NewDocs returns the document store over the read-model table.
func NewDocs(db *dynamodb.Client, table string) *Docs { return &Docs{db: db, table: table} }

type docKey struct{ coll, key string }

type readState struct {
	exists bool
	rev    int64
	raw    json.RawMessage
}

type ddbTx struct {
	d      *Docs
	reads  map[docKey]readState
	writes map[docKey]json.RawMessage // nil = delete
	order  []docKey
}

func key(coll, k string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: coll}, "sk": &types.AttributeValueMemberS{Value: k}}
}

func (d *Docs) read(ctx context.Context, coll, k string) (readState, error) {
	out, err := d.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: key(coll, k), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return readState{}, mapError(err)
	}
	if out.Item == nil {
		return readState{}, nil
	}
	rs := readState{exists: true}
	if n, ok := out.Item["rev"].(*types.AttributeValueMemberN); ok {
		rs.rev, _ = strconv.ParseInt(n.Value, 10, 64)
	}
	if s, ok := out.Item["doc"].(*types.AttributeValueMemberS); ok {
		rs.raw = json.RawMessage(s.Value)
	}
	return rs, nil
}

func (t *ddbTx) Get(ctx context.Context, coll, k string, dst any) (bool, error) {
	dk := docKey{coll, k}
	if raw, ok := t.writes[dk]; ok {
		if raw == nil {
			return false, nil
		}
		return true, json.Unmarshal(raw, dst)
	}
	rs, ok := t.reads[dk]
	if !ok {
		var err error
		if rs, err = t.d.read(ctx, coll, k); err != nil {
			return false, err
		}
		t.reads[dk] = rs
	}
	if !rs.exists {
		return false, nil
	}
	return true, json.Unmarshal(rs.raw, dst)
}

func (t *ddbTx) write(coll, k string, raw json.RawMessage) error {
	dk := docKey{coll, k}
	if _, ok := t.writes[dk]; !ok {
		if len(t.writes) >= docstore.MaxUpdateWrites {
			return docstore.ErrTooManyWrites
		}
		t.order = append(t.order, dk)
	}
	t.writes[dk] = raw
	return nil
}

func (t *ddbTx) Put(_ context.Context, coll, k string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.write(coll, k, raw)
}

func (t *ddbTx) Delete(_ context.Context, coll, k string) error { return t.write(coll, k, nil) }

// condition returns the optimistic condition for an item the transaction read (nil when
// it did not read it: a blind write needs none).
func (t *ddbTx) condition(dk docKey) (*string, map[string]types.AttributeValue) {
	rs, ok := t.reads[dk]
	switch {
	case !ok:
		return nil, nil
	case !rs.exists:
		return aws.String("attribute_not_exists(pk)"), nil
	}
	return aws.String("rev = :rev"), map[string]types.AttributeValue{":rev": &types.AttributeValueMemberN{Value: strconv.FormatInt(rs.rev, 10)}}
}

func (t *ddbTx) item(dk docKey, raw json.RawMessage) map[string]types.AttributeValue {
	item := key(dk.coll, dk.key)
	item["doc"] = &types.AttributeValueMemberS{Value: string(raw)}
	item["rev"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(t.reads[dk].rev+1, 10)}
	var probe struct {
		ExpiresAt *int64 `json:"expiresAt"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.ExpiresAt != nil {
		item["expiresAt"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(*probe.ExpiresAt, 10)}
	}
	return item
}

func (t *ddbTx) commit(ctx context.Context) error {
	if len(t.writes) == 0 {
		return nil
	}
	var items []types.TransactWriteItem
	for _, dk := range t.order {
		raw := t.writes[dk]
		cond, vals := t.condition(dk)
		if raw == nil {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(t.d.table),
				Key: key(dk.coll, dk.key), ConditionExpression: cond, ExpressionAttributeValues: vals}})
			continue
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(t.d.table),
			Item: t.item(dk, raw), ConditionExpression: cond, ExpressionAttributeValues: vals}})
	}
	for dk := range t.reads {
		if _, written := t.writes[dk]; written {
			continue
		}
		cond, vals := t.condition(dk)
		items = append(items, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: aws.String(t.d.table),
			Key: key(dk.coll, dk.key), ConditionExpression: cond, ExpressionAttributeValues: vals}})
	}
	if len(items) == 1 && items[0].ConditionCheck == nil {
		return t.single(ctx, items[0])
	}
	if len(items) > 100 {
		return fmt.Errorf("%w: %d items in one transaction", docstore.ErrTooManyWrites, len(items))
	}
	err := retryTransaction(ctx, func() error {
		_, err := t.d.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		return err
	})
	var cf *conditionFailed
	if errors.As(err, &cf) {
		return docstore.ErrConflict
	}
	return err
}

// single commits a one-item change without a transaction (half the write cost).
func (t *ddbTx) single(ctx context.Context, it types.TransactWriteItem) error {
	var err error
	if it.Put != nil {
		_, err = t.d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: it.Put.TableName, Item: it.Put.Item,
			ConditionExpression: it.Put.ConditionExpression, ExpressionAttributeValues: it.Put.ExpressionAttributeValues})
	} else {
		_, err = t.d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: it.Delete.TableName, Key: it.Delete.Key,
			ConditionExpression: it.Delete.ConditionExpression, ExpressionAttributeValues: it.Delete.ExpressionAttributeValues})
	}
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return docstore.ErrConflict
	}
	return mapError(err)
}

// stale reports whether any document the transaction read has changed since.
func (t *ddbTx) stale(ctx context.Context) (bool, error) {
	for dk, rs := range t.reads {
		now, err := t.d.read(ctx, dk.coll, dk.key)
		if err != nil {
			return false, err
		}
		if now.exists != rs.exists || now.rev != rs.rev {
			return true, nil
		}
	}
	return false, nil
}

const maxUpdateAttempts = 25

func (d *Docs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	for attempt := 0; ; attempt++ {
		tx := &ddbTx{d: d, reads: map[docKey]readState{}, writes: map[docKey]json.RawMessage{}}
		err := fn(ctx, tx)
		if err != nil {
			// fn may have failed because it saw a mix of before and after another commit
			// (reads are not one snapshot): if anything it read has changed, run it again.
			if stale, verr := tx.stale(ctx); verr != nil || !stale {
				return err
			}
			err = docstore.ErrConflict
		} else {
			err = tx.commit(ctx)
		}
		if !errors.Is(err, docstore.ErrConflict) || attempt+1 >= maxUpdateAttempts {
			return err
		}
		d := time.Duration(5<<min(attempt, 6)) * time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d/2 + time.Duration(rand.Int64N(int64(d)))):
		}
	}
}

func (d *Docs) Get(ctx context.Context, coll, k string, dst any) (bool, error) {
	rs, err := d.read(ctx, coll, k)
	if err != nil || !rs.exists {
		return false, err
	}
	return true, json.Unmarshal(rs.raw, dst)
}

func (d *Docs) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	var start map[string]types.AttributeValue
	for {
		out, err := d.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(d.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression:    aws.String("pk = :c"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":c": &types.AttributeValueMemberS{Value: coll}},
			ExclusiveStartKey:         start})
		if err != nil {
			return mapError(err)
		}
		for _, item := range out.Items {
			k, _ := item["sk"].(*types.AttributeValueMemberS)
			doc, _ := item["doc"].(*types.AttributeValueMemberS)
			if k == nil || doc == nil {
				continue
			}
			if err := fn(k.Value, json.RawMessage(doc.Value)); err != nil {
				return err
			}
		}
		if out.LastEvaluatedKey == nil {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

func (d *Docs) DeleteCollection(ctx context.Context, coll string) error {
	var keys []map[string]types.AttributeValue
	var start map[string]types.AttributeValue
	for {
		out, err := d.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(d.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression:    aws.String("pk = :c"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":c": &types.AttributeValueMemberS{Value: coll}},
			ProjectionExpression:      aws.String("pk, sk"), ExclusiveStartKey: start})
		if err != nil {
			return mapError(err)
		}
		keys = append(keys, out.Items...)
		if out.LastEvaluatedKey == nil {
			break
		}
		start = out.LastEvaluatedKey
	}
	return batchDelete(ctx, d.db, d.table, keys)
}
