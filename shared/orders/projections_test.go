package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
)

// The customers' orders are one document per order, listed oldest first, and a
// customer's documents stay the size of one order however many orders there are; a
// replay over what is there (a rebuild clears only the projection's fixed collections)
// ends in the same lines.
func TestCustomerOrdersOneDocumentPerOrder(t *testing.T) {
	ctx := context.Background()
	docs := memstore.NewDocs()
	p := orders.CustomerProjection{}
	const n = 60
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var evs []event.Event
	for i := range n {
		id := fmt.Sprintf("ord-%02d", n-i) // ids sort against placement order
		placed := event.MustNew(orders.Placed, orders.PlacedPayload{CustomerID: "cust-1", Items: []orders.Item{{ProductID: "p", Quantity: 1, Price: money.Amount(i + 1)}},
			TotalAmount: money.Amount(i + 1)})
		placed.AggregateID, placed.AggregateType, placed.Version, placed.Timestamp = id, orders.AggregateType, 1, base.Add(time.Duration(i)*time.Second)
		evs = append(evs, placed)
		if i%3 == 0 {
			shipped := event.MustNew(orders.Shipped, orders.Empty{})
			shipped.AggregateID, shipped.AggregateType, shipped.Version, shipped.Timestamp = id, orders.AggregateType, 2, placed.Timestamp.Add(time.Hour)
			evs = append(evs, shipped)
		}
	}
	apply := func() {
		for _, e := range evs {
			if err := docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return p.Apply(ctx, tx, e) }); err != nil {
				t.Fatalf("apply %s %s: %v", e.AggregateID, e.EventType, err)
			}
		}
	}
	check := func(round string) {
		var lines []orders.CustomerOrder
		maxDoc := 0
		err := docs.List(ctx, orders.CustomerOrdersCollection("cust-1"), func(_ string, raw json.RawMessage) error {
			var l orders.CustomerOrder
			maxDoc = max(maxDoc, len(raw))
			lines = append(lines, l)
			return json.Unmarshal(raw, &lines[len(lines)-1])
		})
		if err != nil || len(lines) != n {
			t.Fatalf("%s: %d lines, %v", round, len(lines), err)
		}
		if maxDoc > 400 {
			t.Fatalf("%s: a document of %d bytes: the list grows inside one document", round, maxDoc)
		}
		for i, l := range lines {
			want := "PLACED"
			if i%3 == 0 {
				want = "SHIPPED"
			}
			if l.OrderID != fmt.Sprintf("ord-%02d", n-i) || l.Status != want || l.TotalAmount != money.Amount(i+1) {
				t.Fatalf("%s: line %d = %+v, want order ord-%02d %s (oldest first)", round, i, l, n-i, want)
			}
		}
	}
	apply()
	check("first")
	for _, c := range p.Collections() {
		if err := docs.DeleteCollection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	check("rebuilt")
}
