package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// queryEvents is GET /events: events across aggregates by type, aggregate type,
// correlation id and time window, one page at a time.
func (s *Server) queryEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := eventstore.Filter{EventType: q.Get("eventType"), AggregateType: q.Get("aggregateType"),
		CorrelationID: q.Get("correlationId"), Cursor: q.Get("cursor")}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return errBadRequest("%s %q is not an RFC 3339 timestamp", name, v)
			}
			*dst = t.UTC()
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > eventstore.MaxPageSize {
			return errBadRequest("limit must be an integer from 1 to %d", eventstore.MaxPageSize)
		}
		f.Limit = n
	}
	page, err := s.Store.Query(r.Context(), f)
	if err != nil {
		return err
	}
	page.Events = nonNil(page.Events)
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) projections(w http.ResponseWriter, r *http.Request) error {
	st, err := s.statuses(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"projections": nonNil(st)})
	return nil
}

// rebuild is POST /projections/{name}/rebuild: it starts the rebuild as a background job
// (or finds the one running) and answers 202 at once; the job's progress shows in
// GET /projections/{name}, the Location.
func (s *Server) rebuild(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	job, started, err := s.Engine.StartRebuild(r.Context(), name)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/projections/"+name)
	writeJSON(w, http.StatusAccepted, map[string]any{"projection": name, "status": "rebuilding", "started": started,
		"rebuild": job.Progress()})
	return nil
}

func (s *Server) projection(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, err := s.Engine.Lookup(name); err != nil {
		return err
	}
	st, err := s.statuses(r)
	if err != nil {
		return err
	}
	for _, p := range st {
		if p.Name == name {
			writeJSON(w, http.StatusOK, p)
			break
		}
	}
	return nil
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) error {
	dls, err := s.Engine.DeadLetters(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadLetters": dls})
	return nil
}

func (s *Server) redrive(w http.ResponseWriter, r *http.Request) error {
	res, err := s.Engine.Redrive(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// statuses reports every projection, with its lag behind the feed head where there is one.
func (s *Server) statuses(r *http.Request) ([]projection.Status, error) {
	var head *uint64
	if s.Feed != nil {
		h, err := s.Feed.Head(r.Context())
		if err != nil {
			return nil, err
		}
		head = &h
	}
	return s.Engine.Statuses(r.Context(), head)
}
