// Command redrive consumes a dead-letter queue: parked events and Lambda's on-failure
// records for stream batches. It re-applies the affected aggregates in order from the
// events table and reports what still fails as batch item failures. template.yaml
// deploys it twice: REDRIVE_SCOPE=read-models on the read models' queue (a role that
// cannot write events) and REDRIVE_SCOPE=sagas on the saga's (a role that may append
// the commands a redriven saga step issues).
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecmstore/ecmstore/shared/metrics"
	"github.com/ecmstore/ecmstore/shared/system"
)

func main() {
	sys := system.MustOpen(slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	// One Function dimension per deployment: redrive-read-models, redrive-sagas.
	emf := metrics.NewEMF(os.Stdout, "redrive-"+sys.Config.RedriveScope)
	lambda.Start(metrics.Flushed(emf, sys.Metrics, metrics.QueueBatch(sys.Metrics, sys.Redriver().Handle)))
}
