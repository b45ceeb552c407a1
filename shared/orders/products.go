package orders

import (
	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
)

// ProductType is the aggregate type of products (stock).
const ProductType = "Product"

// Product events.
const (
	StockAdded    = "StockAdded"
	StockReserved = "StockReserved"
	StockReleased = "StockReleased"
)

// StockPayload is every product event's payload.
type StockPayload struct {
	Quantity int    `json:"quantity"`
	OrderID  string `json:"orderId,omitempty"`
}

// Product is the stock of one product.
type Product struct {
	ID           string         `json:"id"`
	Available    int            `json:"available"`
	Reserved     int            `json:"reserved"`
	Reservations map[string]int `json:"reservations,omitempty"`
	Version      int64          `json:"version"`
}

// ProductDefinition is the product aggregate.
var ProductDefinition = aggregate.Definition[Product]{
	Type:            ProductType,
	New:             func(id string) Product { return Product{ID: id} },
	Apply:           EvolveProduct,
	SnapshotVersion: 1,
}

// EvolveProduct applies one event.
func EvolveProduct(p Product, e event.Event) (Product, error) {
	var s StockPayload
	if err := e.Decode(&s); err != nil {
		return p, err
	}
	next := map[string]int{}
	for k, v := range p.Reservations {
		next[k] = v
	}
	switch e.EventType {
	case StockAdded:
		p.Available += s.Quantity
	case StockReserved:
		p.Available -= s.Quantity
		p.Reserved += s.Quantity
		next[s.OrderID] += s.Quantity
	case StockReleased:
		p.Available += s.Quantity
		p.Reserved -= s.Quantity
		delete(next, s.OrderID)
	default:
		return p, nil
	}
	p.Reservations, p.Version = next, e.Version
	return p, nil
}

// AddStock adds stock (the product exists from its first stock).
func AddStock(q int) aggregate.Command[Product] {
	return func(p Product, _ int64) ([]event.Event, error) {
		if q < 1 || q > 1_000_000_000 {
			return nil, aggregate.Rule("invalid_quantity", "quantity must be a positive integer")
		}
		return []event.Event{event.MustNew(StockAdded, StockPayload{Quantity: q})}, nil
	}
}

// Reserve reserves stock for an order; reserving again for the same order does nothing.
func Reserve(orderID string, q int) aggregate.Command[Product] {
	return func(p Product, _ int64) ([]event.Event, error) {
		if p.Reservations[orderID] > 0 {
			return nil, nil
		}
		if p.Available < q {
			return nil, aggregate.Rule("out_of_stock", "product %s has %d available, %d wanted", p.ID, p.Available, q)
		}
		return []event.Event{event.MustNew(StockReserved, StockPayload{Quantity: q, OrderID: orderID})}, nil
	}
}

// Release releases an order's reservation, if any.
func Release(orderID string) aggregate.Command[Product] {
	return func(p Product, _ int64) ([]event.Event, error) {
		q := p.Reservations[orderID]
		if q == 0 {
			return nil, nil
		}
		return []event.Event{event.MustNew(StockReleased, StockPayload{Quantity: q, OrderID: orderID})}, nil
	}
}
