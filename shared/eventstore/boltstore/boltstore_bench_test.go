package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
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

// BenchmarkDisk measures the disk under the store, in the directory the store benchmarks
// use, so that `make bench` can print the append figures as multiples of it, measured in
// the same run:
//
//   - Disk/fsync-ceiling: append 512 bytes to a file and fsync it, in a loop. One writer
//     acknowledging durable appends one at a time cannot go faster than this.
//   - Disk/bbolt-commit: what a bbolt commit costs the disk at the least: 10 pages
//     rewritten in place and fdatasync'ed, then the meta page and a second fdatasync (the
//     order that keeps the file consistent on power loss). The store's 1-writer appends
//     are bounded by this figure, not by the ceiling.
func BenchmarkDisk(b *testing.B) {
	b.Run("fsync-ceiling", func(b *testing.B) {
		f := benchFile(b, 0)
		buf := make([]byte, 512)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "syncs/s")
	})
	b.Run("bbolt-commit", func(b *testing.B) {
		const pages = 1024
		f := benchFile(b, pages*4096)
		page := make([]byte, 4096)
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			for p := range 10 {
				if _, err := f.WriteAt(page, int64(2+(i*10+p)%(pages-2))*4096); err != nil {
					b.Fatal(err)
				}
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteAt(page, int64(i%2)*4096); err != nil {
				b.Fatal(err)
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
	})
}

// benchFile creates a file of size bytes, written and synced, so that rewriting it
// allocates nothing.
func benchFile(b *testing.B, size int) *os.File {
	f, err := os.Create(filepath.Join(b.TempDir(), "disk"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	if _, err := f.Write(make([]byte, size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return f
}
