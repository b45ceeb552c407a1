package dynamostore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

// docKey is a document's table key in the current schema.
func docKey(coll, key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: coll + "#" + key},
		infra.AttrSK: &types.AttributeValueMemberS{Value: coll}}
}

func str(item map[string]types.AttributeValue, attr string) string {
	if s, ok := item[attr].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

// Every document is its own partition; a listed collection's documents carry the index
// attributes spread over the shards, an unlisted one's carry none, and the unlisted one
// refuses the listing operations.
func TestDocsKeyedPerDocument(t *testing.T) {
	ctx := context.Background()
	db, _, models := env(t)
	listedColl, unlistedColl := uniqueStream("keyed").ID, uniqueStream("unlisted").ID
	d := dynamostore.NewDocs(db, models, unlistedColl)
	const n = 40
	err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		for i := range n {
			if err := tx.Put(ctx, listedColl, fmt.Sprint("k", i), counterDoc{N: i}); err != nil {
				return err
			}
		}
		return tx.Put(ctx, unlistedColl, "k0", counterDoc{N: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	shards := map[string]bool{}
	for i := range n {
		key := fmt.Sprint("k", i)
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(models), Key: docKey(listedColl, key)})
		if err != nil || out.Item == nil {
			t.Fatalf("%s not stored under its own partition key: %v", key, err)
		}
		want := listedColl + "#" + strconv.Itoa(dynamostore.ListShard(key))
		if got := str(out.Item, infra.AttrListPK); got != want || str(out.Item, infra.AttrListSK) != key {
			t.Fatalf("%s: index keys %q %q, want %q %q", key, got, str(out.Item, infra.AttrListSK), want, key)
		}
		shards[want] = true
	}
	if len(shards) < infra.ReadModelListShards/2 {
		t.Fatalf("%d documents on %d index partitions: the shard function does not spread", n, len(shards))
	}
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(models), Key: docKey(unlistedColl, "k0")})
	if err != nil || out.Item == nil {
		t.Fatalf("unlisted document: %v", err)
	}
	if _, ok := out.Item[infra.AttrListPK]; ok {
		t.Fatalf("unlisted document carries index attributes: %v", out.Item)
	}
	var keys []string
	if err := d.List(ctx, listedColl, func(k string, _ json.RawMessage) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != n || !slices.IsSorted(keys) {
		t.Fatalf("listed %d keys (sorted %v), want %d in order", len(keys), slices.IsSorted(keys), n)
	}
	for _, tc := range []struct {
		op string
		fn func() error
	}{
		{"List", func() error { return d.List(ctx, unlistedColl, func(string, json.RawMessage) error { return nil }) }},
		{"ListPage", func() error { _, _, err := d.ListPage(ctx, unlistedColl, "", 10); return err }},
		{"DeleteCollection", func() error { return d.DeleteCollection(ctx, unlistedColl) }},
	} {
		if err := tc.fn(); !errors.Is(err, docstore.ErrNotListed) {
			t.Errorf("%s of an unlisted collection: %v, want ErrNotListed", tc.op, err)
		}
	}
	var c counterDoc
	if ok, err := d.Get(ctx, unlistedColl, "k0", &c); err != nil || !ok || c.N != 1 {
		t.Fatalf("unlisted get: %+v %v %v", c, ok, err)
	}
}

// A listing whose index query fails reports the failure, whichever shard it hits, rather
// than a page with a gap.
func TestDocsListQueryFails(t *testing.T) {
	ctx := context.Background()
	db, _, models := env(t)
	coll := uniqueStream("listfail").ID
	if err := dynamostore.NewDocs(db, models).Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return tx.Put(ctx, coll, "a", counterDoc{N: 1})
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("injected")
	for _, nth := range []int{0, 7, infra.ReadModelListShards - 1} {
		f := &injector{count: map[string]int{}, fail: func(op string, n int) error {
			if op == "Query" && n == nth {
				return boom
			}
			return nil
		}}
		dbf, _, _ := env(t, f.option())
		d := dynamostore.NewDocs(dbf, models)
		if _, _, err := d.ListPage(ctx, coll, "", 10); !errors.Is(err, boom) {
			t.Errorf("query %d failing: ListPage err = %v", nth, err)
		}
	}
}

// A document of an unlisted collection (an idempotency record on the command path) costs
// the table write alone; a listed one also writes the index.
func TestDocsUnlistedWriteCostsNoIndexWrite(t *testing.T) {
	ctx := context.Background()
	counter := dynamostore.NewRequestCounter()
	db, _, models := env(t, counter.Option())
	listedColl, unlistedColl := uniqueStream("cost-listed").ID, uniqueStream("cost-unlisted").ID
	d := dynamostore.NewDocs(db, models, unlistedColl)
	for _, tc := range []struct {
		coll      string
		wantIndex bool
	}{{unlistedColl, false}, {listedColl, true}} {
		counter.Reset()
		if err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			return tx.Put(ctx, tc.coll, "k", counterDoc{N: 1})
		}); err != nil {
			t.Fatal(err)
		}
		total, table := counter.WriteUnits()
		if table <= 0 || (total > table) != tc.wantIndex {
			t.Errorf("%s: %v write units in all, %v on the table; index write wanted: %v", tc.coll, total, table, tc.wantIndex)
		}
	}
}
