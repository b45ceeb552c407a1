package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8} {
		name := "sequential"
		if writers > 1 {
			name = fmt.Sprintf("%dwriters", writers)
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, emulator.Postgres(b))
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

func BenchmarkReplay(b *testing.B) {
	s := open(b, emulator.Postgres(b))
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
		if evs, err := s.Load(context.Background(), st, eventstore.Range{}); err != nil || len(evs) != 10000 {
			b.Fatal(len(evs), err)
		}
	}
	b.ReportMetric(float64(b.N)*10000/time.Since(start).Seconds(), "events/s")
}

func BenchmarkFeed(b *testing.B) {
	s := open(b, emulator.Postgres(b))
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
