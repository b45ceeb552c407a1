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
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

// BenchmarkStore is the suite every backend runs: Append/sequential and Append/8writers
// (appends/s), Replay (a 10 000-event stream, events/s) and Feed (ReadAll, events/s).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) eventstore.Backend { return open(b, emulator.Postgres(b)) })
}

// BenchmarkAppendTwoProcesses: 8 writers split over two stores on one database, so two
// committers contend for the append lock, as two processes would.
func BenchmarkAppendTwoProcesses(b *testing.B) {
	dsn := emulator.Postgres(b)
	stores := []eventstore.Store{open(b, dsn), open(b, dsn)}
	payload := event.MustNew("Deposited", map[string]int{"amount": 500})
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := eventstore.Stream{Type: "Bench", ID: fmt.Sprintf("two-%d-w%d", time.Now().UnixNano(), w)}
			for v := int64(0); next.Add(1) <= int64(b.N); v++ {
				if _, err := stores[w%2].Append(context.Background(), st, v, []event.Event{payload}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkReplayFloor is what PostgreSQL itself takes to hand over the rows of a
// 10,000-event stream, read the way Load reads them (same index, same order) but only
// the position column, the rows discarded unread: no replay through this server can be
// faster. `make bench` prints Replay against it.
func BenchmarkReplayFloor(b *testing.B) {
	s := open(b, emulator.Postgres(b))
	ctx := context.Background()
	st := eventstore.Stream{Type: "Bench", ID: fmt.Sprintf("floor-%d", time.Now().UnixNano())}
	for v := int64(0); v < 10000; v += 100 {
		evs := make([]event.Event, 100)
		for i := range evs {
			evs[i] = event.MustNew("Deposited", map[string]int{"amount": 500})
		}
		if _, err := s.Append(ctx, st, v, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	n := 0
	for range b.N {
		rows, err := s.Pool().Query(ctx, `SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
			AND version BETWEEN 1 AND 4611686018427387904 ORDER BY version`, st.Type, st.ID)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
	}
	if n != b.N*10000 {
		b.Fatalf("%d rows, want %d", n, b.N*10000)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
}
