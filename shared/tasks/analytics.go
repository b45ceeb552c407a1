package tasks

import (
	"context"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
)

// Collections of the task read models.
const (
	TasksCollection     = "tasks"
	AnalyticsCollection = "project-analytics"
	taskIndex           = "task-projects"
)

// TaskProjection is the current-state read model of tasks.
type TaskProjection struct{}

func (TaskProjection) Name() string             { return "tasks" }
func (TaskProjection) AggregateTypes() []string { return []string{AggregateType} }
func (TaskProjection) Collections() []string    { return []string{TasksCollection} }

func (TaskProjection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	t := Task{ID: e.AggregateID}
	if _, err := tx.Get(ctx, TasksCollection, e.AggregateID, &t); err != nil {
		return err
	}
	t, err := Evolve(t, e)
	if err != nil {
		return err
	}
	return tx.Put(ctx, TasksCollection, e.AggregateID, t)
}

// Transition is one state change of a task in a project's timeline.
type Transition struct {
	At     time.Time `json:"at"`
	TaskID string    `json:"taskId"`
	To     string    `json:"to"`
}

// Project is the analytics read model of one project: every task's current state and
// the timeline of transitions, so "as of T" folds the timeline instead of replaying
// every task's stream.
type Project struct {
	Tasks    map[string]string `json:"tasks"`
	Timeline []Transition      `json:"timeline"`
}

// TasksByState counts tasks per state as of at (zero: now). Every state is present.
func (p Project) TasksByState(at time.Time) map[string]int {
	out := map[string]int{}
	for _, s := range States {
		out[s] = 0
	}
	if at.IsZero() {
		for _, s := range p.Tasks {
			out[s]++
		}
		return out
	}
	state := map[string]string{}
	for _, tr := range p.Timeline {
		if !tr.At.After(at) {
			state[tr.TaskID] = tr.To
		}
	}
	for _, s := range state {
		out[s]++
	}
	return out
}

// AnalyticsProjection is the cross-aggregate (per project) analytics read model.
type AnalyticsProjection struct{}

func (AnalyticsProjection) Name() string             { return "project-analytics" }
func (AnalyticsProjection) AggregateTypes() []string { return []string{AggregateType} }
func (AnalyticsProjection) Collections() []string    { return []string{AnalyticsCollection, taskIndex} }

func (AnalyticsProjection) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	to := NextState(e.EventType)
	if to == "" {
		return nil
	}
	var idx struct {
		ProjectID string `json:"projectId"`
	}
	if e.EventType == Created {
		var p Payload
		if err := e.Decode(&p); err != nil {
			return err
		}
		idx.ProjectID = p.ProjectID
		if err := tx.Put(ctx, taskIndex, e.AggregateID, idx); err != nil {
			return err
		}
	} else if ok, err := tx.Get(ctx, taskIndex, e.AggregateID, &idx); err != nil || !ok {
		return err
	}
	p := Project{Tasks: map[string]string{}}
	if _, err := tx.Get(ctx, AnalyticsCollection, idx.ProjectID, &p); err != nil {
		return err
	}
	if p.Tasks == nil {
		p.Tasks = map[string]string{}
	}
	p.Tasks[e.AggregateID] = to
	p.Timeline = append(p.Timeline, Transition{At: e.Timestamp, TaskID: e.AggregateID, To: to})
	return tx.Put(ctx, AnalyticsCollection, idx.ProjectID, p)
}
