// Package bank is the bank-account domain of seed 002: open, deposit, withdraw and close,
// with exact money, and its read model.
package bank

import (
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/money"
)

// AggregateType of bank accounts.
const AggregateType = "BankAccount"

// Event types.
const (
	AccountOpened  = "AccountOpened"
	MoneyDeposited = "MoneyDeposited"
	MoneyWithdrawn = "MoneyWithdrawn"
	AccountClosed  = "AccountClosed"
)

// Payloads. Reference optionally ties a movement to what caused it (an order, for the
// fulfilment saga's payments and refunds).
type (
	Opened struct {
		InitialDeposit money.Amount `json:"initialDeposit"`
	}
	Movement struct {
		Amount    money.Amount `json:"amount"`
		Reference string       `json:"reference,omitempty"`
	}
	Closed struct{}
)

// Account is both the aggregate state and the read model (the projection applies the
// same Evolve, so a rebuilt read model equals a replay).
type Account struct {
	ID               string       `json:"id"`
	Balance          money.Amount `json:"balance"`
	IsOpen           bool         `json:"isOpen"`
	Version          int64        `json:"version"`
	TransactionCount int          `json:"transactionCount"`
	LastActivity     *time.Time   `json:"lastActivity"`
	// Owner is the principal that opened the account (the actor of AccountOpened): the
	// API's owner policy lets only it, or an admin, act on the account.
	Owner string `json:"owner,omitempty"`
}

// Register adds the bank's event types to a registry.
func Register(r *event.Registry) {
	for _, t := range []string{AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed} {
		r.Register(t, 1)
	}
}

// Definition is the aggregate definition for the repository.
var Definition = aggregate.Definition[Account]{
	Type:            AggregateType,
	New:             func(id string) Account { return Account{ID: id} },
	Apply:           Evolve,
	SnapshotVersion: 2, // 2: Owner (snapshots without it are replayed past)
}

// Evolve applies one event to an account.
func Evolve(a Account, e event.Event) (Account, error) {
	switch e.EventType {
	case AccountOpened:
		var p Opened
		if err := e.Decode(&p); err != nil {
			return a, err
		}
		a.IsOpen, a.Balance, a.TransactionCount = true, p.InitialDeposit, 1
		a.Owner = e.Metadata.Actor
	case MoneyDeposited, MoneyWithdrawn:
		var p Movement
		if err := e.Decode(&p); err != nil {
			return a, err
		}
		if e.EventType == MoneyWithdrawn {
			p.Amount = -p.Amount
		}
		a.Balance += p.Amount
		a.TransactionCount++
	case AccountClosed:
		a.IsOpen = false
	default:
		return a, nil
	}
	ts := e.Timestamp
	a.Version, a.LastActivity = e.Version, &ts
	return a, nil
}

// Open opens a new account.
func Open(initialDeposit money.Amount) aggregate.Command[Account] {
	return func(a Account, v int64) ([]event.Event, error) {
		if v > 0 {
			return nil, &aggregate.ExistsError{Type: AggregateType, ID: a.ID, Current: v}
		}
		if initialDeposit < 0 {
			return nil, aggregate.Rule("invalid_amount", "initial deposit must not be negative")
		}
		return []event.Event{event.MustNew(AccountOpened, Opened{InitialDeposit: initialDeposit})}, nil
	}
}

// Deposit adds money.
func Deposit(amount money.Amount, reference string) aggregate.Command[Account] {
	return func(a Account, v int64) ([]event.Event, error) {
		if err := usable(a, v, amount); err != nil {
			return nil, err
		}
		if _, err := a.Balance.Add(amount); err != nil {
			return nil, aggregate.Rule("invalid_amount", "the balance would exceed %s", money.Max)
		}
		return []event.Event{event.MustNew(MoneyDeposited, Movement{Amount: amount, Reference: reference})}, nil
	}
}

// Withdraw takes money out; the balance may not go below zero.
func Withdraw(amount money.Amount, reference string) aggregate.Command[Account] {
	return func(a Account, v int64) ([]event.Event, error) {
		if err := usable(a, v, amount); err != nil {
			return nil, err
		}
		if a.Balance < amount {
			return nil, aggregate.Rule("insufficient_funds", "balance %s is less than %s", a.Balance, amount)
		}
		return []event.Event{event.MustNew(MoneyWithdrawn, Movement{Amount: amount, Reference: reference})}, nil
	}
}

// Close closes an account with a zero balance.
func Close() aggregate.Command[Account] {
	return func(a Account, v int64) ([]event.Event, error) {
		if v == 0 {
			return nil, aggregate.NotFound(AggregateType, a.ID)
		}
		if !a.IsOpen {
			return nil, aggregate.Rule("account_closed", "account %s is closed", a.ID)
		}
		if a.Balance != 0 {
			return nil, aggregate.Rule("balance_not_zero", "balance is %s; withdraw it before closing", a.Balance)
		}
		return []event.Event{event.MustNew(AccountClosed, Closed{})}, nil
	}
}

func usable(a Account, v int64, amount money.Amount) error {
	if v == 0 {
		return aggregate.NotFound(AggregateType, a.ID)
	}
	if !a.IsOpen {
		return aggregate.Rule("account_closed", "account %s is closed", a.ID)
	}
	if amount <= 0 {
		return aggregate.Rule("invalid_amount", "amount must be positive")
	}
	return nil
}
