// Command backfillindex puts every event of the events table into the index table: the
// migration step for a table written before the index existed, and the way to re-fill an
// index emptied to change its shard count. It scans the events table in parallel
// segments; index puts are idempotent, so it may run while the projector is live, and
// again after a failure.
//
//	go run ./infra/cmd/backfillindex [-events ecm-events] [-index ecm-index] [-shards 16] [-segments 4]
//
// The AWS configuration is the SDK's default chain (AWS_PROFILE, AWS_REGION,
// AWS_ENDPOINT_URL_DYNAMODB for an emulator). -shards must equal the deployment's
// INDEX_SHARDS. `make backfill-index` runs it with the defaults.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

func main() {
	events := flag.String("events", envOr("EVENTS_TABLE", infra.DefaultEventsTable), "events table")
	index := flag.String("index", envOr("INDEX_TABLE", infra.DefaultIndexTable), "index table")
	shards := flag.Int("shards", dynamostore.DefaultIndexShards, "the index's shard count (INDEX_SHARDS of the deployment)")
	segments := flag.Int("segments", 4, "parallel scan segments")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	n, err := run(ctx, log, *events, *index, *shards, *segments)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backfillindex:", err)
		os.Exit(1)
	}
	log.Info("index filled", "events", n, "eventsTable", *events, "indexTable", *index, "shards", *shards)
}

func run(ctx context.Context, log *slog.Logger, events, index string, shards, segments int) (int64, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return 0, fmt.Errorf("aws config: %w", err)
	}
	db := dynamodb.NewFromConfig(cfg)
	ix := dynamostore.NewIndexer(db, dynamostore.IndexConfig{Table: index, Shards: shards}, log)
	return dynamostore.BackfillIndex(ctx, db, events, ix, segments)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
