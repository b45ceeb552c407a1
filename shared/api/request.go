package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/money"
)

// PathID returns the {name} path value, validated as an id.
func PathID(r *http.Request, name string) (string, error) {
	id := r.PathValue(name)
	if !event.ValidID(id) {
		return "", errBadRequest("%s %q must be 1–128 characters of A-Z a-z 0-9 . _ : -, not dots alone", name, id)
	}
	return id, nil
}

// Decode reads a JSON body into dst, strictly: unknown fields and trailing data are
// errors. An empty body leaves dst as it is when optional is true.
func Decode(r *http.Request, dst any, optional bool) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return errBadRequest("cannot read body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return errBadRequest("a JSON body is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return errBadRequest("unexpected data after the JSON body")
	}
	return nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, money.ErrPrecision), errors.Is(err, money.ErrRange):
		return aggregate.Rule("invalid_amount", "%v", err)
	case errors.Is(err, money.ErrFormat):
		return errBadRequest("amounts must be JSON numbers: %v", err)
	case errors.As(err, &syn):
		return errBadRequest("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return errBadRequest("field %q must be %s", typ.Field, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return errBadRequest("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return errBadRequest("malformed JSON: %v", err)
}

// ExpectedVersion reads If-Match: "<version>" or x-ecm-version: <version>.
func ExpectedVersion(r *http.Request) (*int64, error) {
	var found []int64
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(im, "W/"), `"`), 10, 64)
		if err != nil || v < 0 {
			return nil, errBadRequest(`If-Match must be an ETag such as "3"`)
		}
		found = append(found, v)
	}
	if xv := strings.TrimSpace(r.Header.Get("x-ecm-version")); xv != "" {
		v, err := strconv.ParseInt(xv, 10, 64)
		if err != nil || v < 0 {
			return nil, errBadRequest("x-ecm-version must be a non-negative integer")
		}
		found = append(found, v)
	}
	if len(found) == 2 && found[0] != found[1] {
		return nil, errBadRequest("If-Match and x-ecm-version disagree")
	}
	if len(found) == 0 {
		return nil, nil
	}
	return &found[0], nil
}

// AsOf reads x-ecm-as-of or ?asOf= (RFC 3339); zero when absent.
func AsOf(r *http.Request) (time.Time, error) {
	v := r.Header.Get("x-ecm-as-of")
	if q := r.URL.Query().Get("asOf"); q != "" {
		v = q
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errBadRequest("as-of %q is not an RFC 3339 timestamp", v)
	}
	return t.UTC(), nil
}

// CommandOptions builds the repository options for a command request: expected version,
// metadata (actor, source, correlation, causation) and the idempotency seed.
func (s *Server) CommandOptions(r *http.Request) (aggregate.Options, error) {
	exp, err := ExpectedVersion(r)
	if err != nil {
		return aggregate.Options{}, err
	}
	causation := r.Header.Get("x-ecm-causation")
	if causation != "" && !headerValue.MatchString(causation) {
		return aggregate.Options{}, errBadRequest("x-ecm-causation %s", headerRule)
	}
	seed, _ := r.Context().Value(idempotencyKey).(string)
	return aggregate.Options{
		ExpectedVersion: exp,
		IdempotencySeed: seed,
		Metadata: event.Metadata{Actor: s.Actor(r), Source: "api",
			CorrelationID: CorrelationID(r.Context()), CausationID: causation},
	}, nil
}

// Committed is called by modules after a successful command.
func (s *Server) Committed(events []event.Event) {
	if len(events) == 0 {
		return
	}
	if s.AfterAppend != nil {
		s.AfterAppend()
	}
}

// WriteState writes an aggregate state with the version headers (ETag, x-ecm-version,
// x-ecm-event-id).
func WriteState(w http.ResponseWriter, status int, state any, version int64, lastEventID string) {
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, version))
	w.Header().Set("x-ecm-version", strconv.FormatInt(version, 10))
	if lastEventID != "" {
		w.Header().Set("x-ecm-event-id", lastEventID)
	}
	writeJSON(w, status, state)
}

// WriteJSON writes any JSON body.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// LastID returns a loaded aggregate's last event id ("" for none).
func LastID(e *event.Event) string {
	if e == nil {
		return ""
	}
	return e.EventID
}
