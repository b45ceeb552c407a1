package bank

import (
	"context"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
)

// AccountsCollection holds the account read model, one document per account.
const AccountsCollection = "accounts"

// Projection is the current-state read model of accounts (seed 002's AccountProjection).
type Projection struct{}

func (Projection) Name() string             { return "accounts" }
func (Projection) AggregateTypes() []string { return []string{AggregateType} }
func (Projection) Collections() []string    { return []string{AccountsCollection} }

// View is the stored read model: the account and the last event applied to it.
type View struct {
	Account
	LastEventID string `json:"lastEventId,omitempty"`
}

func (Projection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	v := View{Account: Account{ID: e.AggregateID}}
	if _, err := tx.Get(ctx, AccountsCollection, e.AggregateID, &v); err != nil {
		return err
	}
	a, err := Evolve(v.Account, e)
	if err != nil {
		return err
	}
	return tx.Put(ctx, AccountsCollection, e.AggregateID, View{Account: a, LastEventID: e.EventID})
}
