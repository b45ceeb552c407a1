package orders

import (
	"context"
	"sort"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/money"
)

// Read-model collections.
const (
	OrdersCollection    = "orders"
	ProductsCollection  = "products"
	CustomersCollection = "customer-orders"
	orderIndex          = "order-customers"
)

// OrderProjection is the current-state read model of orders.
type OrderProjection struct{}

func (OrderProjection) Name() string             { return "orders" }
func (OrderProjection) AggregateTypes() []string { return []string{AggregateType} }
func (OrderProjection) Collections() []string    { return []string{OrdersCollection} }

func (OrderProjection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	o := Order{ID: e.AggregateID}
	if _, err := tx.Get(ctx, OrdersCollection, e.AggregateID, &o); err != nil {
		return err
	}
	o, err := Evolve(o, e)
	if err != nil {
		return err
	}
	return tx.Put(ctx, OrdersCollection, e.AggregateID, o)
}

// ProductProjection is the stock read model.
type ProductProjection struct{}

func (ProductProjection) Name() string             { return "products" }
func (ProductProjection) AggregateTypes() []string { return []string{ProductType} }
func (ProductProjection) Collections() []string    { return []string{ProductsCollection} }

func (ProductProjection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	p := Product{ID: e.AggregateID}
	if _, err := tx.Get(ctx, ProductsCollection, e.AggregateID, &p); err != nil {
		return err
	}
	p, err := EvolveProduct(p, e)
	if err != nil {
		return err
	}
	return tx.Put(ctx, ProductsCollection, e.AggregateID, p)
}

// CustomerOrder is one line of GET /customers/{id}/orders.
type CustomerOrder struct {
	OrderID     string       `json:"orderId"`
	Status      string       `json:"status"`
	Reason      string       `json:"reason,omitempty"`
	TotalAmount money.Amount `json:"totalAmount"`
	PlacedAt    *time.Time   `json:"placedAt,omitempty"`
	ShippedAt   *time.Time   `json:"shippedAt,omitempty"`
}

// CustomerOrders is a customer's document.
type CustomerOrders struct {
	Orders map[string]CustomerOrder `json:"orders"`
}

// Sorted returns the orders oldest first.
func (c CustomerOrders) Sorted() []CustomerOrder {
	out := make([]CustomerOrder, 0, len(c.Orders))
	for _, o := range c.Orders {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PlacedAt != nil && out[j].PlacedAt != nil && !out[i].PlacedAt.Equal(*out[j].PlacedAt) {
			return out[i].PlacedAt.Before(*out[j].PlacedAt)
		}
		return out[i].OrderID < out[j].OrderID
	})
	return out
}

// CustomerProjection is the cross-aggregate read model: a customer's orders, fed by
// order streams (the guard is per order).
type CustomerProjection struct{}

func (CustomerProjection) Name() string             { return "customer-orders" }
func (CustomerProjection) AggregateTypes() []string { return []string{AggregateType} }
func (CustomerProjection) Collections() []string    { return []string{CustomersCollection, orderIndex} }

func (CustomerProjection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	var idx struct {
		CustomerID string `json:"customerId"`
	}
	if e.EventType == Placed {
		var p PlacedPayload
		if err := e.Decode(&p); err != nil {
			return err
		}
		idx.CustomerID = p.CustomerID
		if err := tx.Put(ctx, orderIndex, e.AggregateID, idx); err != nil {
			return err
		}
	} else if ok, err := tx.Get(ctx, orderIndex, e.AggregateID, &idx); err != nil || !ok {
		return err
	}
	doc := CustomerOrders{Orders: map[string]CustomerOrder{}}
	if _, err := tx.Get(ctx, CustomersCollection, idx.CustomerID, &doc); err != nil {
		return err
	}
	if doc.Orders == nil {
		doc.Orders = map[string]CustomerOrder{}
	}
	line := doc.Orders[e.AggregateID]
	o := Order{ID: e.AggregateID, Status: line.Status, TotalAmount: line.TotalAmount, PlacedAt: line.PlacedAt,
		ShippedAt: line.ShippedAt, Reason: line.Reason}
	o, err := Evolve(o, e)
	if err != nil {
		return err
	}
	doc.Orders[e.AggregateID] = CustomerOrder{OrderID: e.AggregateID, Status: o.Status, Reason: o.Reason,
		TotalAmount: o.TotalAmount, PlacedAt: o.PlacedAt, ShippedAt: o.ShippedAt}
	return tx.Put(ctx, CustomersCollection, idx.CustomerID, doc)
}
