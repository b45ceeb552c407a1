package tasks_test

import (
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/aggregate/aggregatetest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/tasks"
)

// histories reaches every state of the workflow by its shortest path.
func histories() map[string][]event.Event {
	created := ev(tasks.Created, tasks.Payload{ProjectID: "p1", Title: "Fix login"})
	assigned := ev(tasks.Assigned, tasks.Payload{Assignee: "ana"})
	review := ev(tasks.ReviewRequested, tasks.Payload{Reviewer: "bo"})
	return map[string][]event.Event{
		tasks.StateCreated:          {created},
		tasks.StateAssigned:         {created, assigned},
		tasks.StateInReview:         {created, assigned, review},
		tasks.StateApproved:         {created, assigned, review, ev(tasks.Approved, tasks.Payload{})},
		tasks.StateChangesRequested: {created, assigned, review, ev(tasks.ChangesRequested, tasks.Payload{})},
		tasks.StateMerged:           {created, assigned, review, ev(tasks.Approved, tasks.Payload{}), ev(tasks.Merged, tasks.Payload{})},
	}
}

// Every command from every state: the allowed transitions produce their event, every
// other pair is a rule violation with a stable code. Merged is final.
func TestTransitionMatrix(t *testing.T) {
	type outcome struct {
		event string // event type produced, or "" for a rule violation
		code  string
	}
	allow := func(e string) outcome { return outcome{event: e} }
	deny := outcome{code: "invalid_transition"}
	notApproved := outcome{code: "not_approved"}
	commands := []struct {
		name string
		cmd  aggregate.Command[tasks.Task]
		from map[string]outcome
	}{
		{"assign", tasks.Assign("ana"), map[string]outcome{
			tasks.StateCreated: allow(tasks.Assigned), tasks.StateAssigned: allow(tasks.Assigned), tasks.StateInReview: deny,
			tasks.StateApproved: deny, tasks.StateChangesRequested: allow(tasks.Assigned), tasks.StateMerged: deny}},
		{"request-review", tasks.RequestReview("bo"), map[string]outcome{
			tasks.StateCreated: deny, tasks.StateAssigned: allow(tasks.ReviewRequested), tasks.StateInReview: deny,
			tasks.StateApproved: deny, tasks.StateChangesRequested: allow(tasks.ReviewRequested), tasks.StateMerged: deny}},
		{"approve", tasks.Approve(), map[string]outcome{
			tasks.StateCreated: deny, tasks.StateAssigned: deny, tasks.StateInReview: allow(tasks.Approved),
			tasks.StateApproved: deny, tasks.StateChangesRequested: deny, tasks.StateMerged: deny}},
		{"request-changes", tasks.RequestChanges(), map[string]outcome{
			tasks.StateCreated: deny, tasks.StateAssigned: deny, tasks.StateInReview: allow(tasks.ChangesRequested),
			tasks.StateApproved: deny, tasks.StateChangesRequested: deny, tasks.StateMerged: deny}},
		{"merge", tasks.Merge(), map[string]outcome{
			tasks.StateCreated: notApproved, tasks.StateAssigned: notApproved, tasks.StateInReview: notApproved,
			tasks.StateApproved: allow(tasks.Merged), tasks.StateChangesRequested: notApproved, tasks.StateMerged: deny}},
	}
	hs := histories()
	for _, c := range commands {
		if len(c.from) != len(tasks.States) {
			t.Fatalf("%s: the matrix must cover all %d states", c.name, len(tasks.States))
		}
		for _, state := range tasks.States {
			want := c.from[state]
			t.Run(c.name+" from "+state, func(t *testing.T) {
				s := aggregatetest.Given(tasks.Definition, hs[state]...).When(c.cmd)
				if want.code != "" {
					s.ThenError(t, want.code)
					return
				}
				got, err := c.cmd(replay(t, hs[state]...), int64(len(hs[state])))
				if err != nil || len(got) != 1 || got[0].EventType != want.event {
					t.Fatalf("got %v %v, want one %s", got, err, want.event)
				}
				next, err := tasks.Evolve(replay(t, hs[state]...), withVersion(got[0], int64(len(hs[state])+1)))
				if err != nil || next.State != tasks.NextState(want.event) {
					t.Fatalf("after %s: state %q (%v)", want.event, next.State, err)
				}
			})
		}
	}
}

func withVersion(e event.Event, v int64) event.Event { e.Version = v; return e }

func replay(t *testing.T, history ...event.Event) tasks.Task {
	t.Helper()
	s := tasks.Definition.New("test")
	for i, e := range history {
		var err error
		if s, err = tasks.Evolve(s, withVersion(e, int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Input rules: checked before anything is appended, answered 400 (invalid_request), and
// a missing task is 404 for every command but create.
func TestInputRules(t *testing.T) {
	hs := histories()
	for _, tc := range []struct {
		name  string
		given []event.Event
		cmd   aggregate.Command[tasks.Task]
		err   error
	}{
		{"create without project", nil, tasks.Create("", "x"), eventstore.ErrInvalid},
		{"create with an invalid project id", nil, tasks.Create("p 1", "x"), eventstore.ErrInvalid},
		{"create without title", nil, tasks.Create("p1", "   "), eventstore.ErrInvalid},
		{"create with a title too long", nil, tasks.Create("p1", strings.Repeat("t", 201)), eventstore.ErrInvalid},
		{"create twice", hs[tasks.StateCreated], tasks.Create("p1", "x"), aggregate.ErrExists},
		{"assign nobody", hs[tasks.StateCreated], tasks.Assign(""), eventstore.ErrInvalid},
		{"assign a name too long", hs[tasks.StateCreated], tasks.Assign(strings.Repeat("a", 129)), eventstore.ErrInvalid},
		{"review by nobody", hs[tasks.StateAssigned], tasks.RequestReview(""), eventstore.ErrInvalid},
		{"assign a missing task", nil, tasks.Assign("ana"), aggregate.ErrNotFound},
		{"review a missing task", nil, tasks.RequestReview("bo"), aggregate.ErrNotFound},
		{"request changes on a missing task", nil, tasks.RequestChanges(), aggregate.ErrNotFound},
		{"merge a missing task", nil, tasks.Merge(), aggregate.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aggregatetest.Given(tasks.Definition, tc.given...).When(tc.cmd).ThenErrorIs(t, tc.err)
		})
	}
	t.Run("title is trimmed", func(t *testing.T) {
		aggregatetest.Given(tasks.Definition).When(tasks.Create("p1", "  Fix login ")).
			Then(t, ev(tasks.Created, tasks.Payload{ProjectID: "p1", Title: "Fix login"}))
	})
}

// The state keeps who is assigned and who reviews across the loop back from
// changes_requested.
func TestEvolveKeepsPeople(t *testing.T) {
	h := append(histories()[tasks.StateChangesRequested],
		ev(tasks.Assigned, tasks.Payload{Assignee: "cy"}), ev(tasks.ReviewRequested, tasks.Payload{Reviewer: "di"}),
		ev(tasks.Approved, tasks.Payload{}))
	got := replay(t, h...)
	want := tasks.Task{ID: "test", ProjectID: "p1", Title: "Fix login", State: tasks.StateApproved, Assignee: "cy", Reviewer: "di", Version: int64(len(h))}
	if got != want {
		t.Fatalf("state %+v, want %+v", got, want)
	}
}
