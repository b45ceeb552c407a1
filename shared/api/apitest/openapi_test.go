package apitest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
)

// The validator the end-to-end suite runs with accepts the contract's exchanges and
// refuses each kind of departure from it: a suite that passed with a validator refusing
// nothing would prove nothing.
func TestOpenAPICheck(t *testing.T) {
	o := apitest.Contract(t)
	const account = `{"id":"acc-1","balance":%s,"isOpen":true,"version":1,"transactionCount":1,"lastActivity":"2026-01-01T00:00:00Z"}`
	state := []string{"ETag", `"1"`, "x-ecm-version", "1", "x-ecm-event-id", "e1", "X-Correlation-Id", "c1"}
	plain := []string{"X-Correlation-Id", "c1"}
	for _, tc := range []struct {
		name         string
		method, path string
		reqBody      string
		reqHeaders   []string
		status       int
		resHeaders   []string
		resBody      string
		wantErr      string // "" when the exchange keeps to the contract
	}{
		{"open", "POST", "/accounts/acc-1/open", `{"initialDeposit": 10.5}`, nil, 201, state,
			strings.Replace(account, "%s", "10.5", 1), ""},
		{"open without a body", "POST", "/accounts/acc-1/open", "", nil, 201, state,
			strings.Replace(account, "%s", "0", 1), ""},
		{"large exact amount", "POST", "/accounts/acc-1/deposit", `{"amount": 12345678901.99}`, []string{"If-Match", `"0"`}, 200, state,
			strings.Replace(account, "%s", "12345678901.99", 1), ""},
		{"balance with three decimals", "POST", "/accounts/acc-1/deposit", `{"amount": 1}`, nil, 200, state,
			strings.Replace(account, "%s", "0.001", 1), "balance"},
		{"quoted balance", "GET", "/accounts/acc-1", "", nil, 200, state,
			strings.Replace(account, "%s", `"1"`, 1), "balance"},
		{"state field the document lacks", "GET", "/accounts/acc-1", "", nil, 200, state,
			`{"id":"acc-1","balance":1,"isOpen":true,"version":1,"transactionCount":1,"lastActivity":null,"nickname":"x"}`, "nickname"},
		{"state without ETag", "GET", "/accounts/acc-1", "", nil, 200, plain,
			strings.Replace(account, "%s", "1", 1), "ETag"},
		{"malformed ETag", "GET", "/accounts/acc-1", "", nil, 200,
			[]string{"ETag", "1", "x-ecm-version", "1", "X-Correlation-Id", "c1"}, strings.Replace(account, "%s", "1", 1), "ETag"},
		{"no correlation id", "GET", "/healthz", "", nil, 200, nil, `{"status":"ok"}`, "X-Correlation-Id"},
		{"undocumented status", "GET", "/healthz", "", nil, 202, plain, `{"status":"ok"}`, "status is not supported"},
		{"invalid request answered 200", "POST", "/accounts/acc-1/deposit", `{"amount": "lots"}`, nil, 200, state,
			strings.Replace(account, "%s", "1", 1), "request"},
		{"unknown field answered 200", "POST", "/accounts/acc-1/deposit", `{"amount": 1, "amonut": 2}`, nil, 200, state,
			strings.Replace(account, "%s", "1", 1), "amonut"},
		{"limit out of range answered 200", "GET", "/accounts?limit=0", "", nil, 200, plain, `{"accounts":[]}`, "limit"},
		{"invalid request refused", "POST", "/accounts/acc-1/deposit", `{"amount": "lots"}`, nil, 400, plain,
			`{"error":{"code":"invalid_request","message":"amounts must be JSON numbers"}}`, ""},
		{"400 with a 404 code", "GET", "/accounts/acc-1", "", nil, 400, plain,
			`{"error":{"code":"not_found","message":"m"}}`, "code"},
		{"error without a message", "GET", "/accounts/acc-1", "", nil, 404, plain, `{"error":{"code":"not_found"}}`, "message"},
		{"version_conflict with currentVersion", "POST", "/accounts/acc-1/deposit", `{"amount": 1}`, []string{"If-Match", `"7"`}, 409, plain,
			`{"error":{"code":"version_conflict","message":"m","currentVersion":1}}`, ""},
		{"version_conflict without currentVersion", "POST", "/accounts/acc-1/deposit", `{"amount": 1}`, []string{"If-Match", `"7"`}, 409, plain,
			`{"error":{"code":"version_conflict","message":"m"}}`, "currentVersion"},
		{"request_in_progress with currentVersion", "POST", "/accounts/acc-1/deposit", `{"amount": 1}`, nil, 409, plain,
			`{"error":{"code":"request_in_progress","message":"m","currentVersion":1}}`, "currentVersion"},
		{"rule code the document lacks", "POST", "/accounts/acc-1/withdraw", `{"amount": 1}`, nil, 422, plain,
			`{"error":{"code":"too_poor","message":"m"}}`, "code"},
		{"409 on a read", "GET", "/accounts/acc-1", "", nil, 409, plain,
			`{"error":{"code":"version_conflict","message":"m","currentVersion":1}}`, "status is not supported"},
		{"503 with Retry-After", "POST", "/accounts/acc-1/deposit", `{"amount": 1}`, nil, 503,
			[]string{"Retry-After", "2", "X-Correlation-Id", "c1"}, `{"error":{"code":"contention","message":"m","correlationId":"c1"}}`, ""},
		{"503 without Retry-After", "POST", "/accounts/acc-1/deposit", `{"amount": 1}`, nil, 503, plain,
			`{"error":{"code":"throttled","message":"m","correlationId":"c1"}}`, "Retry-After"},
		{"500 without the correlation id", "GET", "/accounts/acc-1", "", nil, 500, plain,
			`{"error":{"code":"internal","message":"internal error"}}`, "correlationId"},
		{"500 leaking a cause", "GET", "/accounts/acc-1", "", nil, 500, plain,
			`{"error":{"code":"internal","message":"internal error","correlationId":"c1","cause":"pq: boom"}}`, "cause"},
		{"unknown route refused", "GET", "/nothing/here", "", nil, 404, plain, `{"error":{"code":"not_found","message":"m"}}`, ""},
		{"unknown route served", "GET", "/nothing/here", "", nil, 200, plain, `{}`, "no operation"},
		{"unknown method served", "DELETE", "/accounts/acc-1", "", nil, 200, state, strings.Replace(account, "%s", "1", 1), "no operation"},
		{"unclean path refused", "POST", "/accounts//open", "", nil, 400, plain, `{"error":{"code":"invalid_path","message":"m"}}`, ""},
		{"unclean path with a wrong code", "POST", "/accounts//open", "", nil, 400, plain, `{"error":{"code":"nope","message":"m"}}`, "code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.reqBody))
			for i := 0; i+1 < len(tc.reqHeaders); i += 2 {
				req.Header.Set(tc.reqHeaders[i], tc.reqHeaders[i+1])
			}
			h := http.Header{"Content-Type": {"application/json"}}
			for i := 0; i+1 < len(tc.resHeaders); i += 2 {
				h.Set(tc.resHeaders[i], tc.resHeaders[i+1])
			}
			err := o.Check(req, []byte(tc.reqBody), tc.status, h, []byte(tc.resBody))
			if err != nil {
				t.Log(err)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted; want an error about %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not name %q", err, tc.wantErr)
			}
		})
	}
}
