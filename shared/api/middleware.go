package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// headerValue is the rule for X-Correlation-Id and x-ecm-causation: a subset of what the
// store accepts for correlation and causation ids (eventstore.ValidTraceID), so a value
// the API lets through is never refused by a backend.
var headerValue = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._:-]{1,%d}$`, eventstore.MaxTraceIDBytes))

var headerRule = fmt.Sprintf("must be 1–%d characters of A-Z a-z 0-9 . _ : -", eventstore.MaxTraceIDBytes)

type recorder struct {
	http.ResponseWriter
	status int
	body   *bytes.Buffer // set when the response must be kept (idempotency)
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body != nil {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// A malformed correlation id is refused rather than replaced: the client would
		// otherwise look for its requests under an id nothing was stored with. The
		// refusal itself carries a generated one, for the log.
		corr := r.Header.Get("X-Correlation-Id")
		badCorr := corr != "" && !headerValue.MatchString(corr)
		if corr == "" || badCorr {
			corr = event.NewID()
		}
		w.Header().Set("X-Correlation-Id", corr)
		ctx := context.WithValue(r.Context(), correlationKey, corr)
		r = r.WithContext(ctx)
		rec := &recorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				s.writeError(rec, r, fmt.Errorf("panic: %v", p))
			}
			s.Metrics.Request(rec.status, time.Since(start))
			s.Logger.InfoContext(ctx, "request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
				"ms", float64(time.Since(start).Microseconds())/1000, "correlationId", corr)
		}()
		// Checked before the mux sees the request: the mux answers a path that is not clean
		// with a redirect, which a client follows by re-sending its command elsewhere.
		if err := checkRequest(r); err != nil {
			s.writeError(rec, r, err)
			return
		}
		if badCorr {
			s.writeError(rec, r, errBadRequest("X-Correlation-Id %s", headerRule))
			return
		}
		if err := s.checkOps(r); err != nil {
			s.writeError(rec, r, err)
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			s.writeError(rec, r, err)
			return
		}
		r.Body = nopCloser{bytes.NewReader(body)}
		if key := r.Header.Get("Idempotency-Key"); key != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.idempotent(rec, r, key, body, next)
			return
		}
		next.ServeHTTP(rec, r)
	})
}

// MaxHeaderBytes bounds the request line and headers the handler accepts (431 beyond). It
// is below the server's own limit (ServerConfig.MaxHeaderBytes), so the common case gets
// a JSON answer rather than net/http's plain-text one.
const MaxHeaderBytes = 32 << 10

// checkRequest refuses what no route can serve: oversized headers and paths that are not
// clean (empty or dot segments, a trailing slash), decoded or as sent.
func checkRequest(r *http.Request) error {
	n := len(r.Method) + len(r.RequestURI) + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF, as on the wire
		}
	}
	if n > MaxHeaderBytes {
		return errHeadersTooLarge()
	}
	for _, p := range []string{r.URL.Path, r.URL.EscapedPath()} {
		if p == "" || p[0] != '/' || path.Clean(p) != p {
			return errInvalidPath()
		}
	}
	return nil
}

// readBody reads the whole body (at most MaxBodyBytes) and refuses text that is not valid
// Unicode: encoding/json would silently turn invalid UTF-8 and lone surrogate escapes
// into U+FFFD, storing something the client never sent.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		switch {
		case errors.As(err, &mb):
			return nil, err
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, errRequestTimeout()
		}
		return nil, errBadRequest("cannot read the request body")
	}
	if !utf8.Valid(body) {
		return nil, errInvalidUTF8("the request body is not valid UTF-8")
	}
	if loneSurrogate(body) {
		return nil, errInvalidUTF8("the request body has a \\u escape of a lone UTF-16 surrogate")
	}
	return body, nil
}

// loneSurrogate reports a JSON \uXXXX escape of a surrogate that is not part of a pair.
// Backslashes only occur inside JSON strings, so no string tracking is needed; malformed
// escapes are left to the JSON decoder.
func loneSurrogate(b []byte) bool {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		return rune(v), err == nil
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // an escape such as \\ or \": skip the escaped character
			continue
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			lo, ok := hex4(i + 6)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

// idempotencyRecord is a stored response to replay for a retried request.
type idempotencyRecord struct {
	State       string              `json:"state"` // pending | done
	Fingerprint string              `json:"fingerprint"`
	Status      int                 `json:"status,omitempty"`
	Header      map[string][]string `json:"header,omitempty"`
	Body        []byte              `json:"body,omitempty"`
	CreatedAt   time.Time           `json:"createdAt"`
	ExpiresAt   int64               `json:"expiresAt"` // epoch seconds (DynamoDB TTL)
	// Claim is unique per request that wrote a pending record, so a create resent after
	// its answer was lost finds its own record (docstore.Create), not another request's.
	Claim string `json:"claim,omitempty"`
}

// IdempotencyCollection holds the idempotency records. It is written on every keyed
// command and never listed on DynamoDB (TTL expires it there; PurgeIdempotency runs on the
// other backends only), so the DynamoDB wiring keeps it out of the listing index.
const IdempotencyCollection = idempotencyCollection

const (
	idempotencyCollection = "_idempotency"
	idempotencyTTL        = 24 * time.Hour
	// A pending record older than this belongs to a request that died; a retry may run.
	idempotencyStale = 30 * time.Second
)

// idempotent runs a command once per Idempotency-Key: a retry gets the first response
// back (with Idempotent-Replayed: true) and appends nothing. The key also seeds the
// events' ids, so even a retry after a crash between append and record is recognised.
func (s *Server) idempotent(w *recorder, r *http.Request, key string, body []byte, next http.Handler) {
	if len(key) > 255 {
		s.writeError(w, r, errBadRequest("Idempotency-Key must be at most 255 characters"))
		return
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s", s.Actor(r), r.Method, r.URL.Path))
	scope := sha256.Sum256(append(sum[:], key...))
	id := hex.EncodeToString(scope[:])
	fp := sha256.Sum256(body)
	fingerprint := hex.EncodeToString(fp[:])

	var prior idempotencyRecord
	var replay, busy, mismatch bool
	now := s.Now().UTC()
	pending := idempotencyRecord{State: "pending", Fingerprint: fingerprint, CreatedAt: now,
		ExpiresAt: now.Add(idempotencyTTL).Unix(), Claim: event.NewID()}
	// The common case, a new key, is one conditional create (one request on DynamoDB); a
	// record in the way is judged as below, and only an expired or abandoned one is
	// taken over by the read-then-write Update.
	created, existing, err := docstore.Create(r.Context(), s.Docs, idempotencyCollection, id, pending)
	judge := func() bool {
		replay, busy, mismatch = false, false, false
		if prior.ExpiresAt <= now.Unix() {
			return false
		}
		switch {
		case prior.Fingerprint != fingerprint:
			mismatch = true
		case prior.State == "done":
			replay = true
		case now.Sub(prior.CreatedAt) < idempotencyStale:
			busy = true
		case s.isRunning(id):
			// Older than the stale limit but alive here (queued behind other commands
			// on a loaded process): taking it over would run the command twice.
			busy = true
		default:
			return false
		}
		return true
	}
	if err == nil && !created {
		prior = idempotencyRecord{}
		if err = json.Unmarshal(existing, &prior); err != nil {
			err = fmt.Errorf("idempotency record %s: %w", id, err)
		} else if !judge() {
			err = s.Docs.Update(r.Context(), func(ctx context.Context, tx docstore.Tx) error {
				prior = idempotencyRecord{}
				ok, err := tx.Get(ctx, idempotencyCollection, id, &prior)
				if err != nil || (ok && judge()) {
					return err
				}
				return tx.Put(ctx, idempotencyCollection, id, pending)
			})
		}
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

	w.body = &bytes.Buffer{}
	r = r.WithContext(context.WithValue(r.Context(), idempotencyKey, id))
	s.running.Store(id, struct{}{})
	defer s.running.Delete(id)
	next.ServeHTTP(w, r)

	// A server error is not an answer to remember: release the key so a retry runs again.
	err = s.Docs.Update(context.WithoutCancel(r.Context()), func(ctx context.Context, tx docstore.Tx) error {
		if w.status >= 500 {
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
		s.Logger.WarnContext(r.Context(), "idempotency record not saved", "err", err)
	}
}

func (s *Server) isRunning(id string) bool {
	_, ok := s.running.Load(id)
	return ok
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

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
