package api_test

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/system"
	"github.com/ecmstore/ecmstore/shared/usercontext"
)

var update = flag.Bool("update", false, "rewrite shared/api/testdata/access/*.golden.json")

// jwt is the authorizer part of an API Gateway event as the JWT authorizer fills it:
// every claim a string (an array claim such as cognito:groups flattened to "[a b]"), the
// access token's scopes both in `scope` and in Scopes. nil claims: a route without an
// authorizer.
type jwt struct {
	claims map[string]string
	scopes []string
}

var (
	alice    = jwt{claims: map[string]string{"sub": "alice", "scope": "openid profile"}}
	bob      = jwt{claims: map[string]string{"sub": "bob", "scope": "openid"}}
	opsScope = jwt{claims: map[string]string{"sub": "ops-scope", "scope": "openid ecm/admin"}, scopes: []string{"openid", "ecm/admin"}}
	opsScp   = jwt{claims: map[string]string{"sub": "ops-scp", "scp": "ecm/read ecm/admin"}}
	opsGroup = jwt{claims: map[string]string{"sub": "ops-group", "cognito:groups": "[support admin]"}}
	// Some issuers' array claims arrive as JSON text.
	opsGroupJSON = jwt{claims: map[string]string{"sub": "ops-group-json", "cognito:groups": `["support","admin"]`}}
	nearScope    = jwt{claims: map[string]string{"sub": "eve", "scope": "ecm/admin-readonly ecm/admins"}}
	nearGroup    = jwt{claims: map[string]string{"sub": "eve", "cognito:groups": "[administrators admins]"}}
	anonymous    = jwt{}
)

type accessCase struct {
	name         string
	who          jwt
	method, path string
	body         string
	// shape: the golden keeps the body's top-level keys only (figures that vary).
	shape bool
}

// gatewayRequest builds the event API Gateway delivers for one request, from the
// template beside the goldens.
func gatewayRequest(t *testing.T, c accessCase) events.APIGatewayV2HTTPRequest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "access", "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var req events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(c.path, "?")
	req.RawPath, req.RawQueryString, req.Body = path, query, c.body
	req.RequestContext.HTTP.Method, req.RequestContext.HTTP.Path = c.method, path
	req.RequestContext.RequestID = c.name
	req.Headers["x-correlation-id"] = c.name
	if c.who.claims == nil {
		req.RequestContext.Authorizer = nil
		delete(req.Headers, "authorization")
		return req
	}
	for k, v := range c.who.claims {
		req.RequestContext.Authorizer.JWT.Claims[k] = v
	}
	req.RequestContext.Authorizer.JWT.Scopes = c.who.scopes
	return req
}

// runAccess sends each case through the API Gateway adapter in order (later cases see
// earlier ones' effects) and compares status and body with testdata/access/<name>.golden.json.
// Each exchange is also validated against openapi.yaml.
func runAccess(t *testing.T, h func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error), cases []accessCase) {
	t.Helper()
	contract := apitest.Contract(t)
	for _, c := range cases {
		greq := gatewayRequest(t, c)
		res, err := h(context.Background(), greq)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		hreq, err := http.NewRequest(c.method, "http://localhost"+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range greq.Headers {
			hreq.Header.Set(k, v)
		}
		hdr := http.Header{}
		for k, v := range res.Headers {
			hdr.Set(k, v)
		}
		for k, vs := range res.MultiValueHeaders {
			hdr[http.CanonicalHeaderKey(k)] = vs
		}
		if err := contract.Check(hreq, []byte(c.body), res.StatusCode, hdr, []byte(res.Body)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		var body any
		if err := json.Unmarshal([]byte(res.Body), &body); err != nil {
			t.Fatalf("%s: body %q: %v", c.name, res.Body, err)
		}
		if m, ok := body.(map[string]any); ok && c.shape {
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			body = keys
		}
		b, _ := json.Marshal(body)
		got, _ := json.MarshalIndent(map[string]any{"request": c.method + " " + c.path, "statusCode": res.StatusCode,
			"body": json.RawMessage(normalise(string(b)))}, "", "  ")
		got = []byte(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(string(got)))
		file := filepath.Join("testdata", "access", c.name+".golden.json")
		if *update {
			if err := os.WriteFile(file, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%s: %v (go test ./shared/api -run Access -update writes it)", c.name, err)
		}
		if !jsonEqual(string(got), string(want)) {
			t.Errorf("%s:\n%s\nwant:\n%s", c.name, got, want)
		}
	}
}

func gatewaySystem(t *testing.T) *system.System {
	t.Helper()
	access, err := api.GatewayAccessFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return system.Assemble(system.Config{EventStore: "memory"}, mustMemory(t), slog.New(slog.DiscardHandler),
		system.WithActor(api.JWTActor), system.WithAccess(access))
}

// TestGatewayAccessOwnerPolicy is the Lambda's access control under its defaults
// (ACCESS_POLICY=owner, ADMIN_SCOPE=ecm/admin, ADMIN_GROUP=admin), driven through the API
// Gateway adapter with the claims its JWT authorizer delivers.
func TestGatewayAccessOwnerPolicy(t *testing.T) {
	for _, k := range []string{"ACCESS_POLICY", "ADMIN_SCOPE", "ADMIN_GROUP"} {
		t.Setenv(k, "")
	}
	sys := gatewaySystem(t)
	h := api.GatewayHandler(sys.Handler)
	runAccess(t, h, []accessCase{
		{name: "owner-opens-account", who: alice, method: "POST", path: "/accounts/acc-a/open", body: `{"initialDeposit": 100}`},
		{name: "owner-deposits", who: alice, method: "POST", path: "/accounts/acc-a/deposit", body: `{"amount": 5}`},
		{name: "other-deposits", who: bob, method: "POST", path: "/accounts/acc-a/deposit", body: `{"amount": 5}`},
		{name: "other-withdraws", who: bob, method: "POST", path: "/accounts/acc-a/withdraw", body: `{"amount": 5}`},
		{name: "other-closes", who: bob, method: "POST", path: "/accounts/acc-a/close"},
		{name: "other-reads-account-replay", who: bob, method: "GET", path: "/accounts/acc-a?consistent=true"},
		{name: "other-reads-account-events", who: bob, method: "GET", path: "/accounts/acc-a/events"},
		{name: "other-opens-existing-account", who: bob, method: "POST", path: "/accounts/acc-a/open"},
		{name: "other-opens-own-account", who: bob, method: "POST", path: "/accounts/acc-b/open"},
		{name: "admin-group-withdraws", who: opsGroup, method: "POST", path: "/accounts/acc-a/withdraw", body: `{"amount": 1}`},
		{name: "owner-reads-account-events", who: alice, method: "GET", path: "/accounts/acc-a/events"},
		{name: "other-lists-accounts", who: bob, method: "GET", path: "/accounts"},
		{name: "owner-creates-context", who: alice, method: "POST", path: "/contexts/ctx-a", body: `{"preferences": {"theme": "dark"}}`},
		{name: "other-creates-existing-context", who: bob, method: "POST", path: "/contexts/ctx-a", body: `{"preferences": {}}`},
		{name: "other-patches-context", who: bob, method: "PATCH", path: "/contexts/ctx-a", body: `{"preferences": {"theme": "light"}}`},
		{name: "other-replaces-context", who: bob, method: "PUT", path: "/contexts/ctx-a", body: `{"preferences": {}}`},
		{name: "other-deletes-context", who: bob, method: "DELETE", path: "/contexts/ctx-a"},
		{name: "other-reads-context-events", who: bob, method: "GET", path: "/contexts/ctx-a/events"},
		{name: "owner-patches-context", who: alice, method: "PATCH", path: "/contexts/ctx-a", body: `{"preferences": {"lang": "en"}}`},
	})
	// The reads that follow answer from the read models, which now record the owners.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sys.Runner.CatchUpAll(ctx); err != nil {
		t.Fatal(err)
	}
	var v bank.View
	if ok, err := sys.Docs.Get(ctx, bank.AccountsCollection, "acc-a", &v); err != nil || !ok || v.Owner != "alice" {
		t.Fatalf("accounts read model: %+v %v %v, want owner alice", v, ok, err)
	}
	var uc usercontext.Context
	if ok, err := sys.Docs.Get(ctx, usercontext.Collection, "ctx-a", &uc); err != nil || !ok || uc.Owner != "alice" {
		t.Fatalf("contexts read model: %+v %v %v, want owner alice", uc, ok, err)
	}
	// A read model written before owners were recorded has none: the read replays the
	// stream, whose first event names the owner (the stale balance is not served).
	err := sys.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return tx.Put(ctx, bank.AccountsCollection, "acc-b", bank.View{Account: bank.Account{ID: "acc-b", Balance: 999, IsOpen: true, Version: 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	runAccess(t, h, []accessCase{
		{name: "legacy-read-model-other", who: alice, method: "GET", path: "/accounts/acc-b"},
		{name: "legacy-read-model-owner", who: bob, method: "GET", path: "/accounts/acc-b"},
		{name: "owner-reads-account", who: alice, method: "GET", path: "/accounts/acc-a"},
		{name: "other-reads-account", who: bob, method: "GET", path: "/accounts/acc-a"},
		{name: "admin-scope-reads-account", who: opsScope, method: "GET", path: "/accounts/acc-a"},
		{name: "owner-reads-context", who: alice, method: "GET", path: "/contexts/ctx-a"},
		{name: "other-reads-context", who: bob, method: "GET", path: "/contexts/ctx-a"},
		{name: "admin-group-reads-context", who: opsGroup, method: "GET", path: "/contexts/ctx-a"},
		{name: "admin-scp-lists-accounts", who: opsScp, method: "GET", path: "/accounts"},

		// Operations routes: an admin's only, whoever owns what.
		{name: "ops-projections-user", who: alice, method: "GET", path: "/projections"},
		{name: "ops-projections-near-scope", who: nearScope, method: "GET", path: "/projections"},
		{name: "ops-projections-near-group", who: nearGroup, method: "GET", path: "/projections"},
		{name: "ops-projections-anonymous", who: anonymous, method: "GET", path: "/projections"},
		{name: "ops-rebuild-user", who: alice, method: "POST", path: "/projections/accounts/rebuild"},
		{name: "ops-dead-letters-user", who: alice, method: "GET", path: "/dead-letters"},
		{name: "ops-redrive-user", who: bob, method: "POST", path: "/dead-letters/redrive"},
		{name: "ops-events-user", who: alice, method: "GET", path: "/events?aggregateType=BankAccount"},
		{name: "ops-metrics-user", who: bob, method: "GET", path: "/metrics"},
		{name: "ops-metrics-json-user", who: alice, method: "GET", path: "/metrics.json"},
		{name: "ops-unknown-projection-route-user", who: bob, method: "GET", path: "/projections/accounts/progress"},
		{name: "ops-projections-admin-scope", who: opsScope, method: "GET", path: "/projections", shape: true},
		{name: "ops-rebuild-admin-group", who: opsGroup, method: "POST", path: "/projections/accounts/rebuild", shape: true},
		{name: "ops-dead-letters-admin-group-json", who: opsGroupJSON, method: "GET", path: "/dead-letters"},
		{name: "ops-dead-letters-admin-scp", who: opsScp, method: "GET", path: "/dead-letters"},
		{name: "ops-redrive-admin-scope", who: opsScope, method: "POST", path: "/dead-letters/redrive"},
		{name: "ops-events-admin-group", who: opsGroup, method: "GET", path: "/events?aggregateType=user-context", shape: true},
		{name: "health-anonymous", who: anonymous, method: "GET", path: "/healthz"},
	})
	// The account's owner is the JWT subject that opened it, as recorded on its events;
	// the admin's withdrawal carries the admin's subject.
	evs, err := sys.Store.Load(ctx, streamOf("acc-a"), rangeAll())
	if err != nil || len(evs) != 3 {
		t.Fatalf("events: %d %v", len(evs), err)
	}
	if evs[0].Metadata.Actor != "alice" || evs[2].Metadata.Actor != "ops-group" {
		t.Fatalf("actors %q %q, want alice, ops-group", evs[0].Metadata.Actor, evs[2].Metadata.Actor)
	}
}

// TestGatewayAccessOpenPolicy: ACCESS_POLICY=open lets any authenticated principal act on
// any account or context, but operations stay an admin's; custom admin claims replace
// the defaults.
func TestGatewayAccessOpenPolicy(t *testing.T) {
	t.Setenv("ACCESS_POLICY", "open")
	t.Setenv("ADMIN_SCOPE", "ops/all")
	t.Setenv("ADMIN_GROUP", "-")
	sys := gatewaySystem(t)
	custom := jwt{claims: map[string]string{"sub": "ops-custom", "scope": "ops/all"}}
	runAccess(t, api.GatewayHandler(sys.Handler), []accessCase{
		{name: "open-owner-opens-account", who: alice, method: "POST", path: "/accounts/acc-o/open", body: `{"initialDeposit": 10}`},
		{name: "open-other-deposits", who: bob, method: "POST", path: "/accounts/acc-o/deposit", body: `{"amount": 5}`},
		{name: "open-other-lists-accounts", who: bob, method: "GET", path: "/accounts"},
		{name: "open-ops-default-scope-refused", who: opsScope, method: "GET", path: "/dead-letters"},
		{name: "open-ops-group-off", who: opsGroup, method: "GET", path: "/dead-letters"},
		{name: "open-ops-custom-scope", who: custom, method: "GET", path: "/dead-letters"},
	})
}

func TestGatewayAccessFromEnvRefuses(t *testing.T) {
	for _, tc := range []struct{ policy, scope, group string }{
		{"everyone", "", ""},
		{"owner", "-", "-"},
	} {
		t.Setenv("ACCESS_POLICY", tc.policy)
		t.Setenv("ADMIN_SCOPE", tc.scope)
		t.Setenv("ADMIN_GROUP", tc.group)
		if _, err := api.GatewayAccessFromEnv(); err == nil {
			t.Errorf("%+v: accepted", tc)
		}
	}
}

// The ops page's files are public (they hold no data; a browser cannot attach a JWT to a
// page load): any signed-in user gets them, while the data they call for stays an admin's.
func TestGatewayOpsPageIsPublic(t *testing.T) {
	for _, k := range []string{"ACCESS_POLICY", "ADMIN_SCOPE", "ADMIN_GROUP"} {
		t.Setenv(k, "")
	}
	h := api.GatewayHandler(gatewaySystem(t).Handler)
	for _, c := range []struct{ path, wantType string }{{"/ops", "text/html"}, {"/ops/ops.js", "javascript"}} {
		res, err := h(context.Background(), gatewayRequest(t, accessCase{name: "ops-page", who: alice, method: "GET", path: c.path}))
		if err != nil {
			t.Fatal(err)
		}
		ct := res.Headers["Content-Type"]
		if ct == "" {
			ct = strings.Join(res.MultiValueHeaders["Content-Type"], ",")
		}
		if res.StatusCode != http.StatusOK || !strings.Contains(ct, c.wantType) {
			t.Errorf("GET %s as a user: %d %q, want 200 %s", c.path, res.StatusCode, ct, c.wantType)
		}
	}
}
