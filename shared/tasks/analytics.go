package tasks

import (
	"context"
	"encoding/json"
	"fmt"
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
	At      time.Time `json:"at"`
	TaskID  string    `json:"taskId"`
	Version int64     `json:"version"`
	To      string    `json:"to"`
}

// The analytics read model of a project, kept in bounded documents:
//   - AnalyticsCollection[project]: how many tasks are in each state now (Counts);
//   - taskIndex[task]: the task's project and current state;
//   - TimelineCollection(project)[day]: the transitions of one UTC day (TimelineDay), keyed
//     by task and version so a replay over them (a rebuild clears only the fixed
//     collections) writes the same entries again.
//
// "As of T" folds the days up to T's instead of replaying every task's stream.

// Counts is a project's document: tasks per state now.
type Counts struct {
	Counts map[string]int `json:"counts"`
}

// TimelineDay is one day of a project's transitions.
type TimelineDay struct {
	Transitions map[string]Transition `json:"transitions"`
}

// TimelineCollection holds a project's timeline, one document per UTC day ("2006-01-02").
func TimelineCollection(projectID string) string { return AnalyticsCollection + "/" + projectID }

const dayKey = "2006-01-02"

// FoldTimeline counts tasks per state as of at: each task in the state of its latest
// version at or before at. Every state is present.
func FoldTimeline(trs []Transition, at time.Time) map[string]int {
	out := map[string]int{}
	for _, s := range States {
		out[s] = 0
	}
	last := map[string]Transition{}
	for _, tr := range trs {
		if tr.At.After(at) {
			continue
		}
		if l, ok := last[tr.TaskID]; !ok || tr.Version > l.Version {
			last[tr.TaskID] = tr
		}
	}
	for _, tr := range last {
		out[tr.To]++
	}
	return out
}

// TasksByState counts a project's tasks per state as of at (zero: now). Every state is
// present.
func TasksByState(ctx context.Context, docs docstore.Store, projectID string, at time.Time) (map[string]int, error) {
	if at.IsZero() {
		var c Counts
		if _, err := docs.Get(ctx, AnalyticsCollection, projectID, &c); err != nil {
			return nil, err
		}
		out := map[string]int{}
		for _, s := range States {
			out[s] = c.Counts[s]
		}
		return out, nil
	}
	last := at.UTC().Format(dayKey)
	var trs []Transition
	after := ""
	for {
		page, next, err := docs.ListPage(ctx, TimelineCollection(projectID), after, docstore.MaxPageLimit)
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			if d.Key > last {
				return FoldTimeline(trs, at), nil
			}
			var day TimelineDay
			if err := json.Unmarshal(d.Raw, &day); err != nil {
				return nil, fmt.Errorf("project %s timeline %s: %w", projectID, d.Key, err)
			}
			for _, tr := range day.Transitions {
				trs = append(trs, tr)
			}
		}
		if next == "" {
			return FoldTimeline(trs, at), nil
		}
		after = next
	}
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
		State     string `json:"state,omitempty"`
	}
	if e.EventType == Created {
		var p Payload
		if err := e.Decode(&p); err != nil {
			return err
		}
		idx.ProjectID = p.ProjectID
	} else if ok, err := tx.Get(ctx, taskIndex, e.AggregateID, &idx); err != nil || !ok {
		return err
	}
	from := idx.State
	idx.State = to
	if err := tx.Put(ctx, taskIndex, e.AggregateID, idx); err != nil {
		return err
	}
	var c Counts
	if _, err := tx.Get(ctx, AnalyticsCollection, idx.ProjectID, &c); err != nil {
		return err
	}
	if c.Counts == nil {
		c.Counts = map[string]int{}
	}
	if from != "" && c.Counts[from] > 0 {
		c.Counts[from]--
	}
	c.Counts[to]++
	if err := tx.Put(ctx, AnalyticsCollection, idx.ProjectID, c); err != nil {
		return err
	}
	coll, day := TimelineCollection(idx.ProjectID), e.Timestamp.UTC().Format(dayKey)
	var d TimelineDay
	if _, err := tx.Get(ctx, coll, day, &d); err != nil {
		return err
	}
	if d.Transitions == nil {
		d.Transitions = map[string]Transition{}
	}
	d.Transitions[fmt.Sprintf("%s#%d", e.AggregateID, e.Version)] = Transition{At: e.Timestamp, TaskID: e.AggregateID, Version: e.Version, To: to}
	return tx.Put(ctx, coll, day, d)
}
