package system_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go/logging"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Every append is counted, whoever makes it: the saga's payment, reservation and steps
// included, which no HTTP route appends. The count in /metrics.json and in the Prometheus
// exposition equals the events the store holds, per aggregate type.
func TestMetricsCountEveryAppend(t *testing.T) {
	sys := start(t, system.Config{EventStore: "memory", SnapshotEvery: 3})
	c := &apitest.Client{T: t, H: sys.Handler, OpenAPI: apitest.Contract(t)}
	acc, prod, ord := apitest.ID("acc"), apitest.ID("prod"), apitest.ID("order")
	c.Must(201, "POST", "/accounts/"+acc+"/open", map[string]any{"initialDeposit": 100})
	c.Must(200, "POST", "/products/"+prod+"/stock", map[string]any{"quantity": 5})
	c.Must(201, "POST", "/orders/"+ord+"/place", map[string]any{"customerId": "cust-1", "paymentAccountId": acc,
		"items": []map[string]any{{"productId": prod, "quantity": 2, "price": 29.99}}})
	c.Eventually(60*time.Second, func() string {
		if r := c.Do("GET", "/orders/"+ord, nil); !strings.Contains(string(r.Raw), `"CONFIRMED"`) {
			return "order not confirmed by the saga yet: " + string(r.Raw)
		}
		return ""
	})

	stored := map[string]int64{}
	var total int64
	f := eventstore.Filter{}
	for {
		page, err := sys.Store.Query(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			stored[e.AggregateType]++
			total++
		}
		if f.Cursor = page.NextCursor; f.Cursor == "" {
			break
		}
	}
	if stored["OrderFulfilment"] == 0 || stored["BankAccount"] < 2 {
		t.Fatalf("the saga appended nothing? %v", stored)
	}
	r := c.Must(200, "GET", "/metrics.json", nil)
	byType, _ := r.Body["eventsByAggregateType"].(map[string]any)
	if r.Num("eventsAppended") != strconv.FormatInt(total, 10) {
		t.Errorf("eventsAppended %s, the store holds %d: %s", r.Num("eventsAppended"), total, r.Raw)
	}
	for typ, n := range stored {
		if got, _ := byType[typ].(float64); int64(got) != n {
			t.Errorf("%s: counted %v, stored %d", typ, byType[typ], n)
		}
	}
	prom := c.Must(200, "GET", "/metrics", nil)
	for typ, n := range stored {
		line := `ecm_events_appended_total{aggregate_type="` + typ + `"} ` + strconv.FormatInt(n, 10)
		if !strings.Contains(string(prom.Raw), line) {
			t.Errorf("exposition lacks %q", line)
		}
	}
}

// The AWS SDK's log lines come out through the structured logger, at the level of their
// classification.
func TestSDKLogger(t *testing.T) {
	var buf strings.Builder
	l := system.SDKLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cases := []struct {
		class, want string
	}{{"WARN", `"level":"WARN"`}, {"DEBUG", `"level":"INFO"`}}
	for _, c := range cases {
		buf.Reset()
		l.Logf(logClass(c.class), "retrying %s after %d", "PutItem", 3)
		if out := buf.String(); !strings.Contains(out, c.want) || !strings.Contains(out, `"msg":"retrying PutItem after 3"`) ||
			!strings.Contains(out, `"source":"aws-sdk"`) {
			t.Errorf("%s: %s", c.class, out)
		}
	}
}

func logClass(c string) logging.Classification { return logging.Classification(c) }
