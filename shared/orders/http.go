package orders

import (
	"encoding/json"
	"fmt"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/projection"
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/docstore"
)

// Module is orders, products and their fulfilment as the product runs them: their
// events, read models, the fulfilment saga (which takes payment through accounts, the
// bank's repository) and the /orders, /products and /customers routes.
func Module(env api.Env, accounts *aggregate.Repository[bank.Account]) api.Module {
	ord := aggregate.NewRepository(env.Store, Definition, env.Aggregate)
	prod := aggregate.NewRepository(env.Store, ProductDefinition, env.Aggregate)
	steps := aggregate.NewRepository(env.Store, FulfilmentDefinition, env.Aggregate)
	saga := Saga{Orders: ord, Products: prod, Accounts: accounts, Fulfilment: steps}
	return api.Module{Name: "orders", Events: Register,
		Projections: []projection.Projection{OrderProjection{}, ProductProjection{}, CustomerProjection{}, saga},
		Routes:      HTTP{Orders: ord, Products: prod, Docs: env.Docs}.Routes}
}

// HTTP serves /orders, /products and /customers/{id}/orders.
type HTTP struct {
	Orders   *aggregate.Repository[Order]
	Products *aggregate.Repository[Product]
	Docs     docstore.Store
}

func orderView(l aggregate.Loaded[Order]) any     { return l.State }
func productView(l aggregate.Loaded[Product]) any { return publicProduct(l.State) }

func publicProduct(p Product) map[string]any {
	return map[string]any{"id": p.ID, "available": p.Available, "reserved": p.Reserved, "version": p.Version}
}

func (h HTTP) Routes(s *api.Server) {
	s.Handle("POST /orders/{id}/place", func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var b struct {
			CustomerID       string `json:"customerId"`
			PaymentAccountID string `json:"paymentAccountId"`
			Items            []Item `json:"items"`
		}
		if err := api.Decode(r, &b, false); err != nil {
			return err
		}
		return api.Execute(s, w, r, h.Orders, id, Place(b.CustomerID, b.PaymentAccountID, b.Items), http.StatusCreated, orderView)
	})
	s.Handle("POST /orders/{id}/ship", func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var b struct{}
		if err := api.Decode(r, &b, true); err != nil {
			return err
		}
		return api.Execute(s, w, r, h.Orders, id, Ship(), http.StatusOK, orderView)
	})
	s.Handle("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return api.ReadModelOrReplay(w, r, h.Docs, OrdersCollection, h.Orders, orderView, func(o *Order) int64 { return o.Version })
	})
	s.Handle("GET /orders/{id}/events", func(w http.ResponseWriter, r *http.Request) error { return s.StreamEvents(w, r, AggregateType) })
	s.Handle("POST /products/{id}/stock", func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var b struct {
			Quantity *int `json:"quantity"`
		}
		if err := api.Decode(r, &b, false); err != nil {
			return err
		}
		if b.Quantity == nil {
			return api.BadRequest("quantity is required")
		}
		return api.Execute(s, w, r, h.Products, id, AddStock(*b.Quantity), http.StatusOK, productView)
	})
	s.Handle("GET /products/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return api.ReadModelOrReplay(w, r, h.Docs, ProductsCollection, h.Products, productView, func(p *Product) int64 { return p.Version })
	})
	s.Handle("GET /customers/{id}/orders", func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		page, err := api.ParsePage(r)
		if err != nil {
			return err
		}
		docs, next, err := h.Docs.ListPage(r.Context(), CustomerOrdersCollection(id), page.After, page.Limit)
		if err != nil {
			return err
		}
		lines := make([]CustomerOrder, 0, len(docs))
		for _, d := range docs {
			var l CustomerOrder
			if err := json.Unmarshal(d.Raw, &l); err != nil {
				return fmt.Errorf("customer orders %s/%s: %w", id, d.Key, err)
			}
			lines = append(lines, l)
		}
		body := map[string]any{"customerId": id, "orders": lines}
		if next != "" {
			body["nextCursor"] = api.EncodeCursor(next)
		}
		api.WriteJSON(w, http.StatusOK, body)
		return nil
	})
}
