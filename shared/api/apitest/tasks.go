package apitest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func testTasks(t *testing.T, c *Client) {
	proj := ID("proj")
	a, b := "/tasks/"+ID("ta"), "/tasks/"+ID("tb")
	c.Must(201, "POST", a+"/create", map[string]any{"projectId": proj, "title": "Fix login"}, "X-Actor", "alice")
	c.Must(201, "POST", b+"/create", map[string]any{"projectId": proj, "title": "Docs"}, "X-Actor", "alice")
	c.Must(200, "POST", a+"/assign", map[string]any{"assignee": "bob"}, "X-Actor", "alice")
	c.Must(200, "POST", a+"/request-review", map[string]any{"reviewer": "carol"}, "X-Actor", "bob")
	mid := c.Events(a)[2]["timestamp"].(string)
	r := c.Do("POST", a+"/merge", nil, "X-Actor", "bob")
	if r.Status != 422 || r.ErrorCode() != "not_approved" {
		t.Fatalf("merge before approval: %d %s", r.Status, r.Raw)
	}
	c.Must(200, "POST", a+"/approve", nil, "X-Actor", "carol")
	r = c.Must(200, "POST", a+"/merge", nil)
	if r.Body["state"] != "merged" || r.Num("version") != "5" {
		t.Fatalf("merge: %s", r.Raw)
	}
	c.Must(422, "POST", a+"/assign", map[string]any{"assignee": "x"})
	c.Must(422, "POST", b+"/approve", nil)
	c.Must(400, "POST", b+"/assign", map[string]any{})
	c.Must(404, "POST", "/tasks/"+ID("none")+"/approve", nil)
	c.Must(409, "POST", a+"/create", map[string]any{"projectId": proj, "title": "again"})

	h := c.Must(200, "GET", a+"/history", nil)
	var hist struct {
		History []map[string]any `json:"history"`
	}
	_ = json.Unmarshal(h.Raw, &hist)
	var trail []string
	for _, e := range hist.History {
		trail = append(trail, fmt.Sprintf("%v:%v:%v", e["version"], e["eventType"], e["actor"]))
		if e["at"] == "" || e["at"] == nil {
			t.Fatalf("history entry without time: %v", e)
		}
	}
	want := "1:TaskCreated:alice 2:TaskAssigned:alice 3:ReviewRequested:bob 4:TaskApproved:carol 5:TaskMerged:anonymous"
	if strings.Join(trail, " ") != want {
		t.Fatalf("audit trail:\n%s\nwant\n%s", strings.Join(trail, " "), want)
	}
	c.Eventually(settle, func() string {
		g := c.Do("GET", "/projects/"+proj+"/analytics", nil)
		if !strings.Contains(string(g.Raw), `"merged":1`) || !strings.Contains(string(g.Raw), `"created":1`) {
			return "analytics now: " + string(g.Raw)
		}
		return ""
	})
	g := c.Must(200, "GET", "/projects/"+proj+"/analytics?asOf="+mid, nil)
	var an struct {
		TasksByState map[string]int `json:"tasksByState"`
	}
	_ = json.Unmarshal(g.Raw, &an)
	if len(an.TasksByState) != 6 || an.TasksByState["in_review"] != 1 || an.TasksByState["created"] != 1 || an.TasksByState["merged"] != 0 {
		t.Fatalf("analytics as of the review request: %s", g.Raw)
	}
	ts, _ := time.Parse(time.RFC3339Nano, mid)
	g = c.Must(200, "GET", "/projects/"+proj+"/analytics?asOf="+ts.Add(-time.Hour).Format(time.RFC3339), nil)
	if strings.Contains(string(g.Raw), `:1`) {
		t.Fatalf("analytics before anything: %s", g.Raw)
	}
	if g := c.Must(200, "GET", a+"?consistent=true", nil); g.Body["assignee"] != "bob" || g.Body["reviewer"] != "carol" {
		t.Fatalf("task: %s", g.Raw)
	}
}
