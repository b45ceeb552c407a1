package api

import (
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
)

// Execute runs a command from an HTTP request against a repository and writes the new
// state (rendered by view) with its version headers. Domain modules call it.
func Execute[S any](s *Server, w http.ResponseWriter, r *http.Request, repo *aggregate.Repository[S], id string,
	cmd aggregate.Command[S], status int, view func(aggregate.Loaded[S]) any) error {
	opts, err := s.CommandOptions(r)
	if err != nil {
		return err
	}
	res, err := repo.Execute(r.Context(), id, cmd, opts)
	if err != nil {
		return err
	}
	s.Committed(res.Events)
	last := LastID(res.Last)
	if n := len(res.Events); n > 0 {
		last = res.Events[n-1].EventID
	}
	WriteState(w, status, view(res.Loaded), res.Version, last)
	return nil
}

// Replay loads an aggregate from the store, as of the request's x-ecm-as-of / ?asOf= when
// given, and 404s when it did not exist (yet).
func Replay[S any](r *http.Request, repo *aggregate.Repository[S], id string) (aggregate.Loaded[S], error) {
	at, err := AsOf(r)
	if err != nil {
		return aggregate.Loaded[S]{}, err
	}
	var l aggregate.Loaded[S]
	if at.IsZero() {
		l, err = repo.Load(r.Context(), id)
	} else {
		l, err = repo.LoadAsOf(r.Context(), id, at)
	}
	if err != nil {
		return l, err
	}
	if !l.Exists() {
		return l, aggregate.NotFound(repo.Type(), id)
	}
	return l, nil
}
