// Command projector is the DynamoDB Streams Lambda: it applies each batch of event
// records to the read models in order, parks poison events in the SQS dead-letter queue
// and answers with a partial batch response (ReportBatchItemFailures).
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecmstore/ecmstore/shared/system"
)

func main() {
	sys := system.MustOpen(slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	lambda.Start(sys.Projector().Handle)
}
