// Command api is the HTTP API Lambda (API Gateway HTTP API, payload v2): the same handler
// as the local server, on DynamoDB, with the actor taken from the JWT subject.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/metrics"
	"github.com/ecmstore/ecmstore/shared/system"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := system.FromEnv()
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(1)
	}
	sys, err := system.Open(context.Background(), cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	sys.SetActor(api.JWTActor)
	lambda.Start(metrics.Flushed(metrics.NewEMF(os.Stdout, "api"), sys.Metrics, api.GatewayHandler(sys.Handler)))
}
