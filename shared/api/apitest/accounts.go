package apitest

import (
	"encoding/base64"
	"fmt"
	"testing"
)

// listAccounts pages through GET /accounts, failing on a repeated or out-of-order id or a
// page over the limit, and returns the accounts by id.
func listAccounts(c *Client, limit int) (map[string]map[string]any, string) {
	c.T.Helper()
	all := map[string]map[string]any{}
	cursor, last := "", ""
	for pages := 0; ; pages++ {
		path := fmt.Sprintf("/accounts?limit=%d", limit)
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := c.Must(200, "GET", path, nil)
		accs, ok := r.Body["accounts"].([]any)
		if !ok || len(accs) > limit {
			c.T.Fatalf("GET %s: %s", path, r.Raw)
		}
		for _, a := range accs {
			acc := a.(map[string]any)
			id, _ := acc["id"].(string)
			if id <= last {
				return nil, fmt.Sprintf("account %q listed after %q: repeated or out of order", id, last)
			}
			last = id
			all[id] = acc
		}
		next, _ := r.Body["nextCursor"].(string)
		if next == "" {
			return all, ""
		}
		if len(accs) == 0 || pages > 10000 {
			c.T.Fatalf("GET %s: empty page with a next cursor, or paging without end: %s", path, r.Raw)
		}
		cursor = next
	}
}

// GET /accounts lists the accounts read model a page at a time, each account once and in
// id order, with the balances the read model holds; a malformed limit or cursor is 400.
func testAccountsList(t *testing.T, c *Client) {
	prefix := ID("lst")
	want := map[string]string{}
	for i := range 5 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		c.Must(201, "POST", "/accounts/"+id+"/open", map[string]any{"initialDeposit": i + 1})
		want[id] = fmt.Sprint(i + 1)
	}
	for _, limit := range []int{2, 200} {
		c.Eventually(settle, func() string {
			all, msg := listAccounts(c, limit)
			if msg != "" {
				return msg
			}
			for id := range want {
				acc, ok := all[id]
				if !ok {
					return fmt.Sprintf("limit %d: account %s not listed (yet)", limit, id)
				}
				if bal := fmt.Sprint(acc["balance"]); bal != want[id] || acc["isOpen"] != true {
					return fmt.Sprintf("limit %d: account %s listed as %v", limit, id, acc)
				}
			}
			return ""
		})
	}
	notUTF8 := base64.RawURLEncoding.EncodeToString([]byte{'a', 0xff})
	for _, path := range []string{"/accounts?limit=0", "/accounts?limit=201", "/accounts?limit=two",
		"/accounts?cursor=%25%25", "/accounts?cursor=" + notUTF8, "/accounts?cursor=***"} {
		r := c.Do("GET", path, nil)
		if r.Status != 400 || r.ErrorCode() != "invalid_request" {
			t.Errorf("GET %s: %d %s, want 400 invalid_request", path, r.Status, r.Raw)
		}
	}
}
