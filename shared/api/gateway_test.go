package api_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/system"
)

var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<event-id>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "<timestamp>"},
}

func normalise(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// TestGatewayGolden drives the handler through the API Gateway HTTP API v2 adapter with
// real event shapes and compares the responses with golden files. The JWT subject is the
// actor; a client's X-Actor header is ignored behind the authorizer.
func TestGatewayGolden(t *testing.T) {
	sys := system.Assemble(system.Config{EventStore: "memory"}, mustMemory(t), nil, system.WithActor(api.JWTActor))
	h := api.GatewayHandler(sys.Handler)
	for _, name := range []string{"apigw-open", "apigw-bad"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", name+".request.json"))
			if err != nil {
				t.Fatal(err)
			}
			var req events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(raw, &req); err != nil {
				t.Fatal(err)
			}
			res, err := h(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(map[string]any{"statusCode": res.StatusCode, "body": res.Body,
				"headers": pick(res.Headers, "Content-Type", "Etag", "X-Correlation-Id", "X-Ecm-Event-Id", "X-Ecm-Version")}, "", "  ")
			want, err := os.ReadFile(filepath.Join("testdata", name+".response.golden.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(normalise(string(got)), string(want)) {
				t.Fatalf("response:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	evs, err := sys.Store.Load(context.Background(), streamOf("acc-gw"), rangeAll())
	if err != nil || len(evs) != 1 {
		t.Fatalf("events: %v %v", evs, err)
	}
	if md := evs[0].Metadata; md.Actor != "user-123" || md.CorrelationID != "req-gw-1" || md.CausationID != "cmd-gw-1" {
		t.Fatalf("metadata %+v: the actor must be the JWT subject", md)
	}
}

func pick(h map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := h[k]; ok {
			out[k] = v
		}
	}
	return out
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
