package bank_test

import (
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/aggregate/aggregatetest"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/money"
)

func amt(s string) money.Amount {
	a, err := money.Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

func opened(s string) event.Event {
	return event.MustNew(bank.AccountOpened, bank.Opened{InitialDeposit: amt(s)})
}
func deposited(s string) event.Event {
	return event.MustNew(bank.MoneyDeposited, bank.Movement{Amount: amt(s)})
}
func withdrawn(s string) event.Event {
	return event.MustNew(bank.MoneyWithdrawn, bank.Movement{Amount: amt(s)})
}
func closed() event.Event { return event.MustNew(bank.AccountClosed, bank.Closed{}) }

func TestRules(t *testing.T) {
	def := bank.Definition
	t.Run("open", func(t *testing.T) { aggregatetest.Given(def).When(bank.Open(amt("1000"))).Then(t, opened("1000")) })
	t.Run("open twice", func(t *testing.T) {
		aggregatetest.Given(def, opened("1")).When(bank.Open(amt("1"))).ThenErrorIs(t, aggregate.ErrExists)
	})
	t.Run("negative opening", func(t *testing.T) {
		aggregatetest.Given(def).When(bank.Open(amt("-1"))).ThenError(t, "invalid_amount")
	})
	t.Run("deposit", func(t *testing.T) {
		aggregatetest.Given(def, opened("1000")).When(bank.Deposit(amt("500"), "")).Then(t, deposited("500"))
	})
	t.Run("deposit unknown", func(t *testing.T) {
		aggregatetest.Given(def).When(bank.Deposit(amt("5"), "")).ThenErrorIs(t, aggregate.ErrNotFound)
	})
	t.Run("deposit zero", func(t *testing.T) {
		aggregatetest.Given(def, opened("1")).When(bank.Deposit(0, "")).ThenError(t, "invalid_amount")
	})
	t.Run("withdraw", func(t *testing.T) {
		aggregatetest.Given(def, opened("1000"), deposited("500")).When(bank.Withdraw(amt("1500"), "")).Then(t, withdrawn("1500"))
	})
	t.Run("insufficient funds", func(t *testing.T) {
		aggregatetest.Given(def, opened("1000"), withdrawn("999.99")).When(bank.Withdraw(amt("0.02"), "")).ThenError(t, "insufficient_funds")
	})
	t.Run("withdraw negative", func(t *testing.T) {
		aggregatetest.Given(def, opened("1000")).When(bank.Withdraw(amt("-5"), "")).ThenError(t, "invalid_amount")
	})
	t.Run("closed account", func(t *testing.T) {
		aggregatetest.Given(def, opened("0"), closed()).When(bank.Deposit(amt("5"), "")).ThenError(t, "account_closed")
	})
	t.Run("close with balance", func(t *testing.T) {
		aggregatetest.Given(def, opened("10")).When(bank.Close()).ThenError(t, "balance_not_zero")
	})
	t.Run("close", func(t *testing.T) {
		aggregatetest.Given(def, opened("10"), withdrawn("10")).When(bank.Close()).Then(t, closed())
	})
	t.Run("close twice", func(t *testing.T) {
		aggregatetest.Given(def, opened("0"), closed()).When(bank.Close()).ThenError(t, "account_closed")
	})
}

func TestEvolveExactMoney(t *testing.T) {
	a := bank.Account{ID: "x"}
	var err error
	for i, e := range []event.Event{opened("0.1"), deposited("0.2")} {
		e.Version = int64(i + 1)
		if a, err = bank.Evolve(a, e); err != nil {
			t.Fatal(err)
		}
	}
	if a.Balance.String() != "0.3" || a.TransactionCount != 2 || a.Version != 2 {
		t.Fatalf("account = %+v", a)
	}
}
