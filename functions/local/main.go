// Command local runs the whole system in one process: the HTTP API on ADDR (default
// 127.0.0.1:8080) over the configured event store (the embedded file store by default),
// with projections fed in-process. `make run` starts it.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/system"
	"github.com/ecmstore/ecmstore/shared/system/embedded"
	"github.com/ecmstore/ecmstore/shared/system/postgres"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := system.FromEnv()
	if err != nil {
		return err
	}
	srvCfg, err := api.ServerConfigFromEnv()
	if err != nil {
		return err
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	// Checked before anything opens: an exposed server without a token never starts.
	access, err := api.LocalAccessFromEnv(addr)
	if err != nil {
		return err
	}
	sys, err := system.Open(ctx, cfg, log, embedded.Backend(), postgres.Backend(), system.WithAccess(access))
	if err != nil {
		return err
	}
	defer sys.Close()
	loopsCtx, stopLoops := context.WithCancel(context.Background())
	loopsDone := sys.Start(loopsCtx)

	srv := api.NewHTTPServer(addr, sys.Handler, srvCfg)
	// Bound before "listening" is logged, so a port in use is the only thing reported.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		stopLoops()
		<-loopsDone
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "eventStore", cfg.EventStore)

	select {
	case err := <-errc:
		stopLoops()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	stopLoops()
	<-loopsDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
