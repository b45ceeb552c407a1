package apitest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func (c *Client) eventually(path, field, want string) Response {
	c.T.Helper()
	var last Response
	c.Eventually(settle, func() string {
		last = c.Do("GET", path, nil)
		if got := strings.Trim(last.Num(field), `"`); got != want {
			return fmt.Sprintf("%s %s = %s, want %s: %s", path, field, got, want, last.Raw)
		}
		return ""
	})
	return last
}

func testOrders(t *testing.T, c *Client) {
	acc, cust := "/accounts/"+ID("pay"), ID("cust")
	accID := acc[len("/accounts/"):]
	apple, pear := ID("apple"), ID("pear")
	c.Must(201, "POST", acc+"/open", map[string]any{"initialDeposit": 100})
	c.Must(200, "POST", "/products/"+apple+"/stock", map[string]any{"quantity": 10})
	r := c.Must(200, "POST", "/products/"+pear+"/stock", map[string]any{"quantity": 1})
	if r.Num("available") != "1" {
		t.Fatalf("stock: %s", r.Raw)
	}
	place := func(id string, items ...map[string]any) Response {
		return c.Must(201, "POST", "/orders/"+id+"/place", map[string]any{"customerId": cust, "paymentAccountId": accID, "items": items},
			"X-Correlation-Id", "corr-"+id)
	}

	// Happy path: paid, reserved, confirmed; then shipped.
	ok := ID("ord")
	r = place(ok, map[string]any{"productId": apple, "quantity": 2, "price": 19.99})
	if r.Body["status"] != "PLACED" || r.Num("totalAmount") != "39.98" {
		t.Fatalf("place: %s", r.Raw)
	}
	c.eventually("/orders/"+ok, "status", "CONFIRMED")
	if g := c.Must(200, "GET", acc+"?consistent=true", nil); g.Num("balance") != "60.02" {
		t.Fatalf("account after payment: %s", g.Raw)
	}
	c.eventually("/products/"+apple, "reserved", "2")
	r = c.Must(200, "POST", "/orders/"+ok+"/ship", nil)
	if r.Body["status"] != "SHIPPED" {
		t.Fatalf("ship: %s", r.Raw)
	}

	// Out of stock: the payment is refunded, reservations released, the order cancelled.
	oos := ID("ord")
	place(oos, map[string]any{"productId": apple, "quantity": 1, "price": 10}, map[string]any{"productId": pear, "quantity": 5, "price": 1})
	g := c.eventually("/orders/"+oos, "status", "CANCELLED")
	if g.Body["reason"] != "out_of_stock" {
		t.Fatalf("out of stock: %s", g.Raw)
	}
	if a := c.Must(200, "GET", acc+"?consistent=true", nil); a.Num("balance") != "60.02" {
		t.Fatalf("refund: %s", a.Raw)
	}
	c.eventually("/products/"+apple, "reserved", "2") // the 1 reserved for oos was released
	c.eventually("/products/"+apple, "available", "8")
	c.Must(422, "POST", "/orders/"+oos+"/ship", nil)

	// Payment declined.
	poor := ID("ord")
	place(poor, map[string]any{"productId": apple, "quantity": 1, "price": 1000})
	g = c.eventually("/orders/"+poor, "status", "CANCELLED")
	if g.Body["reason"] != "payment_declined" {
		t.Fatalf("declined: %s", g.Raw)
	}
	if r := c.Do("POST", "/orders/"+poor+"/ship", nil); r.Status != 422 || r.ErrorCode() != "not_confirmed" {
		t.Fatalf("ship a cancelled order: %d %s", r.Status, r.Raw)
	}

	// The causal chain of the first order across three aggregates, by correlation id.
	// The index behind GET /events may trail the events a moment (DynamoDB's is filled
	// from the stream): ask again until the chain is complete.
	c.Eventually(settle, func() string {
		q := c.Must(200, "GET", "/events?correlationId=corr-"+ok, nil)
		var page struct {
			Events []map[string]any `json:"events"`
		}
		_ = json.Unmarshal(q.Raw, &page)
		seen := map[string]bool{}
		for _, e := range page.Events {
			seen[e["aggregateType"].(string)+"/"+e["eventType"].(string)] = true
			md := e["metadata"].(map[string]any)
			if e["eventType"] != "OrderPlaced" && (md["causationId"] == nil || md["causationId"] == "") {
				t.Errorf("%s without causationId", e["eventType"])
			}
		}
		for _, want := range []string{"Order/OrderPlaced", "BankAccount/MoneyWithdrawn", "Order/OrderPaid", "Product/StockReserved", "Order/OrderConfirmed"} {
			if !seen[want] {
				return fmt.Sprintf("causal chain lacks %s: %v", want, seen)
			}
		}
		return ""
	})

	// The customer's orders, across order aggregates.
	c.Eventually(settle, func() string {
		co := c.Do("GET", "/customers/"+cust+"/orders", nil)
		s := string(co.Raw)
		if strings.Count(s, `"orderId"`) != 3 || !strings.Contains(s, `"SHIPPED"`) || strings.Count(s, `"CANCELLED"`) != 2 {
			return "customer orders: " + s
		}
		return ""
	})

	// Replaying the saga (a rebuild re-delivers every order event) repeats no side effect:
	// nobody is charged or refunded twice, and no stock is reserved again, even where a
	// step that failed the first time would now succeed (pear has stock now).
	c.Must(200, "POST", "/products/"+pear+"/stock", map[string]any{"quantity": 10})
	c.Rebuild("order-saga")
	if a := c.Must(200, "GET", acc+"?consistent=true", nil); a.Num("balance") != "60.02" {
		t.Fatalf("after replaying the saga: %s", a.Raw)
	}
	if n := len(c.Events(acc)); n != 4 { // opened, withdrawn, withdrawn (oos), deposited (refund)
		t.Fatalf("account events after saga replay: %d", n)
	}
	for _, p := range []struct{ id, reserved, available string }{{apple, "2", "8"}, {pear, "0", "11"}} {
		if g := c.Must(200, "GET", "/products/"+p.id+"?consistent=true", nil); g.Num("reserved") != p.reserved || g.Num("available") != p.available {
			t.Fatalf("product after saga replay: %s, want reserved %s available %s", g.Raw, p.reserved, p.available)
		}
	}
	if g := c.Must(200, "GET", "/orders/"+oos+"?consistent=true", nil); g.Body["status"] != "CANCELLED" {
		t.Fatalf("cancelled order after saga replay: %s", g.Raw)
	}

	// Malformed orders.
	c.Must(422, "POST", "/orders/"+ID("bad")+"/place", map[string]any{"customerId": cust, "items": []any{}})
	c.Must(422, "POST", "/orders/"+ID("bad")+"/place", map[string]any{"customerId": cust, "items": []any{map[string]any{"productId": apple, "quantity": 0, "price": 1}}})
	c.Must(422, "POST", "/orders/"+ID("bad")+"/place", map[string]any{"customerId": cust, "items": []any{map[string]any{"productId": apple, "quantity": 1, "price": 0.001}}})
	c.Must(400, "POST", "/orders/"+ID("bad")+"/place", `{"customerId": "x", "items": "many"}`)
	c.Must(409, "POST", "/orders/"+ok+"/place", map[string]any{"customerId": cust, "items": []any{map[string]any{"productId": apple, "quantity": 1, "price": 1}}})
	c.Must(404, "POST", "/orders/"+ID("none")+"/ship", nil)
}
