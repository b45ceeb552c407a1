package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Expired idempotency records are purged; live ones stay and still replay.
func TestPurgeIdempotency(t *testing.T) {
	sys := system.Assemble(system.Config{EventStore: "memory"}, mustMemory(t), nil)
	c := &apitest.Client{T: t, H: sys.Handler}
	c.Must(201, "POST", "/accounts/p1/open", map[string]any{"initialDeposit": 10}, "Idempotency-Key", "k1")
	c.Must(201, "POST", "/accounts/p2/open", map[string]any{"initialDeposit": 10}, "Idempotency-Key", "k2")
	n, err := api.PurgeIdempotency(context.Background(), sys.Docs, time.Now())
	if err != nil || n != 0 {
		t.Fatalf("purge of live records: %d %v", n, err)
	}
	if r := c.Do("POST", "/accounts/p1/open", map[string]any{"initialDeposit": 10}, "Idempotency-Key", "k1"); r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("live record not replayed: %d", r.Status)
	}
	n, err = api.PurgeIdempotency(context.Background(), sys.Docs, time.Now().Add(25*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("purge a day later: %d %v", n, err)
	}
	// With the stored response gone, the retry still appends nothing: the repository
	// recognises the events whose ids derive from the key.
	r := c.Do("POST", "/accounts/p1/open", map[string]any{"initialDeposit": 10}, "Idempotency-Key", "k1")
	if r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") == "true" || r.Num("version") != "1" {
		t.Fatalf("after purge: %d %s", r.Status, r.Raw)
	}
	if n := len(c.Events("/accounts/p1")); n != 1 {
		t.Fatalf("retry after purge appended: %d events", n)
	}
}
