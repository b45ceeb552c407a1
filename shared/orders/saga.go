package orders

import (
	"context"
	"errors"
	"slices"
	"sort"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
)

// Saga is the order-fulfilment process manager of seed 001, driven by the order's events:
//
//	OrderPlaced → withdraw the total from the payment account → OrderPaid
//	              (insufficient funds, closed or unknown account → OrderCancelled payment_declined)
//	OrderPaid   → reserve stock for every item → OrderConfirmed
//	              (missing stock → release what was reserved, refund, OrderCancelled out_of_stock)
//
// It keeps a durable step log, the order's Fulfilment stream, and works it like a
// write-ahead log: a step is looked up before it is issued, recorded once it took effect,
// and a decision that changes the course (payment declined, compensation) is recorded
// before its consequences are issued, so a redelivery continues what was decided instead
// of deciding again on a state that has moved on. Every command it issues carries an
// idempotency seed (the causing event's id and the step), so a step issued again after a
// crash between the step and its record is recognised by the store and takes effect
// once. Compensation is exact: only what the log says was reserved is released, the
// refund is issued once. A rebuild or a redelivery therefore never repeats a side effect.
//
// It is a stream-triggered consumer (a projection.Reactor): on AWS its own Lambda on the
// stream, locally the in-process runner. Every event it causes carries the causing
// event's id as causationId and the original request's correlationId.
type Saga struct {
	Orders     *aggregate.Repository[Order]
	Products   *aggregate.Repository[Product]
	Accounts   *aggregate.Repository[bank.Account]
	Fulfilment *aggregate.Repository[Fulfilment]
}

// Actor is the actor recorded on the saga's events.
const Actor = "saga:order-fulfilment"

func (Saga) Name() string             { return "order-saga" }
func (Saga) AggregateTypes() []string { return []string{AggregateType} }

// Collections is empty: the saga's state is its step log, in the event store, which a
// rebuild replays but never clears.
func (Saga) Collections() []string { return nil }

// Apply is unused: the engine calls React outside any document-store transaction.
func (Saga) Apply(context.Context, docstore.Tx, event.Event) error { return nil }

// caused is the metadata of everything the saga does for cause.
func caused(cause event.Event) event.Metadata {
	return event.Metadata{Actor: Actor, Source: "saga", CorrelationID: cause.Metadata.CorrelationID, CausationID: cause.EventID}
}

// opts are a step's options: its event ids derive from the cause and the step.
func opts(cause event.Event, step string) aggregate.Options {
	return aggregate.Options{IdempotencySeed: cause.EventID + "/" + step, Metadata: caused(cause)}
}

// declined reports a payment failure that cancels the order (not a transient error).
func declined(err error) bool {
	var re *aggregate.RuleError
	return errors.Is(err, aggregate.ErrNotFound) || (errors.As(err, &re) &&
		(re.Code == "insufficient_funds" || re.Code == "account_closed" || re.Code == "invalid_amount"))
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

func (s Saga) log(ctx context.Context, orderID string) (Fulfilment, error) {
	l, err := s.Fulfilment.Load(ctx, orderID)
	return l.State, err
}

// record appends a step to the log once: Record is a no-op for a step the log has, and
// the repository only takes a no-op as final on the store's state. So the entry needs no
// seeded id, and on DynamoDB it is a plain conditional put rather than a guarded
// transaction.
func (s Saga) record(ctx context.Context, cause event.Event, st StepRecorded) error {
	_, err := s.Fulfilment.Execute(ctx, cause.AggregateID, Record(st), aggregate.Options{Metadata: caused(cause)})
	return err
}

func (s Saga) pay(ctx context.Context, e event.Event) error {
	var p PlacedPayload
	if err := e.Decode(&p); err != nil {
		return err
	}
	log, err := s.log(ctx, e.AggregateID)
	if err != nil {
		return err
	}
	if log.Payment == "" {
		outcome := PaymentTaken
		if p.PaymentAccountID == "" {
			outcome = PaymentDeclined
		} else {
			_, err := s.Accounts.Execute(ctx, p.PaymentAccountID, bank.Withdraw(p.TotalAmount, e.AggregateID), opts(e, "withdraw"))
			switch {
			case declined(err):
				outcome = PaymentDeclined
			case err != nil:
				return err
			}
		}
		if err := s.record(ctx, e, StepRecorded{Step: StepPayment, Outcome: outcome, Amount: p.TotalAmount, AccountID: p.PaymentAccountID}); err != nil {
			return err
		}
		log.Payment = outcome
	}
	if log.Payment == PaymentDeclined {
		_, err := s.Orders.Execute(ctx, e.AggregateID, Cancel(ReasonPaymentDeclined, false), opts(e, "cancel"))
		return ignoreSettled(err)
	}
	_, err = s.Orders.Execute(ctx, e.AggregateID, MarkPaid(p.TotalAmount), opts(e, "paid"))
	return ignoreSettled(err)
}

func (s Saga) reserve(ctx context.Context, e event.Event) error {
	o, err := s.Orders.LoadVersion(ctx, e.AggregateID, e.Version)
	if err != nil {
		return err
	}
	log, err := s.log(ctx, e.AggregateID)
	if err != nil {
		return err
	}
	if log.Compensating {
		return s.compensate(ctx, e, o.State, log)
	}
	items := append([]Item(nil), o.State.Items...)
	sort.Slice(items, func(i, j int) bool { return items[i].ProductID < items[j].ProductID })
	for _, it := range items {
		if slices.Contains(log.Reserved, it.ProductID) {
			continue
		}
		_, err := s.Products.Execute(ctx, it.ProductID, Reserve(e.AggregateID, it.Quantity), opts(e, "reserve/"+it.ProductID))
		var re *aggregate.RuleError
		if errors.As(err, &re) && re.Code == "out_of_stock" {
			// Decided: from here on the order is compensated, whatever stock appears later.
			if err := s.record(ctx, e, StepRecorded{Step: StepCompensation, ProductID: it.ProductID, Outcome: ReasonOutOfStock}); err != nil {
				return err
			}
			return s.compensate(ctx, e, o.State, log)
		}
		if err != nil {
			return err
		}
		if err := s.record(ctx, e, StepRecorded{Step: StepReserved, ProductID: it.ProductID, Quantity: it.Quantity}); err != nil {
			return err
		}
		log.Reserved = append(log.Reserved, it.ProductID)
	}
	_, err = s.Orders.Execute(ctx, e.AggregateID, Confirm(), opts(e, "confirm"))
	return ignoreSettled(err)
}

// compensate releases what the log says was reserved, refunds the payment once and
// cancels the order. Every reservation made before compensation was decided is in the
// log: reservations are made one at a time, each recorded before the next.
func (s Saga) compensate(ctx context.Context, e event.Event, o Order, log Fulfilment) error {
	for _, pid := range log.Reserved {
		if slices.Contains(log.Released, pid) {
			continue
		}
		if _, err := s.Products.Execute(ctx, pid, Release(e.AggregateID), opts(e, "release/"+pid)); err != nil {
			return err
		}
		if err := s.record(ctx, e, StepRecorded{Step: StepReleased, ProductID: pid}); err != nil {
			return err
		}
	}
	if log.Payment == PaymentTaken && !log.Refunded {
		if _, err := s.Accounts.Execute(ctx, o.PaymentAccountID, bank.Deposit(o.TotalAmount, e.AggregateID), opts(e, "refund")); err != nil {
			return err
		}
		if err := s.record(ctx, e, StepRecorded{Step: StepRefunded, Amount: o.TotalAmount, AccountID: o.PaymentAccountID}); err != nil {
			return err
		}
	}
	_, err := s.Orders.Execute(ctx, e.AggregateID, Cancel(ReasonOutOfStock, log.Payment == PaymentTaken), opts(e, "cancel"))
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
