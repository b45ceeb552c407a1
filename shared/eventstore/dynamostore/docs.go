package dynamostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/docstore"
)

// Docs is the document store on the read-model table, one document per partition:
// pk = collection + "#" + key, sk = collection, doc = JSON, rev = revision (see infra's
// attribute names). Update is optimistic: it records what fn read and commits its writes
// on the condition that none of it changed (a ConditionCheck for what was only read),
// rerunning fn on a conflict. Listing reads the sparse index byCollection, which spreads
// a collection over infra.ReadModelListShards partitions; it is eventually consistent on
// AWS (a document written a moment ago may be missing from a page), and collections
// named unlisted are not in it at all.
type Docs struct {
	db       *dynamodb.Client
	table    string
	unlisted map[string]bool
}

var _ docstore.Store = (*Docs)(nil)

// NewDocs returns the document store over the read-model table. Documents of the
// unlisted collections stay out of the listing index, so writing one costs no index
// write; List, ListPage and DeleteCollection refuse them with docstore.ErrNotListed.
func NewDocs(db *dynamodb.Client, table string, unlisted ...string) *Docs {
	d := &Docs{db: db, table: table, unlisted: map[string]bool{}}
	for _, c := range unlisted {
		d.unlisted[c] = true
	}
	return d
}

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
	Shape     int    `dynamodbav:"v,omitempty"`
	ListPK    string `dynamodbav:"lpk,omitempty"`
	ListSK    string `dynamodbav:"lsk,omitempty"`
}

// docShape is the value of infra.AttrShape on items of the current key schema.
const docShape = 2

type docKey struct{ coll, key string }

func (k docKey) item() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: k.coll + "#" + k.key},
		infra.AttrSK: &types.AttributeValueMemberS{Value: k.coll}}
}

// ListShard is the index partition of a document key: FNV-1a 32 of the key modulo
// infra.ReadModelListShards.
func ListShard(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % infra.ReadModelListShards)
}

func listPK(coll string, shard int) string { return coll + "#" + strconv.Itoa(shard) }

// newItem is the stored form of a document; listed adds the index attributes.
func newItem(k docKey, raw json.RawMessage, rev int64, listed bool) docItem {
	it := docItem{PK: k.coll + "#" + k.key, SK: k.coll, Doc: string(raw), Rev: rev, ExpiresAt: expiresAt(raw), Shape: docShape}
	if listed {
		it.ListPK, it.ListSK = listPK(k.coll, ListShard(k.key)), k.key
	}
	return it
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
	item, err := attributevalue.MarshalMap(newItem(k, raw, rand.Int64N(math.MaxInt64-1)+1, !t.d.unlisted[k.coll]))
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

// listed is one document as the listing index returns it.
type listed struct {
	key  string
	doc  json.RawMessage
	item map[string]types.AttributeValue // the table key, for deletes
}

// shardIter reads one index partition of a collection in key order, a query page at a
// time.
type shardIter struct {
	d        *Docs
	expr     expression.Expression
	pageSize int32
	buf      []listed
	start    map[string]types.AttributeValue
	done     bool
}

func (d *Docs) newShardIter(coll, after string, shard int, pageSize int32) (*shardIter, error) {
	kc := expression.Key(infra.AttrListPK).Equal(expression.Value(listPK(coll, shard)))
	if after != "" {
		kc = kc.And(expression.Key(infra.AttrListSK).GreaterThan(expression.Value(after)))
	}
	expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
	if err != nil {
		return nil, fmt.Errorf("dynamodb: build query: %w", err)
	}
	return &shardIter{d: d, expr: expr, pageSize: pageSize}, nil
}

// fill reads pages until there is something buffered or the partition is exhausted.
func (it *shardIter) fill(ctx context.Context) error {
	for len(it.buf) == 0 && !it.done {
		var out *dynamodb.QueryOutput
		err := retrying(ctx, func() (err error) {
			out, err = it.d.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(it.d.table),
				IndexName: aws.String(infra.IndexByCollection), KeyConditionExpression: it.expr.KeyCondition(),
				ExpressionAttributeNames: it.expr.Names(), ExpressionAttributeValues: it.expr.Values(),
				ExclusiveStartKey: it.start, Limit: aws.Int32(it.pageSize)})
			return err
		})
		if err != nil {
			return err
		}
		for _, item := range out.Items {
			var di docItem
			if err := attributevalue.UnmarshalMap(item, &di); err != nil {
				return fmt.Errorf("dynamodb: decode listed document: %w", err)
			}
			it.buf = append(it.buf, listed{key: di.ListSK, doc: json.RawMessage(di.Doc),
				item: map[string]types.AttributeValue{infra.AttrPK: item[infra.AttrPK], infra.AttrSK: item[infra.AttrSK]}})
		}
		it.start = out.LastEvaluatedKey
		it.done = out.LastEvaluatedKey == nil
	}
	return nil
}

// merge calls fn for the collection's documents after `after` in key order, merging the
// index partitions, until fn returns false. Each partition's first page is read at once,
// in parallel; later pages as the merge reaches them.
func (d *Docs) merge(ctx context.Context, coll, after string, pageSize int32, fn func(listed) (bool, error)) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	if d.unlisted[coll] {
		return fmt.Errorf("%w: %s", docstore.ErrNotListed, coll)
	}
	its := make([]*shardIter, infra.ReadModelListShards)
	errs := make([]error, len(its))
	var wg sync.WaitGroup
	for s := range its {
		it, err := d.newShardIter(coll, after, s, pageSize)
		if err != nil {
			return err
		}
		its[s] = it
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[s] = it.fill(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for {
		var min *shardIter
		for _, it := range its {
			if len(it.buf) > 0 && (min == nil || it.buf[0].key < min.buf[0].key) {
				min = it
			}
		}
		if min == nil {
			return nil
		}
		l := min.buf[0]
		min.buf = min.buf[1:]
		if more, err := fn(l); err != nil || !more {
			return err
		}
		if err := min.fill(ctx); err != nil {
			return err
		}
	}
}

// listPageSize is the query page of a whole-collection listing.
const listPageSize = 200

func (d *Docs) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	return d.merge(ctx, coll, "", listPageSize, func(l listed) (bool, error) { return true, fn(l.key, l.doc) })
}

// ListPage asks every partition for one more document than the page holds, so it knows
// without another round trip whether a page follows.
func (d *Docs) ListPage(ctx context.Context, coll, after string, limit int) ([]docstore.Doc, string, error) {
	if err := docstore.CheckPage(coll, after, limit); err != nil {
		return nil, "", err
	}
	var docs []docstore.Doc
	next := ""
	err := d.merge(ctx, coll, after, int32(limit+1), func(l listed) (bool, error) {
		if len(docs) == limit {
			next = docs[limit-1].Key
			return false, nil
		}
		docs = append(docs, docstore.Doc{Key: l.key, Raw: l.doc})
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	return docs, next, nil
}

// DeleteCollection deletes what the index lists: on AWS a document written a moment
// before may not be listed yet and so survive (projection rebuilds delete before they
// replay, when nothing writes the collection).
func (d *Docs) DeleteCollection(ctx context.Context, coll string) error {
	var keys []map[string]types.AttributeValue
	err := d.merge(ctx, coll, "", listPageSize, func(l listed) (bool, error) {
		keys = append(keys, l.item)
		return true, nil
	})
	if err != nil {
		return err
	}
	return batchDelete(ctx, d.db, d.table, keys)
}

var _ docstore.Creator = (*Docs)(nil)

// Create is a conditional PutItem (attribute_not_exists) returning the item in the way
// (ALL_OLD) when the condition fails: one request where Update reads, then writes.
func (d *Docs) Create(ctx context.Context, coll, key string, v any) (bool, json.RawMessage, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, nil, err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return false, nil, fmt.Errorf("docstore: encode %s/%s: %w", coll, key, err)
	}
	k := docKey{coll, key}
	item, err := attributevalue.MarshalMap(newItem(k, raw, rand.Int64N(math.MaxInt64-1)+1, !d.unlisted[coll]))
	if err != nil {
		return false, nil, fmt.Errorf("dynamodb: encode document %s/%s: %w", coll, key, err)
	}
	err = retrying(ctx, func() error {
		_, err := d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: item,
			ConditionExpression: aws.String("attribute_not_exists(#pk)"), ExpressionAttributeNames: map[string]string{"#pk": infra.AttrPK},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
		return err
	})
	var cf *conditionFailed
	switch {
	case err == nil:
		return true, nil, nil
	case !errors.As(err, &cf):
		return false, nil, err
	}
	var old docItem
	if err := attributevalue.UnmarshalMap(cf.old, &old); err != nil || cf.old == nil {
		return false, nil, fmt.Errorf("dynamodb: document %s/%s in the way not returned or not decodable: %v", coll, key, err)
	}
	// Our own write, resent by the SDK after its answer was lost.
	if old.Doc == string(raw) {
		return true, nil, nil
	}
	return false, json.RawMessage(old.Doc), nil
}
