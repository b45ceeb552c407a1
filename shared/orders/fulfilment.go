package orders

import (
	"slices"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/money"
)

// FulfilmentType is the aggregate type of the saga's step log: one stream per order,
// under the order's id.
const FulfilmentType = "OrderFulfilment"

// FulfilmentStepRecorded is the one event of the step log.
const FulfilmentStepRecorded = "FulfilmentStepRecorded"

// Steps and outcomes of the log.
const (
	StepPayment      = "payment"      // Outcome: PaymentTaken or PaymentDeclined
	StepReserved     = "reserved"     // ProductID, Quantity
	StepCompensation = "compensation" // decided (ProductID: the item out of stock)
	StepReleased     = "released"     // ProductID
	StepRefunded     = "refunded"     // Amount, AccountID

	PaymentTaken    = "taken"
	PaymentDeclined = "declined"
)

// StepRecorded is the log event's payload.
type StepRecorded struct {
	Step      string       `json:"step"`
	Outcome   string       `json:"outcome,omitempty"`
	ProductID string       `json:"productId,omitempty"`
	Quantity  int          `json:"quantity,omitempty"`
	Amount    money.Amount `json:"amount,omitempty"`
	AccountID string       `json:"accountId,omitempty"`
}

// Fulfilment is what the log says happened for one order.
type Fulfilment struct {
	Payment      string   `json:"payment,omitempty"`
	Reserved     []string `json:"reserved,omitempty"`
	Compensating bool     `json:"compensating,omitempty"`
	Released     []string `json:"released,omitempty"`
	Refunded     bool     `json:"refunded,omitempty"`
}

// FulfilmentDefinition is the step log's aggregate.
var FulfilmentDefinition = aggregate.Definition[Fulfilment]{
	Type:            FulfilmentType,
	New:             func(string) Fulfilment { return Fulfilment{} },
	Apply:           EvolveFulfilment,
	SnapshotVersion: 1,
}

// EvolveFulfilment applies one log entry.
func EvolveFulfilment(f Fulfilment, e event.Event) (Fulfilment, error) {
	if e.EventType != FulfilmentStepRecorded {
		return f, nil
	}
	var st StepRecorded
	if err := e.Decode(&st); err != nil {
		return f, err
	}
	switch st.Step {
	case StepPayment:
		f.Payment = st.Outcome
	case StepReserved:
		f.Reserved = append(slices.Clone(f.Reserved), st.ProductID)
	case StepCompensation:
		f.Compensating = true
	case StepReleased:
		f.Released = append(slices.Clone(f.Released), st.ProductID)
	case StepRefunded:
		f.Refunded = true
	}
	return f, nil
}

// Record logs a step unless the log already has it.
func Record(st StepRecorded) aggregate.Command[Fulfilment] {
	return func(f Fulfilment, _ int64) ([]event.Event, error) {
		done := false
		switch st.Step {
		case StepPayment:
			done = f.Payment != ""
		case StepReserved:
			done = slices.Contains(f.Reserved, st.ProductID)
		case StepCompensation:
			done = f.Compensating
		case StepReleased:
			done = slices.Contains(f.Released, st.ProductID)
		case StepRefunded:
			done = f.Refunded
		}
		if done {
			return nil, nil
		}
		return []event.Event{event.MustNew(FulfilmentStepRecorded, st)}, nil
	}
}
