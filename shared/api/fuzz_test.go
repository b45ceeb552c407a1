package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// The fuzz targets drive the real handler, fully assembled on the memory backend, and
// hold it to the contract for any input: never a 5xx, never a redirect, always a JSON
// body, and a 4xx appends nothing (the feed's head is unchanged).

// fuzzSys is a system with one live aggregate of each kind for the routes to act on.
type fuzzSys struct {
	sys *system.System
	h   http.Handler
}

const (
	fzAccount = "fz-acc"
	fzContext = "fz-ctx"
	fzTask    = "fz-task"
	fzProduct = "fz-prod"
	fzOrder   = "fz-order"
)

func newFuzzSys(tb testing.TB) *fuzzSys {
	// Snapshots keep replays short as the fixtures grow over a long run.
	sys := system.Assemble(system.Config{EventStore: "memory", SnapshotEvery: 50}, mustMemory(tb), slog.New(slog.DiscardHandler))
	s := &fuzzSys{sys: sys, h: sys.Handler}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/accounts/" + fzAccount + "/open", `{"initialDeposit":1000000}`},
		{"POST", "/contexts/" + fzContext, `{"preferences":{"theme":"dark","n":1}}`},
		{"POST", "/tasks/" + fzTask + "/create", `{"projectId":"fz-proj","title":"fuzz"}`},
		{"POST", "/products/" + fzProduct + "/stock", `{"quantity":1000000}`},
		{"POST", "/orders/" + fzOrder + "/place", `{"customerId":"fz-cust","paymentAccountId":"fz-acc","items":[{"productId":"fz-prod","quantity":1,"price":1}]}`},
	} {
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, strings.NewReader(r.body)))
		if rec.Code >= 300 {
			tb.Fatalf("fixture %s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	return s
}

func (s *fuzzSys) head(t *testing.T) uint64 {
	h, err := s.sys.Feed.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serve runs one request and checks the contract's invariants.
func (s *fuzzSys) serve(t *testing.T, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	before := s.head(t)
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	checkResponse(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
	if after := s.head(t); rec.Code >= 400 && after != before {
		t.Fatalf("%s %s: %d appended %d events: %s", req.Method, req.URL, rec.Code, after-before, rec.Body)
	}
	return rec
}

var correlationPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func checkResponse(t *testing.T, req *http.Request, status int, h http.Header, body []byte) {
	t.Helper()
	switch {
	case status >= 500:
		t.Fatalf("%s %q: %d %s", req.Method, req.URL.String(), status, body)
	case status >= 300 && status < 400:
		t.Fatalf("%s %q: redirect %d to %s", req.Method, req.URL.String(), status, h.Get("Location"))
	case h.Get("Content-Type") != "application/json" || !json.Valid(body):
		t.Fatalf("%s %q: %d %q is not JSON: %q", req.Method, req.URL.String(), status, h.Get("Content-Type"), body)
	case !correlationPattern.MatchString(h.Get("X-Correlation-Id")):
		t.Fatalf("correlation id %q", h.Get("X-Correlation-Id"))
	}
	if status >= 400 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(body, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%d without a JSON error: %s", status, body)
		}
	}
}

type route struct {
	method, path string
	seeds        []string
}

// fuzzBodies is the body fuzzer over a set of routes: the input picks a route and
// supplies its body.
func fuzzBodies(f *testing.F, routes []route) {
	for i, r := range routes {
		for _, s := range append(r.seeds, "", "{}", "null", `{"x":1}`, "\xff") {
			f.Add(uint8(i), []byte(s))
		}
	}
	s := newFuzzSys(f)
	f.Fuzz(func(t *testing.T, pick uint8, body []byte) {
		r := routes[int(pick)%len(routes)]
		s.serve(t, httptest.NewRequest(r.method, r.path, bytes.NewReader(body)))
	})
}

func FuzzBankBodies(f *testing.F) {
	a := "/accounts/" + fzAccount
	fuzzBodies(f, []route{
		{"POST", "/accounts/fz-new/open", []string{`{"initialDeposit":10}`, `{"initialDeposit":0.001}`, `{"initialDeposit":"5"}`}},
		{"POST", a + "/deposit", []string{`{"amount":1}`, `{"amount":0.01}`, `{"amount":1e2}`, `{"amount":99999999999999999}`, `{"amount":"5"}`}},
		{"POST", a + "/withdraw", []string{`{"amount":1}`, `{"amount":-1}`, `{"amount":1000000000}`}},
		{"POST", "/accounts/fz-other/close", []string{``}},
	})
}

func FuzzContextBodies(f *testing.F) {
	c := "/contexts/" + fzContext
	fuzzBodies(f, []route{
		{"POST", "/contexts/fz-new", []string{`{"preferences":{"a":1}}`, `{"preferences":{"\ud800":1}}`}},
		{"PATCH", c, []string{`{"preferences":{"theme":"light","n":null,"x":[1,{"y":null}]}}`, `{"preferences":{"\ud83d\ude00":1}}`}},
		{"PUT", c, []string{`{"preferences":{"theme":"dark"}}`, `{"preferences":{}}`}},
		{"DELETE", "/contexts/fz-absent", []string{``}},
	})
}

func FuzzOrderBodies(f *testing.F) {
	fuzzBodies(f, []route{
		{"POST", "/orders/fz-new/place", []string{
			`{"customerId":"c","paymentAccountId":"fz-acc","items":[{"productId":"fz-prod","quantity":2,"price":19.99}]}`,
			`{"customerId":"c","items":[{"productId":"p","quantity":-1,"price":"5"}]}`,
			`{"customerId":"c","items":[{"productId":"p","quantity":9223372036854775807,"price":10000000000000}]}`}},
		{"POST", "/orders/" + fzOrder + "/ship", []string{``}},
		{"POST", "/products/" + fzProduct + "/stock", []string{`{"quantity":1}`, `{"quantity":-1}`, `{"quantity":"5"}`, `{"quantity":1.5}`}},
	})
}

func FuzzTaskBodies(f *testing.F) {
	t := "/tasks/" + fzTask
	fuzzBodies(f, []route{
		{"POST", "/tasks/fz-new/create", []string{`{"projectId":"p","title":"t"}`, `{"projectId":"..","title":""}`}},
		{"POST", t + "/assign", []string{`{"assignee":"bob"}`}},
		{"POST", t + "/request-review", []string{`{"reviewer":"carol"}`}},
		{"POST", t + "/approve", []string{``}},
		{"POST", t + "/request-changes", []string{``}},
		{"POST", t + "/merge", []string{``}},
	})
}

// FuzzHeaders: the headers the contract reads, on a command and on a read.
func FuzzHeaders(f *testing.F) {
	for _, h := range [][5]string{
		{`"1"`, "1", "", "key-1", "corr-1"},
		{`W/"2"`, "", "2024-01-01T00:00:00Z", "", ""},
		{"yesterday", "-1", "2024-13-45", strings.Repeat("k", 300), "a b"},
		{`"9223372036854775807"`, "9223372036854775808", "2024-01-01T00:00:00.123456789+01:00", "\xff", "\x00"},
		{"", "", "", "", strings.Repeat("c", 129)},
	} {
		f.Add(h[0], h[1], h[2], h[3], h[4], false)
		f.Add(h[0], h[1], h[2], h[3], h[4], true)
	}
	s := newFuzzSys(f)
	f.Fuzz(func(t *testing.T, ifMatch, version, asOf, idemKey, corr string, read bool) {
		req := httptest.NewRequest("POST", "/accounts/"+fzAccount+"/deposit", strings.NewReader(`{"amount":1}`))
		if read {
			req = httptest.NewRequest("GET", "/accounts/"+fzAccount, nil)
		}
		for k, v := range map[string]string{"If-Match": ifMatch, "X-Ecm-Version": version, "X-Ecm-As-Of": asOf,
			"Idempotency-Key": idemKey, "X-Correlation-Id": corr} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := s.serve(t, req)
		if correlationPattern.MatchString(corr) && rec.Header().Get("X-Correlation-Id") != corr {
			t.Fatalf("valid correlation id %q answered with %q", corr, rec.Header().Get("X-Correlation-Id"))
		}
		// The parsers on their own: what they accept is what the contract says.
		if v, err := api.ExpectedVersion(req); err == nil && v != nil && *v < 0 {
			t.Fatalf("negative expected version %d", *v)
		}
		if at, err := api.AsOf(req); err == nil && !at.IsZero() && at.Location().String() != "UTC" {
			t.Fatalf("as-of %v not in UTC", at)
		}
	})
}

// FuzzEventsQuery: GET /events with any query, cursor included.
func FuzzEventsQuery(f *testing.F) {
	next := eventstore.EncodeCursor(struct {
		After uint64 `json:"after"`
	}{After: 1})
	for _, q := range [][4]string{
		{"BankAccount", "", "", ""},
		{"BankAccount", next, "1", "2024-01-01T00:00:00Z"},
		{"", "eyJhZnRlciI6MTg0NDY3NDQwNzM3MDk1NTE2MTV9", "1000", ""},
		{"x", "%%", "0", "now"},
	} {
		f.Add(q[0], q[1], q[2], q[3])
	}
	s := newFuzzSys(f)
	f.Fuzz(func(t *testing.T, aggType, cursor, limit, since string) {
		q := url.Values{}
		for k, v := range map[string]string{"aggregateType": aggType, "cursor": cursor, "limit": limit, "since": since} {
			if v != "" {
				q.Set(k, v)
			}
		}
		s.serve(t, httptest.NewRequest("GET", "/events?"+q.Encode(), nil))
	})
}

// FuzzPaths: any request target is answered in JSON, never with a redirect.
func FuzzPaths(f *testing.F) {
	for _, p := range []string{"/accounts/fz-acc", "/contexts/%2E%2E", "/accounts//open", "/a/./b", "/healthz/",
		"/accounts/a%2F..%2Fb/open", "*", "", "/events?cursor=x", "//x", "/contexts/..."} {
		f.Add("GET", p)
		f.Add("POST", p)
	}
	s := newFuzzSys(f)
	f.Fuzz(func(t *testing.T, method, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !validMethod(method) {
			return // net/http refuses these before any handler runs
		}
		req := &http.Request{Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Host: "example.com", Body: http.NoBody}
		req = req.WithContext(context.Background())
		s.serve(t, req)
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}

// FuzzGatewayEvents: API Gateway (HTTP API v2) events, seeded with the golden requests,
// through the Lambda adapter.
func FuzzGatewayEvents(f *testing.F) {
	for _, name := range []string{"apigw-open", "apigw-bad"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name+".request.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	s := newFuzzSys(f)
	h := api.GatewayHandler(s.h)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev events.APIGatewayV2HTTPRequest
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		before := s.head(t)
		res, err := h(context.Background(), ev)
		if err != nil {
			return // the adapter refused the event (e.g. a malformed path): Lambda reports an error, not a 5xx body
		}
		hdr := http.Header{}
		for k, v := range res.Headers {
			hdr.Set(k, v)
		}
		body := []byte(res.Body)
		if res.IsBase64Encoded {
			return
		}
		req := &http.Request{Method: ev.RequestContext.HTTP.Method, URL: &url.URL{Path: ev.RawPath}}
		checkResponse(t, req, res.StatusCode, hdr, body)
		if res.StatusCode >= 400 && s.head(t) != before {
			t.Fatalf("%d appended: %s", res.StatusCode, body)
		}
	})
}
