// Command redrive consumes the dead-letter queue: parked events and Lambda's on-failure
// records for stream batches. It re-applies the affected aggregates in order from the
// events table and reports what still fails as batch item failures.
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecmstore/ecmstore/shared/system"
)

func main() {
	sys := system.MustOpen(slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	lambda.Start(sys.Redriver().Handle)
}
