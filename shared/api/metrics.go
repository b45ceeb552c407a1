package api

import (
	"net/http"
)

// prometheus is GET /metrics: the Prometheus exposition of this process's figures. The
// dead-letter gauge is read from the engine at scrape time.
func (s *Server) prometheus(w http.ResponseWriter, r *http.Request) error {
	dls, err := s.Engine.DeadLetters(r.Context())
	if err != nil {
		return err
	}
	s.Metrics.DeadLetters(len(dls))
	s.Metrics.Handler().ServeHTTP(w, r)
	return nil
}

// metrics is GET /metrics.json: the same figures as one JSON document, with the short
// windows the ops page charts (events per second over the last minute, percentiles).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	dls, err := s.Engine.DeadLetters(r.Context())
	if err != nil {
		return err
	}
	s.Metrics.DeadLetters(len(dls))
	writeJSON(w, http.StatusOK, s.Metrics.Snapshot(len(dls)))
	return nil
}
