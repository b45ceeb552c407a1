package system_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// partitionCounts scans a table and counts its items per partition key value.
func partitionCounts(t *testing.T, sys *system.System, table string) map[string]int {
	t.Helper()
	out := map[string]int{}
	var start map[string]dbtypes.AttributeValue
	for {
		page, err := sys.AWS.DynamoDB.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table),
			ProjectionExpression: aws.String("pk"), ExclusiveStartKey: start})
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		for _, item := range page.Items {
			out[item["pk"].(*dbtypes.AttributeValueMemberS).Value]++
		}
		if page.LastEvaluatedKey == nil {
			return out
		}
		start = page.LastEvaluatedKey
	}
}

// hottest is the partition key holding most items, and its share of the table.
func hottest(counts map[string]int) (string, int, int) {
	total, top, key := 0, 0, ""
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		total += counts[k]
		if counts[k] > top {
			top, key = counts[k], k
		}
	}
	return key, top, total
}

// Many events of one type over many aggregates, through the running system (HTTP
// handler, events table, stream poller, indexer, projections): no partition key of the
// events or index table holds more than a small share of the items, where the old byType
// GSI put every one of them on one key. The index spreads each (dimension, hour) over
// INDEX_SHARDS keys; correlation ids and streams have a key each.
func TestNoHotPartitionOnDynamoDB(t *testing.T) {
	const accounts = 240
	sys := dynamoSystem(t)
	c := &apitest.Client{T: t, H: sys.Handler}
	since := time.Now().Add(-time.Minute).UTC()
	ids := make(chan string)
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if r := c.Do("POST", "/accounts/"+id+"/open", map[string]any{"initialDeposit": 1}); r.Status != 201 {
					t.Errorf("open %s: %d %s", id, r.Status, r.Raw)
				}
			}
		}()
	}
	for i := range accounts {
		ids <- apitest.ID(fmt.Sprint("hot", i))
	}
	close(ids)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The index trails the stream: wait until every account's event is found.
	c.Eventually(2*time.Minute, func() string {
		n := 0
		f := eventstore.Filter{EventType: bank.AccountOpened, Since: since, Limit: eventstore.MaxPageSize}
		for {
			p, err := sys.Store.Query(context.Background(), f)
			if err != nil {
				return err.Error()
			}
			n += len(p.Events)
			if p.NextCursor == "" {
				break
			}
			f.Cursor = p.NextCursor
		}
		if n != accounts {
			return fmt.Sprintf("%d of %d AccountOpened events indexed", n, accounts)
		}
		return ""
	})
	for _, tc := range []struct {
		table    string
		maxShare float64 // of the table's items, on any one partition key
	}{
		// One stream per account: 1/240 each.
		{sys.Config.EventsTable, 0.02},
		// 240 events × (all, type, aggregate type) over 32 shards, plus one correlation
		// key each: about 15 items of 960 on the fullest shard key (uneven hashing
		// allowed for). The registry keys hold one item per hour.
		{sys.Config.IndexTable, 0.05},
		// One document per partition key: an account's read model, its projection guard,
		// idempotency records.
		{sys.Config.ReadModelTable, 0.02},
	} {
		key, top, total := hottest(partitionCounts(t, sys, tc.table))
		share := float64(top) / float64(total)
		t.Logf("%s: %d items, hottest key %q holds %d (%.1f%%)", tc.table, total, key, top, 100*share)
		if total < accounts || share > tc.maxShare {
			t.Errorf("%s: hottest key %q holds %d of %d items (%.1f%%), want at most %.0f%%", tc.table, key, top, total, 100*share, 100*tc.maxShare)
		}
	}
}
