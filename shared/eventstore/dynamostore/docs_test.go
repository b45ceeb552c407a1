package dynamostore_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

type counterDoc struct {
	N int `json:"n"`
}

// A transaction that read a document must not commit over a change to it, even when the
// document went away and came back, or was overwritten without being read: revisions
// never come back to a value a transaction may have read.
func TestDocsNoABA(t *testing.T) {
	ctx := context.Background()
	db, _, models := env(t)
	d := dynamostore.NewDocs(db, models)
	put := func(coll, key string, n int) func(context.Context, docstore.Tx) error {
		return func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, coll, key, counterDoc{N: n}) }
	}
	for _, tc := range []struct {
		name      string
		interfere func(coll string) error
	}{
		{"deleted and created again", func(coll string) error {
			if err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return tx.Delete(ctx, coll, "x") }); err != nil {
				return err
			}
			return d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
				var c counterDoc
				if ok, err := tx.Get(ctx, coll, "x", &c); err != nil || ok {
					return err
				}
				return tx.Put(ctx, coll, "x", counterDoc{N: 2})
			})
		}},
		{"overwritten blind", func(coll string) error { return d.Update(ctx, put(coll, "x", 3)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coll := uniqueStream("aba").ID
			if err := d.Update(ctx, put(coll, "x", 1)); err != nil {
				t.Fatal(err)
			}
			rounds := 0
			err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
				rounds++
				var x counterDoc
				if _, err := tx.Get(ctx, coll, "x", &x); err != nil {
					return err
				}
				if rounds == 1 {
					if err := tc.interfere(coll); err != nil {
						return err
					}
				}
				return tx.Put(ctx, coll, "copy", x)
			})
			if err != nil {
				t.Fatal(err)
			}
			var x, cp counterDoc
			if _, err := d.Get(ctx, coll, "x", &x); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Get(ctx, coll, "copy", &cp); err != nil {
				t.Fatal(err)
			}
			if rounds != 2 || cp != x {
				t.Fatalf("copy %+v of x %+v after %d runs: the commit missed the change", cp, x, rounds)
			}
		})
	}
}

// A document's top-level numeric expiresAt becomes the table's TTL attribute.
func TestDocsExpiresAt(t *testing.T) {
	ctx := context.Background()
	db, _, models := env(t)
	d := dynamostore.NewDocs(db, models)
	coll := uniqueStream("ttl").ID
	for _, tc := range []struct {
		name string
		doc  string
		want string // the attribute, "" for none
	}{
		{"integer", `{"expiresAt":1893456000,"result":{}}`, "1893456000"},
		{"fraction", `{"expiresAt":1893456000.75}`, "1893456000"},
		{"string", `{"expiresAt":"tomorrow"}`, ""},
		{"nested", `{"record":{"expiresAt":1893456000}}`, ""},
		{"none", `{"n":1}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
				return tx.Put(ctx, coll, tc.name, json.RawMessage(tc.doc))
			})
			if err != nil {
				t.Fatal(err)
			}
			out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(models), Key: docKey(coll, tc.name)})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if n, ok := out.Item[infra.AttrExpiresAt].(*types.AttributeValueMemberN); ok {
				got = n.Value
			}
			if got != tc.want {
				t.Fatalf("expiresAt attribute %q, want %q", got, tc.want)
			}
		})
	}
}
