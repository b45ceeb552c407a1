// Package tasks is seed 001's GitScrum task management: every change of a task is an
// event attributed to the authenticated actor, so the task's history is its audit trail;
// a project analytics projection answers tasks per state now and as of any time.
package tasks

import (
	"strings"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// AggregateType of tasks.
const AggregateType = "Task"

// Event types.
const (
	Created          = "TaskCreated"
	Assigned         = "TaskAssigned"
	ReviewRequested  = "ReviewRequested"
	Approved         = "TaskApproved"
	ChangesRequested = "ChangesRequested"
	Merged           = "TaskMerged"
)

// States of the workflow: created → assigned → in_review → approved | changes_requested
// → (assigned / in_review again) … → merged (final).
const (
	StateCreated          = "created"
	StateAssigned         = "assigned"
	StateInReview         = "in_review"
	StateApproved         = "approved"
	StateChangesRequested = "changes_requested"
	StateMerged           = "merged"
)

// States lists every state (analytics always reports all of them).
var States = []string{StateCreated, StateAssigned, StateInReview, StateApproved, StateChangesRequested, StateMerged}

// Payload of every task event; each event fills what it is about.
type Payload struct {
	ProjectID string `json:"projectId,omitempty"`
	Title     string `json:"title,omitempty"`
	Assignee  string `json:"assignee,omitempty"`
	Reviewer  string `json:"reviewer,omitempty"`
}

// Task is the aggregate state and the read model.
type Task struct {
	ID        string `json:"id"`
	ProjectID string `json:"projectId"`
	Title     string `json:"title"`
	State     string `json:"state"`
	Assignee  string `json:"assignee,omitempty"`
	Reviewer  string `json:"reviewer,omitempty"`
	Version   int64  `json:"version"`
}

// Register adds the event types.
func Register(r *event.Registry) {
	for _, t := range []string{Created, Assigned, ReviewRequested, Approved, ChangesRequested, Merged} {
		r.Register(t, 1)
	}
}

// Definition is the aggregate definition.
var Definition = aggregate.Definition[Task]{
	Type:            AggregateType,
	New:             func(id string) Task { return Task{ID: id} },
	Apply:           Evolve,
	SnapshotVersion: 1,
}

// NextState is the state an event leads to ("" for an unknown type).
func NextState(eventType string) string {
	return map[string]string{Created: StateCreated, Assigned: StateAssigned, ReviewRequested: StateInReview,
		Approved: StateApproved, ChangesRequested: StateChangesRequested, Merged: StateMerged}[eventType]
}

// Evolve applies one event.
func Evolve(t Task, e event.Event) (Task, error) {
	next := NextState(e.EventType)
	if next == "" {
		return t, nil
	}
	var p Payload
	if err := e.Decode(&p); err != nil {
		return t, err
	}
	switch e.EventType {
	case Created:
		t.ProjectID, t.Title = p.ProjectID, p.Title
	case Assigned:
		t.Assignee = p.Assignee
	case ReviewRequested:
		t.Reviewer = p.Reviewer
	}
	t.State, t.Version = next, e.Version
	return t, nil
}

func transition(from []string, eventType string, p Payload) aggregate.Command[Task] {
	return func(t Task, v int64) ([]event.Event, error) {
		if v == 0 {
			return nil, aggregate.NotFound(AggregateType, t.ID)
		}
		for _, f := range from {
			if t.State == f {
				return []event.Event{event.MustNew(eventType, p)}, nil
			}
		}
		if eventType == Merged && t.State != StateMerged {
			return nil, aggregate.Rule("not_approved", "task %s is %s: only an approved task can be merged", t.ID, t.State)
		}
		return nil, aggregate.Rule("invalid_transition", "task %s is %s: cannot %s", t.ID, t.State, strings.ToLower(eventType))
	}
}

// Create opens a task in a project.
func Create(projectID, title string) aggregate.Command[Task] {
	return func(t Task, v int64) ([]event.Event, error) {
		if v > 0 {
			return nil, &aggregate.ExistsError{Type: AggregateType, ID: t.ID, Current: v}
		}
		if !event.ValidID(projectID) {
			return nil, eventstore.Invalid("projectId must be 1–128 characters of A-Z a-z 0-9 . _ : -")
		}
		if title = strings.TrimSpace(title); title == "" || len(title) > 200 {
			return nil, eventstore.Invalid("title must be 1–200 characters")
		}
		return []event.Event{event.MustNew(Created, Payload{ProjectID: projectID, Title: title})}, nil
	}
}

func person(field, who string) error {
	if who == "" || len(who) > 128 {
		return eventstore.Invalid("%s must be 1–128 characters", field)
	}
	return nil
}

// Assign (re)assigns the task.
func Assign(assignee string) aggregate.Command[Task] {
	return func(t Task, v int64) ([]event.Event, error) {
		if err := person("assignee", assignee); err != nil {
			return nil, err
		}
		return transition([]string{StateCreated, StateAssigned, StateChangesRequested}, Assigned, Payload{Assignee: assignee})(t, v)
	}
}

// RequestReview asks a reviewer to review.
func RequestReview(reviewer string) aggregate.Command[Task] {
	return func(t Task, v int64) ([]event.Event, error) {
		if err := person("reviewer", reviewer); err != nil {
			return nil, err
		}
		return transition([]string{StateAssigned, StateChangesRequested}, ReviewRequested, Payload{Reviewer: reviewer})(t, v)
	}
}

// Approve approves a task in review.
func Approve() aggregate.Command[Task] {
	return transition([]string{StateInReview}, Approved, Payload{})
}

// RequestChanges sends a task in review back.
func RequestChanges() aggregate.Command[Task] {
	return transition([]string{StateInReview}, ChangesRequested, Payload{})
}

// Merge merges an approved task.
func Merge() aggregate.Command[Task] { return transition([]string{StateApproved}, Merged, Payload{}) }
