package orders_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
)

// faulty fails one chosen append of the saga: before it reaches the store (the process
// died before the write) or after it landed (the process died before it saw the answer).
type faulty struct {
	eventstore.Backend
	mu     sync.Mutex
	n      int  // appends so far
	failAt int  // 1-based; 0: never
	after  bool // fail after the write landed
}

var errCrash = errors.New("injected crash")

func (f *faulty) Append(ctx context.Context, s eventstore.Stream, expected int64, evs []event.Event) ([]event.Event, error) {
	f.mu.Lock()
	f.n++
	hit := f.n == f.failAt
	f.mu.Unlock()
	if hit && !f.after {
		return nil, errCrash
	}
	out, err := f.Backend.Append(ctx, s, expected, evs)
	if hit && err == nil {
		return nil, errCrash
	}
	return out, err
}

type world struct {
	store *memstore.Store
	f     *faulty
	saga  orders.Saga
	ord   *aggregate.Repository[orders.Order]
}

func newWorld() *world {
	reg := event.NewRegistry()
	bank.Register(reg)
	orders.Register(reg)
	cfg := aggregate.DefaultConfig()
	cfg.Registry, cfg.SnapshotEvery = reg, 2 // snapshots all the time: identity must not depend on the tail
	w := &world{store: memstore.New()}
	w.f = &faulty{Backend: w.store}
	w.ord = aggregate.NewRepository[orders.Order](w.f, orders.Definition, cfg)
	w.saga = orders.Saga{
		Orders:     w.ord,
		Products:   aggregate.NewRepository[orders.Product](w.f, orders.ProductDefinition, cfg),
		Accounts:   aggregate.NewRepository[bank.Account](w.f, bank.Definition, cfg),
		Fulfilment: aggregate.NewRepository[orders.Fulfilment](w.f, orders.FulfilmentDefinition, cfg),
	}
	return w
}

// settle delivers the order's events to the saga until a pass changes nothing and fails
// nothing, like a stream retrying a failed batch; then it delivers everything twice more
// (a redelivery, and a rebuild).
func (w *world) settle(t *testing.T, orderID string) {
	ctx := context.Background()
	st := eventstore.Stream{Type: orders.AggregateType, ID: orderID}
	for pass := 0; ; pass++ {
		if pass > 20 {
			t.Fatal("the saga does not settle")
		}
		evs, err := w.store.Load(ctx, st, eventstore.Range{})
		if err != nil {
			t.Fatal(err)
		}
		failed := false
		for _, e := range evs {
			if err := w.saga.React(ctx, e); err != nil {
				if !errors.Is(err, errCrash) {
					t.Fatalf("react to %s: %v", e.EventType, err)
				}
				failed = true
			}
		}
		after, _ := w.store.Load(ctx, st, eventstore.Range{})
		if !failed && len(after) == len(evs) {
			break
		}
	}
	evs, _ := w.store.Load(ctx, st, eventstore.Range{})
	for range 2 {
		for i := len(evs) - 1; i >= 0; i-- { // out of order, too
			if err := w.saga.React(ctx, evs[i]); err != nil {
				t.Fatalf("redelivered %s: %v", evs[i].EventType, err)
			}
		}
	}
}

func count(t *testing.T, s *memstore.Store, st eventstore.Stream, typ string) int {
	evs, err := s.Load(context.Background(), st, eventstore.Range{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.EventType == typ {
			n++
		}
	}
	return n
}

// Every single crash point of the saga, before and after each of its writes, in a
// confirmed and a compensated order: the account is charged once (and refunded once when
// the order is cancelled), and reserved stock is exactly what confirmed orders hold.
func TestSagaExactlyOnceUnderCrashes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		items     []orders.Item
		status    string
		balance   money.Amount
		reserved  map[string]int
		withdrawn int
		deposited int
	}{
		{"confirmed", []orders.Item{{ProductID: "apple", Quantity: 2, Price: 10}, {ProductID: "pear", Quantity: 1, Price: 5}},
			orders.StatusConfirmed, 75, map[string]int{"apple": 2, "pear": 1}, 1, 0},
		{"out of stock", []orders.Item{{ProductID: "apple", Quantity: 2, Price: 10}, {ProductID: "pear", Quantity: 5, Price: 5}},
			orders.StatusCancelled, 100, map[string]int{"apple": 0, "pear": 0}, 1, 1},
		{"declined", []orders.Item{{ProductID: "apple", Quantity: 1, Price: 500}},
			orders.StatusCancelled, 100, map[string]int{"apple": 0, "pear": 0}, 0, 0},
	} {
		// A fault-free run counts the saga's writes; then each one fails in turn.
		writes := 0
		for failAt := 0; failAt == 0 || failAt <= writes; failAt++ {
			for _, after := range []bool{false, true} {
				if failAt == 0 && after {
					continue
				}
				t.Run(fmt.Sprintf("%s/crash at write %d after=%v", tc.name, failAt, after), func(t *testing.T) {
					w := newWorld()
					acc := w.saga.Accounts
					if _, err := acc.Execute(ctx, "acc", bank.Open(100), aggregate.Options{}); err != nil {
						t.Fatal(err)
					}
					for _, p := range []string{"apple", "pear"} {
						if _, err := w.saga.Products.Execute(ctx, p, orders.AddStock(3), aggregate.Options{}); err != nil {
							t.Fatal(err)
						}
					}
					if _, err := w.ord.Execute(ctx, "o1", orders.Place("c1", "acc", tc.items), aggregate.Options{}); err != nil {
						t.Fatal(err)
					}
					w.f.n, w.f.failAt, w.f.after = 0, failAt, after
					w.settle(t, "o1")
					if failAt == 0 {
						writes = w.f.n
					}
					o, _ := w.ord.Load(ctx, "o1")
					a, _ := acc.Load(ctx, "acc")
					if o.State.Status != tc.status || a.State.Balance != tc.balance {
						t.Fatalf("order %s, balance %s; want %s, %s", o.State.Status, a.State.Balance, tc.status, tc.balance)
					}
					accSt := eventstore.Stream{Type: bank.AggregateType, ID: "acc"}
					if n := count(t, w.store, accSt, bank.MoneyWithdrawn); n != tc.withdrawn {
						t.Fatalf("%d withdrawals, want %d", n, tc.withdrawn)
					}
					if n := count(t, w.store, accSt, bank.MoneyDeposited); n != tc.deposited {
						t.Fatalf("%d refunds, want %d", n, tc.deposited)
					}
					for p, want := range tc.reserved {
						pr, _ := w.saga.Products.Load(ctx, p)
						if pr.State.Reserved != want || pr.State.Available != 3-want {
							t.Fatalf("%s reserved %d available %d, want %d and %d", p, pr.State.Reserved, pr.State.Available, want, 3-want)
						}
					}
				})
			}
		}
		if writes == 0 {
			t.Fatalf("%s: the fault-free run made no writes", tc.name)
		}
	}
}
