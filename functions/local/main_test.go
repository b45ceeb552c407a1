package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
)

// A port in use is reported as the bind error alone: "listening" is logged only once the
// socket is bound.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("ADDR", ln.Addr().String())
	t.Setenv("EVENT_STORE", "memory")
	var logs bytes.Buffer
	err = run(slog.New(slog.NewJSONHandler(&logs, nil)))
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("run on a port in use: %v, want EADDRINUSE", err)
	}
	if strings.Contains(logs.String(), "listening") {
		t.Fatalf("logged listening before the bind failed:\n%s", logs.String())
	}
}
