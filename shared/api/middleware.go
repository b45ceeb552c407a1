package api

import (
	"bytes"
	"context"
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

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
