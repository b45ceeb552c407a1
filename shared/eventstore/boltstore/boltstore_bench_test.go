package boltstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// BenchmarkAppend: one event per append, every append durable (fsync) before it returns.
// "8writers" runs 8 goroutines on distinct streams; group commit lets them share fsyncs.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8} {
		name := "sequential"
		if writers > 1 {
			name = fmt.Sprintf("%dwriters", writers)
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "bench.db"))
			payload := event.MustNew("Deposited", map[string]int{"amount": 500})
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st := eventstore.Stream{Type: "Bench", ID: fmt.Sprintf("w%d", w)}
					for v := int64(0); next.Add(1) <= int64(b.N); v++ {
						if _, err := s.Append(context.Background(), st, v, []event.Event{payload}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkReplay loads a 10 000-event stream.
func BenchmarkReplay(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "bench.db"))
	st := eventstore.Stream{Type: "Bench", ID: "long"}
	for v := int64(0); v < 10000; v += 100 {
		evs := make([]event.Event, 100)
		for i := range evs {
			evs[i] = event.MustNew("Deposited", map[string]int{"amount": i})
		}
		if _, err := s.Append(context.Background(), st, v, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		evs, err := s.Load(context.Background(), st, eventstore.Range{})
		if err != nil || len(evs) != 10000 {
			b.Fatal(len(evs), err)
		}
	}
	b.ReportMetric(float64(b.N)*10000/time.Since(start).Seconds(), "events/s")
}

// BenchmarkFeed reads the global feed in pages of 500.
func BenchmarkFeed(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "bench.db"))
	for i := range 100 {
		evs := make([]event.Event, 100)
		for j := range evs {
			evs[j] = event.MustNew("Deposited", map[string]int{"amount": j})
		}
		if _, err := s.Append(context.Background(), eventstore.Stream{Type: "Bench", ID: fmt.Sprint(i)}, 0, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	read := 0
	for range b.N {
		for after := uint64(0); ; {
			page, err := s.ReadAll(context.Background(), after, 500)
			if err != nil {
				b.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			read += len(page)
			after = page[len(page)-1].Position
		}
	}
	b.ReportMetric(float64(read)/time.Since(start).Seconds(), "events/s")
}
