package system_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

func memory() system.Backend {
	s := memstore.New()
	return system.Backend{Store: s, Feed: s, Docs: memstore.NewDocs()}
}

// The product is what it is given, in the order given: modules, their projections and
// routes, the actor source.
func TestComposition(t *testing.T) {
	cfg := system.Config{EventStore: "memory"}
	tests := []struct {
		name        string
		opts        []system.Option
		modules     []string
		projections []string
		actor       string // the actor of an account's first event
	}{
		{
			name:    "standard",
			modules: []string{"bank", "orders", "tasks", "user-context"},
			projections: []string{"accounts", "orders", "products", "customer-orders", "order-saga",
				"tasks", "project-analytics", "contexts"},
			actor: "alice",
		},
		{
			name: "bank alone, actor from an option",
			opts: []system.Option{
				system.WithDomains(func(env api.Env) []api.Module { return []api.Module{bank.Module(env, bank.NewRepository(env))} }),
				system.WithActor(func(*http.Request) string { return "from-option" }),
			},
			modules:     []string{"bank"},
			projections: []string{"accounts"},
			actor:       "from-option",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sys := system.Assemble(cfg, memory(), quiet(), tc.opts...)
			var mods, projs []string
			for _, m := range sys.Modules {
				mods = append(mods, m.Name)
			}
			for _, p := range sys.Engine.Projections() {
				projs = append(projs, p.Name())
			}
			if !slices.Equal(mods, tc.modules) || !slices.Equal(projs, tc.projections) {
				t.Fatalf("modules %v projections %v, want %v %v", mods, projs, tc.modules, tc.projections)
			}
			if served := slices.Contains(sys.Handler.Patterns(), "GET /orders/{id}"); served != slices.Contains(tc.modules, "orders") {
				t.Fatalf("GET /orders/{id} served: %v with modules %v", served, mods)
			}
			c := &apitest.Client{T: t, H: sys.Handler}
			c.Must(201, "POST", "/accounts/a-1/open", map[string]any{"initialDeposit": 1}, "X-Actor", "alice")
			evs := c.Events("/accounts/a-1")
			if len(evs) != 1 {
				t.Fatalf("events: %v", evs)
			}
			md, _ := evs[0]["metadata"].(map[string]any)
			if md["actor"] != tc.actor {
				t.Fatalf("actor %v, want %s", md["actor"], tc.actor)
			}
			if !sys.Registry.Known(bank.AccountOpened) {
				t.Fatal("the bank's events are not in the registry")
			}
		})
	}
}
