package api

import (
	"net/http"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

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
