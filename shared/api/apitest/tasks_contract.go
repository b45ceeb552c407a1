package apitest

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

// testTasksContract covers the task workflow beyond TasksAuditTrail: the loop back from
// changes_requested, every rule violation and input error with its code, the history's
// fields, idempotent commands, and project analytics as of every instant compared with
// replaying each task as of that instant.
func testTasksContract(t *testing.T, c *Client) {
	for _, st := range []struct {
		name string
		fn   func(*testing.T, *Client)
	}{
		{"ReviewLoopAndHistory", tskcReviewLoop},
		{"RuleViolations", tskcRules},
		{"Errors", tskcErrors},
		{"IdempotentCommand", tskcIdempotency},
		{"AnalyticsAsOfEqualsTaskReplay", tskcAnalytics},
	} {
		t.Run(st.name, func(t *testing.T) { st.fn(t, c.With(t)) })
	}
}

// tskcStep is one command of a scenario and the state it leads to.
type tskcStep struct {
	actor, action string
	body          any
	state         string
}

// tskcPath is the shortest path to each state.
var tskcPath = tskcPaths()

func tskcPaths() map[string][]tskcStep {
	create := tskcStep{"alice", "create", map[string]any{"projectId": "p", "title": "t"}, "created"}
	assign := tskcStep{"alice", "assign", map[string]any{"assignee": "bob"}, "assigned"}
	review := tskcStep{"bob", "request-review", map[string]any{"reviewer": "carol"}, "in_review"}
	approve := tskcStep{"carol", "approve", nil, "approved"}
	return map[string][]tskcStep{
		"created":           {create},
		"assigned":          {create, assign},
		"in_review":         {create, assign, review},
		"approved":          {create, assign, review, approve},
		"changes_requested": {create, assign, review, {"carol", "request-changes", nil, "changes_requested"}},
		"merged":            {create, assign, review, approve, {"bob", "merge", nil, "merged"}},
	}
}

// tskcRun runs steps on a task (create's projectId replaced by project) and checks the
// state after each.
func tskcRun(t *testing.T, c *Client, path, project string, steps []tskcStep) Response {
	t.Helper()
	var r Response
	for _, s := range steps {
		status, body := 200, s.body
		if s.action == "create" {
			status = 201
			b := maps.Clone(s.body.(map[string]any))
			b["projectId"] = project
			body = b
		}
		r = c.Must(status, "POST", path+"/"+s.action, body, "X-Actor", s.actor)
		if r.Body["state"] != s.state {
			t.Fatalf("%s: state %v, want %s: %s", s.action, r.Body["state"], s.state, r.Raw)
		}
	}
	return r
}

func tskcReviewLoop(t *testing.T, c *Client) {
	id, proj := ID("tc-task"), ID("tc-proj")
	p := "/tasks/" + id
	corr := ID("tc-corr")
	c.Must(201, "POST", p+"/create", map[string]any{"projectId": proj, "title": "  Fix login  "}, "X-Actor", "alice", "X-Correlation-Id", corr)
	steps := []tskcStep{
		{"alice", "assign", map[string]any{"assignee": "bob"}, "assigned"},
		{"bob", "request-review", map[string]any{"reviewer": "carol"}, "in_review"},
		{"carol", "request-changes", nil, "changes_requested"},
		{"alice", "assign", map[string]any{"assignee": "dave"}, "assigned"},
		{"dave", "request-review", map[string]any{"reviewer": "erin"}, "in_review"},
		{"erin", "approve", nil, "approved"},
		{"dave", "merge", nil, "merged"},
	}
	r := tskcRun(t, c, p, proj, steps)
	want := map[string]any{"id": id, "projectId": proj, "title": "Fix login", "state": "merged", "assignee": "dave", "reviewer": "erin", "version": float64(8)}
	if !maps.EqualFunc(r.Body, want, func(a, b any) bool { return a == b }) || r.Header.Get("x-ecm-version") != "8" {
		t.Fatalf("merged: %s", r.Raw)
	}
	evs := c.Events(p)
	if r.Header.Get("x-ecm-event-id") != evs[7]["eventId"] || evs[0]["aggregateType"] != "Task" {
		t.Fatalf("merge headers %v, events %v", r.Header, evs)
	}
	c.Eventually(settle, func() string {
		if g := c.Do("GET", p, nil); !maps.EqualFunc(g.Body, want, func(a, b any) bool { return a == b }) {
			return "read model: " + string(g.Raw)
		}
		return ""
	})
	// The state as of the request for changes.
	at := evs[3]["timestamp"].(string)
	old := c.Must(200, "GET", p, nil, "x-ecm-as-of", at)
	if old.Body["state"] != "changes_requested" || old.Body["reviewer"] != "carol" || old.Num("version") != "4" || old.Header.Get("x-ecm-event-id") != evs[3]["eventId"] {
		t.Fatalf("as of the request for changes: %s %v", old.Raw, old.Header)
	}

	// The audit trail: who did what when, with what each event is about.
	var hist struct {
		History []map[string]any `json:"history"`
	}
	if err := json.Unmarshal(c.Must(200, "GET", p+"/history", nil).Raw, &hist); err != nil {
		t.Fatal(err)
	}
	wantHist := []string{
		"1 TaskCreated alice projectId=" + proj + " title=Fix login",
		"2 TaskAssigned alice assignee=bob",
		"3 ReviewRequested bob reviewer=carol",
		"4 ChangesRequested carol",
		"5 TaskAssigned alice assignee=dave",
		"6 ReviewRequested dave reviewer=erin",
		"7 TaskApproved erin",
		"8 TaskMerged dave",
	}
	if len(hist.History) != len(wantHist) {
		t.Fatalf("history: %v", hist.History)
	}
	for i, h := range hist.History {
		line := fmt.Sprintf("%v %v %v", h["version"], h["eventType"], h["actor"])
		for _, f := range []string{"projectId", "title", "assignee", "reviewer"} {
			if v, ok := h[f]; ok {
				line += fmt.Sprintf(" %s=%v", f, v)
			}
		}
		if line != wantHist[i] {
			t.Fatalf("history %d: %q, want %q", i, line, wantHist[i])
		}
		hAt, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(h["at"]))
		eAt, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(evs[i]["timestamp"]))
		if err1 != nil || err2 != nil || !hAt.Equal(eAt) {
			t.Fatalf("history %d at %v, event at %v", i, h["at"], evs[i]["timestamp"])
		}
	}
	if hist.History[0]["correlationId"] != corr {
		t.Fatalf("history without the request's correlation id: %v", hist.History[0])
	}
	// The history as of a time is the trail up to it.
	var past struct {
		History []map[string]any `json:"history"`
	}
	_ = json.Unmarshal(c.Must(200, "GET", p+"/history?asOf="+at, nil).Raw, &past)
	if len(past.History) != 4 {
		t.Fatalf("history as of the request for changes: %v", past.History)
	}
}

func tskcRules(t *testing.T, c *Client) {
	proj := ID("tc-rules")
	tasksIn := map[string]string{}
	for state, steps := range tskcPath {
		p := "/tasks/" + ID("tc-"+state)
		tskcRun(t, c, p, proj, steps)
		tasksIn[state] = p
	}
	commands := map[string]any{"assign": map[string]any{"assignee": "x"}, "request-review": map[string]any{"reviewer": "y"},
		"approve": nil, "request-changes": nil, "merge": nil}
	allowed := map[string][]string{
		"created": {"assign"}, "assigned": {"assign", "request-review"}, "in_review": {"approve", "request-changes"},
		"approved": {"merge"}, "changes_requested": {"assign", "request-review"}, "merged": nil,
	}
	for state, p := range tasksIn {
		for cmd, body := range commands {
			if strings.Contains(" "+strings.Join(allowed[state], " ")+" ", " "+cmd+" ") {
				continue
			}
			code := "invalid_transition"
			if cmd == "merge" && state != "merged" {
				code = "not_approved"
			}
			r := c.Do("POST", p+"/"+cmd, body)
			if r.Status != 422 || r.ErrorCode() != code {
				t.Fatalf("%s from %s: %d %s, want 422 %s", cmd, state, r.Status, r.Raw, code)
			}
		}
		if n := len(c.Events(p)); n != len(tskcPath[state]) {
			t.Fatalf("refused commands on a %s task appended: %d events", state, n)
		}
	}
}

func tskcErrors(t *testing.T, c *Client) {
	p := "/tasks/" + ID("tc-err")
	c.Must(201, "POST", p+"/create", map[string]any{"projectId": ID("tc-proj"), "title": "x"})
	none := "/tasks/" + ID("tc-none")
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"create twice", "POST", p + "/create", map[string]any{"projectId": "p", "title": "again"}, 409, "already_exists"},
		{"create without project", "POST", "/tasks/" + ID("tc-x") + "/create", map[string]any{"title": "x"}, 400, "invalid_request"},
		{"create with an invalid project id", "POST", "/tasks/" + ID("tc-x") + "/create", map[string]any{"projectId": "a b", "title": "x"}, 400, "invalid_request"},
		{"create without title", "POST", "/tasks/" + ID("tc-x") + "/create", map[string]any{"projectId": "p", "title": " "}, 400, "invalid_request"},
		{"create without body", "POST", "/tasks/" + ID("tc-x") + "/create", nil, 400, "invalid_request"},
		{"create with an unknown field", "POST", "/tasks/" + ID("tc-x") + "/create", map[string]any{"projectId": "p", "title": "x", "prio": 1}, 400, "invalid_request"},
		{"create with malformed JSON", "POST", "/tasks/" + ID("tc-x") + "/create", `{"projectId":`, 400, "invalid_request"},
		{"assign nobody", "POST", p + "/assign", map[string]any{}, 400, "invalid_request"},
		{"assignee not a string", "POST", p + "/assign", map[string]any{"assignee": 7}, 400, "invalid_request"},
		{"review by nobody", "POST", p + "/request-review", map[string]any{"reviewer": ""}, 400, "invalid_request"},
		{"approve with an unknown field", "POST", p + "/approve", map[string]any{"comment": "lgtm"}, 400, "invalid_request"},
		{"invalid task id", "POST", "/tasks/a%20b/create", map[string]any{"projectId": "p", "title": "x"}, 400, "invalid_request"},
		{"unknown task assign", "POST", none + "/assign", map[string]any{"assignee": "x"}, 404, "not_found"},
		{"unknown task review", "POST", none + "/request-review", map[string]any{"reviewer": "x"}, 404, "not_found"},
		{"unknown task approve", "POST", none + "/approve", nil, 404, "not_found"},
		{"unknown task request changes", "POST", none + "/request-changes", nil, 404, "not_found"},
		{"unknown task merge", "POST", none + "/merge", nil, 404, "not_found"},
		{"unknown task read", "GET", none, nil, 404, "not_found"},
		{"unknown task history", "GET", none + "/history", nil, 404, "not_found"},
		{"unknown task events", "GET", none + "/events", nil, 404, "not_found"},
		{"bad as-of on a task", "GET", p + "?asOf=soon", nil, 400, "invalid_request"},
		{"bad as-of on the history", "GET", p + "/history?asOf=soon", nil, 400, "invalid_request"},
		{"bad as-of on analytics", "GET", "/projects/p/analytics?asOf=2024-01-01", nil, 400, "invalid_request"},
		{"invalid project id", "GET", "/projects/a%20b/analytics", nil, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := c.Do(tc.method, tc.path, tc.body); r.Status != tc.status || r.ErrorCode() != tc.code {
				t.Fatalf("%d %s, want %d %s", r.Status, r.Raw, tc.status, tc.code)
			}
		})
	}
	if r := c.Do("POST", p+"/create", map[string]any{"projectId": "p", "title": "again"}); fmt.Sprint(r.Body["error"].(map[string]any)["currentVersion"]) != "1" {
		t.Fatalf("already_exists without currentVersion: %s", r.Raw)
	}
	if n := len(c.Events(p)); n != 1 {
		t.Fatalf("refused requests appended: %d events", n)
	}
}

func tskcIdempotency(t *testing.T, c *Client) {
	p := "/tasks/" + ID("tc-idem")
	c.Must(201, "POST", p+"/create", map[string]any{"projectId": ID("tc-proj"), "title": "x"})
	key := ID("tc-key")
	a := c.Must(200, "POST", p+"/assign", map[string]any{"assignee": "bob"}, "Idempotency-Key", key, "X-Actor", "alice")
	b := c.Must(200, "POST", p+"/assign", map[string]any{"assignee": "bob"}, "Idempotency-Key", key, "X-Actor", "alice")
	if string(a.Raw) != string(b.Raw) || b.Header.Get("Idempotent-Replayed") != "true" || len(c.Events(p)) != 2 {
		t.Fatalf("retried assign: %s / %s, %d events", a.Raw, b.Raw, len(c.Events(p)))
	}
}

// tskcCounts is tasksByState as the analytics endpoint answers it.
func tskcCounts(t *testing.T, r Response) map[string]int {
	t.Helper()
	var b struct {
		TasksByState map[string]int `json:"tasksByState"`
	}
	if err := json.Unmarshal(r.Raw, &b); err != nil || len(b.TasksByState) != 6 {
		t.Fatalf("tasksByState must have all six states: %s (%v)", r.Raw, err)
	}
	return b.TasksByState
}

func tskcZero() map[string]int {
	return map[string]int{"created": 0, "assigned": 0, "in_review": 0, "approved": 0, "changes_requested": 0, "merged": 0}
}

func tskcAnalytics(t *testing.T, c *Client) {
	proj := ID("tc-an")
	if got := tskcCounts(t, c.Must(200, "GET", "/projects/"+proj+"/analytics", nil)); !maps.Equal(got, tskcZero()) {
		t.Fatalf("a project without tasks: %v", got)
	}
	// Interleave four tasks so transitions of different tasks alternate in time, and one
	// task goes through a state twice (the old bucket must be decremented each time).
	ids := []string{ID("tc-an-a"), ID("tc-an-b"), ID("tc-an-c"), ID("tc-an-d")}
	other := "/tasks/" + ID("tc-an-other")
	c.Must(201, "POST", other+"/create", map[string]any{"projectId": ID("tc-an-elsewhere"), "title": "not in this project"})
	script := []struct {
		task   int
		action string
		body   any
	}{
		{0, "create", map[string]any{"projectId": proj, "title": "a"}},
		{1, "create", map[string]any{"projectId": proj, "title": "b"}},
		{0, "assign", map[string]any{"assignee": "bob"}},
		{2, "create", map[string]any{"projectId": proj, "title": "c"}},
		{0, "request-review", map[string]any{"reviewer": "carol"}},
		{1, "assign", map[string]any{"assignee": "dave"}},
		{0, "request-changes", nil},
		{3, "create", map[string]any{"projectId": proj, "title": "d"}},
		{0, "request-review", map[string]any{"reviewer": "carol"}},
		{1, "request-review", map[string]any{"reviewer": "erin"}},
		{0, "approve", nil},
		{1, "approve", nil},
		{0, "merge", nil},
		{2, "assign", map[string]any{"assignee": "bob"}},
	}
	for _, s := range script {
		status := 200
		if s.action == "create" {
			status = 201
		}
		c.Must(status, "POST", "/tasks/"+ids[s.task]+"/"+s.action, s.body)
	}
	now := map[string]int{"created": 1, "assigned": 1, "in_review": 0, "approved": 1, "changes_requested": 0, "merged": 1}
	var instants []string
	for _, id := range ids {
		for _, e := range c.Events("/tasks/" + id) {
			ts := e["timestamp"].(string)
			parsed, _ := time.Parse(time.RFC3339Nano, ts)
			instants = append(instants, ts, parsed.Add(-time.Microsecond).Format(time.RFC3339Nano))
		}
	}
	first, _ := time.Parse(time.RFC3339Nano, instants[0])
	instants = append(instants, first.Add(-time.Hour).Format(time.RFC3339Nano), time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
	// replay counts the tasks per state from each task's own state as of ts (404: it did
	// not exist yet): what the analytics must answer without replaying anything.
	replay := func(ts string) map[string]int {
		out := tskcZero()
		for _, id := range ids {
			r := c.Do("GET", "/tasks/"+id+"?asOf="+ts, nil)
			switch r.Status {
			case 200:
				out[r.Body["state"].(string)]++
			case 404:
			default:
				t.Fatalf("task %s as of %s: %d %s", id, ts, r.Status, r.Raw)
			}
		}
		return out
	}
	// The read model is eventually consistent: wait until it has every transition, then
	// compare at every instant around every event.
	c.Eventually(settle, func() string {
		if got := tskcCounts(t, c.Do("GET", "/projects/"+proj+"/analytics", nil)); !maps.Equal(got, now) {
			return fmt.Sprintf("analytics now: %v, want %v", got, now)
		}
		for _, ts := range instants {
			got, want := tskcCounts(t, c.Do("GET", "/projects/"+proj+"/analytics?asOf="+ts, nil)), replay(ts)
			if !maps.Equal(got, want) {
				return fmt.Sprintf("analytics as of %s: %v, replaying the tasks: %v", ts, got, want)
			}
		}
		return ""
	})
	// x-ecm-as-of works as well as ?asOf=, and the response names the project.
	mid := instants[len(instants)/2]
	r := c.Must(200, "GET", "/projects/"+proj+"/analytics", nil, "x-ecm-as-of", mid)
	if got, want := tskcCounts(t, r), replay(mid); !maps.Equal(got, want) || r.Body["projectId"] != proj {
		t.Fatalf("analytics with x-ecm-as-of %s: %s, want %v", mid, r.Raw, want)
	}
	if got := tskcCounts(t, c.Must(200, "GET", "/projects/"+proj+"/analytics?asOf="+first.Add(-time.Hour).Format(time.RFC3339), nil)); !maps.Equal(got, tskcZero()) {
		t.Fatalf("analytics before the first task: %v", got)
	}
}
