package storetest

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// BenchConstructor returns a backend for one benchmark.
type BenchConstructor func(b *testing.B) eventstore.Backend

// Bench is the benchmark suite every backend runs, as Run is its test suite:
// appends/s with one writer and with 8 writers on distinct streams (one event per
// append, each acknowledged durably), replay of a 10 000-event stream, and the global feed
// where the backend has one.
func Bench(b *testing.B, newBackend BenchConstructor) {
	for _, writers := range []int{1, 8} {
		name := "Append/sequential"
		if writers > 1 {
			name = fmt.Sprintf("Append/%dwriters", writers)
		}
		b.Run(name, func(b *testing.B) { benchAppend(b, newBackend(b), writers) })
	}
	b.Run("Replay", func(b *testing.B) { benchReplay(b, newBackend(b)) })
	b.Run("Feed", func(b *testing.B) {
		s := newBackend(b)
		f, ok := s.(eventstore.Feed)
		if !ok {
			b.Skip("no global feed on this backend") // a benchmark, not a test: nothing to measure
		}
		benchFeed(b, s, f)
	})
}

func benchAppend(b *testing.B, s eventstore.Store, writers int) {
	payload := event.MustNew("Deposited", map[string]int{"amount": 500})
	prefix := unique("bench")
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := eventstore.Stream{Type: "Bench", ID: fmt.Sprintf("%s-w%d", prefix, w)}
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
}

func benchReplay(b *testing.B, s eventstore.Store) {
	st := eventstore.Stream{Type: "Bench", ID: unique("long")}
	for v := int64(0); v < 10000; v += 100 {
		if _, err := s.Append(context.Background(), st, v, drafts("Deposited", 100)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	m := startAllocs()
	start := time.Now()
	for range b.N {
		if evs, err := s.Load(context.Background(), st, eventstore.Range{}); err != nil || len(evs) != 10000 {
			b.Fatal(len(evs), err)
		}
	}
	b.ReportMetric(float64(b.N)*10000/time.Since(start).Seconds(), "events/s")
	m.report(b, b.N*10000)
}

// allocCount measures a benchmark's allocations per event read, the figure that decides
// how much of a replay the garbage collector costs.
type allocCount struct{ mallocs, bytes uint64 }

func startAllocs() allocCount {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return allocCount{ms.Mallocs, ms.TotalAlloc}
}

func (a allocCount) report(b *testing.B, events int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Mallocs-a.mallocs)/float64(events), "allocs/event")
	b.ReportMetric(float64(ms.TotalAlloc-a.bytes)/float64(events), "B/event")
}

func benchFeed(b *testing.B, s eventstore.Store, f eventstore.Feed) {
	head, _ := f.Head(context.Background())
	for range 100 {
		if _, err := s.Append(context.Background(), eventstore.Stream{Type: "Bench", ID: unique("feed")}, 0, drafts("Deposited", 100)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	m := startAllocs()
	start := time.Now()
	read := 0
	for range b.N {
		for after := head; ; {
			page, err := f.ReadAll(context.Background(), after, 500)
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
	m.report(b, read)
}
