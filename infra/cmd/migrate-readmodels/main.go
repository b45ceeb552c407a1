// Command migrate-readmodels moves a read-model table of the first key schema
// (pk = collection, sk = key) to the current one (pk = collection#key, sk = collection,
// listed through the GSI byCollection): it adds the index if the table lacks it (on AWS
// the template already has) and waits for it to be ACTIVE, then rewrites every old-shape
// document (dynamostore.MigrateReadModels). Idempotent and resumable: run it again after
// any failure. Deploy the new code first; until the rewrite ends, the new code does not
// see old-shape documents (projection read models can also be rebuilt from the events,
// but dead letters and idempotency records cannot, so run this).
//
//	READMODEL_TABLE=ecm-readmodels [MIGRATE_SEGMENTS=4] go run ./infra/cmd/migrate-readmodels
//
// MIGRATE_SEGMENTS parallel scan segments share the table (default 4).
//
// The AWS SDK's standard configuration applies (AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB for
// emulators or LocalStack, credentials).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aws config:", err)
		os.Exit(1)
	}
	if os.Getenv("AWS_ENDPOINT_URL_DYNAMODB") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" {
		if cfg.Region == "" {
			cfg.Region = "us-east-1"
		}
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			cfg.Credentials = credentials.NewStaticCredentialsProvider("local", "local", "")
		}
	}
	table := os.Getenv("READMODEL_TABLE")
	if table == "" {
		table = infra.DefaultReadModelTable
	}
	segments := 4
	if v := os.Getenv("MIGRATE_SEGMENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fmt.Fprintln(os.Stderr, "MIGRATE_SEGMENTS must be an integer from 1 to 1000")
			os.Exit(2)
		}
		segments = n
	}
	if err := migrate(ctx, dynamodb.NewFromConfig(cfg), table, segments, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "migrate-readmodels:", err)
		os.Exit(1)
	}
}

func migrate(ctx context.Context, db *dynamodb.Client, table string, segments int, out io.Writer) error {
	if err := infra.EnsureReadModelIndex(ctx, db, table); err != nil {
		return err
	}
	st, err := dynamostore.MigrateReadModels(ctx, db, table, dynamostore.MigrateOptions{
		Unlisted: []string{api.IdempotencyCollection}, Segments: segments})
	fmt.Fprintf(out, "%s: scanned %d items, migrated %d documents, dropped %d superseded copies, left %d invalid\n",
		table, st.Scanned, st.Migrated, st.Dropped, st.Invalid)
	return err
}
