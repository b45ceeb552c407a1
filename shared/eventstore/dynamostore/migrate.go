package dynamostore

import (
	"context"
	"errors"
	"fmt"
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

// MigrationStats counts what MigrateReadModels did.
type MigrationStats struct {
	Scanned  int // items read
	Migrated int // old-shape documents rewritten in the new shape
	Dropped  int // old-shape documents a new-shape write had already superseded
	Invalid  int // old-shape items whose collection or key the docstore refuses, left as they are
}

// maxMigrateAttempts bounds how often one document is retried when something changes it
// while it is being migrated.
const maxMigrateAttempts = 10

// MigrateOptions tune MigrateReadModels.
type MigrateOptions struct {
	// Unlisted collections get no listing-index attributes (as NewDocs's unlisted).
	Unlisted []string
	// Segments is how many parallel scan segments share the table (default 1).
	Segments int
}

// MigrateReadModels rewrites the read-model table's documents of the first key schema
// (pk = collection, sk = key, no "v") into the current one (pk = collection#key,
// sk = collection, v = 2, and the listing index's attributes unless the collection is
// unlisted). Run it once after the byCollection index exists (infra.Ensure or the
// template add it) and after the new code is deployed; until then the new code does not
// see old-shape documents. Each document moves in one transaction: the new item is put
// only if none exists, and the old one deleted only if unchanged, so the migration is
// idempotent and resumable (run it again after any failure: it finds only the documents
// still in the old shape), and a document the new code wrote meanwhile wins over the old
// copy, which is dropped.
func MigrateReadModels(ctx context.Context, db *dynamodb.Client, table string, opts MigrateOptions) (MigrationStats, error) {
	d := NewDocs(db, table, opts.Unlisted...)
	segments := max(opts.Segments, 1)
	expr, err := expression.NewBuilder().WithFilter(expression.AttributeNotExists(expression.Name(infra.AttrShape))).Build()
	if err != nil {
		return MigrationStats{}, fmt.Errorf("dynamodb: build scan: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var total MigrationStats
	errs := make([]error, segments)
	var wg sync.WaitGroup
	for seg := range segments {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st MigrationStats
			errs[seg] = d.migrateSegment(ctx, expr, int32(seg), int32(segments), &st)
			if errs[seg] != nil {
				cancel() // the others stop at their next request; a rerun resumes
			}
			mu.Lock()
			total.Scanned += st.Scanned
			total.Migrated += st.Migrated
			total.Dropped += st.Dropped
			total.Invalid += st.Invalid
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return total, err
		}
	}
	return total, errors.Join(errs...)
}

func (d *Docs) migrateSegment(ctx context.Context, expr expression.Expression, seg, segments int32, st *MigrationStats) error {
	var start map[string]types.AttributeValue
	for {
		var out *dynamodb.ScanOutput
		err := retrying(ctx, func() (err error) {
			out, err = d.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(d.table), ConsistentRead: aws.Bool(true),
				FilterExpression: expr.Filter(), ExpressionAttributeNames: expr.Names(),
				ExpressionAttributeValues: expr.Values(), ExclusiveStartKey: start,
				Segment: aws.Int32(seg), TotalSegments: aws.Int32(segments)})
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: scan: %w", d.table, err)
		}
		st.Scanned += int(out.ScannedCount)
		for _, item := range out.Items {
			if err := d.migrateOne(ctx, item, st); err != nil {
				return err
			}
		}
		if out.LastEvaluatedKey == nil {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

func (d *Docs) migrateOne(ctx context.Context, item map[string]types.AttributeValue, st *MigrationStats) error {
	for attempt := 0; ; attempt++ {
		var old docItem
		if err := attributevalue.UnmarshalMap(item, &old); err != nil {
			return fmt.Errorf("migrate: decode %v: %w", item[infra.AttrPK], err)
		}
		coll, key := old.PK, old.SK
		if docstore.CheckKey(coll, key) != nil {
			st.Invalid++
			return nil
		}
		nu, err := attributevalue.MarshalMap(newItem(docKey{coll, key}, []byte(old.Doc), old.Rev, !d.unlisted[coll]))
		if err != nil {
			return fmt.Errorf("migrate %s/%s: encode: %w", coll, key, err)
		}
		if old.ExpiresAt == 0 {
			delete(nu, infra.AttrExpiresAt)
		} else {
			nu[infra.AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(old.ExpiresAt, 10)}
		}
		oldKey := map[string]types.AttributeValue{infra.AttrPK: item[infra.AttrPK], infra.AttrSK: item[infra.AttrSK]}
		unchanged, err := expression.NewBuilder().WithCondition(expression.And(
			expression.AttributeNotExists(expression.Name(infra.AttrShape)),
			expression.Name(infra.AttrRev).Equal(expression.Value(old.Rev)))).Build()
		if err != nil {
			return fmt.Errorf("migrate: build condition: %w", err)
		}
		absent, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(infra.AttrPK))).Build()
		if err != nil {
			return fmt.Errorf("migrate: build condition: %w", err)
		}
		del := &types.Delete{TableName: aws.String(d.table), Key: oldKey, ConditionExpression: unchanged.Condition(),
			ExpressionAttributeNames: unchanged.Names(), ExpressionAttributeValues: unchanged.Values()}
		err = retrying(ctx, func() error {
			_, err := d.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
				{Put: &types.Put{TableName: aws.String(d.table), Item: nu, ConditionExpression: absent.Condition(),
					ExpressionAttributeNames: absent.Names(), ExpressionAttributeValues: absent.Values(),
					ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}},
				{Delete: del},
			}})
			return err
		})
		var cf *conditionFailed
		switch {
		case err == nil:
			st.Migrated++
			return nil
		case !errors.As(err, &cf):
			return fmt.Errorf("migrate %s/%s: %w", coll, key, err)
		}
		if _, newExists := cf.olds[0]; newExists {
			// The new code wrote this document since: its copy is the newer one.
			err := retrying(ctx, func() error {
				_, err := d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: del.TableName, Key: del.Key,
					ConditionExpression: del.ConditionExpression, ExpressionAttributeNames: del.ExpressionAttributeNames,
					ExpressionAttributeValues: del.ExpressionAttributeValues})
				return err
			})
			if err == nil {
				st.Dropped++
				return nil
			}
			if !errors.As(err, &cf) {
				return fmt.Errorf("migrate %s/%s: drop superseded copy: %w", coll, key, err)
			}
		}
		// The old item changed (or went) under us: read it again.
		if attempt+1 >= maxMigrateAttempts {
			return fmt.Errorf("migrate %s/%s: still changing after %d attempts: %w", coll, key, attempt+1, docstore.ErrConflict)
		}
		var got *dynamodb.GetItemOutput
		err = retrying(ctx, func() (err error) {
			got, err = d.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: oldKey, ConsistentRead: aws.Bool(true)})
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s/%s: %w", coll, key, err)
		}
		if got.Item == nil {
			return nil // deleted meanwhile: nothing to migrate
		}
		if _, isNew := got.Item[infra.AttrShape]; isNew {
			return nil
		}
		item = got.Item
	}
}
