package faults_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/faults"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
)

func amount(t *testing.T, s string) money.Amount {
	a, err := money.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ev(st eventstore.Stream, v int64, typ, corr, actor string, payload any) event.Event {
	e := event.MustNew(typ, payload)
	e.EventID = fmt.Sprintf("%s-%d", st.ID, v)
	e.AggregateType, e.AggregateID, e.Version = st.Type, st.ID, v
	e.Metadata = event.Metadata{CorrelationID: corr, Actor: actor}
	return e
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// validHistory: an account opened with 1000 and topped up with 50; an order paid 30 from
// it, then cancelled out of stock and refunded; a product stocked. Nothing is wrong.
func validHistory(t *testing.T) *faults.History {
	acc := eventstore.Stream{Type: bank.AggregateType, ID: "a1"}
	ord := eventstore.Stream{Type: orders.AggregateType, ID: "o1"}
	prod := eventstore.Stream{Type: orders.ProductType, ID: "p1"}
	k1000, k50, k30 := amount(t, "1000"), amount(t, "50"), amount(t, "30")
	items := []orders.Item{{ProductID: "p1", Quantity: 9, Price: k30}}
	saga := orders.Actor
	depositBody := `{"id":"a1","balance":1050,"version":2}`
	h := &faults.History{
		Events: map[eventstore.Stream][]event.Event{
			acc: {
				ev(acc, 1, bank.AccountOpened, "c1", "client", bank.Opened{InitialDeposit: k1000}),
				ev(acc, 2, bank.MoneyDeposited, "c2", "client", bank.Movement{Amount: k50}),
				ev(acc, 3, bank.MoneyWithdrawn, "c3", saga, bank.Movement{Amount: k30, Reference: "o1"}),
				ev(acc, 4, bank.MoneyDeposited, "c3", saga, bank.Movement{Amount: k30, Reference: "o1"}),
			},
			ord: {
				ev(ord, 1, orders.Placed, "c3", "client", orders.PlacedPayload{CustomerID: "u", PaymentAccountID: "a1", Items: items, TotalAmount: k30}),
				ev(ord, 2, orders.Paid, "c3", saga, orders.PaidPayload{Amount: k30}),
				ev(ord, 3, orders.Cancelled, "c3", saga, orders.CancelledPayload{Reason: orders.ReasonOutOfStock, Refunded: true}),
			},
			prod: {ev(prod, 1, orders.StockAdded, "c4", "client", orders.StockPayload{Quantity: 5})},
		},
		Commands: []*faults.Command{
			{Seq: 1, Kind: faults.CmdOpen, Target: "a1", Amount: k1000, Key: "c1", Correlation: "c1",
				Answers: []faults.Answer{{Status: 201, Version: "1", Body: `{"id":"a1","balance":1000,"version":1}`}}},
			{Seq: 2, Kind: faults.CmdDeposit, Target: "a1", Amount: k50, Key: "c2", Correlation: "c2",
				Answers: []faults.Answer{{Status: 200, Version: "2", Body: depositBody, Lost: true},
					{Status: 200, Version: "2", Body: depositBody, Replayed: true}}},
			{Seq: 3, Kind: faults.CmdPlace, Target: "o1", Account: "a1", Items: items, Key: "c3", Correlation: "c3",
				Answers: []faults.Answer{{Status: 201, Version: "1", Body: `{"id":"o1"}`}}},
			{Seq: 4, Kind: faults.CmdStock, Target: "p1", Quantity: 5, Key: "c4", Correlation: "c4",
				Answers: []faults.Answer{{Status: 200, Version: "1", Body: `{"id":"p1"}`}}},
		},
		Accounts: []string{"a1"}, Orders: []string{"o1"}, Products: []string{"p1"},
		Replay: map[string]json.RawMessage{
			"/accounts/a1": mustJSON(bank.Account{ID: "a1", Balance: k1000 + k50, IsOpen: true, Version: 4, TransactionCount: 4}),
			"/orders/o1":   mustJSON(orders.Order{ID: "o1", Items: items, Status: orders.StatusCancelled, Reason: orders.ReasonOutOfStock, Version: 3}),
			"/products/p1": json.RawMessage(`{"id":"p1","available":5,"reserved":0,"version":1}`),
		},
	}
	for _, c := range h.Commands {
		c.Final = &c.Answers[len(c.Answers)-1]
	}
	h.ReadModel = map[string]json.RawMessage{}
	for k, v := range h.Replay {
		h.ReadModel[k] = v
	}
	return h
}

// Each kind of broken history is reported with the invariant it breaks; the valid one
// with none.
func TestCheckerCatchesEachViolation(t *testing.T) {
	acc := eventstore.Stream{Type: bank.AggregateType, ID: "a1"}
	tests := []struct {
		name   string
		mutate func(t *testing.T, h *faults.History)
		want   []string
	}{
		{"valid history", func(*testing.T, *faults.History) {}, nil},
		{"duplicated event", func(t *testing.T, h *faults.History) {
			dup := h.Events[acc][1]
			dup.Version = 5
			h.Events[acc] = append(h.Events[acc], dup)
			h.Replay["/accounts/a1"] = mustJSON(bank.Account{ID: "a1", Balance: amount(t, "1100"), IsOpen: true, Version: 5})
			h.ReadModel["/accounts/a1"] = h.Replay["/accounts/a1"]
		}, []string{faults.InvDuplicateEventID, faults.InvAppliedTwice, faults.InvBalance}},
		{"lost acknowledged deposit", func(t *testing.T, h *faults.History) {
			evs := h.Events[acc]
			h.Events[acc] = append([]event.Event{evs[0]}, evs[2:]...)
			h.Replay["/accounts/a1"] = mustJSON(bank.Account{ID: "a1", Balance: amount(t, "1000"), IsOpen: true, Version: 3})
			h.ReadModel["/accounts/a1"] = h.Replay["/accounts/a1"]
		}, []string{faults.InvLostAcknowledged, faults.InvBalance}},
		{"double refund", func(t *testing.T, h *faults.History) {
			refund := h.Events[acc][3]
			refund.EventID, refund.Version = "another-refund", 5
			h.Events[acc] = append(h.Events[acc], refund)
			h.Replay["/accounts/a1"] = mustJSON(bank.Account{ID: "a1", Balance: amount(t, "1080"), IsOpen: true, Version: 5})
			h.ReadModel["/accounts/a1"] = h.Replay["/accounts/a1"]
		}, []string{faults.InvDoubleRefund, faults.InvBalance}},
		{"wrong read model", func(t *testing.T, h *faults.History) {
			h.ReadModel["/accounts/a1"] = mustJSON(bank.Account{ID: "a1", Balance: amount(t, "1020"), IsOpen: true, Version: 3})
		}, []string{faults.InvReadModel}},
		{"retry answered differently", func(t *testing.T, h *faults.History) {
			c := h.Commands[1]
			c.Answers[1] = faults.Answer{Status: 200, Version: "3", Body: `{"id":"a1","balance":1100,"version":3}`}
		}, []string{faults.InvRetryAnswer}},
		{"unversioned command refused with 409", func(t *testing.T, h *faults.History) {
			c := h.Commands[1]
			c.Answers = append([]faults.Answer{{Status: 409, Code: "version_conflict", Body: `{"error":{}}`}}, c.Answers...)
		}, []string{faults.InvUnversioned409}},
		{"paid order left unsettled", func(t *testing.T, h *faults.History) {
			ord := eventstore.Stream{Type: orders.AggregateType, ID: "o1"}
			h.Events[ord] = h.Events[ord][:2]
			h.Replay["/orders/o1"] = mustJSON(orders.Order{ID: "o1", Status: orders.StatusPaid, Version: 2})
			h.ReadModel["/orders/o1"] = h.Replay["/orders/o1"]
		}, []string{faults.InvUnsettled}},
		{"client gave up", func(t *testing.T, h *faults.History) {
			c := h.Commands[3]
			c.Answers = []faults.Answer{{Status: 500, Code: "internal"}, {Status: 503, Code: "throttled"}}
			c.Final, c.GaveUp = nil, true
		}, []string{faults.InvGaveUp}},
		{"stock reserved twice", func(t *testing.T, h *faults.History) {
			prod := eventstore.Stream{Type: orders.ProductType, ID: "p1"}
			h.Events[prod] = append(h.Events[prod],
				ev(prod, 2, orders.StockReserved, "c3", orders.Actor, orders.StockPayload{Quantity: 1, OrderID: "o9"}),
				ev(prod, 3, orders.StockReserved, "c3", orders.Actor, orders.StockPayload{Quantity: 1, OrderID: "o9"}))
		}, []string{faults.InvDoubleReserve}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := validHistory(t)
			tc.mutate(t, h)
			got := map[string]bool{}
			var all []string
			for _, v := range faults.Check(h) {
				got[v.Invariant] = true
				all = append(all, v.String())
				if v.Detail == "" {
					t.Errorf("%s reported without evidence", v.Invariant)
				}
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("%s not reported; got:\n%s", w, strings.Join(all, "\n"))
				}
			}
			if tc.want == nil && len(all) > 0 {
				t.Errorf("valid history reported:\n%s", strings.Join(all, "\n"))
			}
		})
	}
}
