// Package orderstest holds backend-agnostic checks of the orders domain that each
// event-store backend runs against itself.
package orderstest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/orders"
	"github.com/ecmstore/ecmstore/shared/system"
)

// v1Order is an OrderPlaced stored at schema 1, before totalAmount existed.
type v1Order struct {
	name    string
	payload string // {customerId, [paymentAccountId], items}: no totalAmount
	total   string // what the upcaster must compute, exactly
	status  string // where the saga takes it
}

// RunUpcasting assembles a system around backend and docs, opens a payment account and
// stock, stores raw schema-1 OrderPlaced events directly in backend (bypassing the
// upcasting wrapper, as events written by the seed's first version would be) and reads
// them through every path: the raw backend (still schema 1), the aggregate (current and
// as of the event, with snapshots in play), GET /orders/{id}/events, GET /events, the
// global feed when the backend has one, the order and customer read models, a rebuild,
// and the saga (which must charge exactly the upcast total). Every path must see schema 2
// and the exact total.
//
// Projections are driven explicitly (the feed runner when the backend has a feed, else a
// catch-up per stream, as the DynamoDB redrive path does), so no background loop and no
// sleep is involved. Ids are unique per call: backend and docs may be shared with other
// tests, even with a running system whose own saga and projections race this one's.
func RunUpcasting(t *testing.T, backend eventstore.Backend, docs docstore.Store) {
	t.Helper()
	ctx := context.Background()
	cust, acc, corr := apitest.ID("v1cust"), apitest.ID("v1acc"), apitest.ID("v1corr")
	apple, pear := apitest.ID("v1apple"), apitest.ID("v1pear")
	cases := []v1Order{
		{ // paid and confirmed by the saga: 2 × 29.99 + 3 × 0.10 = 60.28 (floats give 60.279999…)
			name: "paid",
			payload: fmt.Sprintf(`{"customerId":%q,"paymentAccountId":%q,"items":[{"productId":%q,"quantity":2,"price":29.99},{"productId":%q,"quantity":3,"price":0.1}]}`,
				cust, acc, apple, pear),
			total: "60.28", status: orders.StatusConfirmed,
		},
		{ // the seed's own example: no payment account, so the saga declines it
			name:    "seed",
			payload: fmt.Sprintf(`{"customerId":%q,"items":[{"productId":%q,"quantity":2,"price":29.99}]}`, cust, apple),
			total:   "59.98", status: orders.StatusCancelled,
		},
	}
	var feed eventstore.Feed
	if f, ok := backend.(eventstore.Feed); ok {
		feed = f
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	sys := system.Assemble(system.Config{EventStore: "test", SnapshotEvery: 2}, system.Backend{Store: backend, Feed: feed, Docs: docs}, quiet)
	c := &apitest.Client{T: t, H: sys.Handler}
	// Money and stock first: whichever saga sees the orders (this system's, or one already
	// running on the same backend) meets the same world.
	c.Must(201, "POST", "/accounts/"+acc+"/open", map[string]any{"initialDeposit": 100})
	c.Must(200, "POST", "/products/"+apple+"/stock", map[string]any{"quantity": 10})
	c.Must(200, "POST", "/products/"+pear+"/stock", map[string]any{"quantity": 10})

	ids := map[string]string{}
	stamps := map[string]time.Time{}
	for _, tc := range cases {
		id := apitest.ID("v1order-" + tc.name)
		ids[tc.name] = id
		st := eventstore.Stream{Type: orders.AggregateType, ID: id}
		stored, err := backend.Append(ctx, st, eventstore.NoStream, []event.Event{{EventType: orders.Placed, SchemaVersion: 1,
			Payload: json.RawMessage(tc.payload), Metadata: event.Metadata{Actor: "legacy", Source: "v1", CorrelationID: corr}}})
		if err != nil {
			t.Fatalf("append raw v1 %s: %v", tc.name, err)
		}
		stamps[tc.name] = stored[0].Timestamp
		raw, err := backend.Load(ctx, st, eventstore.Range{To: 1})
		if err != nil || len(raw) != 1 || raw[0].SchemaVersion != 1 {
			t.Fatalf("%s: the stored event must stay at schema 1: %+v %v", tc.name, raw, err)
		}
	}

	// Reads straight from the store (a saga may be at work already: only the placement is
	// certain).
	want := map[string]string{}
	for _, tc := range cases {
		id := ids[tc.name]
		want[id] = tc.total
		if g := c.Must(200, "GET", "/orders/"+id+"?consistent=true", nil); g.Num("totalAmount") != tc.total {
			t.Errorf("%s: aggregate: %s", tc.name, g.Raw)
		}
		at := stamps[tc.name].Format(time.RFC3339Nano)
		if g := c.Must(200, "GET", "/orders/"+id+"?asOf="+at, nil); g.Num("totalAmount") != tc.total || g.Body["status"] != orders.StatusPlaced {
			t.Errorf("%s: as-of: %s", tc.name, g.Raw)
		}
		checkListing(t, c, tc.name+": order events", "/orders/"+id+"/events", map[string]string{id: tc.total})
	}
	checkListing(t, c, "GET /events", "/events?eventType=OrderPlaced&correlationId="+corr, want)
	if feed != nil {
		checkFeed(t, sys.Feed, want)
	}

	// The saga pays from the upcast total.
	settle(t, ctx, sys, func() string {
		for _, tc := range cases {
			if s := orderStatus(ctx, sys, ids[tc.name]); s != tc.status {
				return fmt.Sprintf("order %s is %s, want %s", tc.name, s, tc.status)
			}
		}
		return ""
	}, []eventstore.Stream{{Type: orders.AggregateType, ID: ids["paid"]}, {Type: orders.AggregateType, ID: ids["seed"]},
		{Type: "BankAccount", ID: acc}, {Type: orders.ProductType, ID: apple}, {Type: orders.ProductType, ID: pear}})

	if a := c.Must(200, "GET", "/accounts/"+acc+"?consistent=true", nil); a.Num("balance") != "39.72" {
		t.Errorf("saga: the account must be charged exactly 60.28: %s", a.Raw)
	}
	for _, tc := range cases {
		id := ids[tc.name]
		g := c.Must(200, "GET", "/orders/"+id, nil) // the read model
		if g.Num("totalAmount") != tc.total || g.Body["status"] != tc.status {
			t.Errorf("%s: order read model: %s", tc.name, g.Raw)
		}
		if g := c.Must(200, "GET", "/orders/"+id+"?consistent=true", nil); g.Num("totalAmount") != tc.total {
			t.Errorf("%s: aggregate after the saga (from a snapshot): %s", tc.name, g.Raw)
		}
	}
	checkCustomer(t, c, cust, want)
	// No background loop runs here: the job the API started is run to its end in place.
	c.Must(202, "POST", "/projections/customer-orders/rebuild", nil)
	if _, err := sys.Engine.RunRebuild(ctx, "customer-orders"); err != nil {
		t.Fatal(err)
	}
	checkCustomer(t, c, cust, want)

	// The causal chain started by a schema-1 event carries its correlation id.
	r := c.Must(200, "GET", "/events?correlationId="+corr+"&limit=1000", nil)
	var page struct {
		Events []event.Event `json:"events"`
	}
	if err := json.Unmarshal(r.Raw, &page); err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	seen := map[string]int{}
	for _, e := range page.Events {
		seen[e.EventType]++
	}
	for typ, n := range map[string]int{orders.Placed: 2, "MoneyWithdrawn": 1, orders.Paid: 1, orders.StockReserved: 2, orders.Confirmed: 1, orders.Cancelled: 1} {
		if seen[typ] != n {
			t.Errorf("correlation %s: %d × %s, want %d (%v)", corr, seen[typ], typ, n, seen)
		}
	}
}

type listed struct {
	EventType     string `json:"eventType"`
	AggregateID   string `json:"aggregateId"`
	SchemaVersion int    `json:"schemaVersion"`
	Payload       struct {
		TotalAmount json.Number `json:"totalAmount"`
	} `json:"payload"`
}

// checkListing wants exactly the given orders' OrderPlaced events, at schema 2 with
// their totals, among the events in the response of path.
func checkListing(t *testing.T, c *apitest.Client, what, path string, want map[string]string) {
	t.Helper()
	r := c.Must(200, "GET", path, nil)
	var page struct {
		Events []listed `json:"events"`
	}
	if err := json.Unmarshal(r.Raw, &page); err != nil {
		t.Fatalf("%s: %v: %s", what, err, r.Raw)
	}
	var placed []listed
	for _, e := range page.Events {
		if e.EventType == orders.Placed {
			placed = append(placed, e)
		}
	}
	checkListed(t, what, placed, want, string(r.Raw))
}

func checkListed(t *testing.T, what string, got []listed, want map[string]string, raw string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d events, want %d: %s", what, len(got), len(want), raw)
		return
	}
	for _, e := range got {
		if e.SchemaVersion != 2 || e.Payload.TotalAmount.String() != want[e.AggregateID] {
			t.Errorf("%s: %s at schema %d with total %q, want schema 2 and %s", what, e.AggregateID, e.SchemaVersion,
				e.Payload.TotalAmount, want[e.AggregateID])
		}
	}
}

// checkFeed reads the whole global feed (what the in-process runner reads) for the orders.
func checkFeed(t *testing.T, feed eventstore.Feed, want map[string]string) {
	t.Helper()
	ctx := context.Background()
	var got []listed
	for after := uint64(0); ; {
		batch, err := feed.ReadAll(ctx, after, 1000)
		if err != nil {
			t.Fatalf("feed: %v", err)
		}
		if len(batch) == 0 {
			break
		}
		for _, e := range batch {
			if _, ok := want[e.AggregateID]; ok && e.EventType == orders.Placed {
				raw, _ := json.Marshal(e)
				var l listed
				_ = json.Unmarshal(raw, &l)
				got = append(got, l)
			}
		}
		after = batch[len(batch)-1].Position
	}
	checkListed(t, "feed", got, want, fmt.Sprint(got))
}

func checkCustomer(t *testing.T, c *apitest.Client, cust string, want map[string]string) {
	t.Helper()
	r := c.Must(200, "GET", "/customers/"+cust+"/orders", nil)
	var body struct {
		Orders []struct {
			OrderID     string      `json:"orderId"`
			TotalAmount json.Number `json:"totalAmount"`
		} `json:"orders"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil || len(body.Orders) != len(want) {
		t.Errorf("customer orders: %v: %s", err, r.Raw)
		return
	}
	for _, o := range body.Orders {
		if o.TotalAmount.String() != want[o.OrderID] {
			t.Errorf("customer orders: %s total %s, want %s", o.OrderID, o.TotalAmount, want[o.OrderID])
		}
	}
}

func orderStatus(ctx context.Context, sys *system.System, id string) string {
	var o orders.Order
	if ok, err := sys.Docs.Get(ctx, orders.OrdersCollection, id, &o); err != nil || !ok {
		return fmt.Sprintf("unprojected (%v)", err)
	}
	return o.Status
}

// settle drives every projection (the saga included) until done reports "": each round
// may append events (the saga's) that the next round delivers.
func settle(t *testing.T, ctx context.Context, sys *system.System, done func() string, streams []eventstore.Stream) {
	t.Helper()
	msg := ""
	for range 20 {
		if sys.Runner != nil {
			if err := sys.Runner.CatchUpAll(ctx); err != nil {
				t.Fatalf("projections: %v", err)
			}
		} else {
			for _, st := range streams {
				if err := sys.Engine.CatchUpStream(ctx, st); err != nil {
					t.Fatalf("projections of %s: %v", st, err)
				}
			}
		}
		if msg = done(); msg == "" {
			return
		}
	}
	t.Fatalf("projections did not settle: %s", msg)
}
