// Package apitest is the end-to-end HTTP suite of the public contract (openapi.yaml); run
// with Validate, it checks every request and response against that document too.
// Every backend runs it against a fully assembled system:
//
//	apitest.Run(t, func(t *testing.T) http.Handler { return sys.Handler }, apitest.Validate(apitest.Contract(t)))
//
// Ids are unique per test, so one system may serve every test. Read models are polled
// (projections are eventually consistent), never waited for with a fixed sleep.
package apitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Target returns the handler under test.
type Target func(t *testing.T) http.Handler

// Suite is a named group of end-to-end tests.
type Suite struct {
	Name string
	Fn   func(*testing.T, *Client)
}

// Suites is the whole end-to-end suite, in the order Run runs it: the bank's flows and the
// operational routes, then the other domains, then input hardening across all of them.
func Suites() []Suite {
	return []Suite{
		{"BankFlow", testBankFlow},
		{"RuleViolationsAndMalformedRequests", testErrors},
		{"ExpectedVersionHeaders", testExpectedVersion},
		{"IdempotencyKey", testIdempotency},
		{"CorrelationCausationActor", testMetadata},
		{"AsOf", testAsOf},
		{"ExactMoney", testExactMoney},
		{"EventsQueryPaging", testEventsQuery},
		{"AccountsList", testAccountsList},
		{"Operations", testOperations},
		{"ConcurrentCommands", testConcurrent},
		{"HundredConcurrentDepositsAllSucceed", testHundredDeposits},
		{"UnversionedCommandsRetriedWithKey", testKeyedRetries},
		{"UserContextECM", testContexts},
		{"UserContextContract", testContextContract},
		{"OrdersSagaCustomers", testOrders},
		{"OrdersCausalChainAndHistory", testOrderChain},
		{"TasksAuditTrail", testTasks},
		{"TasksContract", testTasksContract},
		{"InputHardening", testHardening},
	}
}

// Option configures Run.
type Option func(*Client)

// Validate checks every request and response of the suite against the document.
func Validate(o *OpenAPI) Option { return func(c *Client) { c.OpenAPI = o } }

// Run runs every suite of Suites against target.
func Run(t *testing.T, target Target, opts ...Option) {
	for _, s := range Suites() {
		t.Run(s.Name, func(t *testing.T) {
			c := &Client{T: t, H: target(t)}
			for _, o := range opts {
				o(c)
			}
			s.Fn(t, c)
		})
	}
}

var seq atomic.Int64

// ID returns an id unique to this run.
func ID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e10, seq.Add(1))
}

// Client issues requests to the handler.
type Client struct {
	T *testing.T
	H http.Handler
	// OpenAPI, when set, validates every exchange against the contract; a mismatch fails
	// the test with the route and the schema error.
	OpenAPI *OpenAPI
}

// With returns a client for a subtest, validating as c does.
func (c *Client) With(t *testing.T) *Client { return &Client{T: t, H: c.H, OpenAPI: c.OpenAPI} }

// Response is a decoded response.
type Response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// Do sends a request; body may be nil, a string (sent as is) or a value (JSON-encoded).
func (c *Client) Do(method, path string, body any, headers ...string) Response {
	c.T.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	// The request as sent: the handler consumes the body and may see a changed request.
	sent := req.Clone(req.Context())
	rec := httptest.NewRecorder()
	c.H.ServeHTTP(rec, req)
	res := Response{Status: rec.Code, Header: rec.Header(), Raw: rec.Body.Bytes()}
	if c.OpenAPI != nil {
		if err := c.OpenAPI.Check(sent, raw, res.Status, res.Header, res.Raw); err != nil {
			// Errorf, not Fatalf: Do runs on the suites' goroutines too.
			c.T.Errorf("%s %s does not keep to openapi.yaml: %v", method, path, err)
		}
	}
	if len(res.Raw) > 0 {
		_ = json.Unmarshal(res.Raw, &res.Body)
	}
	return res
}

// Must sends a request and fails the test unless the status matches.
func (c *Client) Must(status int, method, path string, body any, headers ...string) Response {
	c.T.Helper()
	r := c.Do(method, path, body, headers...)
	if r.Status != status {
		c.T.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, status, r.Raw)
	}
	return r
}

// ErrorCode returns the error code of an error response.
func (r Response) ErrorCode() string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// Num returns a top-level JSON number field as its literal text (exactness preserved).
func (r Response) Num(field string) string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(r.Raw, &m)
	return string(m[field])
}

// Eventually polls fn until it returns "" or the timeout passes, then fails with its
// last message.
func (c *Client) Eventually(timeout time.Duration, fn func() string) {
	c.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := fn()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			c.T.Fatalf("not within %v: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Rebuild starts a projection's rebuild (202 with the job and a Location) and polls the
// Location until the job is done; it returns the finished projection status.
func (c *Client) Rebuild(name string) Response {
	c.T.Helper()
	r := c.Must(202, "POST", "/projections/"+name+"/rebuild", nil)
	loc := r.Header.Get("Location")
	job, _ := r.Body["rebuild"].(map[string]any)
	if loc != "/projections/"+name || job["id"] == nil {
		c.T.Fatalf("rebuild %s: Location %q, body %s", name, loc, r.Raw)
	}
	var st Response
	c.Eventually(settle, func() string {
		st = c.Must(200, "GET", loc, nil)
		got, _ := st.Body["rebuild"].(map[string]any)
		if got["id"] != job["id"] || got["phase"] != "done" || st.Body["status"] == "rebuilding" {
			return "rebuild not done: " + string(st.Raw)
		}
		return ""
	})
	return st
}

// Events returns an aggregate's events via GET <path>/events.
func (c *Client) Events(path string) []map[string]any {
	c.T.Helper()
	r := c.Do("GET", path+"/events", nil)
	if r.Status == http.StatusNotFound {
		return nil
	}
	var body struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		c.T.Fatalf("events of %s: %v: %s", path, err, r.Raw)
	}
	return body.Events
}

const settle = 60 * time.Second // polled: returns as soon as the read model or the index caught up

func testBankFlow(t *testing.T, c *Client) {
	id := ID("acc")
	p := "/accounts/" + id
	r := c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 1000})
	if r.Num("balance") != "1000" || r.Num("version") != "1" || r.Body["isOpen"] != true || r.Header.Get("ETag") != `"1"` {
		t.Fatalf("open: %s %v", r.Raw, r.Header)
	}
	c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 500})
	r = c.Must(200, "POST", p+"/withdraw", map[string]any{"amount": 200})
	if r.Num("balance") != "1300" || r.Num("version") != "3" || r.Num("transactionCount") != "3" {
		t.Fatalf("after the seed-002 flow: %s", r.Raw)
	}
	if r.Header.Get("ETag") != `"3"` || r.Header.Get("x-ecm-version") != "3" {
		t.Fatalf("version headers: %v", r.Header)
	}
	events := c.Events(p)
	if len(events) != 3 || events[2]["eventId"] != r.Header.Get("x-ecm-event-id") {
		t.Fatalf("x-ecm-event-id %q is not the last event of %v", r.Header.Get("x-ecm-event-id"), events)
	}
	for i, typ := range []string{"AccountOpened", "MoneyDeposited", "MoneyWithdrawn"} {
		if events[i]["eventType"] != typ || events[i]["aggregateType"] != "BankAccount" || events[i]["version"] != float64(i+1) {
			t.Fatalf("event %d: %v", i, events[i])
		}
	}
	c.Eventually(settle, func() string {
		g := c.Do("GET", p, nil)
		if g.Status != 200 || g.Num("balance") != "1300" || g.Num("version") != "3" || g.Body["owner"] != r.Body["owner"] {
			return fmt.Sprintf("read model: %d %s", g.Status, g.Raw)
		}
		if g.Header.Get("ETag") != `"3"` {
			return fmt.Sprintf("read model ETag %q", g.Header.Get("ETag"))
		}
		return ""
	})
	g := c.Must(200, "GET", p+"?consistent=true", nil)
	if g.Num("balance") != "1300" || g.Num("version") != "3" || g.Header.Get("x-ecm-event-id") != r.Header.Get("x-ecm-event-id") {
		t.Fatalf("consistent read: %s %v", g.Raw, g.Header)
	}
	// The owner is whoever opened the account: the actor of its first event.
	if md, _ := events[0]["metadata"].(map[string]any); md == nil || md["actor"] == nil || g.Body["owner"] != md["actor"] {
		t.Fatalf("owner %v, want the actor of AccountOpened %v", g.Body["owner"], events[0]["metadata"])
	}
	for _, k := range []string{"id", "balance", "isOpen", "version", "transactionCount", "lastActivity", "owner"} {
		if _, ok := g.Body[k]; !ok {
			t.Errorf("state lacks %q: %s", k, g.Raw)
		}
	}
	// Close after emptying it.
	c.Must(200, "POST", p+"/withdraw", map[string]any{"amount": 1300})
	r = c.Must(200, "POST", p+"/close", nil)
	if r.Body["isOpen"] != false || r.Num("version") != "5" {
		t.Fatalf("close: %s", r.Raw)
	}
}

func testErrors(t *testing.T, c *Client) {
	id := ID("err")
	p := "/accounts/" + id
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 100})
	closed := ID("closed")
	c.Must(201, "POST", "/accounts/"+closed+"/open", nil)
	c.Must(200, "POST", "/accounts/"+closed+"/close", nil)

	for _, tc := range []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		code               string
	}{
		{"open twice", "POST", p + "/open", map[string]any{"initialDeposit": 1}, nil, 409, "already_exists"},
		{"unknown account", "POST", "/accounts/" + ID("nobody") + "/deposit", map[string]any{"amount": 1}, nil, 404, "not_found"},
		{"unknown account read", "GET", "/accounts/" + ID("nobody"), nil, nil, 404, "not_found"},
		{"unknown account events", "GET", "/accounts/" + ID("nobody") + "/events", nil, nil, 404, "not_found"},
		{"insufficient funds", "POST", p + "/withdraw", map[string]any{"amount": 100.01}, nil, 422, "insufficient_funds"},
		{"zero amount", "POST", p + "/deposit", map[string]any{"amount": 0}, nil, 422, "invalid_amount"},
		{"negative amount", "POST", p + "/withdraw", map[string]any{"amount": -5}, nil, 422, "invalid_amount"},
		{"three decimals", "POST", p + "/deposit", `{"amount": 0.001}`, nil, 422, "invalid_amount"},
		{"negative opening", "POST", "/accounts/" + ID("neg") + "/open", map[string]any{"initialDeposit": -1}, nil, 422, "invalid_amount"},
		{"amount not a number", "POST", p + "/deposit", `{"amount": "lots"}`, nil, 400, "invalid_request"},
		{"amount missing", "POST", p + "/deposit", `{}`, nil, 400, "invalid_request"},
		{"body missing", "POST", p + "/deposit", nil, nil, 400, "invalid_request"},
		{"malformed json", "POST", p + "/deposit", `{"amount": `, nil, 400, "invalid_request"},
		{"unknown field", "POST", p + "/deposit", `{"amount": 1, "amonut": 2}`, nil, 400, "invalid_request"},
		{"trailing data", "POST", p + "/deposit", `{"amount": 1} {}`, nil, 400, "invalid_request"},
		{"body too large", "POST", p + "/deposit", `{"amount": 1, "x": "` + strings.Repeat("a", 300<<10) + `"}`, nil, 413, "payload_too_large"},
		{"close with balance", "POST", p + "/close", nil, nil, 422, "balance_not_zero"},
		{"deposit to closed", "POST", "/accounts/" + closed + "/deposit", map[string]any{"amount": 1}, nil, 422, "account_closed"},
		{"close closed", "POST", "/accounts/" + closed + "/close", nil, nil, 422, "account_closed"},
		{"bad id", "POST", "/accounts/bad!id/open", nil, nil, 400, "invalid_request"},
		{"long id", "POST", "/accounts/" + strings.Repeat("a", 129) + "/open", nil, nil, 400, "invalid_request"},
		{"stale If-Match", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"If-Match", `"7"`}, 409, "version_conflict"},
		{"stale x-ecm-version", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"x-ecm-version", "0"}, 409, "version_conflict"},
		{"bad If-Match", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"If-Match", "yesterday"}, 400, "invalid_request"},
		{"bad causation", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"x-ecm-causation", "a b"}, 400, "invalid_request"},
		// Key-bound metadata beyond the store's limits is refused by the API, or by the
		// store with the same typed error on every backend: never a 500.
		{"long causation", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"x-ecm-causation", strings.Repeat("c", 129)}, 400, "invalid_request"},
		{"long correlation id", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"X-Correlation-Id", strings.Repeat("c", 129)}, 400, "invalid_request"},
		{"correlation id over the limit", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"X-Correlation-Id", strings.Repeat("c", 200)}, 400, "invalid_request"},
		{"40 KB correlation id", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"X-Correlation-Id", strings.Repeat("c", 40<<10)}, 431, "headers_too_large"},
		{"actor over the limit", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"X-Actor", strings.Repeat("a", 257)}, 400, "invalid_request"},
		{"correlation id with #", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"X-Correlation-Id", "req#1"}, 400, "invalid_request"},
		{"actor not UTF-8", "POST", p + "/deposit", map[string]any{"amount": 1}, []string{"X-Actor", "bob\xff"}, 400, "invalid_request"},
		{"query by a correlation id over a key", "GET", "/events?correlationId=" + strings.Repeat("c", 2049), nil, nil, 400, "invalid_request"},
		{"query by an event type with #", "GET", "/events?eventType=a%23b", nil, nil, 400, "invalid_request"},
		{"bad as-of", "GET", p + "?asOf=yesterday", nil, nil, 400, "invalid_request"},
		{"bad as-of header", "GET", p, nil, []string{"x-ecm-as-of", "2024-13-45"}, 400, "invalid_request"},
		{"bad limit", "GET", "/events?aggregateType=BankAccount&limit=0", nil, nil, 400, "invalid_request"},
		{"bad since", "GET", "/events?aggregateType=BankAccount&since=now", nil, nil, 400, "invalid_request"},
		{"bad cursor", "GET", "/events?aggregateType=BankAccount&cursor=%25%25", nil, nil, 400, "invalid_cursor"},
		{"unknown route", "GET", "/nothing/here", nil, nil, 404, "not_found"},
		{"unknown projection", "POST", "/projections/" + ID("nope") + "/rebuild", nil, nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do(tc.method, tc.path, tc.body, tc.headers...)
			if r.Status != tc.status || r.ErrorCode() != tc.code {
				t.Fatalf("status %d code %q, want %d %q: %s", r.Status, r.ErrorCode(), tc.status, tc.code, r.Raw)
			}
			if msg, _ := r.Body["error"].(map[string]any)["message"].(string); msg == "" {
				t.Fatalf("error without a message: %s", r.Raw)
			}
			if r.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("content type %q", r.Header.Get("Content-Type"))
			}
		})
	}
	// Nothing was appended by any of them.
	if n := len(c.Events(p)); n != 1 {
		t.Fatalf("rejected requests appended: %d events, want 1", n)
	}
	if n := len(c.Events("/accounts/" + closed)); n != 2 {
		t.Fatalf("rejected requests appended to the closed account: %d events", n)
	}
	// Conflicts carry the current version.
	r := c.Do("POST", p+"/deposit", map[string]any{"amount": 1}, "If-Match", `"9"`)
	if cv := r.Body["error"].(map[string]any)["currentVersion"]; cv != float64(1) {
		t.Fatalf("conflict currentVersion = %v: %s", cv, r.Raw)
	}
	r = c.Do("POST", p+"/open", nil)
	if cv := r.Body["error"].(map[string]any)["currentVersion"]; cv != float64(1) {
		t.Fatalf("already_exists currentVersion = %v: %s", cv, r.Raw)
	}
}

func testExpectedVersion(t *testing.T, c *Client) {
	p := "/accounts/" + ID("ev")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 10}, "If-Match", `"0"`)
	r := c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 1}, "If-Match", `"1"`)
	c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 1}, "x-ecm-version", "2")
	c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 1}, "If-Match", `W/"3"`, "x-ecm-version", "3")
	c.Must(400, "POST", p+"/deposit", map[string]any{"amount": 1}, "If-Match", `"4"`, "x-ecm-version", "3")
	// The ETag of one response is the If-Match of the next.
	c.Must(409, "POST", p+"/deposit", map[string]any{"amount": 1}, "If-Match", r.Header.Get("ETag"))
}

func testIdempotency(t *testing.T, c *Client) {
	p := "/accounts/" + ID("idem")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 100})
	key := ID("key")
	first := c.Must(200, "POST", p+"/withdraw", map[string]any{"amount": 30}, "Idempotency-Key", key)
	second := c.Must(200, "POST", p+"/withdraw", map[string]any{"amount": 30}, "Idempotency-Key", key)
	if !bytes.Equal(first.Raw, second.Raw) || second.Header.Get("Idempotent-Replayed") != "true" ||
		second.Header.Get("ETag") != first.Header.Get("ETag") || second.Header.Get("x-ecm-event-id") != first.Header.Get("x-ecm-event-id") {
		t.Fatalf("retry answered differently:\n%s %v\n%s %v", first.Raw, first.Header, second.Raw, second.Header)
	}
	if n := len(c.Events(p)); n != 2 {
		t.Fatalf("retried command appended again: %d events", n)
	}
	r := c.Do("POST", p+"/withdraw", map[string]any{"amount": 31}, "Idempotency-Key", key)
	if r.Status != 422 || r.ErrorCode() != "idempotency_key_reused" {
		t.Fatalf("same key, other body: %d %s", r.Status, r.Raw)
	}
	// A rejected command is remembered too: its retry gets the same rejection.
	k2 := ID("key")
	a := c.Must(422, "POST", p+"/withdraw", map[string]any{"amount": 1000}, "Idempotency-Key", k2)
	b := c.Must(422, "POST", p+"/withdraw", map[string]any{"amount": 1000}, "Idempotency-Key", k2)
	if !bytes.Equal(a.Raw, b.Raw) {
		t.Fatalf("rejection not replayed")
	}
	// The key is scoped to the route: the same key elsewhere is a new command.
	c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 30}, "Idempotency-Key", key)
	if g := c.Must(200, "GET", p+"?consistent=true", nil); g.Num("balance") != "100" {
		t.Fatalf("balance %s, want 100", g.Raw)
	}
}

func testMetadata(t *testing.T, c *Client) {
	p := "/accounts/" + ID("md")
	corr := ID("corr")
	r := c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 5},
		"X-Correlation-Id", corr, "x-ecm-causation", "cmd-42", "X-Actor", "alice")
	if r.Header.Get("X-Correlation-Id") != corr {
		t.Fatalf("correlation id not echoed: %v", r.Header)
	}
	ev := c.Events(p)[0]
	md, _ := ev["metadata"].(map[string]any)
	if md["correlationId"] != corr || md["causationId"] != "cmd-42" || md["actor"] != "alice" || md["source"] != "api" {
		t.Fatalf("metadata %v", md)
	}
	// Without headers: a correlation id is generated and echoed, the actor is anonymous.
	r = c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 1})
	gen := r.Header.Get("X-Correlation-Id")
	if gen == "" {
		t.Fatal("no correlation id generated")
	}
	md, _ = c.Events(p)[1]["metadata"].(map[string]any)
	if md["correlationId"] != gen || md["actor"] != "anonymous" {
		t.Fatalf("defaults: %v (header %s)", md, gen)
	}
	// The cross-stream index may trail the events (DynamoDB's is filled from the stream).
	c.Eventually(settle, func() string {
		q := c.Must(200, "GET", "/events?correlationId="+corr, nil)
		if evs, _ := q.Body["events"].([]any); len(evs) != 1 {
			return "events by correlation id: " + string(q.Raw)
		}
		return ""
	})
	// A correlation id at the limit is stored and found on every backend.
	long := (ID("corr") + strings.Repeat("x", 128))[:128]
	c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 1}, "X-Correlation-Id", long)
	var q Response
	c.Eventually(settle, func() string {
		if q = c.Must(200, "GET", "/events?correlationId="+long, nil); len(q.Body["events"].([]any)) != 1 {
			return "events by a long correlation id: " + string(q.Raw)
		}
		return ""
	})
	if evs, _ := q.Body["events"].([]any); len(evs) != 1 {
		t.Fatalf("events by a correlation id of 128 characters: %s", q.Raw)
	}
}

func testAsOf(t *testing.T, c *Client) {
	p := "/accounts/" + ID("asof")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 100})
	c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 50})
	evs := c.Events(p)
	at := evs[1]["timestamp"].(string) // state right after the deposit
	c.Must(200, "POST", p+"/withdraw", map[string]any{"amount": 120})
	for _, req := range []struct{ path, hdr string }{{p + "?asOf=" + at, ""}, {p, at}} {
		var r Response
		if req.hdr != "" {
			r = c.Must(200, "GET", req.path, nil, "x-ecm-as-of", req.hdr)
		} else {
			r = c.Must(200, "GET", req.path, nil)
		}
		if r.Num("balance") != "150" || r.Num("version") != "2" || r.Header.Get("x-ecm-event-id") != evs[1]["eventId"] {
			t.Fatalf("as of %s: %s %v", at, r.Raw, r.Header)
		}
	}
	before, _ := time.Parse(time.RFC3339Nano, evs[0]["timestamp"].(string))
	r := c.Do("GET", p+"?asOf="+before.Add(-time.Second).Format(time.RFC3339Nano), nil)
	if r.Status != 404 {
		t.Fatalf("as of before it existed: %d %s", r.Status, r.Raw)
	}
	hist := c.Must(200, "GET", p+"/events?asOf="+at, nil)
	if evs, _ := hist.Body["events"].([]any); len(evs) != 2 {
		t.Fatalf("events as of: %s", hist.Raw)
	}
}

func testExactMoney(t *testing.T, c *Client) {
	p := "/accounts/" + ID("money")
	c.Must(201, "POST", p+"/open", `{"initialDeposit": 0.1}`)
	r := c.Must(200, "POST", p+"/deposit", `{"amount": 0.2}`)
	if r.Num("balance") != "0.3" {
		t.Fatalf("0.1 + 0.2 = %s", r.Num("balance"))
	}
	r = c.Must(200, "POST", p+"/withdraw", `{"amount": 0.30}`)
	if r.Num("balance") != "0" {
		t.Fatalf("0.3 - 0.30 = %s", r.Num("balance"))
	}
	c.Must(200, "POST", p+"/deposit", `{"amount": 12345678901.99}`)
	c.Eventually(settle, func() string {
		g := c.Do("GET", p, nil)
		if g.Num("balance") != "12345678901.99" {
			return "read model balance " + g.Num("balance")
		}
		return ""
	})
}

func testEventsQuery(t *testing.T, c *Client) {
	corr := ID("page")
	for range 3 {
		p := "/accounts/" + ID("q")
		c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 1}, "X-Correlation-Id", corr)
		c.Must(200, "POST", p+"/deposit", map[string]any{"amount": 1}, "X-Correlation-Id", corr)
	}
	// Backends whose cross-stream index trails the events (DynamoDB's is filled from the
	// stream) find the events a moment later: page through again until all six are there.
	var seen map[string]bool
	c.Eventually(settle, func() string {
		seen = map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			path := "/events?correlationId=" + corr + "&limit=2"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := c.Must(200, "GET", path, nil)
			evs, _ := r.Body["events"].([]any)
			if len(evs) > 2 {
				t.Fatalf("page of %d", len(evs))
			}
			for _, e := range evs {
				id := e.(map[string]any)["eventId"].(string)
				if seen[id] {
					t.Fatalf("event %s on two pages", id)
				}
				seen[id] = true
			}
			cursor, _ = r.Body["nextCursor"].(string)
			if cursor == "" || pages > 10 {
				break
			}
		}
		if len(seen) != 6 {
			return fmt.Sprintf("paged through %d events, want 6", len(seen))
		}
		return ""
	})
	r := c.Must(200, "GET", "/events?correlationId="+corr+"&eventType=MoneyDeposited", nil)
	if evs, _ := r.Body["events"].([]any); len(evs) != 3 {
		t.Fatalf("by type and correlation: %s", r.Raw)
	}
	// No filter at all: every event, newest pages reachable by paging; ours among them.
	c.Eventually(settle, func() string {
		r := c.Must(200, "GET", "/events?since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"&limit=1000", nil)
		found := 0
		evs, _ := r.Body["events"].([]any)
		for _, e := range evs {
			if seen[e.(map[string]any)["eventId"].(string)] {
				found++
			}
		}
		if found != 6 && r.Body["nextCursor"] == nil {
			return fmt.Sprintf("unfiltered query found %d of our 6 events: %s", found, r.Raw)
		}
		return ""
	})
}

func testOperations(t *testing.T, c *Client) {
	c.Must(200, "GET", "/healthz", nil)
	p := "/accounts/" + ID("ops")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 7})
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); g.Num("balance") != "7" {
			return "read model not there"
		}
		return ""
	})
	r := c.Must(200, "GET", "/projections", nil)
	if !strings.Contains(string(r.Raw), `"name":"accounts"`) {
		t.Fatalf("projections: %s", r.Raw)
	}
	st := c.Rebuild("accounts")
	if reb, _ := st.Body["rebuild"].(map[string]any); reb["eventsDone"] != reb["eventsTotal"] || reb["startedAt"] == nil {
		t.Fatalf("finished rebuild's progress: %s", st.Raw)
	}
	if g := c.Must(200, "GET", p, nil); g.Num("balance") != "7" || g.Num("version") != "1" {
		t.Fatalf("after rebuild: %s", g.Raw)
	}
	r = c.Must(200, "GET", "/dead-letters", nil)
	if _, ok := r.Body["deadLetters"].([]any); !ok {
		t.Fatalf("dead letters: %s", r.Raw)
	}
	r = c.Must(200, "POST", "/dead-letters/redrive", nil)
	if _, ok := r.Body["redriven"]; !ok {
		t.Fatalf("redrive: %s", r.Raw)
	}
	r = c.Must(200, "GET", "/metrics.json", nil)
	for _, k := range []string{"eventsPerSecond", "eventsAppended", "latencyMs", "errorRate", "deadLetters", "snapshotsCreated"} {
		if _, ok := r.Body[k]; !ok {
			t.Errorf("metrics lack %q: %s", k, r.Raw)
		}
	}
	// Prometheus exposition: the appends above are counted at the store.
	if r := c.Must(200, "GET", "/metrics", nil); !strings.Contains(string(r.Raw), `ecm_events_appended_total{aggregate_type="BankAccount"}`) ||
		!strings.Contains(string(r.Raw), "ecm_http_request_duration_seconds_bucket") {
		t.Errorf("GET /metrics: %.2000s", r.Raw)
	}
	if r := c.Must(200, "GET", "/ops", nil); !strings.Contains(string(r.Raw), `<script src="ops/ops.js"`) {
		t.Errorf("GET /ops: %.500s", r.Raw)
	}
	c.Must(200, "GET", "/ops/ops.js", nil)
	c.Must(404, "GET", "/ops/nothing.js", nil)
	c.Must(404, "GET", "/ops/index.html", nil)
}

func testConcurrent(t *testing.T, c *Client) {
	p := "/accounts/" + ID("conc")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 0})
	var wg sync.WaitGroup
	var ok, conflicts atomic.Int32
	for range 10 {
		wg.Add(2)
		go func() { // no expected version: retried until it lands
			defer wg.Done()
			if r := c.Do("POST", p+"/deposit", map[string]any{"amount": 1}); r.Status != 200 {
				t.Errorf("deposit: %d %s", r.Status, r.Raw)
			}
		}()
		go func() { // all expect version 1: the rest conflict
			defer wg.Done()
			switch r := c.Do("POST", p+"/deposit", map[string]any{"amount": 100}, "If-Match", `"1"`); r.Status {
			case 200:
				ok.Add(1)
			case 409:
				conflicts.Add(1)
			default:
				t.Errorf("deposit with If-Match: %d %s", r.Status, r.Raw)
			}
		}()
	}
	wg.Wait()
	if ok.Load() > 1 || ok.Load()+conflicts.Load() != 10 {
		t.Fatalf("If-Match 1: %d succeeded, %d conflicted", ok.Load(), conflicts.Load())
	}
	want := fmt.Sprint(10 + 100*ok.Load())
	g := c.Must(200, "GET", p+"?consistent=true", nil)
	if g.Num("balance") != want {
		t.Fatalf("balance %s, want %s (lost update)", g.Num("balance"), want)
	}
}

// 100 deposits without a version on one account at once: every one answers 200 (no 409
// for a client that asked for no version), and the balance holds every one.
func testHundredDeposits(t *testing.T, c *Client) {
	p := "/accounts/" + ID("hundred")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 0})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := c.Do("POST", p+"/deposit", map[string]any{"amount": 1}); r.Status != 200 {
				t.Errorf("deposit: %d %s", r.Status, r.Raw)
			}
		}()
	}
	wg.Wait()
	if g := c.Must(200, "GET", p+"?consistent=true", nil); g.Num("balance") != "100" || g.Num("version") != "101" {
		t.Fatalf("balance %s at version %s, want 100 at 101", g.Num("balance"), g.Num("version"))
	}
}

// Concurrent withdrawals with keys, each sent twice: every key takes effect once,
// withdrawals the balance covers succeed, and the others are refused with the rule.
func testKeyedRetries(t *testing.T, c *Client) {
	p := "/accounts/" + ID("keyed")
	c.Must(201, "POST", p+"/open", map[string]any{"initialDeposit": 30})
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	for i := range 50 {
		key := fmt.Sprintf("w-%d", i)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					switch r := c.Do("POST", p+"/withdraw", map[string]any{"amount": 1}, "Idempotency-Key", key); r.Status {
					case 200:
						if r.Header.Get("Idempotent-Replayed") == "" {
							ok.Add(1)
						}
					case 422:
						if r.Header.Get("Idempotent-Replayed") == "" {
							refused.Add(1)
						}
					case 409: // the same key still in flight: a client retries it
						time.Sleep(time.Millisecond)
						continue
					default:
						t.Errorf("withdraw: %d %s", r.Status, r.Raw)
					}
					return
				}
			}()
		}
	}
	wg.Wait()
	g := c.Must(200, "GET", p+"?consistent=true", nil)
	if ok.Load() != 30 || refused.Load() != 20 || g.Num("balance") != "0" || g.Num("version") != "31" {
		t.Fatalf("%d withdrawals applied, %d refused, balance %s at version %s; want 30, 20, 0 at 31",
			ok.Load(), refused.Load(), g.Num("balance"), g.Num("version"))
	}
}
