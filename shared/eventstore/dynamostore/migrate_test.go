package dynamostore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

// oldTable creates a read-model table as the first key schema did (no listing index)
// holding documents in its shape: pk = collection, sk = key.
func oldTable(t *testing.T, db *dynamodb.Client, docs map[[2]string]string, expires map[[2]string]int64) string {
	t.Helper()
	ctx := context.Background()
	name := "old-models-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	in := infra.ReadModelTable(name)
	in.GlobalSecondaryIndexes, in.AttributeDefinitions = nil, in.AttributeDefinitions[:2]
	if _, err := db.CreateTable(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	rev := int64(1)
	for k, doc := range docs {
		item := map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: k[0]},
			infra.AttrSK: &types.AttributeValueMemberS{Value: k[1]}, infra.AttrDoc: &types.AttributeValueMemberS{Value: doc},
			infra.AttrRev: &types.AttributeValueMemberN{Value: strconv.FormatInt(rev, 10)}}
		if e := expires[k]; e != 0 {
			item[infra.AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(e, 10)}
		}
		rev++
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(name), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	if err := infra.EnsureReadModelIndex(ctx, db, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// Documents written in the old shape — read models, parked events, idempotency records
// with their TTL — are read, listed and paged after the migration; a document the new
// code already wrote keeps its newer value; an interrupted migration resumes where it
// stopped and a finished one finds nothing more to do.
func TestMigrateReadModels(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	docs := map[[2]string]string{}
	for i := range 12 {
		docs[[2]string{"accounts", fmt.Sprintf("acc-%02d", i)}] = fmt.Sprintf(`{"n":%d}`, i)
	}
	docs[[2]string{"parked:orders", "Order#1#3"}] = `{"n":100}`
	docs[[2]string{"_idempotency", "req-1"}] = `{"n":200,"expiresAt":1893456000}`
	docs[[2]string{"accounts", "acc-newer"}] = `{"n":-1}`
	table := oldTable(t, db, docs, map[[2]string]int64{{"_idempotency", "req-1"}: 1893456000})

	d := dynamostore.NewDocs(db, table, "_idempotency")
	// The new code wrote acc-newer before the migration reached it.
	if err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return tx.Put(ctx, "accounts", "acc-newer", counterDoc{N: 7})
	}); err != nil {
		t.Fatal(err)
	}

	// Interrupted after a few documents.
	boom := errors.New("injected")
	f := &injector{count: map[string]int{}, fail: func(op string, n int) error {
		if op == "TransactWriteItems" && n >= 4 {
			return boom
		}
		return nil
	}}
	broken := emulator.DynamoDBClient(emulator.DynamoDB(t), f.option())
	first, err := dynamostore.MigrateReadModels(ctx, broken, table, dynamostore.MigrateOptions{Unlisted: []string{"_idempotency"}})
	if !errors.Is(err, boom) || first.Migrated+first.Dropped > 4 || first.Migrated < 3 {
		t.Fatalf("interrupted migration: %+v, %v", first, err)
	}
	// Resumed with parallel segments.
	st, err := dynamostore.MigrateReadModels(ctx, db, table, dynamostore.MigrateOptions{Unlisted: []string{"_idempotency"}, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	if first.Migrated+st.Migrated != len(docs)-1 || first.Dropped+st.Dropped != 1 {
		t.Fatalf("migration: %+v then %+v, want %d migrated and 1 dropped in all", first, st, len(docs)-1)
	}
	for k, raw := range docs {
		var got counterDoc
		ok, err := d.Get(ctx, k[0], k[1], &got)
		var want counterDoc
		_ = json.Unmarshal([]byte(raw), &want)
		if k[1] == "acc-newer" {
			want.N = 7
		}
		if err != nil || !ok || got != want {
			t.Errorf("%s/%s after migration: %+v %v %v, want %+v", k[0], k[1], got, ok, err, want)
		}
	}
	page, next, err := d.ListPage(ctx, "accounts", "acc-05", 3)
	if err != nil || len(page) != 3 || page[0].Key != "acc-06" || next != "acc-08" {
		t.Fatalf("page after acc-05: %v %q %v", page, next, err)
	}
	n := 0
	if err := d.List(ctx, "accounts", func(string, json.RawMessage) error { n++; return nil }); err != nil || n != 13 {
		t.Fatalf("listed %d accounts, %v; want 13", n, err)
	}
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: docKey("_idempotency", "req-1")})
	if err != nil || out.Item == nil {
		t.Fatalf("idempotency record: %v", err)
	}
	if e, _ := out.Item[infra.AttrExpiresAt].(*types.AttributeValueMemberN); e == nil || e.Value != "1893456000" {
		t.Errorf("idempotency record lost its TTL: %v", out.Item[infra.AttrExpiresAt])
	}
	if _, ok := out.Item[infra.AttrListPK]; ok {
		t.Errorf("idempotency record was put in the listing index")
	}
	scan, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil || int(scan.Count) != len(docs) {
		t.Fatalf("%d items after migration (%v), want %d: an old copy is left", scan.Count, err, len(docs))
	}
	st, err = dynamostore.MigrateReadModels(ctx, db, table, dynamostore.MigrateOptions{Unlisted: []string{"_idempotency"}, Segments: 3})
	if err != nil || st.Migrated != 0 || st.Dropped != 0 {
		t.Fatalf("second run: %+v %v, want nothing to do", st, err)
	}
}

// An old-shape document that changes while it is being moved (an old process still
// writing) is moved with its new value, not the one the scan read.
func TestMigrateReadModelsOldDocumentChangesMeanwhile(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	table := oldTable(t, db, map[[2]string]string{{"accounts", "a1"}: `{"n":1}`}, nil)
	f := &injector{count: map[string]int{}, fail: func(op string, n int) error {
		if op == "TransactWriteItems" && n == 0 {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
				infra.AttrPK: &types.AttributeValueMemberS{Value: "accounts"}, infra.AttrSK: &types.AttributeValueMemberS{Value: "a1"},
				infra.AttrDoc: &types.AttributeValueMemberS{Value: `{"n":2}`}, infra.AttrRev: &types.AttributeValueMemberN{Value: "99"}}})
			return err
		}
		return nil
	}}
	racing := emulator.DynamoDBClient(emulator.DynamoDB(t), f.option())
	st, err := dynamostore.MigrateReadModels(ctx, racing, table, dynamostore.MigrateOptions{})
	if err != nil || st.Migrated != 1 || f.count["TransactWriteItems"] != 2 {
		t.Fatalf("migration: %+v %v after %d transactions, want 1 migrated on the second", st, err, f.count["TransactWriteItems"])
	}
	var got counterDoc
	if ok, err := dynamostore.NewDocs(db, table).Get(ctx, "accounts", "a1", &got); err != nil || !ok || got.N != 2 {
		t.Fatalf("a1 after migration: %+v %v %v, want the value written meanwhile", got, ok, err)
	}
}
