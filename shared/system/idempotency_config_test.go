package system_test

import (
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// IDEMPOTENCY_LEASE reaches the handler; unset, the handler's default applies.
func TestIdempotencyLeaseFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"5s", 5 * time.Second, true},
		{"2m", 2 * time.Minute, true},
		{"500ms", 0, false}, // shorter than a renewal round trip is worth
		{"-10s", 0, false},
		{"ten", 0, false},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("EVENT_STORE", "memory")
			t.Setenv("IDEMPOTENCY_LEASE", tc.env)
			c, err := system.FromEnv()
			if (err == nil) != tc.ok {
				t.Fatalf("IDEMPOTENCY_LEASE=%q: err %v, want ok=%v", tc.env, err, tc.ok)
			}
			if !tc.ok {
				return
			}
			s := memstore.New()
			sys := system.Assemble(c, system.Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}, quiet())
			if sys.Handler.IdempotencyLease != tc.want {
				t.Fatalf("handler lease %v, want %v", sys.Handler.IdempotencyLease, tc.want)
			}
		})
	}
}
