package perf

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Workload of BenchmarkProjections: catch-up over a backlog of deposits on projAccounts
// accounts, then commands at 200/s (PROJ_RATE overrides it) for a warm-up and a measured
// stretch. PROJ_QUICK=1 shortens everything (a look while changing code, not a figure).
const projAccounts = 100

// projTimes returns the warm-up, the measured stretch and the backlog divisor.
func projTimes() (warmUp, measure time.Duration, scale int) {
	if os.Getenv("PROJ_QUICK") != "" {
		return 5 * time.Second, 5 * time.Second, 4
	}
	return 20 * time.Second, 10 * time.Second, 1
}

// BenchmarkProjections measures, per backend, the accounts projection from the event
// store to the read model: catch-up (a backlog appended with the projections stopped,
// then started: events/s until the read model holds every account's last version), and
// lag at a steady command rate (time from the command's answer to the read model having
// applied its event, p50 / p99, after a warm-up). Memory, embedded and PostgreSQL run the
// in-process feed runner; DynamoDB Local runs the stream poller, as `make run-emulated`
// does (the projector indexes each batch before projecting it).
func BenchmarkProjections(b *testing.B) {
	rate := 200
	projWarmUp, projMeasure, projScale := projTimes()
	if v, err := strconv.Atoi(os.Getenv("PROJ_RATE")); err == nil && v > 0 {
		rate = v
	}
	backends := []struct {
		name    string
		backlog int
		open    func(b *testing.B, w *wire) (system.Config, system.Backend)
	}{
		{"memory", 20000, func(b *testing.B, _ *wire) (system.Config, system.Backend) {
			s := memstore.New()
			return system.Config{EventStore: "memory"}, system.Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}
		}},
		{"embedded", 10000, func(b *testing.B, _ *wire) (system.Config, system.Backend) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			return system.Config{EventStore: "embedded"}, system.Backend{Store: s, Feed: s, Docs: s, Close: s.Close}
		}},
		{"postgres", 10000, func(b *testing.B, _ *wire) (system.Config, system.Backend) {
			s, err := pgstore.Open(context.Background(), emulator.Postgres(b))
			if err != nil {
				b.Fatal(err)
			}
			return system.Config{EventStore: "postgres"}, system.Backend{Store: s, Feed: s, Docs: s, Wake: s.Notify, Close: s.Close}
		}},
		{"dynamodb", 2000, openDynamoDBForProjections},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			w := newWire()
			c, back := be.open(b, w)
			c.SnapshotEvery = 50
			rec := &applied{at: map[string]time.Time{}}
			back.Docs = &recordingDocs{Store: back.Docs, rec: rec}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			sys := system.Assemble(c, back, log)
			ctx, cancel := context.WithCancel(context.Background())
			var done <-chan struct{}
			defer func() {
				cancel()
				if done != nil {
					<-done
				}
				_ = sys.Close()
			}()

			// The backlog, appended with the projections stopped.
			n := be.backlog / projScale
			last := backlog(b, sys, n)
			began := time.Now()
			w.start()
			done = sys.Start(ctx)
			waitApplied(b, rec, last, 10*time.Minute)
			catchUp := float64(n) / time.Since(began).Seconds()
			if counts := w.stop(); counts.requests > 0 {
				fmt.Printf("projections %-9s catch-up, DynamoDB requests per event: %s\n", be.name, counts.per(int64(n)))
			}

			// Steady load through the HTTP handler (in process), open loop.
			warm := load(b, sys.Handler, rate, projWarmUp, last)
			waitApplied(b, rec, warm.last, 2*time.Minute)
			m := load(b, sys.Handler, rate, projMeasure, warm.last)
			waitApplied(b, rec, m.last, 2*time.Minute)
			lags := make([]time.Duration, 0, len(m.acked))
			for k, at := range m.acked {
				lags = append(lags, max(rec.get(k).Sub(at), 0))
			}
			slices.Sort(lags)
			pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
			fmt.Printf("projections %-9s catch-up %8.0f events/s (%d events) | at %d commands/s (%.0f answered/s): lag p50 %v p99 %v max %v (%d commands; warm-up %v: p99 %v, %d commands not answered 200: %v)\n",
				be.name, catchUp, n, rate, float64(len(m.acked))/projMeasure.Seconds(), pct(0.50).Round(100*time.Microsecond),
				pct(0.99).Round(100*time.Microsecond), lags[len(lags)-1].Round(100*time.Microsecond), len(lags), projWarmUp,
				warm.p99(rec).Round(100*time.Microsecond), warm.failed+m.failed, mergeCounts(warm.codes, m.codes))
			b.ReportMetric(catchUp, "catchup-events/s")
			b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "lag-p50-ms")
			b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "lag-p99-ms")
		})
	}
}

func openDynamoDBForProjections(b *testing.B, w *wire) (system.Config, system.Backend) {
	ctx := context.Background()
	awsCfg := emulatorEnv(b)
	s := strconv.FormatInt(time.Now().UnixNano(), 36)
	c := system.Config{EventStore: "dynamodb", EventsTable: "ev-" + s, ReadModelTable: "rm-" + s, IndexTable: "ix-" + s,
		DLQName: "dlq-" + s, SagaDLQName: "sdlq-" + s, EndpointOverride: true, EnsureResources: true, StreamPoller: true}
	back, err := system.DynamoDBBackend(ctx, c, awsCfg, slog.New(slog.NewTextHandler(io.Discard, nil)), w.option)
	if err != nil {
		b.Fatal(err)
	}
	return c, back
}

// backlog opens the accounts and deposits until n events are stored, from 8 writers,
// through the repository (no projection runs yet). It returns each account's last version.
func backlog(b *testing.B, sys *system.System, n int) map[string]int64 {
	ctx := context.Background()
	one, err := money.Parse("1")
	if err != nil {
		b.Fatal(err)
	}
	last := map[string]int64{}
	var mu sync.Mutex
	errs := make(chan error, 8)
	// Opens first, then the deposits.
	accounts := bank.NewRepository(api.Env{Store: sys.Store, Docs: sys.Docs, Aggregate: sys.AggregateConfig})
	for _, span := range [][2]int{{0, projAccounts}, {projAccounts, n}} {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := span[0] + w; i < span[1]; i += 8 {
					id := fmt.Sprintf("acc-%d", i%projAccounts)
					cmd := bank.Deposit(one, "")
					if i < projAccounts {
						cmd = bank.Open(one)
					}
					res, err := accounts.Execute(ctx, id, cmd, aggregate.Options{})
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					last[id] = max(last[id], res.Version)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return last
}

// stretch is one stretch of steady load: when each command was answered, by read-model
// key, and each account's last version.
type stretch struct {
	acked  map[string]time.Time
	last   map[string]int64
	failed int
	codes  map[string]int
}

func (s stretch) p99(rec *applied) time.Duration {
	var lags []time.Duration
	for k, at := range s.acked {
		lags = append(lags, max(rec.get(k).Sub(at), 0))
	}
	if len(lags) == 0 {
		return 0
	}
	slices.Sort(lags)
	return lags[min(len(lags)-1, len(lags)*99/100)]
}

func mergeCounts(a, c map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		out[k] += v
	}
	for k, v := range c {
		out[k] += v
	}
	return out
}

// load sends deposits at rate/s for d (open loop: one goroutine per command, accounts
// in turn) through h, without If-Match or Idempotency-Key.
func load(b *testing.B, h http.Handler, rate int, d time.Duration, from map[string]int64) stretch {
	st := stretch{acked: map[string]time.Time{}, last: map[string]int64{}, codes: map[string]int{}}
	for k, v := range from {
		st.last[k] = v
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	stop := time.Now().Add(d)
	for i := 0; time.Now().Before(stop); i++ {
		<-tick.C
		id := fmt.Sprintf("acc-%d", i%projAccounts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodPost, "/accounts/"+id+"/deposit", bytes.NewBufferString(`{"amount":1}`))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			at := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if w.Code != http.StatusOK {
				st.failed++
				st.codes[fmt.Sprintf("%d %.80s", w.Code, w.Body.String())]++
				return
			}
			v, _ := strconv.ParseInt(w.Header().Get("x-ecm-version"), 10, 64)
			st.acked[docKey(id, v)] = at
			st.last[id] = max(st.last[id], v)
		}()
	}
	wg.Wait()
	if len(st.acked) == 0 {
		b.Fatalf("no command answered 200: %v", st.codes)
	}
	for k := range st.codes {
		if strings.HasPrefix(k, "409 ") {
			b.Fatalf("a deposit without If-Match answered 409: %v", st.codes)
		}
	}
	return st
}

// waitApplied waits until the read model has applied every account's last version.
func waitApplied(b *testing.B, rec *applied, last map[string]int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		missing := ""
		for id, v := range last {
			if rec.get(docKey(id, v)).IsZero() {
				missing = docKey(id, v)
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("read model still without %s after %v", missing, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func docKey(id string, v int64) string { return id + "@" + strconv.FormatInt(v, 10) }

// applied records when the accounts read model first committed each account version.
type applied struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (a *applied) get(k string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[k]
}

// recordingDocs is the backend's document store, noting when each account version's
// read-model document commits.
type recordingDocs struct {
	docstore.Store
	rec *applied
}

func (d *recordingDocs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	var puts []string
	err := d.Store.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		puts = puts[:0] // fn may run again on a conflict
		return fn(ctx, &recordingTx{Tx: tx, puts: &puts})
	})
	if err == nil && len(puts) > 0 {
		now := time.Now()
		d.rec.mu.Lock()
		for _, k := range puts {
			if _, ok := d.rec.at[k]; !ok {
				d.rec.at[k] = now
			}
		}
		d.rec.mu.Unlock()
	}
	return err
}

type recordingTx struct {
	docstore.Tx
	puts *[]string
}

func (t *recordingTx) Put(ctx context.Context, coll, key string, v any) error {
	if view, ok := v.(bank.View); ok && coll == bank.AccountsCollection {
		*t.puts = append(*t.puts, docKey(key, view.Version))
	}
	return t.Tx.Put(ctx, coll, key, v)
}
