package orders

import (
	"context"
	"errors"
	"sort"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
)

// Saga is the order-fulfilment saga of seed 001, orchestrated from the order's events:
//
//	OrderPlaced → withdraw the total from the payment account → OrderPaid
//	              (insufficient funds, closed or unknown account → OrderCancelled payment_declined)
//	OrderPaid   → reserve stock for every item → OrderConfirmed
//	              (missing stock → release what was reserved, refund, OrderCancelled out_of_stock)
//
// It is a stream-triggered consumer (a projection.Reactor with its own guard per order):
// on AWS its own Lambda on the stream, locally the in-process runner. Every command it
// issues is idempotent twice over: its event ids derive from the causing event (so the
// store or the repository recognises a re-run) and the steps it completed are recorded
// in its own collection, which rebuilds never clear. Every event it causes carries the
// causing event's id as causationId and the original request's correlationId.
type Saga struct {
	Orders   *aggregate.Repository[Order]
	Products *aggregate.Repository[Product]
	Accounts *aggregate.Repository[bank.Account]
	Docs     docstore.Store
}

const sagaCollection = "order-saga"

// Actor is the actor recorded on the saga's events.
const Actor = "saga:order-fulfilment"

type sagaState struct {
	Withdrawn bool     `json:"withdrawn,omitempty"`
	Reserved  []string `json:"reserved,omitempty"`
	Refunded  bool     `json:"refunded,omitempty"`
}

func (Saga) Name() string             { return "order-saga" }
func (Saga) AggregateTypes() []string { return []string{AggregateType} }

// Collections is empty on purpose: a rebuild replays the orders but must not forget
// which payments were already made.
func (Saga) Collections() []string { return nil }

// Apply is unused: the engine calls React outside any document-store transaction.
func (Saga) Apply(context.Context, docstore.Tx, event.Event) error { return nil }

func opts(cause event.Event, step string) aggregate.Options {
	return aggregate.Options{IdempotencySeed: cause.EventID + "/" + step, Metadata: event.Metadata{
		Actor: Actor, Source: "saga", CorrelationID: cause.Metadata.CorrelationID, CausationID: cause.EventID}}
}

// declined reports a payment failure that cancels the order (not a transient error).
func declined(err error) bool {
	var re *aggregate.RuleError
	return errors.Is(err, aggregate.ErrNotFound) || (errors.As(err, &re) &&
		(re.Code == "insufficient_funds" || re.Code == "account_closed" || re.Code == "invalid_amount"))
}

func (s Saga) state(ctx context.Context, orderID string) (sagaState, error) {
	var st sagaState
	_, err := s.Docs.Get(ctx, sagaCollection, orderID, &st)
	return st, err
}

func (s Saga) save(ctx context.Context, orderID string, st sagaState) error {
	return s.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return tx.Put(ctx, sagaCollection, orderID, st)
	})
}

// React runs the saga step for one order event.
func (s Saga) React(ctx context.Context, e event.Event) error {
	switch e.EventType {
	case Placed:
		return s.pay(ctx, e)
	case Paid:
		return s.reserve(ctx, e)
	}
	return nil
}

func (s Saga) pay(ctx context.Context, e event.Event) error {
	var p PlacedPayload
	if err := e.Decode(&p); err != nil {
		return err
	}
	st, err := s.state(ctx, e.AggregateID)
	if err != nil {
		return err
	}
	if !st.Withdrawn {
		if p.PaymentAccountID == "" {
			_, err := s.Orders.Execute(ctx, e.AggregateID, Cancel(ReasonPaymentDeclined, false), opts(e, "cancel"))
			return ignoreSettled(err)
		}
		_, err := s.Accounts.Execute(ctx, p.PaymentAccountID, bank.Withdraw(p.TotalAmount, e.AggregateID), opts(e, "withdraw"))
		if declined(err) {
			_, err := s.Orders.Execute(ctx, e.AggregateID, Cancel(ReasonPaymentDeclined, false), opts(e, "cancel"))
			return ignoreSettled(err)
		}
		if err != nil {
			return err
		}
		st.Withdrawn = true
		if err := s.save(ctx, e.AggregateID, st); err != nil {
			return err
		}
	}
	_, err = s.Orders.Execute(ctx, e.AggregateID, MarkPaid(p.TotalAmount), opts(e, "paid"))
	return ignoreSettled(err)
}

func (s Saga) reserve(ctx context.Context, e event.Event) error {
	o, err := s.Orders.LoadVersion(ctx, e.AggregateID, e.Version)
	if err != nil {
		return err
	}
	st, err := s.state(ctx, e.AggregateID)
	if err != nil {
		return err
	}
	items := append([]Item(nil), o.State.Items...)
	sort.Slice(items, func(i, j int) bool { return items[i].ProductID < items[j].ProductID })
	for _, it := range items {
		_, err := s.Products.Execute(ctx, it.ProductID, Reserve(e.AggregateID, it.Quantity), opts(e, "reserve/"+it.ProductID))
		var re *aggregate.RuleError
		if errors.As(err, &re) && re.Code == "out_of_stock" {
			return s.compensate(ctx, e, o.State, st)
		}
		if err != nil {
			return err
		}
		st.Reserved = append(st.Reserved, it.ProductID)
		if err := s.save(ctx, e.AggregateID, st); err != nil {
			return err
		}
	}
	_, err = s.Orders.Execute(ctx, e.AggregateID, Confirm(), opts(e, "confirm"))
	return ignoreSettled(err)
}

// compensate releases every reservation, refunds the payment and cancels the order.
func (s Saga) compensate(ctx context.Context, e event.Event, o Order, st sagaState) error {
	for _, it := range o.Items {
		if _, err := s.Products.Execute(ctx, it.ProductID, Release(e.AggregateID), opts(e, "release/"+it.ProductID)); err != nil {
			return err
		}
	}
	if !st.Refunded {
		if _, err := s.Accounts.Execute(ctx, o.PaymentAccountID, bank.Deposit(o.TotalAmount, e.AggregateID), opts(e, "refund")); err != nil {
			return err
		}
		st.Refunded = true
		if err := s.save(ctx, e.AggregateID, st); err != nil {
			return err
		}
	}
	_, err := s.Orders.Execute(ctx, e.AggregateID, Cancel(ReasonOutOfStock, true), opts(e, "cancel"))
	return ignoreSettled(err)
}

// ignoreSettled: a step whose order already moved on (a redelivery after the step
// succeeded) is done, not failed.
func ignoreSettled(err error) error {
	var re *aggregate.RuleError
	if errors.As(err, &re) && re.Code == "invalid_transition" {
		return nil
	}
	return err
}
