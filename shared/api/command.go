package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/docstore"
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

// ReadModelOrReplay answers GET /<things>/{id} from a read-model collection, replaying the store for as-of reads,
// ?consistent=true, or a read model that has not caught up yet.
func ReadModelOrReplay[S any](w http.ResponseWriter, r *http.Request, docs docstore.Store, coll string,
	repo *aggregate.Repository[S], view func(aggregate.Loaded[S]) any, version func(*S) int64) error {
	return readModelOrReplay(w, r, docs, coll, repo, view, version, nil)
}

// OwnedReadModelOrReplay is ReadModelOrReplay for an owned resource: only its owner or an
// admin may read it (Server.AllowOwner). A read model without an owner (written before
// owners were recorded) is passed over for a replay, which knows the owner.
func OwnedReadModelOrReplay[S any](s *Server, w http.ResponseWriter, r *http.Request, docs docstore.Store, coll string,
	repo *aggregate.Repository[S], view func(aggregate.Loaded[S]) any, version func(*S) int64, owner func(*S) string) error {
	return readModelOrReplay(w, r, docs, coll, repo, view, version, func(st *S, fromReadModel bool) (bool, error) {
		o := owner(st)
		if fromReadModel && o == "" {
			return false, nil
		}
		return true, s.AllowOwner(r, o)
	})
}

// readModelOrReplay's allow, when set, decides on the state found: use it (true), pass a
// read model over for a replay (false), or refuse (an error).
func readModelOrReplay[S any](w http.ResponseWriter, r *http.Request, docs docstore.Store, coll string,
	repo *aggregate.Repository[S], view func(aggregate.Loaded[S]) any, version func(*S) int64,
	allow func(st *S, fromReadModel bool) (bool, error)) error {
	id, err := PathID(r, "id")
	if err != nil {
		return err
	}
	at, err := AsOf(r)
	if err != nil {
		return err
	}
	if at.IsZero() && r.URL.Query().Get("consistent") != "true" {
		var raw json.RawMessage
		ok, err := docs.Get(r.Context(), coll, id, &raw)
		if err != nil {
			return err
		}
		if ok {
			// A read model that keeps the last event applied (lastEventId beside the
			// state) answers x-ecm-event-id as a replay would.
			var st S
			var last struct {
				LastEventID string `json:"lastEventId"`
			}
			if err := errors.Join(json.Unmarshal(raw, &st), json.Unmarshal(raw, &last)); err != nil {
				return fmt.Errorf("read model %s/%s: %w", coll, id, err)
			}
			use := true
			if allow != nil {
				if use, err = allow(&st, true); err != nil {
					return err
				}
			}
			if use {
				WriteState(w, http.StatusOK, view(aggregate.Loaded[S]{ID: id, State: st, Version: version(&st)}), version(&st), last.LastEventID)
				return nil
			}
		}
	}
	l, err := Replay(r, repo, id)
	if err != nil {
		return err
	}
	if allow != nil {
		if _, err := allow(&l.State, false); err != nil {
			return err
		}
	}
	WriteState(w, http.StatusOK, view(l), l.Version, LastID(l.Last))
	return nil
}
