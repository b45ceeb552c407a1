package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/money"
)

func (s *Server) accountRoutes() {
	s.Handle("POST /accounts/{id}/open", s.openAccount)
	s.Handle("POST /accounts/{id}/deposit", s.moveMoney(bank.Deposit))
	s.Handle("POST /accounts/{id}/withdraw", s.moveMoney(bank.Withdraw))
	s.Handle("POST /accounts/{id}/close", s.closeAccount)
	s.Handle("GET /accounts", s.RequireAdmin(s.listAccounts))
	s.Handle("GET /accounts/{id}", s.getAccount)
	s.Handle("GET /accounts/{id}/events", s.accountEvents)
}

func accountView(l aggregate.Loaded[bank.Account]) any { return l.State }

func accountOwner(a bank.Account) string { return a.Owner }

func (s *Server) openAccount(w http.ResponseWriter, r *http.Request) error {
	id, err := PathID(r, "id")
	if err != nil {
		return err
	}
	var body struct {
		InitialDeposit money.Amount `json:"initialDeposit"`
	}
	if err := Decode(r, &body, true); err != nil {
		return err
	}
	return Execute(s, w, r, s.Accounts, id, bank.Open(body.InitialDeposit), http.StatusCreated, accountView)
}

func (s *Server) moveMoney(cmd func(money.Amount, string) aggregate.Command[bank.Account]) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := PathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			Amount *money.Amount `json:"amount"`
		}
		if err := Decode(r, &body, false); err != nil {
			return err
		}
		if body.Amount == nil {
			return errBadRequest("amount is required")
		}
		return Execute(s, w, r, s.Accounts, id, Owned(s, r, cmd(*body.Amount, ""), accountOwner), http.StatusOK, accountView)
	}
}

func (s *Server) closeAccount(w http.ResponseWriter, r *http.Request) error {
	id, err := PathID(r, "id")
	if err != nil {
		return err
	}
	var body struct{}
	if err := Decode(r, &body, true); err != nil {
		return err
	}
	return Execute(s, w, r, s.Accounts, id, Owned(s, r, bank.Close(), accountOwner), http.StatusOK, accountView)
}

// getAccount answers from the read model; ?consistent=true or an as-of time replays the
// store instead. A read model that has not caught up yet falls back to a replay (read
// repair), so a client never sees 404 for an account it just opened.
func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	id, err := PathID(r, "id")
	if err != nil {
		return err
	}
	at, err := AsOf(r)
	if err != nil {
		return err
	}
	if at.IsZero() && r.URL.Query().Get("consistent") != "true" {
		var v bank.View
		ok, err := s.Docs.Get(r.Context(), bank.AccountsCollection, id, &v)
		if err != nil {
			return err
		}
		if ok && v.Owner != "" { // a read model from before owners were recorded: replay
			if err := s.AllowOwner(r, v.Owner); err != nil {
				return err
			}
			WriteState(w, http.StatusOK, v.Account, v.Version, v.LastEventID)
			return nil
		}
	}
	l, err := Replay(r, s.Accounts, id)
	if err != nil {
		return err
	}
	if err := s.AllowOwner(r, l.State.Owner); err != nil {
		return err
	}
	WriteState(w, http.StatusOK, l.State, l.Version, LastID(l.Last))
	return nil
}

// listAccounts is GET /accounts?limit=&cursor=: the accounts read model ("all accounts"),
// in account-id order, a page at a time. Like the read model it trails the events: an
// account opened a moment ago may not be listed yet.
func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	p, err := ParsePage(r)
	if err != nil {
		return err
	}
	docs, next, err := s.Docs.ListPage(r.Context(), bank.AccountsCollection, p.After, p.Limit)
	if err != nil {
		return err
	}
	accounts := make([]bank.Account, 0, len(docs))
	for _, d := range docs {
		var v bank.View
		if err := json.Unmarshal(d.Raw, &v); err != nil {
			return fmt.Errorf("accounts read model %s: %w", d.Key, err)
		}
		accounts = append(accounts, v.Account)
	}
	body := map[string]any{"accounts": accounts}
	if next != "" {
		body["nextCursor"] = EncodeCursor(next)
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) accountEvents(w http.ResponseWriter, r *http.Request) error {
	return s.OwnedStreamEvents(w, r, bank.AggregateType)
}

// StreamEvents answers GET /<things>/{id}/events for any aggregate type: the stream's
// events (upcast), as of x-ecm-as-of / ?asOf= when given.
func (s *Server) StreamEvents(w http.ResponseWriter, r *http.Request, aggregateType string) error {
	id, err := PathID(r, "id")
	if err != nil {
		return err
	}
	at, err := AsOf(r)
	if err != nil {
		return err
	}
	events, err := s.Store.Load(r.Context(), eventstore.Stream{Type: aggregateType, ID: id}, eventstore.Range{Until: at})
	if err != nil {
		return err
	}
	if len(events) == 0 {
		if all, err := s.Store.Load(r.Context(), eventstore.Stream{Type: aggregateType, ID: id}, eventstore.Range{To: 1}); err != nil || len(all) == 0 {
			return errNotFound("%s %s not found", aggregateType, id)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": nonNil(events)})
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
