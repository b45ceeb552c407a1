// Command api is the HTTP API Lambda (API Gateway HTTP API, payload v2): the same handler
// as the local server, on DynamoDB, with the actor taken from the JWT subject and access
// decided by its claims (ACCESS_POLICY, ADMIN_SCOPE, ADMIN_GROUP).
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
	access, err := api.GatewayAccessFromEnv()
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(1)
	}
	sys, err := system.Open(context.Background(), cfg, log, system.WithActor(api.JWTActor), system.WithAccess(access))
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	lambda.Start(metrics.Flushed(metrics.NewEMF(os.Stdout, "api"), sys.Metrics, api.GatewayHandler(sys.Handler)))
}
