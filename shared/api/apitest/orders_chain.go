package apitest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// chainEvent is what the chain checks read of an event.
type chainEvent struct {
	EventID       string          `json:"eventId"`
	EventType     string          `json:"eventType"`
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Version       int64           `json:"version"`
	SchemaVersion int             `json:"schemaVersion"`
	Timestamp     time.Time       `json:"timestamp"`
	Payload       json.RawMessage `json:"payload"`
	Metadata      struct {
		Actor         string `json:"actor"`
		CorrelationID string `json:"correlationId"`
		CausationID   string `json:"causationId"`
	} `json:"metadata"`
}

// chain returns every event of a correlation id, across aggregate types, once the saga
// has caused want events.
func (c *Client) chain(corr string, want int) []chainEvent {
	c.T.Helper()
	var page struct {
		Events []chainEvent `json:"events"`
	}
	c.Eventually(settle, func() string {
		r := c.Must(200, "GET", "/events?limit=1000&correlationId="+url.QueryEscape(corr), nil)
		page.Events = nil
		if err := json.Unmarshal(r.Raw, &page); err != nil {
			return err.Error()
		}
		if len(page.Events) != want {
			return fmt.Sprintf("correlation %s: %d events, want %d: %s", corr, len(page.Events), want, r.Raw)
		}
		return ""
	})
	return page.Events
}

// checkChain wants, for one correlation id, exactly the listed events ("Type/EventType <-
// CauseEventType", the placement having no cause in the chain): each caused event names
// its cause's id and is the saga's.
func checkChain(t *testing.T, events []chainEvent, corr, placedBy string, want []string) {
	t.Helper()
	byID := map[string]chainEvent{}
	for _, e := range events {
		byID[e.EventID] = e
	}
	var got []string
	for _, e := range events {
		if e.Metadata.CorrelationID != corr {
			t.Errorf("%s %s: correlationId %q", e.AggregateType, e.EventType, e.Metadata.CorrelationID)
		}
		line := e.AggregateType + "/" + e.EventType
		if cause, ok := byID[e.Metadata.CausationID]; ok {
			line += " <- " + cause.EventType
			if e.Metadata.Actor != "saga:order-fulfilment" {
				t.Errorf("%s: actor %q, want the saga", line, e.Metadata.Actor)
			}
		} else if e.Metadata.Actor != placedBy {
			t.Errorf("%s (cause %q): actor %q, want %q", line, e.Metadata.CausationID, e.Metadata.Actor, placedBy)
		}
		got = append(got, line)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("causal chain of %s:\n%s\nwant\n%s", corr, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func testOrderChain(t *testing.T, c *Client) {
	acc, cust := ID("chainacc"), ID("chaincust")
	apple, pear := ID("chainapple"), ID("chainpear") // apple sorts first: the saga reserves in product order
	c.Must(201, "POST", "/accounts/"+acc+"/open", map[string]any{"initialDeposit": 50})
	c.Must(200, "POST", "/products/"+apple+"/stock", map[string]any{"quantity": 3})
	p := c.Must(200, "POST", "/products/"+pear+"/stock", map[string]any{"quantity": 1})
	if p.Body["id"] != pear || p.Num("available") != "1" || p.Num("reserved") != "0" || p.Num("version") != "1" {
		t.Fatalf("stock: %s", p.Raw)
	}
	c.Must(404, "GET", "/products/"+ID("nostock"), nil)
	c.Must(422, "POST", "/products/"+apple+"/stock", map[string]any{"quantity": 0})

	// Placed with an Idempotency-Key and retried: one order, one payment.
	ok, corr, key := ID("chainord"), ID("chaincorr"), ID("chainkey")
	body := map[string]any{"customerId": cust, "paymentAccountId": acc,
		"items": []any{map[string]any{"productId": apple, "quantity": 2, "price": 10.10}, map[string]any{"productId": pear, "quantity": 1, "price": 0.05}}}
	hdr := []string{"X-Correlation-Id", corr, "Idempotency-Key", key, "X-Actor", "alice", "x-ecm-causation", "cmd-place-" + ok}
	first := c.Must(201, "POST", "/orders/"+ok+"/place", body, hdr...)
	if first.Body["status"] != "PLACED" || first.Num("totalAmount") != "20.25" || first.Num("version") != "1" {
		t.Fatalf("place: %s", first.Raw)
	}
	again := c.Must(201, "POST", "/orders/"+ok+"/place", body, hdr...)
	if again.Header.Get("Idempotent-Replayed") != "true" || again.Header.Get("x-ecm-event-id") != first.Header.Get("x-ecm-event-id") {
		t.Fatalf("retried place: %v %s", again.Header, again.Raw)
	}
	c.eventually("/orders/"+ok, "status", "CONFIRMED")
	if a := c.Must(200, "GET", "/accounts/"+acc+"?consistent=true", nil); a.Num("balance") != "29.75" {
		t.Fatalf("one payment of 20.25: %s", a.Raw)
	}
	c.eventually("/products/"+apple, "reserved", "2")
	c.eventually("/products/"+pear, "available", "0")

	// The causal chain across Order, BankAccount and Product streams, with the saga's step
	// log (OrderFulfilment) recording each step after it took effect.
	events := c.chain(corr, 9)
	checkChain(t, events, corr, "alice", []string{
		"Order/OrderPlaced",
		"BankAccount/MoneyWithdrawn <- OrderPlaced", "OrderFulfilment/FulfilmentStepRecorded <- OrderPlaced", "Order/OrderPaid <- OrderPlaced",
		"Product/StockReserved <- OrderPaid", "OrderFulfilment/FulfilmentStepRecorded <- OrderPaid",
		"Product/StockReserved <- OrderPaid", "OrderFulfilment/FulfilmentStepRecorded <- OrderPaid", "Order/OrderConfirmed <- OrderPaid",
	})
	for _, e := range events {
		switch e.EventType {
		case "OrderPlaced":
			if e.Metadata.CausationID != "cmd-place-"+ok || e.SchemaVersion != 2 {
				t.Errorf("OrderPlaced: causation %q, schema %d", e.Metadata.CausationID, e.SchemaVersion)
			}
		case "MoneyWithdrawn":
			if string(e.Payload) != `{"amount":20.25,"reference":"`+ok+`"}` {
				t.Errorf("payment: %s", e.Payload)
			}
		}
	}

	// The order's history: its events, and its state as of each of them.
	var hist []chainEvent
	raw, _ := json.Marshal(c.Events("/orders/" + ok))
	_ = json.Unmarshal(raw, &hist)
	if len(hist) != 3 || hist[0].EventType != "OrderPlaced" || hist[1].EventType != "OrderPaid" || hist[2].EventType != "OrderConfirmed" {
		t.Fatalf("order events: %s", raw)
	}
	statusAt := map[int64]string{1: "PLACED", 2: "PAID", 3: "CONFIRMED"}
	for i, e := range hist {
		at := e.Timestamp.Format(time.RFC3339Nano)
		want := int64(0)
		for _, f := range hist {
			if !f.Timestamp.After(e.Timestamp) {
				want = f.Version
			}
		}
		var g Response
		if i == 0 {
			g = c.Must(200, "GET", "/orders/"+ok, nil, "x-ecm-as-of", at)
		} else {
			g = c.Must(200, "GET", "/orders/"+ok+"?asOf="+url.QueryEscape(at), nil)
		}
		if g.Num("version") != fmt.Sprint(want) || g.Body["status"] != statusAt[want] || g.Num("totalAmount") != "20.25" {
			t.Errorf("as of event %d: %s", e.Version, g.Raw)
		}
	}
	before := hist[0].Timestamp.Add(-time.Second).Format(time.RFC3339Nano)
	c.Must(404, "GET", "/orders/"+ok+"?asOf="+url.QueryEscape(before), nil)

	s := c.Must(200, "POST", "/orders/"+ok+"/ship", nil)
	if s.Body["status"] != "SHIPPED" || s.Body["shippedAt"] == nil || s.Num("version") != "4" {
		t.Fatalf("ship: %s", s.Raw)
	}
	if r := c.Do("POST", "/orders/"+ok+"/ship", nil); r.Status != 422 || r.ErrorCode() != "not_confirmed" {
		t.Fatalf("ship twice: %d %s", r.Status, r.Raw)
	}

	// Out of stock (the pear is gone): the apple reserved is released, the payment refunded.
	oos, corr2 := ID("chainord"), ID("chaincorr")
	c.Must(201, "POST", "/orders/"+oos+"/place", map[string]any{"customerId": cust, "paymentAccountId": acc,
		"items": []any{map[string]any{"productId": apple, "quantity": 1, "price": 1}, map[string]any{"productId": pear, "quantity": 1, "price": 1}}},
		"X-Correlation-Id", corr2, "X-Actor", "alice")
	g := c.eventually("/orders/"+oos, "status", "CANCELLED")
	if g.Body["reason"] != "out_of_stock" {
		t.Fatalf("out of stock: %s", g.Raw)
	}
	const logged = "OrderFulfilment/FulfilmentStepRecorded"
	checkChain(t, c.chain(corr2, 12), corr2, "alice", []string{
		"Order/OrderPlaced",
		"BankAccount/MoneyWithdrawn <- OrderPlaced", logged + " <- OrderPlaced", "Order/OrderPaid <- OrderPlaced",
		"Product/StockReserved <- OrderPaid", logged + " <- OrderPaid", // reserved
		logged + " <- OrderPaid", // compensation decided
		"Product/StockReleased <- OrderPaid", logged + " <- OrderPaid",
		"BankAccount/MoneyDeposited <- OrderPaid", logged + " <- OrderPaid", "Order/OrderCancelled <- OrderPaid",
	})
	if a := c.Must(200, "GET", "/accounts/"+acc+"?consistent=true", nil); a.Num("balance") != "29.75" {
		t.Fatalf("refund: %s", a.Raw)
	}
	c.eventually("/products/"+apple, "available", "1")
	c.eventually("/products/"+apple, "reserved", "2")

	// Declined: nothing touches the account.
	poor, corr3 := ID("chainord"), ID("chaincorr")
	c.Must(201, "POST", "/orders/"+poor+"/place", map[string]any{"customerId": cust, "paymentAccountId": acc,
		"items": []any{map[string]any{"productId": apple, "quantity": 1, "price": 30}}}, "X-Correlation-Id", corr3, "X-Actor", "alice")
	if g := c.eventually("/orders/"+poor, "status", "CANCELLED"); g.Body["reason"] != "payment_declined" {
		t.Fatalf("declined: %s", g.Raw)
	}
	checkChain(t, c.chain(corr3, 3), corr3, "alice", []string{"Order/OrderPlaced", logged + " <- OrderPlaced", "Order/OrderCancelled <- OrderPlaced"})

	// The customer's orders, each as its own stream left it.
	c.Eventually(settle, func() string {
		r := c.Do("GET", "/customers/"+cust+"/orders", nil)
		var list struct {
			Orders []struct {
				OrderID     string      `json:"orderId"`
				Status      string      `json:"status"`
				TotalAmount json.Number `json:"totalAmount"`
				PlacedAt    *time.Time  `json:"placedAt"`
				ShippedAt   *time.Time  `json:"shippedAt"`
			} `json:"orders"`
		}
		if err := json.Unmarshal(r.Raw, &list); err != nil || len(list.Orders) != 3 {
			return fmt.Sprintf("customer orders: %v %s", err, r.Raw)
		}
		want := map[string]string{ok: "SHIPPED 20.25 true", oos: "CANCELLED 2 false", poor: "CANCELLED 30 false"}
		for _, o := range list.Orders {
			if got := fmt.Sprintf("%s %s %v", o.Status, o.TotalAmount, o.ShippedAt != nil); got != want[o.OrderID] || o.PlacedAt == nil {
				return fmt.Sprintf("customer order %s: %s, want %s: %s", o.OrderID, got, want[o.OrderID], r.Raw)
			}
		}
		return ""
	})
	if r := c.Must(200, "GET", "/customers/"+ID("nobody")+"/orders", nil); !strings.Contains(string(r.Raw), `"orders":[]`) {
		t.Fatalf("a customer without orders: %s", r.Raw)
	}
	checkCustomerOrdersPaged(t, c, cust, 3)
}

// checkCustomerOrdersPaged pages through a customer's orders one at a time: the same
// orders in the same order (oldest first) as one page, and a malformed cursor is a 400.
func checkCustomerOrdersPaged(t *testing.T, c *Client, cust string, n int) {
	t.Helper()
	ids := func(r Response) []string {
		var out []string
		list, _ := r.Body["orders"].([]any)
		for _, o := range list {
			id, _ := o.(map[string]any)["orderId"].(string)
			out = append(out, id)
		}
		return out
	}
	all := c.Must(200, "GET", "/customers/"+cust+"/orders", nil)
	if _, more := all.Body["nextCursor"]; more || len(ids(all)) != n {
		t.Fatalf("customer orders in one page: %s", all.Raw)
	}
	var paged []string
	cursor := ""
	for pages := 0; ; pages++ {
		path := "/customers/" + cust + "/orders?limit=1"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := c.Must(200, "GET", path, nil)
		if got := ids(r); len(got) > 1 || r.Body["customerId"] != cust {
			t.Fatalf("GET %s: %s", path, r.Raw)
		}
		paged = append(paged, ids(r)...)
		cursor, _ = r.Body["nextCursor"].(string)
		if cursor == "" || pages > n {
			break
		}
	}
	if fmt.Sprint(paged) != fmt.Sprint(ids(all)) {
		t.Fatalf("paged orders %v, in one page %v", paged, ids(all))
	}
	for _, q := range []string{"?limit=0", "?cursor=%25%25"} {
		if r := c.Do("GET", "/customers/"+cust+"/orders"+q, nil); r.Status != 400 || r.ErrorCode() != "invalid_request" {
			t.Errorf("GET customer orders%s: %d %s, want 400", q, r.Status, r.Raw)
		}
	}
}
