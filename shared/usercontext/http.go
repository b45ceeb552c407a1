package usercontext

import (
	"context"
	"encoding/json"
	"github.com/ecmstore/ecmstore/shared/projection"
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
)

// Collection holds the current-state read model.
const Collection = "contexts"

// Projection is the current-state read model of contexts.
type Projection struct{}

func (Projection) Name() string             { return "contexts" }
func (Projection) AggregateTypes() []string { return []string{AggregateType} }
func (Projection) Collections() []string    { return []string{Collection} }

type view struct {
	Context
	LastEventID string `json:"lastEventId,omitempty"`
}

func (Projection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	v := view{Context: Definition.New(e.AggregateID)}
	if _, err := tx.Get(ctx, Collection, e.AggregateID, &v); err != nil {
		return err
	}
	c, err := Evolve(v.Context, e)
	if err != nil {
		return err
	}
	return tx.Put(ctx, Collection, e.AggregateID, view{Context: c, LastEventID: e.EventID})
}

// Module is user contexts as the product runs them: their events, the current-state read
// model and the /contexts routes.
func Module(env api.Env) api.Module {
	repo := aggregate.NewRepository(env.Store, Definition, env.Aggregate)
	return api.Module{Name: "user-context", Events: Register,
		Projections: []projection.Projection{Projection{}}, Routes: HTTP{Repo: repo, Docs: env.Docs}.Routes}
}

// HTTP serves /contexts/{id} (seed 000's ECM binding).
type HTTP struct {
	Repo *aggregate.Repository[Context]
	Docs docstore.Store
}

func (h HTTP) Routes(s *api.Server) {
	s.Handle("POST /contexts/{id}", h.command(s, Create, http.StatusCreated, true))
	s.Handle("PATCH /contexts/{id}", h.command(s, Patch, http.StatusOK, false))
	s.Handle("PUT /contexts/{id}", h.command(s, Replace, http.StatusOK, false))
	s.Handle("DELETE /contexts/{id}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		return api.Execute(s, w, r, h.Repo, id, api.Owned(s, r, Delete(), owner), http.StatusOK, render)
	})
	s.Handle("GET /contexts/{id}", func(w http.ResponseWriter, r *http.Request) error { return h.get(s, w, r) })
	s.Handle("GET /contexts/{id}/events", func(w http.ResponseWriter, r *http.Request) error {
		return s.OwnedStreamEvents(w, r, AggregateType)
	})
}

type body struct {
	Preferences map[string]json.RawMessage `json:"preferences"`
}

func owner(c Context) string { return c.Owner }

func render(l aggregate.Loaded[Context]) any {
	out := map[string]any{"id": l.ID, "preferences": l.State.Preferences, "version": l.Version}
	if l.State.Deleted {
		out["deleted"] = true
	}
	return out
}

func (h HTTP) command(s *api.Server, cmd func(map[string]json.RawMessage) aggregate.Command[Context], status int, optional bool) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		var b body
		if err := api.Decode(r, &b, optional); err != nil {
			return err
		}
		if b.Preferences == nil && !optional {
			return api.BadRequest("preferences is required")
		}
		return api.Execute(s, w, r, h.Repo, id, api.Owned(s, r, cmd(b.Preferences), owner), status, render)
	}
}

// get answers from the read model; as-of reads and a lagging read model replay the
// store. A deleted context is 404, but as of a time before the deletion it answers.
func (h HTTP) get(s *api.Server, w http.ResponseWriter, r *http.Request) error {
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	at, err := api.AsOf(r)
	if err != nil {
		return err
	}
	if at.IsZero() && r.URL.Query().Get("consistent") != "true" {
		var v view
		ok, err := h.Docs.Get(r.Context(), Collection, id, &v)
		if err != nil {
			return err
		}
		if ok && v.Owner != "" { // a read model from before owners were recorded: replay
			if err := s.AllowOwner(r, v.Owner); err != nil {
				return err
			}
			if v.Deleted {
				return api.NotFound("%s %s was deleted", AggregateType, id)
			}
			api.WriteState(w, http.StatusOK, render(aggregate.Loaded[Context]{ID: id, State: v.Context, Version: v.Version}), v.Version, v.LastEventID)
			return nil
		}
	}
	l, err := api.Replay(r, h.Repo, id)
	if err != nil {
		return err
	}
	if err := s.AllowOwner(r, l.State.Owner); err != nil {
		return err
	}
	if l.State.Deleted {
		return api.NotFound("%s %s was deleted", AggregateType, id)
	}
	api.WriteState(w, http.StatusOK, render(l), l.Version, api.LastID(l.Last))
	return nil
}
