// Package repotest is the repository's conformance suite: what a command promises
// (exactly once under retries, no version conflict for commands that sent no version, no
// decision on a state that skipped an event) checked against a real backend. Every
// backend's tests call Run, as they call storetest.Run.
package repotest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/money"
)

// Run runs every case against the backend open returns (one store may serve all cases:
// every case uses its own account ids).
func Run(t *testing.T, open func(t *testing.T) eventstore.Backend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, eventstore.Backend)
	}{
		{"RetryAfterSnapshotAppliesOnce", testRetryAfterSnapshot},
		{"RetryOfRefusedLookingCommand", testRetryOfRefusedLooking},
		{"RetryWithStaleExpectedVersion", testRetryWithStaleExpectedVersion},
		{"ConcurrentUnversionedCommandsAllSucceed", testConcurrentUnversioned},
		{"ContentionIsNotAConflict", testContention},
		{"UnreadableEventStopsCommands", testUnreadable},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var seq struct {
	sync.Mutex
	n int
}

func uniqueID(prefix string) string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), seq.n)
}

func repo(b eventstore.Backend, snapshotEvery int) *aggregate.Repository[bank.Account] {
	reg := event.NewRegistry()
	bank.Register(reg)
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery, cfg.Registry = snapshotEvery, reg
	return aggregate.NewRepository(b, bank.Definition, cfg)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, r *aggregate.Repository[bank.Account], id string, cmd aggregate.Command[bank.Account], opts aggregate.Options) aggregate.Result[bank.Account] {
	t.Helper()
	res, err := r.Execute(ctx(t), id, cmd, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func opened(t *testing.T, r *aggregate.Repository[bank.Account], id string, amount int64) {
	t.Helper()
	must(t, r, id, bank.Open(money.Amount(amount)), aggregate.Options{})
}

func seeded(seed string) aggregate.Options { return aggregate.Options{IdempotencySeed: seed} }

// countIDs counts how often each event id occurs in the stream.
func countIDs(t *testing.T, b eventstore.Backend, id string) (map[string]int, []event.Event) {
	t.Helper()
	evs, err := b.Load(ctx(t), eventstore.Stream{Type: bank.AggregateType, ID: id}, eventstore.Range{})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range evs {
		n[e.EventID]++
	}
	return n, evs
}

// A deposit lands, its answer is lost (the process dies before it is recorded), more
// than a snapshot interval of commands follows, then the client retries the key: the
// retry answers the first result and appends nothing.
func testRetryAfterSnapshot(t *testing.T, b eventstore.Backend) {
	r := repo(b, 10)
	id := uniqueID("retry-snap")
	opened(t, r, id, 100)
	first := must(t, r, id, bank.Deposit(7, ""), seeded(id+"/K"))
	for range 25 {
		must(t, r, id, bank.Deposit(1, ""), aggregate.Options{})
	}
	fresh := repo(b, 10) // the restarted process
	again := must(t, fresh, id, bank.Deposit(7, ""), seeded(id+"/K"))
	if again.Version != first.Version || again.State.Balance != first.State.Balance || len(again.Events) != 1 ||
		again.Events[0].EventID != first.Events[0].EventID {
		t.Fatalf("retry answered v%d balance %s (%d events), want the first answer v%d balance %s",
			again.Version, again.State.Balance, len(again.Events), first.Version, first.State.Balance)
	}
	ids, evs := countIDs(t, b, id)
	if len(evs) != 27 || ids[first.Events[0].EventID] != 1 {
		t.Fatalf("%d events, the deposit's id %d times; want 27 and once", len(evs), ids[first.Events[0].EventID])
	}
}

// A withdrawal took effect; later the balance cannot cover it any more. Its retry must
// answer the original success, not refuse the command it already carried out.
func testRetryOfRefusedLooking(t *testing.T, b eventstore.Backend) {
	r := repo(b, 10)
	id := uniqueID("retry-refused")
	opened(t, r, id, 100)
	first := must(t, r, id, bank.Withdraw(60, ""), seeded(id+"/W"))
	must(t, r, id, bank.Withdraw(40, ""), aggregate.Options{})
	again, err := r.Execute(ctx(t), id, bank.Withdraw(60, ""), seeded(id+"/W"))
	if err != nil || again.Version != first.Version || again.State.Balance != 40 {
		t.Fatalf("retry = v%d balance %s, %v; want the original v%d balance 40", again.Version, again.State.Balance, err, first.Version)
	}
	if _, evs := countIDs(t, b, id); len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
}

// The client sent If-Match with its first attempt; the attempt landed, so the version
// moved on. The retry (same key, same If-Match) answers the first result, not a conflict.
func testRetryWithStaleExpectedVersion(t *testing.T, b eventstore.Backend) {
	r := repo(b, 0)
	id := uniqueID("retry-ifmatch")
	opened(t, r, id, 100)
	v := int64(1)
	opts := aggregate.Options{IdempotencySeed: id + "/M", ExpectedVersion: &v}
	first := must(t, r, id, bank.Deposit(5, ""), opts)
	again, err := r.Execute(ctx(t), id, bank.Deposit(5, ""), opts)
	if err != nil || again.Version != first.Version {
		t.Fatalf("retry = v%d, %v; want the original v%d", again.Version, err, first.Version)
	}
	// Without the key, the same stale If-Match is a conflict, as it should be.
	if _, err := r.Execute(ctx(t), id, bank.Deposit(5, ""), aggregate.Options{ExpectedVersion: &v}); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale If-Match without a key: %v, want a conflict", err)
	}
}

// 100 deposits without a version, from two processes at once, all succeed.
func testConcurrentUnversioned(t *testing.T, b eventstore.Backend) {
	procs := []*aggregate.Repository[bank.Account]{repo(b, 10), repo(b, 10)}
	id := uniqueID("race")
	opened(t, procs[0], id, 0)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := procs[i%2].Execute(ctx(t), id, bank.Deposit(1, ""), aggregate.Options{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Errorf("deposit: %v", err)
		}
	}
	l, err := procs[0].Load(ctx(t), id)
	if err != nil || l.State.Balance != n || l.Version != n+1 || failed > 0 {
		t.Fatalf("balance %s at v%d (%v), %d failed; want %d at v%d", l.State.Balance, l.Version, err, failed, n, n+1)
	}
}

// A command that cannot get through within its retry window answers a contention error
// (503 with Retry-After at the edge), never a version conflict.
func testContention(t *testing.T, b eventstore.Backend) {
	r := repo(b, 0)
	id := uniqueID("contention")
	opened(t, r, id, 0)
	other := repo(b, 0)
	// A command that loses every race: another process appends between its load and its
	// append, every time.
	interfering := func(a bank.Account, v int64) ([]event.Event, error) {
		if _, err := other.Execute(context.Background(), id, bank.Deposit(1, ""), aggregate.Options{}); err != nil {
			return nil, err
		}
		return bank.Deposit(1, "")(a, v)
	}
	cfg := aggregate.DefaultConfig()
	cfg.MaxRetries = 5
	slow := aggregate.NewRepository(b, bank.Definition, cfg)
	_, err := slow.Execute(ctx(t), id, interfering, aggregate.Options{})
	var ce *aggregate.ContentionError
	if !errors.As(err, &ce) || errors.Is(err, eventstore.ErrConflict) || ce.RetryAfter <= 0 || ce.Attempts != 5 {
		t.Fatalf("err = %v, want a *ContentionError after 5 attempts with a RetryAfter", err)
	}
}

// An event of a type this code does not know sits in the stream: commands and loads stop
// at it with an error naming the stream and version, instead of deciding on a state that
// skipped it.
func testUnreadable(t *testing.T, b eventstore.Backend) {
	r := repo(b, 0)
	id := uniqueID("unreadable")
	opened(t, r, id, 100)
	st := eventstore.Stream{Type: bank.AggregateType, ID: id}
	if _, err := b.Append(ctx(t), st, 1, []event.Event{event.MustNew("MoneyTeleported", map[string]int{"amount": 5})}); err != nil {
		t.Fatal(err)
	}
	for name, do := range map[string]func() error{
		"deposit": func() error {
			_, err := r.Execute(ctx(t), id, bank.Deposit(7, ""), aggregate.Options{})
			return err
		},
		"load": func() error { _, err := r.Load(ctx(t), id); return err },
	} {
		err := do()
		var ue *aggregate.UnreadableEventError
		if !errors.As(err, &ue) || ue.Version != 2 || ue.ID != id || ue.EventType != "MoneyTeleported" {
			t.Fatalf("%s: err = %v, want an UnreadableEventError at v2", name, err)
		}
	}
	if _, evs := countIDs(t, b, id); len(evs) != 2 {
		t.Fatalf("%d events, want 2: nothing may be decided past the unreadable event", len(evs))
	}
}
