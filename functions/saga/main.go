// Command saga is the order-fulfilment saga's Lambda on the events stream: for each order
// event it issues the next commands (payment, stock reservation, confirmation or
// compensation), idempotently, with the causing event as causation.
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
	handle := metrics.StreamBatch(sys.Metrics, sys.StreamHandler(projection.IsReactor).Handle)
	lambda.Start(metrics.Flushed(metrics.NewEMF(os.Stdout, "saga"), sys.Metrics, handle))
}
