package aggregate_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/money"
)

var bg = context.Background()

func repo(store eventstore.Backend, every int) *aggregate.Repository[bank.Account] {
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery = every
	cfg.MaxRetries = 100
	return aggregate.NewRepository(store, bank.Definition, cfg)
}

func exec(t *testing.T, r *aggregate.Repository[bank.Account], id string, cmd aggregate.Command[bank.Account], opts aggregate.Options) aggregate.Result[bank.Account] {
	t.Helper()
	res, err := r.Execute(bg, id, cmd, opts)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return res
}

// No lost updates: 20 goroutines deposit concurrently without an expected version; the
// repository reloads and retries on every conflict.
func TestConcurrentCommandsLoseNothing(t *testing.T) {
	store := memstore.New()
	r := repo(store, 5)
	exec(t, r, "acc", bank.Open(0), aggregate.Options{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := r.Execute(bg, "acc", bank.Deposit(1, ""), aggregate.Options{}); err != nil {
					t.Errorf("deposit: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	l, err := r.Load(bg, "acc")
	if err != nil {
		t.Fatal(err)
	}
	if l.State.Balance != 100 || l.Version != 101 || l.State.TransactionCount != 101 {
		t.Fatalf("after 100 concurrent deposits of 0.01: %+v v%d", l.State, l.Version)
	}
}

func TestClientExpectedVersionConflicts(t *testing.T) {
	r := repo(memstore.New(), 0)
	exec(t, r, "acc", bank.Open(1000), aggregate.Options{})
	exec(t, r, "acc", bank.Deposit(1, ""), aggregate.Options{})
	stale := int64(1)
	_, err := r.Execute(bg, "acc", bank.Deposit(1, ""), aggregate.Options{ExpectedVersion: &stale})
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Current != 2 {
		t.Fatalf("err = %v, want conflict with current 2", err)
	}
	good := int64(2)
	if res := exec(t, r, "acc", bank.Deposit(1, ""), aggregate.Options{ExpectedVersion: &good}); res.Version != 3 {
		t.Fatalf("version %d", res.Version)
	}
}

// Snapshots are an optimisation: deleting all of them changes no result, including
// as-of reads.
func TestSnapshotsChangeNoResult(t *testing.T) {
	store := memstore.New()
	r := repo(store, 3)
	exec(t, r, "acc", bank.Open(100000), aggregate.Options{})
	var mid aggregate.Result[bank.Account]
	for i := range 20 {
		res := exec(t, r, "acc", bank.Withdraw(money.Amount(i+1), ""), aggregate.Options{})
		if i == 9 {
			mid = res
		}
	}
	withSnaps, err := r.Load(bg, "acc")
	if err != nil {
		t.Fatal(err)
	}
	snap, tail, _ := store.LoadFromSnapshot(bg, eventstore.Stream{Type: bank.AggregateType, ID: "acc"}, eventstore.Range{})
	if snap == nil || len(tail) >= 3 {
		t.Fatalf("expected a current snapshot, got %v and %d events after it", snap, len(tail))
	}
	asOfWith, _ := r.LoadAsOf(bg, "acc", mid.Last.Timestamp)
	if err := store.DeleteSnapshots(bg, eventstore.Stream{Type: bank.AggregateType, ID: "acc"}, 1<<62); err != nil {
		t.Fatal(err)
	}
	without, _ := r.Load(bg, "acc")
	asOfWithout, _ := r.LoadAsOf(bg, "acc", mid.Last.Timestamp)
	if !equalAccounts(withSnaps, without) {
		t.Fatalf("with snapshots %+v, without %+v", withSnaps.State, without.State)
	}
	if !equalAccounts(asOfWith, asOfWithout) || asOfWith.Version < mid.Version {
		t.Fatalf("as-of with snapshots %+v v%d, without %+v v%d", asOfWith.State, asOfWith.Version, asOfWithout.State, asOfWithout.Version)
	}
}

func equalAccounts(a, b aggregate.Loaded[bank.Account]) bool {
	return a.Version == b.Version && a.State.Balance == b.State.Balance &&
		a.State.TransactionCount == b.State.TransactionCount && a.State.IsOpen == b.State.IsOpen &&
		a.State.LastActivity.Equal(*b.State.LastActivity)
}

// Old snapshots are garbage-collected: at most KeepSnapshots intervals remain.
func TestSnapshotGarbageCollection(t *testing.T) {
	store := memstore.New()
	r := repo(store, 2)
	exec(t, r, "acc", bank.Open(0), aggregate.Options{})
	for range 20 {
		exec(t, r, "acc", bank.Deposit(1, ""), aggregate.Options{})
	}
	st := eventstore.Stream{Type: bank.AggregateType, ID: "acc"}
	snap, _, _ := store.LoadFromSnapshot(bg, st, eventstore.Range{To: 16})
	if snap != nil {
		t.Fatalf("snapshot %d below the retention window survived", snap.Version)
	}
	snap, _, _ = store.LoadFromSnapshot(bg, st, eventstore.Range{To: 20})
	if snap == nil || snap.Version < 19 {
		t.Fatalf("recent snapshot missing: %+v", snap)
	}
}

// A command retried with the same idempotency seed appends nothing the second time,
// even after other commands ran in between.
func TestIdempotencySeed(t *testing.T) {
	r := repo(memstore.New(), 0)
	exec(t, r, "acc", bank.Open(1000), aggregate.Options{})
	first := exec(t, r, "acc", bank.Withdraw(100, ""), aggregate.Options{IdempotencySeed: "key-1"})
	exec(t, r, "acc", bank.Deposit(5, ""), aggregate.Options{})
	again := exec(t, r, "acc", bank.Withdraw(100, ""), aggregate.Options{IdempotencySeed: "key-1"})
	if again.Version != first.Version || again.Events[0].EventID != first.Events[0].EventID {
		t.Fatalf("retry gave v%d (%v), first v%d", again.Version, again.Events, first.Version)
	}
	l, _ := r.Load(bg, "acc")
	if l.Version != 3 {
		t.Fatalf("stream at v%d, want 3: the retry appended", l.Version)
	}
	if first.Events[0].EventID != event.DerivedID("key-1", 0) {
		t.Fatal("event id not derived from the seed")
	}
}

func TestMetadataAndNoop(t *testing.T) {
	store := memstore.New()
	r := repo(store, 0)
	md := event.Metadata{Actor: "alice", Source: "api", CorrelationID: "req-1", CausationID: "cmd-1"}
	res := exec(t, r, "acc", bank.Open(1), aggregate.Options{Metadata: md})
	if res.Events[0].Metadata != md {
		t.Fatalf("metadata %+v", res.Events[0].Metadata)
	}
	noop := func(bank.Account, int64) ([]event.Event, error) { return nil, nil }
	if res := exec(t, r, "acc", noop, aggregate.Options{}); res.Version != 1 || len(res.Events) != 0 {
		t.Fatalf("no-op appended: %+v", res)
	}
}
