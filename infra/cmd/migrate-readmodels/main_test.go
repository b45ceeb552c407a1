package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// A table as the first key schema created it, with a parked event and an idempotency
// record in the old shape: after the command both read through the new code, and the
// parked event is listed.
func TestMigrateOldTable(t *testing.T) {
	ctx := context.Background()
	db := emulator.DynamoDBClient(emulator.DynamoDB(t))
	table := "cmd-old-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	in := infra.ReadModelTable(table)
	in.GlobalSecondaryIndexes, in.AttributeDefinitions = nil, in.AttributeDefinitions[:2]
	if _, err := db.CreateTable(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][3]string{{"parked:orders", "Order#1", `{"error":"boom"}`}, {api.IdempotencyCollection, "k1", `{"status":"done"}`}} {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
			infra.AttrPK: &types.AttributeValueMemberS{Value: kv[0]}, infra.AttrSK: &types.AttributeValueMemberS{Value: kv[1]},
			infra.AttrDoc: &types.AttributeValueMemberS{Value: kv[2]}, infra.AttrRev: &types.AttributeValueMemberN{Value: "5"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := migrate(ctx, db, table, 2, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "migrated 2 documents") {
		t.Fatalf("report: %s", out.String())
	}
	d := dynamostore.NewDocs(db, table, api.IdempotencyCollection)
	var rec map[string]string
	if ok, err := d.Get(ctx, api.IdempotencyCollection, "k1", &rec); err != nil || !ok || rec["status"] != "done" {
		t.Fatalf("idempotency record: %v %v %v", rec, ok, err)
	}
	page, _, err := d.ListPage(ctx, "parked:orders", "", 10)
	if err != nil || len(page) != 1 || page[0].Key != "Order#1" {
		t.Fatalf("parked events: %v %v", page, err)
	}
}
