package apitest

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// testHardening: bad input gets a 4xx JSON error (never a redirect, never a 5xx) and
// writes nothing.
func testHardening(t *testing.T, c *Client) {
	t.Run("InvalidUnicodeBodies", func(t *testing.T) { hardenUnicode(t, c) })
	t.Run("UncleanPathsAndDotIDs", func(t *testing.T) { hardenPaths(t, c) })
	t.Run("AmountsAreNumbers", func(t *testing.T) { hardenAmounts(t, c) })
	t.Run("CursorsOutOfRange", func(t *testing.T) { hardenCursors(t, c) })
	t.Run("ContextLimits", func(t *testing.T) { hardenContextLimits(t, c) })
}

// refused checks a refusal: status, code, a JSON error body with a message.
func refused(t *testing.T, r Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.ErrorCode() != code {
		t.Fatalf("status %d code %q, want %d %q: %.300s", r.Status, r.ErrorCode(), status, code, r.Raw)
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Location") != "" {
		t.Fatalf("content type %q, location %q", r.Header.Get("Content-Type"), r.Header.Get("Location"))
	}
	if msg, _ := r.Body["error"].(map[string]any)["message"].(string); msg == "" {
		t.Fatalf("error without a message: %s", r.Raw)
	}
}

func hardenUnicode(t *testing.T, c *Client) {
	ctx := "/contexts/" + ID("hu")
	c.Must(201, "POST", ctx, map[string]any{"preferences": map[string]any{"a": 1}})
	acc := "/accounts/" + ID("hu")
	c.Must(201, "POST", acc+"/open", map[string]any{"initialDeposit": 10})
	newCtx, task, order, prod := "/contexts/"+ID("hu-new"), "/tasks/"+ID("hu"), "/orders/"+ID("hu"), "/products/"+ID("hu")
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
	}{
		{"invalid UTF-8 preference name on create", "POST", newCtx, "{\"preferences\":{\"\xff\":1}}", nil},
		{"invalid UTF-8 preference name on patch", "PATCH", ctx, "{\"preferences\":{\"b\xc3\":1}}", nil},
		{"invalid UTF-8 preference value on put", "PUT", ctx, "{\"preferences\":{\"a\":\"\xed\xa0\x80\"}}", nil},
		{"lone high surrogate escape", "PATCH", ctx, `{"preferences":{"\ud800":1}}`, nil},
		{"lone low surrogate escape", "PATCH", ctx, `{"preferences":{"x\udc00y":1}}`, nil},
		{"high surrogate followed by a non-surrogate", "PATCH", ctx, `{"preferences":{"\ud800\u0041":1}}`, nil},
		{"invalid UTF-8 with an idempotency key", "PATCH", ctx, "{\"preferences\":{\"\xfe\":1}}", []string{"Idempotency-Key", ID("k")}},
		{"invalid UTF-8 in an unknown field", "POST", acc + "/deposit", "{\"amount\":1,\"\x80\":2}", nil},
		{"invalid UTF-8 on a body-less command", "POST", acc + "/close", "\xff", nil},
		{"invalid UTF-8 task title", "POST", task + "/create", "{\"projectId\":\"p\",\"title\":\"\xc0\xaf\"}", nil},
		{"invalid UTF-8 customer id", "POST", order + "/place", "{\"customerId\":\"\xff\",\"items\":[]}", nil},
		{"invalid UTF-8 stock body", "POST", prod + "/stock", "{\"quantity\":1,\"\xff\":0}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, c.Do(tc.method, tc.path, tc.body, tc.headers...), 400, "invalid_utf8")
		})
	}
	for _, p := range []string{newCtx, task, order, prod} {
		if n := len(c.Events(p)); n != 0 {
			t.Fatalf("%s: refused requests appended %d events", p, n)
		}
	}
	if n := len(c.Events(ctx)); n != 1 {
		t.Fatalf("refused requests appended to the context: %d events", n)
	}
	if n := len(c.Events(acc)); n != 1 {
		t.Fatalf("refused requests appended to the account: %d events", n)
	}
	// Valid escapes are kept exactly: a surrogate pair, and an escaped backslash before "u".
	r := c.Must(200, "PATCH", ctx, `{"preferences":{"\ud83d\ude00":1,"a\\ud800":2}}`)
	prefs, _ := r.Body["preferences"].(map[string]any)
	if prefs["😀"] != float64(1) || prefs[`a\ud800`] != float64(2) {
		t.Fatalf("valid escapes not kept: %s", r.Raw)
	}
}

func hardenPaths(t *testing.T, c *Client) {
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               string
		status             int // 400 unless given
	}{
		{"escaped dot-dot context id", "POST", "/contexts/%2E%2E", map[string]any{"preferences": map[string]any{}}, "invalid_path", 0},
		{"escaped dot context id", "POST", "/contexts/%2e", map[string]any{"preferences": map[string]any{}}, "invalid_path", 0},
		{"dots-only id", "POST", "/contexts/...", map[string]any{"preferences": map[string]any{}}, "invalid_request", 0},
		{"dots-only account id", "POST", "/accounts/..../open", nil, "invalid_request", 0},
		{"empty segment", "POST", "/accounts//deposit", map[string]any{"amount": 1}, "invalid_path", 0},
		{"leading double slash", "POST", "//accounts/x/open", nil, "invalid_path", 0},
		{"dot segment", "POST", "/accounts/./open", nil, "invalid_path", 0},
		{"dot-dot segment", "POST", "/accounts/a/../b/open", nil, "invalid_path", 0},
		{"escaped slashes around dot-dot", "POST", "/accounts/a%2F..%2Fb/open", nil, "invalid_path", 0},
		{"trailing slash", "POST", "/accounts/" + ID("hp") + "/open/", nil, "invalid_path", 0},
		{"trailing dot segment", "GET", "/accounts/x/.", nil, "invalid_path", 0},
		{"trailing slash on a read", "GET", "/healthz/", nil, "invalid_path", 0},
		{"dot-dot customer id in a body", "POST", "/orders/" + ID("hp") + "/place",
			map[string]any{"customerId": "..", "items": []any{map[string]any{"productId": "p", "quantity": 1, "price": 1}}}, "invalid_request", 0},
		{"dot product id in a body", "POST", "/orders/" + ID("hp") + "/place",
			map[string]any{"customerId": "c", "items": []any{map[string]any{"productId": ".", "quantity": 1, "price": 1}}}, "invalid_order", 422},
		{"dot-dot project id in a body", "POST", "/tasks/" + ID("hp") + "/create", map[string]any{"projectId": "..", "title": "t"}, "invalid_request", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := tc.status
			if status == 0 {
				status = 400
			}
			refused(t, c.Do(tc.method, tc.path, tc.body), status, tc.code)
		})
	}
	for _, p := range []string{"/contexts/..", "/contexts/.", "/contexts/...", "/accounts/....", "/accounts/b", "/accounts/x"} {
		if r := c.Do("GET", p+"/events", nil); r.Status != 400 && r.Status != 404 {
			t.Fatalf("%s: %d %s", p, r.Status, r.Raw)
		}
	}
}

func hardenAmounts(t *testing.T, c *Client) {
	acc := "/accounts/" + ID("ha")
	c.Must(201, "POST", acc+"/open", map[string]any{"initialDeposit": 10})
	fresh := "/accounts/" + ID("ha-new")
	order := "/orders/" + ID("ha")
	for _, tc := range []struct{ name, path, body string }{
		{"quoted deposit", acc + "/deposit", `{"amount":"5"}`},
		{"quoted withdrawal", acc + "/withdraw", `{"amount":"1.50"}`},
		{"quoted opening deposit", fresh + "/open", `{"initialDeposit":"5"}`},
		{"empty string", acc + "/deposit", `{"amount":""}`},
		{"quoted price", order + "/place", `{"customerId":"c","paymentAccountId":"a","items":[{"productId":"p","quantity":1,"price":"5"}]}`},
		{"boolean", acc + "/deposit", `{"amount":true}`},
		{"null opening deposit", fresh + "/open", `{"initialDeposit":null}`},
		{"quoted quantity", "/products/" + ID("ha") + "/stock", `{"quantity":"5"}`},
	} {
		t.Run(tc.name, func(t *testing.T) { refused(t, c.Do("POST", tc.path, tc.body), 400, "invalid_request") })
	}
	if n := len(c.Events(acc)); n != 1 {
		t.Fatalf("refused amounts appended %d events", n)
	}
	for _, p := range []string{fresh, order} {
		if n := len(c.Events(p)); n != 0 {
			t.Fatalf("%s: refused amounts appended %d events", p, n)
		}
	}
}

func hardenCursors(t *testing.T, c *Client) {
	enc := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	for _, tc := range []struct{ name, cursor string }{
		{"max uint64 offset", enc(`{"after":18446744073709551615}`)},
		{"just past max int64", enc(`{"after":9223372036854775808}`)},
		{"negative", enc(`{"after":-1}`)},
		{"not base64", "%25%25"},
		{"not canonical", enc(`{ "after": 1 }`)},
		{"too long", strings.Repeat("A", 4096)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, c.Do("GET", "/events?aggregateType=BankAccount&limit=1&cursor="+tc.cursor, nil), 400, "invalid_cursor")
		})
	}
}

func hardenContextLimits(t *testing.T, c *Client) {
	many := func(prefix string, n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[fmt.Sprintf("%s%03d", prefix, i)] = i
		}
		return m
	}
	p := "/contexts/" + ID("hl")
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{}})
	r := c.Do("PATCH", p, map[string]any{"preferences": many("n", 101)})
	refused(t, r, 422, "too_many_changes")
	if msg := r.Body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "100") {
		t.Fatalf("message does not name the limit: %s", msg)
	}
	if n := len(c.Events(p)); n != 1 {
		t.Fatalf("refused PATCH appended: %d events", n)
	}
	// The context may still grow to its cap, 100 changes at a time.
	c.Must(200, "PATCH", p, map[string]any{"preferences": many("a", 100)})
	c.Must(200, "PATCH", p, map[string]any{"preferences": many("b", 100)})
	c.Must(200, "PATCH", p, map[string]any{"preferences": many("c", 56)})
	r = c.Do("PATCH", p, map[string]any{"preferences": map[string]any{"one-more": 1}})
	refused(t, r, 422, "too_many_preferences")
	if msg := r.Body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "256") {
		t.Fatalf("message does not name the limit: %s", msg)
	}
	refused(t, c.Do("POST", "/contexts/"+ID("hl-new"), map[string]any{"preferences": many("k", 257)}), 422, "too_many_preferences")
	// A body within the byte limit whose events exceed a store limit ("<" is stored
	// escaped as \u003c, six bytes) is 422 limit_exceeded, naming the limit.
	before := len(c.Events(p))
	r = c.Do("PATCH", p, `{"preferences":{"a000":"`+strings.Repeat("<", 200<<10)+`"}}`)
	refused(t, r, 422, "limit_exceeded")
	if msg := r.Body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "limit") {
		t.Fatalf("message does not name the limit: %s", msg)
	}
	if n := len(c.Events(p)); n != before {
		t.Fatalf("refused request appended: %d events, want %d", n, before)
	}
	// 413 stays for bodies over the byte limit only.
	refused(t, c.Do("PATCH", p, map[string]any{"preferences": map[string]any{"big": strings.Repeat("x", 300<<10)}}), 413, "payload_too_large")
}
