package apitest

import (
	"strings"
	"testing"
	"time"
)

// testContexts: the ECM binding of seed 000 over HTTP, with its x-ecm-* extensions.
func testContexts(t *testing.T, c *Client) {
	id := ID("user")
	p := "/contexts/" + id
	r := c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light", "lang": "en"}})
	if r.Num("version") != "1" || r.Header.Get("x-ecm-version") != "1" || r.Header.Get("x-ecm-event-id") == "" {
		t.Fatalf("create: %s %v", r.Raw, r.Header)
	}
	c.Must(409, "POST", p, map[string]any{"preferences": map[string]any{}})

	// The seed's example: one event per changed key, with old and new values.
	r = c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"theme": "dark", "lang": "en"}},
		"x-ecm-version", "1", "x-ecm-causation", "ui-click-7")
	if r.Num("version") != "2" {
		t.Fatalf("patch: %s", r.Raw)
	}
	evs := c.Events(p)
	last := evs[len(evs)-1]
	pl, _ := last["payload"].(map[string]any)
	md, _ := last["metadata"].(map[string]any)
	if len(evs) != 2 || last["eventType"] != "context.preference.updated" || pl["preference"] != "theme" ||
		pl["old_value"] != "light" || pl["new_value"] != "dark" || md["causationId"] != "ui-click-7" ||
		last["aggregateType"] != "user-context" || last["eventId"] != r.Header.Get("x-ecm-event-id") {
		t.Fatalf("events after patch: %v", evs)
	}
	// Unchanged keys emit nothing; a stale x-ecm-version conflicts.
	c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"theme": "dark"}})
	c.Must(409, "PATCH", p, map[string]any{"preferences": map[string]any{"theme": "blue"}}, "x-ecm-version", "1")
	if n := len(c.Events(p)); n != 2 {
		t.Fatalf("no-op or conflicting patches appended: %d events", n)
	}
	beforeDelete := evs[1]["timestamp"].(string)
	// null removes a key; a retried PATCH with an Idempotency-Key appends once.
	key := ID("idem")
	a := c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"lang": nil, "tz": "UTC"}}, "Idempotency-Key", key)
	b := c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"lang": nil, "tz": "UTC"}}, "Idempotency-Key", key)
	if string(a.Raw) != string(b.Raw) || len(c.Events(p)) != 4 {
		t.Fatalf("idempotent patch: %s / %s, %d events", a.Raw, b.Raw, len(c.Events(p)))
	}
	types := []string{}
	for _, e := range c.Events(p)[2:] {
		types = append(types, e["eventType"].(string))
	}
	if strings.Join(types, ",") != "context.preference.removed,context.preference.updated" {
		t.Fatalf("remove + add: %v", types)
	}
	c.Eventually(settle, func() string {
		g := c.Do("GET", p, nil)
		if g.Num("version") != "4" || !strings.Contains(string(g.Raw), `"tz":"UTC"`) || strings.Contains(string(g.Raw), `"lang"`) {
			return "read model: " + string(g.Raw)
		}
		return ""
	})
	// PUT replaces everything.
	r = c.Must(200, "PUT", p, map[string]any{"preferences": map[string]any{"theme": "dark", "font": "large"}})
	if !strings.Contains(string(r.Raw), `"font":"large"`) || strings.Contains(string(r.Raw), `"tz"`) {
		t.Fatalf("put: %s", r.Raw)
	}
	// DELETE: later reads are 404, history and as-of reads before it still answer.
	c.Must(200, "DELETE", p, nil)
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); g.Status != 404 {
			return "after delete: " + string(g.Raw)
		}
		return ""
	})
	c.Must(404, "GET", p+"?consistent=true", nil)
	c.Must(404, "PATCH", p, map[string]any{"preferences": map[string]any{"theme": "x"}})
	c.Must(404, "DELETE", p, nil)
	if evs := c.Events(p); len(evs) < 6 || evs[len(evs)-1]["eventType"] != "context.deleted" {
		t.Fatalf("history after delete: %v", evs)
	}
	old := c.Must(200, "GET", p, nil, "x-ecm-as-of", beforeDelete)
	if !strings.Contains(string(old.Raw), `"theme":"dark"`) || old.Num("version") != "2" || old.Header.Get("x-ecm-version") != "2" {
		t.Fatalf("as of before the deletion: %s", old.Raw)
	}
	ts, _ := time.Parse(time.RFC3339Nano, beforeDelete)
	c.Must(404, "GET", p+"?asOf="+ts.Add(-time.Hour).Format(time.RFC3339), nil)
	// Malformed requests.
	c.Must(400, "PATCH", "/contexts/"+ID("x"), `{"preferences": 5}`)
	c.Must(400, "PATCH", p, `{}`)
	c.Must(404, "PATCH", "/contexts/"+ID("missing"), map[string]any{"preferences": map[string]any{"a": 1}})
}
