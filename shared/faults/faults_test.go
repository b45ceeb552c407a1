package faults_test

import (
	"context"
	"flag"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/faults"
	"github.com/ecmstore/ecmstore/shared/system"
)

func TestMain(m *testing.M) { emulator.Main(m) }

var seedFlag = flag.Uint64("seed", 0, "run only this schedule (also FAULT_SEED)")

// onlySeed is the schedule to reproduce, from -seed or FAULT_SEED; 0 = run the suite.
func onlySeed(t *testing.T) uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	if v := os.Getenv("FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FAULT_SEED=%q: %v", v, err)
		}
		return n
	}
	return 0
}

// schedules returns the seeds to run: n from base, FAULT_SCHEDULES overriding n.
func schedules(t *testing.T, base uint64, n int) []uint64 {
	if s := onlySeed(t); s != 0 {
		return []uint64{s}
	}
	if v := os.Getenv("FAULT_SCHEDULES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("FAULT_SCHEDULES=%q: %v", v, err)
		}
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}

func runSchedules(t *testing.T, name string, seeds []uint64, w faults.Workload, target func(seed uint64) *faults.Target) {
	ctx := context.Background()
	var tally faults.Tally
	for i, seed := range seeds {
		// On a machine slower than planned, stop with a report rather than hit the test
		// binary's timeout and lose it.
		if dl, ok := t.Deadline(); ok && time.Until(dl) < 90*time.Second {
			t.Logf("%s: stopped after %d of %d schedules: the test deadline is near", name, i, len(seeds))
			break
		}
		tg := target(seed)
		tg.Name = name
		res, err := tg.Run(ctx, seed, w)
		if tg.Base.Close != nil {
			if cerr := tg.Base.Close(); cerr != nil {
				t.Errorf("%s seed %d: close: %v", name, seed, cerr)
			}
		}
		if err != nil {
			t.Fatalf("%s seed %d: harness: %v", name, seed, err)
		}
		tally.Add(res.Schedule, res.Violations)
		if len(res.Violations) > 0 {
			t.Error(res.Report(name))
		}
	}
	t.Logf("FAULTS %s: %s", name, &tally)
}

// TestFaults runs seeded fault schedules on every backend and checks the invariants
// after each. Sized for make test (-race, 2 cores): the memory store is cheap and runs
// many short schedules; the durable stores fewer (every commit is synced); DynamoDB Local
// a few longer ones on one pair of tables, ids unique per schedule.
func TestFaults(t *testing.T) {
	w := faults.Workload{Accounts: 3, Products: 2, Commands: 30, Contenders: 8, PerContender: 4, Faults: faults.DefaultFaults()}
	t.Run("memory", func(t *testing.T) {
		runSchedules(t, "memory", schedules(t, 1000, 300), w, func(uint64) *faults.Target {
			s := memstore.New()
			return &faults.Target{Config: system.Config{EventStore: "memory", SnapshotEvery: 3},
				Base: system.Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}}
		})
	})
	durable := w
	durable.Commands = 20
	t.Run("embedded", func(t *testing.T) { runSchedules(t, "embedded", schedules(t, 2000, 100), durable, embeddedTarget(t)) })
	t.Run("postgres", func(t *testing.T) { runSchedules(t, "postgres", schedules(t, 3000, 100), durable, postgresTarget(t)) })
	// Faults are injected per DynamoDB request there, several to one HTTP command: half
	// the rate keeps the mix per command comparable.
	dw := w
	dw.Commands = 20
	dw.Faults = faults.DefaultFaults()
	d := &dw.Faults.Default
	d.ErrorBefore, d.LostResponse, d.Throttle, d.Timeout, d.Crash = d.ErrorBefore/2, d.LostResponse/2, d.Throttle/2, d.Timeout/2, d.Crash/2
	t.Run("dynamodb", func(t *testing.T) { runSchedules(t, "dynamodb", schedules(t, 4000, 20), dw, dynamoTarget(t)) })
}

// With no faults the same workload breaks nothing: the violations TestFaults reports are
// the faults' doing, not the harness's.
func TestNoFaultsNoViolations(t *testing.T) {
	w := faults.Workload{Accounts: 3, Products: 2, Commands: 30, Contenders: 3, PerContender: 2}
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		s := memstore.New()
		tg := &faults.Target{Config: system.Config{EventStore: "memory", SnapshotEvery: 3},
			Base: system.Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}}
		res, err := tg.Run(context.Background(), seed, w)
		if err != nil {
			t.Fatal(err)
		}
		if n := res.Schedule.Counts(); n[faults.Crash]+n[faults.ErrorBefore]+n[faults.LostResponse] != 0 {
			t.Fatalf("faults injected with none configured: %v", n)
		}
		if len(res.Violations) > 0 {
			t.Error(res.Report("memory"))
		}
		var acked int
		for _, c := range res.History.Commands {
			if c.Final != nil && c.Final.Status < 300 {
				acked++
			}
		}
		if acked < 20 || len(res.History.Events) == 0 {
			t.Fatalf("seed %d: only %d commands acknowledged, %d streams: the workload did not run", seed, acked, len(res.History.Events))
		}
	}
}
