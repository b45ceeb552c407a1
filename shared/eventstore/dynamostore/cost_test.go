package dynamostore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/money"
)

// TestRequestCosts counts the DynamoDB requests of the operations the README quotes. A
// command on an aggregate with a current snapshot costs one Query (snapshot + tail) and
// one PutItem, whatever the stream length; a single-event append of up to 1 KB is one
// PutItem of at most 1 WCU.
func TestRequestCosts(t *testing.T) {
	ctx := context.Background()
	counter := dynamostore.NewRequestCounter()
	db, events, _ := tables(t, counter.Option())
	store := dynamostore.New(db, events)
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery = 50
	repo := aggregate.NewRepository[bank.Account](store, bank.Definition, cfg)

	if _, err := repo.Execute(ctx, "cost", bank.Open(0), aggregate.Options{}); err != nil {
		t.Fatal(err)
	}
	for range 1000 / 100 { // a long stream: 1000 events, written in batches
		l, _ := repo.Load(ctx, "cost")
		evs := make([]event.Event, 100)
		for i := range evs {
			evs[i] = event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: money.Amount(1)})
		}
		if _, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "cost"}, l.Version, evs); err != nil {
			t.Fatal(err)
		}
	}
	// Cross a multiple of SnapshotEvery so a current snapshot exists.
	for range 50 {
		if _, err := repo.Execute(ctx, "cost", bank.Deposit(1, ""), aggregate.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := dynamostore.New(db, events) // a cold process: nothing cached
	coldRepo := aggregate.NewRepository[bank.Account](fresh, bank.Definition, cfg)

	type row struct {
		name  string
		calls map[string]int
	}
	var rows []row
	measure := func(name string, fn func()) map[string]int {
		counter.Reset()
		fn()
		c := counter.Calls()
		rows = append(rows, row{name, c})
		return c
	}
	cmd := measure("command on a 1051-event aggregate with a current snapshot (cold process)", func() {
		if _, err := coldRepo.Execute(ctx, "cost", bank.Deposit(1, ""), aggregate.Options{}); err != nil {
			t.Fatal(err)
		}
	})
	if cmd["Query"] != 1 || cmd["PutItem"] != 1 || len(cmd) != 2 {
		t.Errorf("command: %v, want one Query and one PutItem", cmd)
	}
	single := measure("single-event append after a load", func() {
		l, _ := repo.Load(ctx, "cost")
		counter.Reset()
		if _, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "cost"}, l.Version,
			[]event.Event{event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: 1})}); err != nil {
			t.Fatal(err)
		}
	})
	if single["PutItem"] != 1 || len(single) != 1 {
		t.Errorf("single append: %v, want one PutItem", single)
	}
	unknown := measure("append with an expected version this process has not seen", func() {
		other := dynamostore.New(db, events)
		l, _ := repo.Load(ctx, "cost")
		if _, err := other.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "cost"}, l.Version,
			[]event.Event{event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: 1})}); err != nil {
			t.Fatal(err)
		}
	})
	if unknown["GetItem"] != 1 || unknown["PutItem"] != 1 {
		t.Errorf("unknown expected version: %v, want GetItem + PutItem", unknown)
	}
	// WCU: DynamoDB Local does not report consumed capacity, so compute it from the item
	// size as DynamoDB bills it (1 WCU per started KB for a standard write).
	item := event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: 1})
	item.AggregateType, item.AggregateID, item.Version, item.EventID, item.Timestamp = bank.AggregateType, "cost", 1052, event.NewID(), event.Now()
	item.Metadata = event.Metadata{Actor: "user-123", Source: "api", CorrelationID: event.NewID(), CausationID: "cmd-1"}
	size := dynamostore.ItemSize(item)
	if size > 1024 {
		t.Errorf("a typical event item is %d bytes: more than 1 WCU", size)
	}
	t.Logf("| operation | requests |")
	t.Logf("|---|---|")
	for _, r := range rows {
		t.Logf("| %s | %s |", r.name, fmt.Sprint(r.calls))
	}
	t.Logf("typical event item: %d bytes = %d WCU (%s table)", size, (size+1023)/1024, infra.DefaultEventsTable)
}
