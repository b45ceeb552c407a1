package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api"
)

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
