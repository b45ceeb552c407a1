package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/api/apitest"
)

// The local server binds beyond loopback only with an admin token; the refusal says what
// to do.
func TestLocalAccessRefusesExposedAddressWithoutToken(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		refused     bool
	}{
		{"127.0.0.1:8080", "", false},
		{"127.0.0.2:8080", "", false}, // all of 127/8 is loopback
		{"[::1]:8080", "", false},
		{"localhost:8080", "", false},
		{"LOCALHOST:0", "", false},
		{"0.0.0.0:8080", "", true},
		{":8080", "", true}, // every interface
		{"[::]:8080", "", true},
		{"192.0.2.10:8080", "", true},
		{"example.com:8080", "", true},
		{"0.0.0.0:8080", "s3cret", false},
		{"192.0.2.10:8080", "s3cret", false},
	} {
		_, err := api.LocalAccess(tc.addr, tc.token, api.PolicyOwner)
		switch {
		case tc.refused && !errors.Is(err, api.ErrExposed):
			t.Errorf("%s token %q: %v, want ErrExposed", tc.addr, tc.token, err)
		case tc.refused && !strings.Contains(err.Error(), "ADMIN_TOKEN"):
			t.Errorf("%s: %q does not say how to proceed", tc.addr, err)
		case !tc.refused && err != nil:
			t.Errorf("%s token %q: %v", tc.addr, tc.token, err)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]api.Policy{"": api.PolicyOwner, "owner": api.PolicyOwner, "OPEN": api.PolicyOpen, " open ": api.PolicyOpen} {
		if got, err := api.ParsePolicy(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := api.ParsePolicy("none"); err == nil {
		t.Error(`"none" accepted`)
	}
}

type localCall struct {
	name, method, path, body string
	actor, auth              string
	wantStatus               int
	wantCode                 string
}

func runLocal(t *testing.T, base string, calls []localCall) {
	t.Helper()
	contract := apitest.Contract(t)
	for _, c := range calls {
		req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.actor != "" {
			req.Header.Set("X-Actor", c.actor)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var e struct{ Error struct{ Code string } }
		_ = json.Unmarshal(body, &e)
		if err := contract.Check(req, []byte(c.body), res.StatusCode, res.Header, body); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if res.StatusCode != c.wantStatus || e.Error.Code != c.wantCode {
			t.Errorf("%s: %d %s, want %d %q", c.name, res.StatusCode, body, c.wantStatus, c.wantCode)
		}
	}
}

// With ADMIN_TOKEN set, operations routes need it as a bearer token; owned resources
// follow the policy with X-Actor as the subject, and the token makes an admin.
func TestLocalServerAdminToken(t *testing.T) {
	access, err := api.LocalAccess("0.0.0.0:8080", "s3cret", api.PolicyOwner)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + serveWith(t, api.ServerConfig{}, access)
	const good, bad = "Bearer s3cret", "Bearer s3cre"
	runLocal(t, base, []localCall{
		{"health needs nothing", "GET", "/healthz", "", "", "", 200, ""},
		{"projections without token", "GET", "/projections", "", "alice", "", 403, "forbidden"},
		{"projections with a wrong token", "GET", "/projections", "", "alice", bad, 403, "forbidden"},
		{"projections with the token in another scheme", "GET", "/projections", "", "alice", "Basic s3cret", 403, "forbidden"},
		{"projections with the token", "GET", "/projections", "", "", good, 200, ""},
		{"redrive without token", "POST", "/dead-letters/redrive", "", "alice", "", 403, "forbidden"},
		{"redrive with the token", "POST", "/dead-letters/redrive", "", "", good, 200, ""},
		{"rebuild without token", "POST", "/projections/accounts/rebuild", "", "", "", 403, "forbidden"},
		{"events without token", "GET", "/events", "", "alice", "", 403, "forbidden"},
		{"events with the token", "GET", "/events", "", "", good, 200, ""},
		{"owner opens", "POST", "/accounts/l1/open", `{"initialDeposit": 10}`, "alice", "", 201, ""},
		{"owner deposits", "POST", "/accounts/l1/deposit", `{"amount": 1}`, "alice", "", 200, ""},
		{"other deposits", "POST", "/accounts/l1/deposit", `{"amount": 1}`, "bob", "", 403, "forbidden"},
		{"other with the token deposits", "POST", "/accounts/l1/deposit", `{"amount": 1}`, "bob", good, 200, ""},
		{"listing without token", "GET", "/accounts", "", "alice", "", 403, "forbidden"},
	})
}

// On loopback without a token every caller is trusted, as before access control: make
// run stays a one-liner.
func TestLocalServerLoopbackTrust(t *testing.T) {
	access, err := api.LocalAccess("127.0.0.1:8080", "", api.PolicyOwner)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + serveWith(t, api.ServerConfig{}, access)
	runLocal(t, base, []localCall{
		{"projections", "GET", "/projections", "", "", "", 200, ""},
		{"redrive", "POST", "/dead-letters/redrive", "", "anyone", "", 200, ""},
		{"owner opens", "POST", "/accounts/l2/open", `{"initialDeposit": 10}`, "alice", "", 201, ""},
		{"other deposits", "POST", "/accounts/l2/deposit", `{"amount": 1}`, "bob", "", 200, ""},
		{"listing", "GET", "/accounts", "", "bob", "", 200, ""},
	})
}
