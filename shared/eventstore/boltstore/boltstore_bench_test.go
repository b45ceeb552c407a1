package boltstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

// BenchmarkStore is the suite every backend runs: Append/sequential, Append/8writers
// (appends/s, each acknowledged durably), Replay (a 10 000-event stream, events/s) and
// Feed (ReadAll, events/s).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) eventstore.Backend { return open(b, filepath.Join(b.TempDir(), "bench.db")) })
}

// BenchmarkDocs measures document updates the way projections and idempotency records
// make them (a guard read, a read-model write and a guard write), from one goroutine and
// from 8, each durable on return.
func BenchmarkDocs(b *testing.B) {
	for _, writers := range []int{1, 8} {
		name := "Update/sequential"
		if writers > 1 {
			name = fmt.Sprintf("Update/%dwriters", writers)
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "bench.db"))
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						key := fmt.Sprintf("w%d-%d", w, n%64)
						err := s.Update(context.Background(), func(ctx context.Context, tx docstore.Tx) error {
							var g struct{ Version int64 }
							if _, err := tx.Get(ctx, "guards", key, &g); err != nil {
								return err
							}
							g.Version++
							if err := tx.Put(ctx, "accounts", key, map[string]int64{"balance": n}); err != nil {
								return err
							}
							return tx.Put(ctx, "guards", key, g)
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "updates/s")
		})
	}
}
