// Package orders is seed 001's order system: orders (with the OrderPlaced upcaster),
// products with stock reservations, the fulfilment saga that pays and reserves, and the
// customers' orders read model.
package orders

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/money"
)

// AggregateType of orders.
const AggregateType = "Order"

// Event types.
const (
	Placed    = "OrderPlaced"
	Paid      = "OrderPaid"
	Confirmed = "OrderConfirmed"
	Cancelled = "OrderCancelled"
	Shipped   = "OrderShipped"
)

// Statuses.
const (
	StatusPlaced    = "PLACED"
	StatusPaid      = "PAID"
	StatusConfirmed = "CONFIRMED"
	StatusShipped   = "SHIPPED"
	StatusCancelled = "CANCELLED"
)

// Cancellation reasons.
const (
	ReasonPaymentDeclined = "payment_declined"
	ReasonOutOfStock      = "out_of_stock"
)

// Item is one order line; price is exact money.
type Item struct {
	ProductID string       `json:"productId"`
	Quantity  int          `json:"quantity"`
	Price     money.Amount `json:"price"`
}

// PlacedPayload is OrderPlaced at schema 2 (schema 1 had no totalAmount).
type PlacedPayload struct {
	CustomerID       string       `json:"customerId"`
	PaymentAccountID string       `json:"paymentAccountId,omitempty"`
	Items            []Item       `json:"items"`
	TotalAmount      money.Amount `json:"totalAmount"`
}

// Other payloads.
type (
	PaidPayload struct {
		Amount money.Amount `json:"amount"`
	}
	CancelledPayload struct {
		Reason   string `json:"reason"`
		Refunded bool   `json:"refunded,omitempty"`
	}
	Empty struct{}
)

// Order is the aggregate state and the read model.
type Order struct {
	ID               string       `json:"id"`
	CustomerID       string       `json:"customerId"`
	PaymentAccountID string       `json:"paymentAccountId,omitempty"`
	Items            []Item       `json:"items"`
	TotalAmount      money.Amount `json:"totalAmount"`
	Status           string       `json:"status"`
	Reason           string       `json:"reason,omitempty"`
	PlacedAt         *time.Time   `json:"placedAt,omitempty"`
	PaidAt           *time.Time   `json:"paidAt,omitempty"`
	ConfirmedAt      *time.Time   `json:"confirmedAt,omitempty"`
	ShippedAt        *time.Time   `json:"shippedAt,omitempty"`
	CancelledAt      *time.Time   `json:"cancelledAt,omitempty"`
	Version          int64        `json:"version"`
}

// Total is Σ price × quantity, exactly.
func Total(items []Item) (money.Amount, error) {
	var t money.Amount
	for _, it := range items {
		line := it.Price * money.Amount(it.Quantity)
		if it.Quantity != 0 && line/money.Amount(it.Quantity) != it.Price {
			return 0, money.ErrRange
		}
		var err error
		if t, err = t.Add(line); err != nil {
			return 0, err
		}
	}
	return t, nil
}

// UpcastPlacedV1 is the seed's upcaster: OrderPlaced schema 1 has no totalAmount; the
// total is computed from the items — with exact money, not the seed's floats.
func UpcastPlacedV1(e event.Event) (event.Event, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &raw); err != nil {
		return e, err
	}
	var items []Item
	if err := json.Unmarshal(raw["items"], &items); err != nil {
		return e, fmt.Errorf("items: %w", err)
	}
	if _, ok := raw["totalAmount"]; !ok {
		total, err := Total(items)
		if err != nil {
			return e, err
		}
		raw["totalAmount"], _ = json.Marshal(total)
	}
	payload, err := json.Marshal(raw)
	if err != nil {
		return e, err
	}
	e.Payload, e.SchemaVersion = payload, 2
	return e, nil
}

// Register adds the event types and the upcaster.
func Register(r *event.Registry) {
	r.Register(Placed, 2)
	r.Upcaster(Placed, 1, UpcastPlacedV1)
	for _, t := range []string{Paid, Confirmed, Cancelled, Shipped} {
		r.Register(t, 1)
	}
	for _, t := range []string{StockAdded, StockReserved, StockReleased, FulfilmentStepRecorded} {
		r.Register(t, 1)
	}
}

// Definition is the order aggregate.
var Definition = aggregate.Definition[Order]{
	Type:            AggregateType,
	New:             func(id string) Order { return Order{ID: id} },
	Apply:           Evolve,
	SnapshotVersion: 1,
}

// Evolve applies one event.
func Evolve(o Order, e event.Event) (Order, error) {
	ts := e.Timestamp
	switch e.EventType {
	case Placed:
		var p PlacedPayload
		if err := e.Decode(&p); err != nil {
			return o, err
		}
		o.CustomerID, o.PaymentAccountID, o.Items, o.TotalAmount = p.CustomerID, p.PaymentAccountID, p.Items, p.TotalAmount
		o.Status, o.PlacedAt = StatusPlaced, &ts
	case Paid:
		o.Status, o.PaidAt = StatusPaid, &ts
	case Confirmed:
		o.Status, o.ConfirmedAt = StatusConfirmed, &ts
	case Cancelled:
		var p CancelledPayload
		if err := e.Decode(&p); err != nil {
			return o, err
		}
		o.Status, o.Reason, o.CancelledAt = StatusCancelled, p.Reason, &ts
	case Shipped:
		o.Status, o.ShippedAt = StatusShipped, &ts
	default:
		return o, nil
	}
	o.Version = e.Version
	return o, nil
}

// Place places an order.
func Place(customerID, paymentAccountID string, items []Item) aggregate.Command[Order] {
	return func(o Order, v int64) ([]event.Event, error) {
		if v > 0 {
			return nil, &aggregate.ExistsError{Type: AggregateType, ID: o.ID, Current: v}
		}
		if !event.ValidID(customerID) || (paymentAccountID != "" && !event.ValidID(paymentAccountID)) {
			return nil, eventstore.Invalid("customerId and paymentAccountId must be 1–128 characters of A-Z a-z 0-9 . _ : -")
		}
		if len(items) == 0 || len(items) > 100 {
			return nil, aggregate.Rule("invalid_order", "an order has 1 to 100 items")
		}
		for _, it := range items {
			if !event.ValidID(it.ProductID) {
				return nil, aggregate.Rule("invalid_order", "productId %q is not a valid id", it.ProductID)
			}
			if it.Quantity < 1 || it.Quantity > 1_000_000 {
				return nil, aggregate.Rule("invalid_order", "quantity must be a positive integer")
			}
			if it.Price <= 0 {
				return nil, aggregate.Rule("invalid_amount", "price must be positive")
			}
		}
		total, err := Total(items)
		if err != nil {
			return nil, aggregate.Rule("invalid_amount", "total out of range")
		}
		return []event.Event{event.MustNew(Placed, PlacedPayload{CustomerID: customerID, PaymentAccountID: paymentAccountID,
			Items: items, TotalAmount: total})}, nil
	}
}

func step(from []string, eventType string, payload any, failCode string) aggregate.Command[Order] {
	return func(o Order, v int64) ([]event.Event, error) {
		if v == 0 {
			return nil, aggregate.NotFound(AggregateType, o.ID)
		}
		for _, f := range from {
			if o.Status == f {
				return []event.Event{event.MustNew(eventType, payload)}, nil
			}
		}
		return nil, aggregate.Rule(failCode, "order %s is %s", o.ID, o.Status)
	}
}

// MarkPaid records the payment (saga).
func MarkPaid(amount money.Amount) aggregate.Command[Order] {
	return step([]string{StatusPlaced}, Paid, PaidPayload{Amount: amount}, "invalid_transition")
}

// Confirm confirms a paid order whose stock is reserved (saga).
func Confirm() aggregate.Command[Order] {
	return step([]string{StatusPaid}, Confirmed, Empty{}, "invalid_transition")
}

// Cancel cancels an order that is not yet confirmed (saga).
func Cancel(reason string, refunded bool) aggregate.Command[Order] {
	return step([]string{StatusPlaced, StatusPaid}, Cancelled, CancelledPayload{Reason: reason, Refunded: refunded}, "invalid_transition")
}

// Ship ships a confirmed order; anything else is 422 not_confirmed.
func Ship() aggregate.Command[Order] {
	return step([]string{StatusConfirmed}, Shipped, Empty{}, "not_confirmed")
}
