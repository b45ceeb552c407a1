// Command rebuild is the rebuild function: fed by the rebuild queue (REBUILD_QUEUE_URL),
// it steps a projection's rebuild job until the job is done or the invocation nears its
// deadline, then queues the message that continues the job in the next invocation.
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecmstore/ecmstore/shared/system"
)

func main() {
	sys := system.MustOpen(slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	lambda.Start(sys.RebuildWorker().Handle)
}
