package bank

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// NewRepository is the accounts repository over env. The product builds one and shares
// it: the bank's routes and the orders saga move money through the same repository, so
// commands on one account take turns in process.
func NewRepository(env api.Env) *aggregate.Repository[Account] {
	return aggregate.NewRepository(env.Store, Definition, env.Aggregate)
}

// Module is the bank as the product runs it: its events, the accounts read model and
// the /accounts routes over accounts.
func Module(env api.Env, accounts *aggregate.Repository[Account]) api.Module {
	return api.Module{Name: "bank", Events: Register, Projections: []projection.Projection{Projection{}},
		Routes: HTTP{Accounts: accounts, Docs: env.Docs}.Routes}
}

// HTTP serves /accounts.
type HTTP struct {
	Accounts *aggregate.Repository[Account]
	Docs     docstore.Store
}

func (h HTTP) Routes(s *api.Server) {
	s.Handle("POST /accounts/{id}/open", h.open(s))
	s.Handle("POST /accounts/{id}/deposit", h.moveMoney(s, Deposit))
	s.Handle("POST /accounts/{id}/withdraw", h.moveMoney(s, Withdraw))
	s.Handle("POST /accounts/{id}/close", h.close(s))
	s.Handle("GET /accounts", s.RequireAdmin(h.list))
	// The read model, or a replay for ?consistent=true, an as-of time, or a read model
	// that has not caught up yet (so a client never sees 404 for an account it just
	// opened).
	s.Handle("GET /accounts/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return api.OwnedReadModelOrReplay(s, w, r, h.Docs, AccountsCollection, h.Accounts, accountView,
			func(a *Account) int64 { return a.Version }, func(a *Account) string { return a.Owner })
	})
	s.Handle("GET /accounts/{id}/events", func(w http.ResponseWriter, r *http.Request) error {
		return s.OwnedStreamEvents(w, r, AggregateType)
	})
}

func accountView(l aggregate.Loaded[Account]) any { return l.State }

func accountOwner(a Account) string { return a.Owner }

func (h HTTP) open(s *api.Server) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			InitialDeposit money.Amount `json:"initialDeposit"`
		}
		if err := api.Decode(r, &body, true); err != nil {
			return err
		}
		return api.Execute(s, w, r, h.Accounts, id, Open(body.InitialDeposit), http.StatusCreated, accountView)
	}
}

func (h HTTP) moveMoney(s *api.Server, cmd func(money.Amount, string) aggregate.Command[Account]) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			Amount *money.Amount `json:"amount"`
		}
		if err := api.Decode(r, &body, false); err != nil {
			return err
		}
		if body.Amount == nil {
			return api.BadRequest("amount is required")
		}
		return api.Execute(s, w, r, h.Accounts, id, api.Owned(s, r, cmd(*body.Amount, ""), accountOwner), http.StatusOK, accountView)
	}
}

func (h HTTP) close(s *api.Server) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var body struct{}
		if err := api.Decode(r, &body, true); err != nil {
			return err
		}
		return api.Execute(s, w, r, h.Accounts, id, api.Owned(s, r, Close(), accountOwner), http.StatusOK, accountView)
	}
}

// list is GET /accounts?limit=&cursor=: the accounts read model ("all accounts"), in
// account-id order, a page at a time. Like the read model it trails the events: an
// account opened a moment ago may not be listed yet.
func (h HTTP) list(w http.ResponseWriter, r *http.Request) error {
	p, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	docs, next, err := h.Docs.ListPage(r.Context(), AccountsCollection, p.After, p.Limit)
	if err != nil {
		return err
	}
	accounts := make([]Account, 0, len(docs))
	for _, d := range docs {
		var v View
		if err := json.Unmarshal(d.Raw, &v); err != nil {
			return fmt.Errorf("accounts read model %s: %w", d.Key, err)
		}
		accounts = append(accounts, v.Account)
	}
	body := map[string]any{"accounts": accounts}
	if next != "" {
		body["nextCursor"] = api.EncodeCursor(next)
	}
	api.WriteJSON(w, http.StatusOK, body)
	return nil
}
