package orders

import (
	"context"
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

// CustomerOrdersCollection holds one customer's orders, one document per order keyed
// by placedAtKey + "#" + order id, so a key-ordered listing is oldest first and no
// document grows with the customer's history (DynamoDB items stop at 400 KB). The
// documents of the first layout (one per customer, in CustomersCollection) are cleared
// by a rebuild of the projection, which builds these.
func CustomerOrdersCollection(customerID string) string {
	return CustomersCollection + "/" + customerID
}

// placedAtKey renders an order's placement time so that keys sort as times do.
func placedAtKey(t *time.Time) string {
	if t == nil {
		return "0000-00-00T00:00:00.000000000Z"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

// customerIndex is the order → customer lookup: later events of an order find its line.
type customerIndex struct {
	CustomerID string `json:"customerId"`
	LineKey    string `json:"lineKey,omitempty"`
}

// CustomerProjection is the cross-aggregate read model: a customer's orders, fed by
// order streams (the guard is per order).
type CustomerProjection struct{}

func (CustomerProjection) Name() string             { return "customer-orders" }
func (CustomerProjection) AggregateTypes() []string { return []string{AggregateType} }
func (CustomerProjection) Collections() []string    { return []string{CustomersCollection, orderIndex} }

// Apply keeps one document per (customer, order). A Placed event writes the line afresh
// (a rebuild replays over lines it does not clear, and must not evolve from them).
func (CustomerProjection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	var idx customerIndex
	var line CustomerOrder
	if e.EventType == Placed {
		var p PlacedPayload
		if err := e.Decode(&p); err != nil {
			return err
		}
		idx.CustomerID = p.CustomerID
	} else {
		if ok, err := tx.Get(ctx, orderIndex, e.AggregateID, &idx); err != nil || !ok {
			return err
		}
		if idx.LineKey == "" { // indexed by the first layout: a rebuild moves it
			return nil
		}
		if _, err := tx.Get(ctx, CustomerOrdersCollection(idx.CustomerID), idx.LineKey, &line); err != nil {
			return err
		}
	}
	o := Order{ID: e.AggregateID, Status: line.Status, TotalAmount: line.TotalAmount, PlacedAt: line.PlacedAt,
		ShippedAt: line.ShippedAt, Reason: line.Reason}
	o, err := Evolve(o, e)
	if err != nil {
		return err
	}
	if e.EventType == Placed {
		idx.LineKey = placedAtKey(o.PlacedAt) + "#" + e.AggregateID
		if err := tx.Put(ctx, orderIndex, e.AggregateID, idx); err != nil {
			return err
		}
	}
	return tx.Put(ctx, CustomerOrdersCollection(idx.CustomerID), idx.LineKey, CustomerOrder{OrderID: e.AggregateID,
		Status: o.Status, Reason: o.Reason, TotalAmount: o.TotalAmount, PlacedAt: o.PlacedAt, ShippedAt: o.ShippedAt})
}
