package tasks

import (
	"github.com/ecmstore/ecmstore/shared/projection"
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Module is tasks as the product runs them: their events, the task and analytics read
// models and the /tasks and /projects routes.
func Module(env api.Env) api.Module {
	repo := aggregate.NewRepository(env.Store, Definition, env.Aggregate)
	return api.Module{Name: "tasks", Events: Register,
		Projections: []projection.Projection{TaskProjection{}, AnalyticsProjection{}},
		Routes:      HTTP{Repo: repo, Docs: env.Docs}.Routes}
}

// HTTP serves /tasks and /projects/{id}/analytics.
type HTTP struct {
	Repo *aggregate.Repository[Task]
	Docs docstore.Store
}

func view(l aggregate.Loaded[Task]) any { return l.State }

func (h HTTP) Routes(s *api.Server) {
	cmd := func(pattern string, status int, decode func(r *http.Request) (aggregate.Command[Task], error)) {
		s.Handle(pattern, func(w http.ResponseWriter, r *http.Request) error {
			id, err := api.PathID(r, "id")
			if err != nil {
				return err
			}
			c, err := decode(r)
			if err != nil {
				return err
			}
			return api.Execute(s, w, r, h.Repo, id, c, status, view)
		})
	}
	cmd("POST /tasks/{id}/create", http.StatusCreated, func(r *http.Request) (aggregate.Command[Task], error) {
		var b struct{ ProjectID, Title string }
		err := api.Decode(r, &b, false)
		return Create(b.ProjectID, b.Title), err
	})
	cmd("POST /tasks/{id}/assign", http.StatusOK, func(r *http.Request) (aggregate.Command[Task], error) {
		var b struct{ Assignee string }
		err := api.Decode(r, &b, false)
		return Assign(b.Assignee), err
	})
	cmd("POST /tasks/{id}/request-review", http.StatusOK, func(r *http.Request) (aggregate.Command[Task], error) {
		var b struct{ Reviewer string }
		err := api.Decode(r, &b, false)
		return RequestReview(b.Reviewer), err
	})
	for path, c := range map[string]aggregate.Command[Task]{"approve": Approve(), "request-changes": RequestChanges(), "merge": Merge()} {
		cmd("POST /tasks/{id}/"+path, http.StatusOK, func(r *http.Request) (aggregate.Command[Task], error) {
			var b struct{}
			return c, api.Decode(r, &b, true)
		})
	}
	s.Handle("GET /tasks/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return api.ReadModelOrReplay(w, r, h.Docs, TasksCollection, h.Repo, view, func(t *Task) int64 { return t.Version })
	})
	s.Handle("GET /tasks/{id}/history", h.history(s))
	s.Handle("GET /tasks/{id}/events", func(w http.ResponseWriter, r *http.Request) error { return s.StreamEvents(w, r, AggregateType) })
	s.Handle("GET /projects/{id}/analytics", h.analytics)
}

// HistoryEntry is one line of a task's audit trail.
type HistoryEntry struct {
	Version   int64  `json:"version"`
	EventType string `json:"eventType"`
	Actor     string `json:"actor"`
	At        string `json:"at"`
	Payload
	CorrelationID string `json:"correlationId,omitempty"`
}

func (h HTTP) history(s *api.Server) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		at, err := api.AsOf(r)
		if err != nil {
			return err
		}
		evs, err := s.Store.Load(r.Context(), eventstore.Stream{Type: AggregateType, ID: id}, eventstore.Range{Until: at})
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return api.NotFound("task %s not found", id)
		}
		out := make([]HistoryEntry, 0, len(evs))
		for _, e := range evs {
			var p Payload
			_ = e.Decode(&p)
			out = append(out, HistoryEntry{Version: e.Version, EventType: e.EventType, Actor: e.Metadata.Actor,
				At: e.Timestamp.Format("2006-01-02T15:04:05.000000Z07:00"), Payload: p, CorrelationID: e.Metadata.CorrelationID})
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"history": out})
		return nil
	}
}

func (h HTTP) analytics(w http.ResponseWriter, r *http.Request) error {
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	at, err := api.AsOf(r)
	if err != nil {
		return err
	}
	counts, err := TasksByState(r.Context(), h.Docs, id, at)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"projectId": id, "tasksByState": counts})
	return nil
}
