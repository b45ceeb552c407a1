package apitest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testContextContract covers the rest of the user-context contract beyond UserContextECM:
// exact event payloads of PATCH and PUT, every x-ecm-* extension on every route where it
// applies, the error codes, deletion semantics and as-of reads at every version.
func testContextContract(t *testing.T, c *Client) {
	for _, st := range []struct {
		name string
		fn   func(*testing.T, *Client)
	}{
		{"CreateAndRead", ctxcCreateAndRead},
		{"PatchAndPutEvents", ctxcPatchAndPut},
		{"ExpectedVersion", ctxcExpectedVersion},
		{"IdempotentRetries", ctxcIdempotency},
		{"DeleteKeepsHistory", ctxcDelete},
		{"AsOfEveryVersion", ctxcAsOf},
		{"ArbitraryJSONValues", ctxcValues},
		{"Errors", ctxcErrors},
	} {
		t.Run(st.name, func(t *testing.T) { st.fn(t, c.With(t)) })
	}
}

// ctxcPrefs decodes the preferences of a context body.
func ctxcPrefs(t *testing.T, r Response) map[string]any {
	t.Helper()
	var b struct {
		Preferences map[string]any `json:"preferences"`
	}
	if err := json.Unmarshal(r.Raw, &b); err != nil || b.Preferences == nil {
		t.Fatalf("no preferences in %s (%v)", r.Raw, err)
	}
	return b.Preferences
}

// ctxcJSON decodes a literal for comparisons with decoded bodies.
func ctxcJSON(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		panic(err)
	}
	return v
}

// ctxcEvent is an event reduced to what the seed specifies: type and payload.
type ctxcEvent struct {
	Type    string
	Payload string
}

func ctxcCheckEvents(t *testing.T, got []map[string]any, want []ctxcEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i]["eventType"] != w.Type || !reflect.DeepEqual(got[i]["payload"], ctxcJSON(w.Payload)) {
			t.Fatalf("event %d: %v %v, want %s %s", i, got[i]["eventType"], got[i]["payload"], w.Type, w.Payload)
		}
	}
}

func ctxcErr(t *testing.T, r Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.ErrorCode() != code {
		t.Fatalf("status %d code %q, want %d %q: %s", r.Status, r.ErrorCode(), status, code, r.Raw)
	}
}

func ctxcCurrentVersion(r Response) any {
	e, _ := r.Body["error"].(map[string]any)
	return e["currentVersion"]
}

func ctxcCreateAndRead(t *testing.T, c *Client) {
	p := "/contexts/" + ID("cc-user")
	corr := ID("req")
	r := c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light"}},
		"If-Match", `"0"`, "X-Actor", "user-123", "x-ecm-causation", "signup-1", "X-Correlation-Id", corr)
	evs := c.Events(p)
	ctxcCheckEvents(t, evs, []ctxcEvent{{"context.created", `{"preferences":{"theme":"light"}}`}})
	md, _ := evs[0]["metadata"].(map[string]any)
	if evs[0]["aggregateType"] != "user-context" || md["actor"] != "user-123" || md["causationId"] != "signup-1" ||
		md["correlationId"] != corr || md["source"] != "api" {
		t.Fatalf("envelope %v", evs[0])
	}
	want := map[string]any{"id": strings.TrimPrefix(p, "/contexts/"), "preferences": map[string]any{"theme": "light"}, "version": float64(1)}
	check := func(what string, r Response) {
		t.Helper()
		if !reflect.DeepEqual(r.Body, want) || r.Header.Get("ETag") != `"1"` || r.Header.Get("x-ecm-version") != "1" ||
			r.Header.Get("x-ecm-event-id") != evs[0]["eventId"] {
			t.Fatalf("%s: %s %v", what, r.Raw, r.Header)
		}
	}
	check("create", r)
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); g.Status != 200 {
			return fmt.Sprintf("read model: %d %s", g.Status, g.Raw)
		}
		return ""
	})
	check("read model", c.Must(200, "GET", p, nil))
	check("replay", c.Must(200, "GET", p+"?consistent=true", nil))

	again := c.Do("POST", p, map[string]any{"preferences": map[string]any{"theme": "dark"}})
	ctxcErr(t, again, 409, "already_exists")
	if ctxcCurrentVersion(again) != float64(1) || len(c.Events(p)) != 1 {
		t.Fatalf("create twice: %s", again.Raw)
	}
	// CREATE without a body is a context without preferences.
	empty := c.Must(201, "POST", "/contexts/"+ID("cc-empty"), nil)
	if prefs := ctxcPrefs(t, empty); len(prefs) != 0 || empty.Num("version") != "1" {
		t.Fatalf("create without body: %s", empty.Raw)
	}
}

func ctxcPatchAndPut(t *testing.T, c *Client) {
	p := "/contexts/" + ID("cc-diff")
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light", "lang": "en", "layout": map[string]any{"cols": 2}}})

	// PATCH: changed and new keys are one updated event each (new keys with old_value
	// null), in key order; unchanged keys and removing an absent key emit nothing.
	r := c.Must(200, "PATCH", p, `{"preferences":{"theme":"dark","lang":"en","tz":"UTC","layout":{"cols":2},"nope":null}}`,
		"x-ecm-causation", "settings-save-1", "X-Actor", "user-123")
	evs := c.Events(p)
	ctxcCheckEvents(t, evs[1:], []ctxcEvent{
		{"context.preference.updated", `{"preference":"theme","old_value":"light","new_value":"dark"}`},
		{"context.preference.updated", `{"preference":"tz","old_value":null,"new_value":"UTC"}`},
	})
	for _, e := range evs[1:] {
		if md, _ := e["metadata"].(map[string]any); md["causationId"] != "settings-save-1" || md["actor"] != "user-123" {
			t.Fatalf("every event of one PATCH carries its causation and actor: %v", e)
		}
	}
	if r.Num("version") != "3" || r.Header.Get("x-ecm-version") != "3" || r.Header.Get("x-ecm-event-id") != evs[2]["eventId"] {
		t.Fatalf("patch: %s %v", r.Raw, r.Header)
	}

	// A PATCH that changes nothing appends nothing and answers the current state.
	same := c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"theme": "dark", "layout": map[string]any{"cols": 2}}})
	if string(same.Raw) != string(r.Raw) || same.Header.Get("x-ecm-version") != "3" || same.Header.Get("x-ecm-event-id") != evs[2]["eventId"] ||
		len(c.Events(p)) != 3 {
		t.Fatalf("no-op patch: %s %v", same.Raw, same.Header)
	}

	// PUT: the preferences become exactly the body, by the minimal set of events.
	r = c.Must(200, "PUT", p, map[string]any{"preferences": map[string]any{"theme": "dark", "layout": map[string]any{"cols": 3}, "font": "large"}})
	evs = c.Events(p)
	ctxcCheckEvents(t, evs[3:], []ctxcEvent{
		{"context.preference.updated", `{"preference":"font","old_value":null,"new_value":"large"}`},
		{"context.preference.removed", `{"preference":"lang","old_value":"en"}`},
		{"context.preference.updated", `{"preference":"layout","old_value":{"cols":2},"new_value":{"cols":3}}`},
		{"context.preference.removed", `{"preference":"tz","old_value":"UTC"}`},
	})
	wantPrefs := ctxcJSON(`{"theme":"dark","layout":{"cols":3},"font":"large"}`)
	if !reflect.DeepEqual(any(ctxcPrefs(t, r)), wantPrefs) || r.Num("version") != "7" || r.Header.Get("x-ecm-event-id") != evs[6]["eventId"] {
		t.Fatalf("put: %s %v", r.Raw, r.Header)
	}
	c.Must(200, "PUT", p, map[string]any{"preferences": map[string]any{"font": "large", "theme": "dark", "layout": map[string]any{"cols": 3}}})
	if n := len(c.Events(p)); n != 7 {
		t.Fatalf("a PUT of the same set appended: %d events", n)
	}
	c.Eventually(settle, func() string {
		g := c.Do("GET", p, nil)
		if g.Num("version") != "7" || !reflect.DeepEqual(any(ctxcPrefs(t, g)), wantPrefs) || g.Header.Get("x-ecm-event-id") != evs[6]["eventId"] {
			return "read model: " + string(g.Raw)
		}
		return ""
	})
}

func ctxcExpectedVersion(t *testing.T, c *Client) {
	p := "/contexts/" + ID("cc-ver")
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"a": 1}}, "x-ecm-version", "0")
	body := map[string]any{"preferences": map[string]any{"a": 2}}
	for _, tc := range []struct {
		name    string
		method  string
		headers []string
		status  int
		code    string
	}{
		{"stale If-Match", "PATCH", []string{"If-Match", `"0"`}, 409, "version_conflict"},
		{"stale x-ecm-version", "PUT", []string{"x-ecm-version", "2"}, 409, "version_conflict"},
		{"headers disagree", "PATCH", []string{"If-Match", `"1"`, "x-ecm-version", "2"}, 400, "invalid_request"},
		{"not a number", "PATCH", []string{"x-ecm-version", "one"}, 400, "invalid_request"},
		{"stale delete", "DELETE", []string{"x-ecm-version", "5"}, 409, "version_conflict"},
	} {
		r := c.Do(tc.method, p, body, tc.headers...)
		ctxcErr(t, r, tc.status, tc.code)
		if tc.status == 409 && ctxcCurrentVersion(r) != float64(1) {
			t.Fatalf("%s: currentVersion missing: %s", tc.name, r.Raw)
		}
	}
	if n := len(c.Events(p)); n != 1 {
		t.Fatalf("rejected writes appended: %d events", n)
	}
	// The version a response reports is the expected version of the next write.
	r := c.Must(200, "PATCH", p, body, "x-ecm-version", "1")
	r = c.Must(200, "PUT", p, map[string]any{"preferences": map[string]any{"b": 1}}, "If-Match", r.Header.Get("ETag"))
	c.Must(200, "DELETE", p, nil, "x-ecm-version", r.Header.Get("x-ecm-version"))
}

func ctxcIdempotency(t *testing.T, c *Client) {
	p := "/contexts/" + ID("cc-idem")
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light"}})
	key := ID("cc-key")
	body := map[string]any{"preferences": map[string]any{"theme": "dark", "tz": "UTC"}}
	first := c.Must(200, "PATCH", p, body, "Idempotency-Key", key)
	retry := c.Must(200, "PATCH", p, body, "Idempotency-Key", key)
	if string(first.Raw) != string(retry.Raw) || retry.Header.Get("Idempotent-Replayed") != "true" ||
		retry.Header.Get("x-ecm-event-id") != first.Header.Get("x-ecm-event-id") || retry.Header.Get("x-ecm-version") != "3" {
		t.Fatalf("retried PATCH: %s %v / %s %v", first.Raw, first.Header, retry.Raw, retry.Header)
	}
	if n := len(c.Events(p)); n != 3 {
		t.Fatalf("retried PATCH appended again: %d events", n)
	}
	ctxcErr(t, c.Do("PATCH", p, map[string]any{"preferences": map[string]any{"theme": "blue"}}, "Idempotency-Key", key), 422, "idempotency_key_reused")
	// A retried DELETE gets the first answer back, not a 404 for the now deleted context.
	dkey := ID("cc-key")
	del := c.Must(200, "DELETE", p, nil, "Idempotency-Key", dkey)
	if again := c.Must(200, "DELETE", p, nil, "Idempotency-Key", dkey); string(again.Raw) != string(del.Raw) {
		t.Fatalf("retried DELETE: %s / %s", del.Raw, again.Raw)
	}
	if n := len(c.Events(p)); n != 4 {
		t.Fatalf("retried DELETE appended again: %d events", n)
	}
}

func ctxcDelete(t *testing.T, c *Client) {
	id := ID("cc-del")
	p := "/contexts/" + id
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light"}})
	c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"theme": "dark"}})
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); g.Num("version") != "2" {
			return "read model before deletion: " + string(g.Raw)
		}
		return ""
	})
	d := c.Must(200, "DELETE", p, nil, "X-Actor", "admin-1", "x-ecm-causation", "gdpr-request-9")
	evs := c.Events(p)
	ctxcCheckEvents(t, evs[2:], []ctxcEvent{{"context.deleted", `{}`}})
	if md, _ := evs[2]["metadata"].(map[string]any); md["actor"] != "admin-1" || md["causationId"] != "gdpr-request-9" ||
		d.Header.Get("x-ecm-event-id") != evs[2]["eventId"] || d.Header.Get("x-ecm-version") != "3" {
		t.Fatalf("delete: %s %v, event %v", d.Raw, d.Header, evs[2])
	}
	// The read model learns of the deletion; every later read and write is 404, and the
	// id is not free again: the history stays.
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); g.Status != 404 || g.ErrorCode() != "not_found" {
			return fmt.Sprintf("read model after deletion: %d %s", g.Status, g.Raw)
		}
		return ""
	})
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"GET", p + "?consistent=true", nil},
		{"PATCH", p, map[string]any{"preferences": map[string]any{"theme": "blue"}}},
		{"PATCH", p, map[string]any{"preferences": map[string]any{}}},
		{"PUT", p, map[string]any{"preferences": map[string]any{}}},
		{"DELETE", p, nil},
	} {
		ctxcErr(t, c.Do(req.method, req.path, req.body), 404, "not_found")
	}
	r := c.Do("POST", p, map[string]any{"preferences": map[string]any{"theme": "new"}})
	ctxcErr(t, r, 409, "already_exists")
	if ctxcCurrentVersion(r) != float64(3) {
		t.Fatalf("recreate: %s", r.Raw)
	}
	if n := len(c.Events(p)); n != 3 {
		t.Fatalf("rejected writes after deletion appended: %d events", n)
	}
	// As of a time before the deletion the context still answers, by header or query.
	before := evs[1]["timestamp"].(string)
	for _, r := range []Response{
		c.Must(200, "GET", p, nil, "x-ecm-as-of", before),
		c.Must(200, "GET", p+"?asOf="+before, nil),
	} {
		if !reflect.DeepEqual(r.Body, map[string]any{"id": id, "preferences": map[string]any{"theme": "dark"}, "version": float64(2)}) ||
			r.Header.Get("x-ecm-version") != "2" || r.Header.Get("x-ecm-event-id") != evs[1]["eventId"] {
			t.Fatalf("as of before the deletion: %s %v", r.Raw, r.Header)
		}
	}
	ctxcErr(t, c.Do("GET", p, nil, "x-ecm-as-of", evs[2]["timestamp"].(string)), 404, "not_found")
}

func ctxcAsOf(t *testing.T, c *Client) {
	p := "/contexts/" + ID("cc-asof")
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light"}})
	steps := []map[string]any{
		{"theme": "dark"},
		{"tz": "UTC"},
		{"theme": nil},
		{"tz": "Europe/Paris", "lang": "fr"},
	}
	for _, s := range steps {
		c.Must(200, "PATCH", p, map[string]any{"preferences": s})
	}
	evs := c.Events(p)
	// The state after each event, replayed here from the events' payloads.
	state := map[string]any{}
	for i, e := range evs {
		pl, _ := e["payload"].(map[string]any)
		switch e["eventType"] {
		case "context.created":
			for k, v := range pl["preferences"].(map[string]any) {
				state[k] = v
			}
		case "context.preference.updated":
			state[pl["preference"].(string)] = pl["new_value"]
		case "context.preference.removed":
			delete(state, pl["preference"].(string))
		}
		ts := e["timestamp"].(string)
		if i+1 < len(evs) && evs[i+1]["timestamp"] == ts {
			continue // two events of one PATCH share their instant
		}
		r := c.Must(200, "GET", p, nil, "x-ecm-as-of", ts)
		if !reflect.DeepEqual(any(ctxcPrefs(t, r)), any(state)) || r.Num("version") != fmt.Sprint(e["version"]) ||
			r.Header.Get("x-ecm-event-id") != e["eventId"] {
			t.Fatalf("as of v%v (%s): %s %v, want %v", e["version"], ts, r.Raw, r.Header, state)
		}
		hist := c.Must(200, "GET", p+"/events?asOf="+ts, nil)
		if got, _ := hist.Body["events"].([]any); len(got) != i+1 {
			t.Fatalf("events as of v%v: %d", e["version"], len(got))
		}
	}
	first, _ := time.Parse(time.RFC3339Nano, evs[0]["timestamp"].(string))
	ctxcErr(t, c.Do("GET", p+"?asOf="+first.Add(-time.Second).Format(time.RFC3339Nano), nil), 404, "not_found")
	// The stream exists, so its history as of then is there and empty.
	if r := c.Must(200, "GET", p+"/events?asOf="+first.Add(-time.Second).Format(time.RFC3339Nano), nil); string(r.Raw) != "{\"events\":[]}\n" {
		t.Fatalf("events before the creation: %q", r.Raw)
	}
	ctxcErr(t, c.Do("GET", p+"?asOf=yesterday", nil), 400, "invalid_request")
	ctxcErr(t, c.Do("GET", p, nil, "x-ecm-as-of", "2024-13-01T00:00:00Z"), 400, "invalid_request")
}

func ctxcValues(t *testing.T, c *Client) {
	p := "/contexts/" + ID("cc-json")
	initial := `{"preferences":{"s":"x","n":1.5,"t":true,"f":false,"o":{"k":[1,{"z":null}]},"a":[],"thème":"sombre","gone":null}}`
	r := c.Must(201, "POST", p, initial)
	want := ctxcJSON(`{"s":"x","n":1.5,"t":true,"f":false,"o":{"k":[1,{"z":null}]},"a":[],"thème":"sombre"}`)
	if !reflect.DeepEqual(any(ctxcPrefs(t, r)), want) {
		t.Fatalf("values of every JSON kind (a null initial value is left out): %s", r.Raw)
	}
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); g.Status != 200 || !reflect.DeepEqual(any(ctxcPrefs(t, g)), want) {
			return "read model: " + string(g.Raw)
		}
		return ""
	})
	// Changing the type of a value is a change.
	c.Must(200, "PATCH", p, `{"preferences":{"t":"true","a":[],"o":{"k":[1,{"z":null}]}}}`)
	evs := c.Events(p)
	ctxcCheckEvents(t, evs[1:], []ctxcEvent{{"context.preference.updated", `{"preference":"t","old_value":true,"new_value":"true"}`}})
}

func ctxcErrors(t *testing.T, c *Client) {
	id := ID("cc-err")
	p := "/contexts/" + id
	c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"a": 1}})
	many := func(prefix string, n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[fmt.Sprintf("%s%03d", prefix, i)] = i
		}
		return m
	}
	long := strings.Repeat("k", 129)
	refused := ID("cc-many")
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"unknown context read", "GET", "/contexts/" + ID("cc-none"), nil, 404, "not_found"},
		{"unknown context events", "GET", "/contexts/" + ID("cc-none") + "/events", nil, 404, "not_found"},
		{"unknown context patch", "PATCH", "/contexts/" + ID("cc-none"), map[string]any{"preferences": map[string]any{"a": 1}}, 404, "not_found"},
		{"unknown context put", "PUT", "/contexts/" + ID("cc-none"), map[string]any{"preferences": map[string]any{}}, 404, "not_found"},
		{"unknown context delete", "DELETE", "/contexts/" + ID("cc-none"), nil, 404, "not_found"},
		{"invalid id", "POST", "/contexts/a%20b", map[string]any{"preferences": map[string]any{}}, 400, "invalid_request"},
		{"id too long", "GET", "/contexts/" + strings.Repeat("x", 129), nil, 400, "invalid_request"},
		{"preferences not an object", "PATCH", p, `{"preferences":5}`, 400, "invalid_request"},
		{"preferences missing on PATCH", "PATCH", p, `{}`, 400, "invalid_request"},
		{"preferences missing on PUT", "PUT", p, `{}`, 400, "invalid_request"},
		{"no body on PATCH", "PATCH", p, nil, 400, "invalid_request"},
		{"unknown field", "PATCH", p, `{"preferences":{},"extra":1}`, 400, "invalid_request"},
		{"malformed JSON", "PUT", p, `{"preferences":{"a":}`, 400, "invalid_request"},
		{"trailing data", "PATCH", p, `{"preferences":{"a":2}} {}`, 400, "invalid_request"},
		{"empty key", "PATCH", p, `{"preferences":{"":1}}`, 400, "invalid_request"},
		{"key too long", "PATCH", p, map[string]any{"preferences": map[string]any{long: 1}}, 400, "invalid_request"},
		{"key too long on create", "POST", "/contexts/" + ID("cc-long"), map[string]any{"preferences": map[string]any{long: 1}}, 400, "invalid_request"},
		{"too many keys on create", "POST", "/contexts/" + refused, map[string]any{"preferences": many("k", 257)}, 422, "too_many_preferences"},
		{"body too large", "PATCH", p, map[string]any{"preferences": map[string]any{"big": strings.Repeat("x", 300<<10)}}, 413, "payload_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) { ctxcErr(t, c.Do(tc.method, tc.path, tc.body), tc.status, tc.code) })
	}
	// More changes in one request than one atomic append may hold are refused as a whole.
	r := c.Do("PATCH", p, map[string]any{"preferences": many("n", 101)})
	if r.Status != 422 || r.ErrorCode() != "too_many_changes" {
		t.Fatalf("101 new keys in one PATCH: %d %s", r.Status, r.Raw)
	}
	if n := len(c.Events(p)); n != 1 {
		t.Fatalf("rejected requests appended: %d events", n)
	}
	if g := c.Must(200, "GET", p+"?consistent=true", nil); g.Num("version") != "1" || len(ctxcPrefs(t, g)) != 1 {
		t.Fatalf("rejected requests changed the context: %s", g.Raw)
	}
	// A creation refused for its input leaves the id free.
	c.Must(201, "POST", "/contexts/"+refused, map[string]any{"preferences": many("k", 256)})
}
