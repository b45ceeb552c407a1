package ecmctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/orders"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/tasks"
	"github.com/ecmstore/ecmstore/shared/usercontext"
)

// ErrUnsupported: the command cannot be done through the HTTP API (use direct access).
var ErrUnsupported = errors.New("not available through the HTTP API")

// APIError is an error answer of the HTTP API (openapi.yaml's error body).
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// remote is the HTTP API with a bearer token.
type remote struct {
	base   string
	token  string
	client *http.Client
}

// streamRoutes are the API's per-type stream routes (GET <route>/{id}/events).
var streamRoutes = map[string]string{
	bank.AggregateType:        "/accounts/",
	orders.AggregateType:      "/orders/",
	tasks.AggregateType:       "/tasks/",
	usercontext.AggregateType: "/contexts/",
}

func (r remote) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := strings.TrimRight(r.base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Actor", "ecmctl")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &eb) != nil || eb.Error.Message == "" {
			eb.Error.Message = strings.TrimSpace(string(bytes.ToValidUTF8(body[:min(len(body), 500)], nil)))
		}
		return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (r remote) Projections(ctx context.Context) ([]map[string]any, error) {
	var out struct {
		Projections []map[string]any `json:"projections"`
	}
	return out.Projections, r.do(ctx, http.MethodGet, "/projections", nil, &out)
}

func (r remote) Rebuild(ctx context.Context, name string) (map[string]any, error) {
	out := map[string]any{}
	return out, r.do(ctx, http.MethodPost, "/projections/"+url.PathEscape(name)+"/rebuild", nil, &out)
}

func (r remote) DeadLetters(ctx context.Context) ([]projection.DeadLetter, error) {
	var out struct {
		DeadLetters []projection.DeadLetter `json:"deadLetters"`
	}
	return out.DeadLetters, r.do(ctx, http.MethodGet, "/dead-letters", nil, &out)
}

func (r remote) Redrive(ctx context.Context, id string) (projection.RedriveResult, error) {
	var out projection.RedriveResult
	if id != "" {
		return out, fmt.Errorf("redrive of one dead letter: %w (POST /dead-letters/redrive redrives all; omit the id, or work on the store directly)", ErrUnsupported)
	}
	return out, r.do(ctx, http.MethodPost, "/dead-letters/redrive", nil, &out)
}

func (r remote) Stream(ctx context.Context, st eventstore.Stream, asOf time.Time) ([]event.Event, error) {
	route, ok := streamRoutes[st.Type]
	if !ok {
		return nil, fmt.Errorf("streams of type %s: %w (it serves %s)", st.Type, ErrUnsupported, strings.Join(streamTypes(), ", "))
	}
	q := url.Values{}
	if !asOf.IsZero() {
		q.Set("asOf", asOf.UTC().Format(time.RFC3339Nano))
	}
	var out struct {
		Events []event.Event `json:"events"`
	}
	err := r.do(ctx, http.MethodGet, route+url.PathEscape(st.ID)+"/events", q, &out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, nil // as the store answers for a stream that does not exist
	}
	return out.Events, err
}

func (r remote) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	q := url.Values{}
	for k, v := range map[string]string{"eventType": f.EventType, "aggregateType": f.AggregateType,
		"correlationId": f.CorrelationID, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, t := range map[string]time.Time{"since": f.Since, "until": f.Until} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var page eventstore.Page
	return page, r.do(ctx, http.MethodGet, "/events", q, &page)
}

func streamTypes() []string {
	out := make([]string, 0, len(streamRoutes))
	for t := range streamRoutes {
		out = append(out, t)
	}
	sortStrings(out)
	return out
}
