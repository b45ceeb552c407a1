package dynamostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
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

// docItem is one document as stored. Rev is random, not a counter: a document deleted
// and created again, or written blind (without being read), must never come back to a
// revision a concurrent transaction read, or that transaction's condition would pass
// over a change (ABA).
type docItem struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	Doc       string `dynamodbav:"doc"`
	Rev       int64  `dynamodbav:"rev"`
	ExpiresAt int64  `dynamodbav:"expiresAt,omitempty"`
}

type docKey struct{ coll, key string }

func (k docKey) item() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: k.coll},
		infra.AttrSK: &types.AttributeValueMemberS{Value: k.key}}
}

// readState is a document as a transaction read it: absent, or present at rev.
type readState struct {
	exists bool
	rev    int64
	raw    json.RawMessage
}

func (d *Docs) read(ctx context.Context, k docKey) (readState, error) {
	var out *dynamodb.GetItemOutput
	err := retrying(ctx, func() (err error) {
		out, err = d.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: k.item(), ConsistentRead: aws.Bool(true)})
		return err
	})
	if err != nil || out.Item == nil {
		return readState{}, err
	}
	var it docItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return readState{}, fmt.Errorf("dynamodb: decode document %s/%s: %w", k.coll, k.key, err)
	}
	return readState{exists: true, rev: it.Rev, raw: json.RawMessage(it.Doc)}, nil
}

type ddbTx struct {
	d      *Docs
	reads  map[docKey]readState
	writes map[docKey]json.RawMessage // nil = delete
	order  []docKey                   // writes in first-write order
}

func (t *ddbTx) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, err
	}
	k := docKey{coll, key}
	if raw, ok := t.writes[k]; ok {
		if raw == nil {
			return false, nil
		}
		return true, json.Unmarshal(raw, dst)
	}
	rs, ok := t.reads[k]
	if !ok {
		var err error
		if rs, err = t.d.read(ctx, k); err != nil {
			return false, err
		}
		t.reads[k] = rs
	}
	if !rs.exists {
		return false, nil
	}
	return true, json.Unmarshal(rs.raw, dst)
}

func (t *ddbTx) Put(_ context.Context, coll, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("docstore: encode %s/%s: %w", coll, key, err)
	}
	return t.write(docKey{coll, key}, raw)
}

func (t *ddbTx) Delete(_ context.Context, coll, key string) error {
	return t.write(docKey{coll, key}, nil)
}

func (t *ddbTx) write(k docKey, raw json.RawMessage) error {
	if err := docstore.CheckKey(k.coll, k.key); err != nil {
		return err
	}
	if _, ok := t.writes[k]; !ok {
		if len(t.writes) >= docstore.MaxUpdateWrites {
			return docstore.ErrTooManyWrites
		}
		t.order = append(t.order, k)
	}
	t.writes[k] = raw
	return nil
}

// condition is the optimistic condition for a document: unchanged since the transaction
// read it. A document written without being read needs none (a blind write).
func (t *ddbTx) condition(k docKey) (expression.Expression, bool, error) {
	rs, ok := t.reads[k]
	if !ok {
		return expression.Expression{}, false, nil
	}
	c := expression.AttributeNotExists(expression.Name(infra.AttrPK))
	if rs.exists {
		c = expression.Name(infra.AttrRev).Equal(expression.Value(rs.rev))
	}
	e, err := expression.NewBuilder().WithCondition(c).Build()
	if err != nil {
		return e, false, fmt.Errorf("dynamodb: build condition: %w", err)
	}
	return e, true, nil
}

func (t *ddbTx) put(k docKey, raw json.RawMessage) (map[string]types.AttributeValue, error) {
	item, err := attributevalue.MarshalMap(docItem{PK: k.coll, SK: k.key, Doc: string(raw),
		Rev: rand.Int64N(math.MaxInt64-1) + 1, ExpiresAt: expiresAt(raw)})
	if err != nil {
		return nil, fmt.Errorf("dynamodb: encode document %s/%s: %w", k.coll, k.key, err)
	}
	return item, nil
}

// expiresAt is the document's top-level numeric "expiresAt" (epoch seconds), copied to
// the table's TTL attribute so DynamoDB removes expired idempotency records; 0 if none.
func expiresAt(raw json.RawMessage) int64 {
	var probe struct {
		ExpiresAt json.Number `json:"expiresAt"`
	}
	if json.Unmarshal(raw, &probe) != nil || probe.ExpiresAt == "" {
		return 0
	}
	f, err := probe.ExpiresAt.Float64()
	if err != nil || f <= 0 || f > math.MaxInt64 {
		return 0
	}
	return int64(f)
}

func (t *ddbTx) commit(ctx context.Context) error {
	if len(t.writes) == 0 {
		// A read-only transaction commits nothing, but what it read must still be one
		// consistent state.
		return t.validate(ctx)
	}
	var items []types.TransactWriteItem
	for _, k := range t.order {
		cond, conditional, err := t.condition(k)
		if err != nil {
			return err
		}
		var names map[string]string
		var values map[string]types.AttributeValue
		var expr *string
		if conditional {
			expr, names, values = cond.Condition(), cond.Names(), cond.Values()
		}
		raw := t.writes[k]
		if raw == nil {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(t.d.table), Key: k.item(),
				ConditionExpression: expr, ExpressionAttributeNames: names, ExpressionAttributeValues: values}})
			continue
		}
		item, err := t.put(k, raw)
		if err != nil {
			return err
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(t.d.table), Item: item,
			ConditionExpression: expr, ExpressionAttributeNames: names, ExpressionAttributeValues: values}})
	}
	for k := range t.reads {
		if _, written := t.writes[k]; written {
			continue
		}
		cond, _, err := t.condition(k)
		if err != nil {
			return err
		}
		items = append(items, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: aws.String(t.d.table),
			Key: k.item(), ConditionExpression: cond.Condition(), ExpressionAttributeNames: cond.Names(),
			ExpressionAttributeValues: cond.Values()}})
	}
	if len(items) > maxTransactItems {
		return fmt.Errorf("%w: %d writes and checks exceed a transaction's %d items", docstore.ErrTooManyWrites, len(items), maxTransactItems)
	}
	var err error
	if len(items) == 1 {
		err = t.single(ctx, items[0])
	} else {
		err = retrying(ctx, func() error {
			_, err := t.d.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
			return err
		})
	}
	var cf *conditionFailed
	if errors.As(err, &cf) {
		return docstore.ErrConflict
	}
	return err
}

const maxTransactItems = 100

// single commits a one-document change without a transaction (half the write cost).
func (t *ddbTx) single(ctx context.Context, it types.TransactWriteItem) error {
	return retrying(ctx, func() error {
		var err error
		if it.Put != nil {
			_, err = t.d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: it.Put.TableName, Item: it.Put.Item,
				ConditionExpression: it.Put.ConditionExpression, ExpressionAttributeNames: it.Put.ExpressionAttributeNames,
				ExpressionAttributeValues: it.Put.ExpressionAttributeValues})
		} else {
			_, err = t.d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: it.Delete.TableName, Key: it.Delete.Key,
				ConditionExpression: it.Delete.ConditionExpression, ExpressionAttributeNames: it.Delete.ExpressionAttributeNames,
				ExpressionAttributeValues: it.Delete.ExpressionAttributeValues})
		}
		return err
	})
}

// validate reads again what the transaction read: unchanged (revisions never repeat)
// means every document held its value from the first read to the second, and since all
// first reads came before all second reads, there is an instant at which the
// transaction's view was the store's state. One document needs no check.
func (t *ddbTx) validate(ctx context.Context) error {
	if len(t.reads) < 2 {
		return nil
	}
	for k, rs := range t.reads {
		now, err := t.d.read(ctx, k)
		if err != nil {
			return err
		}
		if now.exists != rs.exists || now.rev != rs.rev {
			return docstore.ErrConflict
		}
	}
	return nil
}

// maxUpdateAttempts bounds how often Update runs fn against concurrent changes.
const maxUpdateAttempts = 20

func (d *Docs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	for attempt := 0; ; attempt++ {
		tx := &ddbTx{d: d, reads: map[docKey]readState{}, writes: map[docKey]json.RawMessage{}}
		err := fn(ctx, tx)
		if err != nil {
			// fn may have failed only because its reads straddled another commit (each
			// Get is its own read): if they were not one consistent state, run it again.
			if verr := tx.validate(ctx); !errors.Is(verr, docstore.ErrConflict) {
				return err
			}
			err = docstore.ErrConflict
		} else {
			err = tx.commit(ctx)
		}
		if !errors.Is(err, docstore.ErrConflict) || attempt+1 >= maxUpdateAttempts {
			return err
		}
		if err := sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

func (d *Docs) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, err
	}
	rs, err := d.read(ctx, docKey{coll, key})
	if err != nil || !rs.exists {
		return false, err
	}
	return true, json.Unmarshal(rs.raw, dst)
}

// query pages through a collection in key order.
func (d *Docs) query(ctx context.Context, coll string, keysOnly bool, fn func([]map[string]types.AttributeValue) error) error {
	b := expression.NewBuilder().WithKeyCondition(expression.Key(infra.AttrPK).Equal(expression.Value(coll)))
	if keysOnly {
		b = b.WithProjection(expression.NamesList(expression.Name(infra.AttrPK), expression.Name(infra.AttrSK)))
	}
	expr, err := b.Build()
	if err != nil {
		return fmt.Errorf("dynamodb: build query: %w", err)
	}
	var start map[string]types.AttributeValue
	for {
		var out *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			out, err = d.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(d.table), ConsistentRead: aws.Bool(true),
				KeyConditionExpression: expr.KeyCondition(), ProjectionExpression: expr.Projection(),
				ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(), ExclusiveStartKey: start})
			return err
		})
		if err != nil {
			return err
		}
		if err := fn(out.Items); err != nil {
			return err
		}
		if out.LastEvaluatedKey == nil {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

func (d *Docs) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	return d.query(ctx, coll, false, func(items []map[string]types.AttributeValue) error {
		for _, item := range items {
			var it docItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return fmt.Errorf("dynamodb: decode document in %s: %w", coll, err)
			}
			if err := fn(it.SK, json.RawMessage(it.Doc)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (d *Docs) DeleteCollection(ctx context.Context, coll string) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	var keys []map[string]types.AttributeValue
	err := d.query(ctx, coll, true, func(items []map[string]types.AttributeValue) error {
		keys = append(keys, items...)
		return nil
	})
	if err != nil {
		return err
	}
	return batchDelete(ctx, d.db, d.table, keys)
}
