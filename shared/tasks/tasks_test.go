package tasks_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/aggregate/aggregatetest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/tasks"
)

func ev(typ string, p tasks.Payload) event.Event { return event.MustNew(typ, p) }

func TestWorkflow(t *testing.T) {
	d := tasks.Definition
	created := ev(tasks.Created, tasks.Payload{ProjectID: "p1", Title: "Fix login"})
	assigned := ev(tasks.Assigned, tasks.Payload{Assignee: "ana"})
	review := ev(tasks.ReviewRequested, tasks.Payload{Reviewer: "bo"})
	approved := ev(tasks.Approved, tasks.Payload{})
	changes := ev(tasks.ChangesRequested, tasks.Payload{})
	merged := ev(tasks.Merged, tasks.Payload{})
	ok := []struct {
		name  string
		given []event.Event
		cmd   aggregate.Command[tasks.Task]
		then  event.Event
	}{
		{"create", nil, tasks.Create("p1", "Fix login"), created},
		{"assign", []event.Event{created}, tasks.Assign("ana"), assigned},
		{"reassign", []event.Event{created, assigned}, tasks.Assign("ana"), assigned},
		{"request review", []event.Event{created, assigned}, tasks.RequestReview("bo"), review},
		{"approve", []event.Event{created, assigned, review}, tasks.Approve(), approved},
		{"request changes", []event.Event{created, assigned, review}, tasks.RequestChanges(), changes},
		{"review again after changes", []event.Event{created, assigned, review, changes}, tasks.RequestReview("bo"), review},
		{"merge", []event.Event{created, assigned, review, approved}, tasks.Merge(), merged},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) { aggregatetest.Given(d, tc.given...).When(tc.cmd).Then(t, tc.then) })
	}
	bad := []struct {
		name  string
		given []event.Event
		cmd   aggregate.Command[tasks.Task]
		code  string
	}{
		{"merge unapproved", []event.Event{created, assigned, review}, tasks.Merge(), "not_approved"},
		{"merge created", []event.Event{created}, tasks.Merge(), "not_approved"},
		{"approve unreviewed", []event.Event{created, assigned}, tasks.Approve(), "invalid_transition"},
		{"review unassigned", []event.Event{created}, tasks.RequestReview("bo"), "invalid_transition"},
		{"anything after merge", []event.Event{created, assigned, review, approved, merged}, tasks.Assign("x"), "invalid_transition"},
		{"merge twice", []event.Event{created, assigned, review, approved, merged}, tasks.Merge(), "invalid_transition"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) { aggregatetest.Given(d, tc.given...).When(tc.cmd).ThenError(t, tc.code) })
	}
	t.Run("unknown task", func(t *testing.T) {
		aggregatetest.Given(d).When(tasks.Approve()).ThenErrorIs(t, aggregate.ErrNotFound)
	})
}

// Analytics as of T folds the timeline; it must equal replaying each task's events up to T.
func TestAnalyticsAsOfEqualsReplay(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)
	streams := map[string][]string{
		"a": {tasks.Created, tasks.Assigned, tasks.ReviewRequested, tasks.Approved, tasks.Merged},
		"b": {tasks.Created, tasks.Assigned, tasks.ReviewRequested, tasks.ChangesRequested},
		"c": {tasks.Created},
	}
	var timeline []tasks.Transition
	replay := map[string][]tasks.Transition{}
	i := 0
	for _, id := range []string{"a", "b", "c"} {
		for v, typ := range streams[id] {
			at := t0.Add(time.Duration(i) * time.Minute)
			i++
			tr := tasks.Transition{At: at, TaskID: id, Version: int64(v + 1), To: tasks.NextState(typ)}
			timeline = append(timeline, tr)
			replay[id] = append(replay[id], tr)
		}
	}
	// The fold does not depend on the order the timeline holds the transitions in.
	slices.Reverse(timeline)
	for m := -1; m <= i; m++ {
		at := t0.Add(time.Duration(m)*time.Minute + 30*time.Second)
		want := map[string]int{}
		for _, trs := range replay {
			state := ""
			for _, tr := range trs {
				if !tr.At.After(at) {
					state = tr.To
				}
			}
			if state != "" {
				want[state]++
			}
		}
		got := tasks.FoldTimeline(timeline, at)
		for _, s := range tasks.States {
			if got[s] != want[s] {
				t.Fatalf("as of +%dm: %v, replay %v", m, got, want)
			}
		}
	}
}
