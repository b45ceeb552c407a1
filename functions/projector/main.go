// Command projector is the DynamoDB Streams Lambda for the read models: it applies each
// batch of event records in order, parks poison events in the SQS dead-letter queue and
// answers with a partial batch response (ReportBatchItemFailures). Sagas run in their
// own function (functions/saga) on the same stream.
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecmstore/ecmstore/shared/metrics"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/system"
)

func main() {
	sys := system.MustOpen(slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	readModels := func(p projection.Projection) bool { return !projection.IsReactor(p) }
	handle := metrics.StreamBatch(sys.Metrics, sys.StreamHandler(readModels).Handle)
	lambda.Start(metrics.Flushed(metrics.NewEMF(os.Stdout, "projector"), sys.Metrics, handle))
}
