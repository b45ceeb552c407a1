package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api"
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

// The server refuses to start on an address beyond loopback without ADMIN_TOKEN, before
// it opens the store or binds anything, and the error says what to set.
func TestRunRefusesExposedAddressWithoutToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		t.Run(addr, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("ADDR", addr)
			t.Setenv("ADMIN_TOKEN", "")
			t.Setenv("EVENT_STORE", "embedded")
			t.Setenv("DATA_DIR", filepath.Join(dir, "data"))
			err := run(slog.New(slog.DiscardHandler))
			if !errors.Is(err, api.ErrExposed) || !strings.Contains(err.Error(), "ADMIN_TOKEN") {
				t.Fatalf("run: %v, want the exposed-address refusal naming ADMIN_TOKEN", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
				t.Fatalf("the store was opened before the refusal: %v", err)
			}
		})
	}
}
