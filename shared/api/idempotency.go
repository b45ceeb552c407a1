package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
)

// idempotencyRecord is a stored response to replay for a retried request, or, while the
// request runs, the claim of the process running it.
type idempotencyRecord struct {
	State       string              `json:"state"` // pending | done
	Fingerprint string              `json:"fingerprint"`
	Status      int                 `json:"status,omitempty"`
	Header      map[string][]string `json:"header,omitempty"`
	Body        []byte              `json:"body,omitempty"`
	CreatedAt   time.Time           `json:"createdAt"`
	ExpiresAt   int64               `json:"expiresAt"` // epoch seconds (DynamoDB TTL)
	// Owner names one claim of a pending record (one run of the request); LeaseUntil is
	// when the claim lapses unless its owner renews it. Records written before leases
	// existed have neither: their claim lapses legacyIdempotencyLease after CreatedAt.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
}

// leaseEnd is when a pending record's claim lapses: from then on its owner is taken for
// dead and a retry may run the request again.
func (r idempotencyRecord) leaseEnd() time.Time {
	if r.LeaseUntil.IsZero() {
		return r.CreatedAt.Add(legacyIdempotencyLease)
	}
	return r.LeaseUntil
}

// IdempotencyCollection holds the idempotency records. It is written on every keyed
// command and never listed on DynamoDB (TTL expires it there; PurgeIdempotency runs on the
// other backends only), so the DynamoDB wiring keeps it out of the listing index.
const IdempotencyCollection = idempotencyCollection

const (
	idempotencyCollection = "_idempotency"
	idempotencyTTL        = 24 * time.Hour
	// DefaultIdempotencyLease is how long a pending record stays claimed without renewal
	// (Deps.IdempotencyLease): after a crash, how long retries of its key wait.
	DefaultIdempotencyLease = 10 * time.Second
	// legacyIdempotencyLease is the fixed claim of records written without a lease.
	legacyIdempotencyLease = 30 * time.Second
)

func (s *Server) idempotencyLease() (lease, renew time.Duration) {
	lease, renew = s.IdempotencyLease, s.IdempotencyRenew
	if lease <= 0 {
		lease = DefaultIdempotencyLease
	}
	if renew <= 0 {
		renew = lease / 3
	}
	return lease, renew
}

// runningKeys are the idempotency records this server is serving right now. A request of
// this process is alive by definition, so a retry arriving here never takes over its
// record, whatever the clock says (a loaded machine may miss a renewal).
type runningKeys struct{ m sync.Map }

// enter registers a request for id; false when another request of this process already
// serves id.
func (k *runningKeys) enter(id, owner string) bool {
	_, loaded := k.m.LoadOrStore(id, owner)
	return !loaded
}

func (k *runningKeys) leave(id, owner string) { k.m.CompareAndDelete(id, owner) }

// idempotencyID is the record of a key: keys are scoped to the actor, method and path.
func idempotencyID(actor, method, path, key string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s", actor, method, path))
	scope := sha256.Sum256(append(sum[:], key...))
	return hex.EncodeToString(scope[:])
}

// idempotent runs a command once per Idempotency-Key: a retry gets the first response
// back (with Idempotent-Replayed: true) and appends nothing. The key also seeds the
// events' ids, so even a retry after a crash between append and record is recognised.
//
// While the command runs, its record is pending and leased to this run, which renews the
// lease; a retry meanwhile answers 409 request_in_progress. Only a lapsed lease (its
// owner died) lets a retry take the record over, and the takeover is a docstore
// transaction over the record it read, so of racing retries exactly one runs.
func (s *Server) idempotent(w *recorder, r *http.Request, key string, body []byte, next http.Handler) {
	if len(key) > 255 {
		s.writeError(w, r, errBadRequest("Idempotency-Key must be at most 255 characters"))
		return
	}
	id := idempotencyID(s.Actor(r), r.Method, r.URL.Path, key)
	fp := sha256.Sum256(body)
	fingerprint := hex.EncodeToString(fp[:])

	owner := event.NewID()
	busyHere := !s.running.enter(id, owner)
	if !busyHere {
		defer s.running.leave(id, owner)
	}
	lease, renew := s.idempotencyLease()

	var prior idempotencyRecord
	var replay, busy, mismatch bool
	now := s.Now().UTC()
	pending := idempotencyRecord{State: "pending", Fingerprint: fingerprint, CreatedAt: now,
		ExpiresAt: now.Add(idempotencyTTL).Unix(), Owner: owner, LeaseUntil: now.Add(lease)}
	// judge decides on the record found (prior): answered (a replay, a mismatch, or busy
	// while its claim is live or its request runs here), or free to claim.
	judge := func() (answered bool) {
		replay, busy, mismatch = false, false, false
		if prior.ExpiresAt > now.Unix() {
			switch {
			case prior.Fingerprint != fingerprint:
				mismatch = true
			case prior.State == "done":
				replay = true
			case now.Before(prior.leaseEnd()):
				busy = true
			}
		}
		if !replay && !mismatch && busyHere { // the request of this process claims it
			busy = true
		}
		return replay || busy || mismatch
	}
	// The common case, a new key, is one conditional create (one request on DynamoDB); a
	// record in the way is judged, and only a lapsed or expired one is taken over, by a
	// transaction over the record it read, so of racing retries exactly one runs.
	var err error
	created, answered := false, false
	if !busyHere {
		var existing json.RawMessage
		created, existing, err = docstore.Create(r.Context(), s.Docs, idempotencyCollection, id, pending)
		if err == nil && !created {
			if err = json.Unmarshal(existing, &prior); err != nil {
				err = fmt.Errorf("idempotency record %s: %w", id, err)
			} else {
				answered = judge()
			}
		}
	}
	if err == nil && !created && !answered {
		err = s.Docs.Update(r.Context(), func(ctx context.Context, tx docstore.Tx) error {
			prior = idempotencyRecord{} // fn may run again
			ok, err := tx.Get(ctx, idempotencyCollection, id, &prior)
			if err != nil {
				return err
			}
			if !ok {
				prior = idempotencyRecord{}
			}
			if judge() {
				return nil
			}
			return tx.Put(ctx, idempotencyCollection, id, pending)
		})
	}
	switch {
	case err != nil:
		s.writeError(w, r, err)
		return
	case mismatch:
		s.writeError(w, r, &Error{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused",
			Message: "this Idempotency-Key was used with a different request body"})
		return
	case busy:
		s.writeError(w, r, &Error{Status: http.StatusConflict, Code: "request_in_progress",
			Message: "a request with this Idempotency-Key is still being processed"})
		return
	case replay:
		for k, v := range prior.Header {
			w.Header()[k] = v
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(prior.Status)
		_, _ = w.Write(prior.Body)
		return
	}

	ctx := context.WithoutCancel(r.Context())
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		s.renewLease(ctx, id, owner, lease, renew, stop)
	}()
	w.body = &bytes.Buffer{}
	func() {
		// The renewals stop before the answer is recorded, also when the handler panics
		// (the middleware recovers it into a 500).
		defer func() { close(stop); <-stopped }()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), idempotencyKey, id)))
	}()
	s.settle(ctx, w, id, owner, fingerprint, now)
}

// renewLease extends the claim of owner on id every renew until stop, so that a request
// slower than the lease is not taken for dead. It gives up when the claim is no longer
// owner's (a retry took over after renewals failed for a whole lease).
func (s *Server) renewLease(ctx context.Context, id, owner string, lease, renew time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(renew)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		var lost bool
		now := s.Now().UTC()
		err := s.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			var rec idempotencyRecord
			ok, err := tx.Get(ctx, idempotencyCollection, id, &rec)
			if err != nil {
				return err
			}
			if lost = !ok || rec.State != "pending" || rec.Owner != owner; lost {
				return nil
			}
			rec.LeaseUntil = now.Add(lease)
			return tx.Put(ctx, idempotencyCollection, id, rec)
		})
		switch {
		case err != nil: // the lease may still hold; the next tick tries again
			s.Logger.WarnContext(ctx, "idempotency lease not renewed", "err", err)
		case lost:
			s.Logger.WarnContext(ctx, "idempotency lease lost to another run of the request")
			return
		}
	}
}

// settle records the answer for replay, or releases the key after a server error (not
// an answer to remember: a retry runs again). A record claimed by another run since (this
// run's lease lapsed) is left to that run: the events' ids make the two runs one.
func (s *Server) settle(ctx context.Context, w *recorder, id, owner, fingerprint string, now time.Time) {
	err := s.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		var rec idempotencyRecord
		ok, err := tx.Get(ctx, idempotencyCollection, id, &rec)
		if err != nil {
			return err
		}
		if ok && rec.Owner != owner {
			return nil
		}
		if w.status >= 500 {
			if !ok {
				return nil
			}
			return tx.Delete(ctx, idempotencyCollection, id)
		}
		hdr := map[string][]string{}
		for _, k := range []string{"Content-Type", "Etag", "X-Ecm-Version", "X-Ecm-Event-Id", "Location"} {
			if v := w.Header().Values(k); len(v) > 0 {
				hdr[k] = v
			}
		}
		return tx.Put(ctx, idempotencyCollection, id, idempotencyRecord{State: "done", Fingerprint: fingerprint,
			Status: w.status, Header: hdr, Body: w.body.Bytes(), CreatedAt: now, ExpiresAt: now.Add(idempotencyTTL).Unix()})
	})
	if err != nil {
		s.Logger.WarnContext(ctx, "idempotency record not saved", "err", err)
	}
}

// PurgeIdempotency deletes expired idempotency records and returns how many it removed.
// DynamoDB's TTL does this on AWS; the local backends run it periodically.
func PurgeIdempotency(ctx context.Context, docs docstore.Store, now time.Time) (int, error) {
	var expired []string
	err := docs.List(ctx, idempotencyCollection, func(key string, raw json.RawMessage) error {
		var rec idempotencyRecord
		if json.Unmarshal(raw, &rec) == nil && rec.ExpiresAt <= now.Unix() {
			expired = append(expired, key)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for start := 0; start < len(expired); start += docstore.MaxUpdateWrites {
		chunk := expired[start:min(start+docstore.MaxUpdateWrites, len(expired))]
		err := docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			for _, k := range chunk {
				if err := tx.Delete(ctx, idempotencyCollection, k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return start, err
		}
	}
	return len(expired), nil
}
