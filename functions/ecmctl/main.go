// Command ecmctl is the operator's command line (package shared/ecmctl): projections,
// dead letters, streams and events through the HTTP API or on a store directly, and
// export, import and migrate between backends.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ecmstore/ecmstore/shared/ecmctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ecmctl.Execute(ctx)
	stop()
	os.Exit(code)
}
