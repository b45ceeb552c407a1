package orders_test

import (
	"context"
	"time"

	"encoding/json"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/aggregate/aggregatetest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
)

func TestUpcastPlacedV1(t *testing.T) {
	reg := event.NewRegistry()
	orders.Register(reg)
	for _, tc := range []struct{ payload, total string }{
		{`{"customerId":"c","items":[{"productId":"p","quantity":2,"price":29.99}]}`, "59.98"}, // the seed's example
		{`{"customerId":"c","items":[{"productId":"a","quantity":3,"price":0.1},{"productId":"b","quantity":1,"price":0.2}]}`, "0.5"},
		{`{"customerId":"c","items":[],"totalAmount":7}`, "7"}, // already there: kept
	} {
		e, err := reg.Upcast(event.Event{EventType: orders.Placed, SchemaVersion: 1, Payload: json.RawMessage(tc.payload)})
		if err != nil {
			t.Fatal(err)
		}
		var p orders.PlacedPayload
		if err := json.Unmarshal(e.Payload, &p); err != nil || e.SchemaVersion != 2 || p.TotalAmount.String() != tc.total {
			t.Fatalf("%s → v%d %s (%v)", tc.payload, e.SchemaVersion, e.Payload, err)
		}
	}
	if _, err := reg.Upcast(event.Event{EventType: orders.Placed, SchemaVersion: 1, Payload: json.RawMessage(`{"items":"x"}`)}); err == nil {
		t.Fatal("undecodable v1 payload upcast without error")
	}
}

func TestOrderRules(t *testing.T) {
	d := orders.Definition
	items := []orders.Item{{ProductID: "p", Quantity: 2, Price: money.Amount(1999)}}
	placed := event.MustNew(orders.Placed, orders.PlacedPayload{CustomerID: "c", Items: items, TotalAmount: 3998})
	t.Run("place", func(t *testing.T) { aggregatetest.Given(d).When(orders.Place("c", "", items)).Then(t, placed) })
	t.Run("no items", func(t *testing.T) {
		aggregatetest.Given(d).When(orders.Place("c", "", nil)).ThenError(t, "invalid_order")
	})
	t.Run("ship unconfirmed", func(t *testing.T) {
		aggregatetest.Given(d, placed).When(orders.Ship()).ThenError(t, "not_confirmed")
	})
	t.Run("ship confirmed", func(t *testing.T) {
		aggregatetest.Given(d, placed, event.MustNew(orders.Paid, orders.PaidPayload{Amount: 3998}), event.MustNew(orders.Confirmed, orders.Empty{})).
			When(orders.Ship()).Then(t, event.MustNew(orders.Shipped, orders.Empty{}))
	})
	t.Run("place twice", func(t *testing.T) {
		aggregatetest.Given(d, placed).When(orders.Place("c", "", items)).ThenErrorIs(t, aggregate.ErrExists)
	})
	p := orders.ProductDefinition
	added := event.MustNew(orders.StockAdded, orders.StockPayload{Quantity: 1})
	t.Run("reserve", func(t *testing.T) {
		aggregatetest.Given(p, added).When(orders.Reserve("o", 1)).Then(t, event.MustNew(orders.StockReserved, orders.StockPayload{Quantity: 1, OrderID: "o"}))
	})
	t.Run("out of stock", func(t *testing.T) {
		aggregatetest.Given(p, added).When(orders.Reserve("o", 2)).ThenError(t, "out_of_stock")
	})
	t.Run("reserve twice is nothing", func(t *testing.T) {
		aggregatetest.Given(p, added, event.MustNew(orders.StockReserved, orders.StockPayload{Quantity: 1, OrderID: "o"})).
			When(orders.Reserve("o", 1)).Then(t)
	})
}

// As-of reads start from the newest snapshot at or before the instant; the result must
// equal a full replay as of then, with snapshots present and after deleting them all.
func TestProductAsOfFromSnapshotsEqualsReplay(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery = 4
	cfg.KeepSnapshots = 100 // retain them all: as-of reads older than the retained window replay from the start
	repo := aggregate.NewRepository(store, orders.ProductDefinition, cfg)
	var stamps []time.Time
	for i := range 30 {
		res, err := repo.Execute(ctx, "p", orders.AddStock(i+1), aggregate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		stamps = append(stamps, res.Last.Timestamp)
	}
	st := eventstore.Stream{Type: orders.ProductType, ID: "p"}
	asOf := func() []int {
		var out []int
		for _, ts := range stamps {
			l, err := repo.LoadAsOf(ctx, "p", ts)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l.State.Available*1000+int(l.Version))
		}
		return out
	}
	withSnaps := asOf()
	if snap, _, _ := store.LoadFromSnapshot(ctx, st, eventstore.Range{Until: stamps[20]}); snap == nil {
		t.Fatal("no snapshot used for as-of reads")
	}
	if err := store.DeleteSnapshots(ctx, st, 1<<40); err != nil {
		t.Fatal(err)
	}
	replayed := asOf()
	for i := range stamps {
		want := (i+1)*(i+2)/2*1000 + i + 1
		if withSnaps[i] != replayed[i] || withSnaps[i] != want {
			t.Fatalf("as of event %d: with snapshots %d, replay %d, want %d", i+1, withSnaps[i], replayed[i], want)
		}
	}
}
