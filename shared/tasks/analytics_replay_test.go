package tasks_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/tasks"
)

// at stamps the command's events with a chosen time, so the test controls the timeline
// (the store keeps a timestamp it is given).
func at(ts time.Time, cmd aggregate.Command[tasks.Task]) aggregate.Command[tasks.Task] {
	return func(s tasks.Task, v int64) ([]event.Event, error) {
		evs, err := cmd(s, v)
		for i := range evs {
			evs[i].Timestamp = ts
		}
		return evs, err
	}
}

// legal lists the commands a task may take in a state (the workflow of the package doc).
func legal(state string) []aggregate.Command[tasks.Task] {
	switch state {
	case tasks.StateCreated:
		return []aggregate.Command[tasks.Task]{tasks.Assign("ana")}
	case tasks.StateAssigned, tasks.StateChangesRequested:
		return []aggregate.Command[tasks.Task]{tasks.Assign("cy"), tasks.RequestReview("bo")}
	case tasks.StateInReview:
		return []aggregate.Command[tasks.Task]{tasks.Approve(), tasks.RequestChanges()}
	case tasks.StateApproved:
		return []aggregate.Command[tasks.Task]{tasks.Merge()}
	}
	return nil
}

type world struct {
	store    *memstore.Store
	docs     *memstore.Docs
	repo     *aggregate.Repository[tasks.Task]
	engine   *projection.Engine
	projects map[string][]string // project → task ids
	times    []time.Time         // every event's timestamp
}

// simulate runs random legal workflows over several tasks in two projects, interleaved,
// with timestamps that sometimes coincide across tasks and span several days (the
// timeline is kept one document per project per day).
func simulate(t *testing.T, seed uint64, steps int) *world {
	t.Helper()
	ctx := context.Background()
	reg := event.NewRegistry()
	tasks.Register(reg)
	cfg := aggregate.DefaultConfig()
	cfg.SnapshotEvery, cfg.Registry = 4, reg
	w := &world{store: memstore.New(), docs: memstore.NewDocs(), projects: map[string][]string{}}
	w.repo = aggregate.NewRepository(w.store, tasks.Definition, cfg)
	w.engine = projection.NewEngine(w.store, w.docs, reg, tasks.AnalyticsProjection{})
	rng := rand.New(rand.NewPCG(seed, 7))
	clock := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	states := map[string]string{}
	var ids []string
	for step := 0; step < steps; step++ {
		if rng.IntN(3) > 0 { // two in three steps move time on
			clock = clock.Add(time.Duration(1+rng.IntN(90)) * time.Second)
		}
		if rng.IntN(10) == 0 { // and some by hours, so the timeline spans several days
			clock = clock.Add(time.Duration(1+rng.IntN(14)) * time.Hour)
		}
		var id string
		var cmd aggregate.Command[tasks.Task]
		if len(ids) < 4 || rng.IntN(5) == 0 {
			id = fmt.Sprintf("t%02d", len(ids))
			proj := []string{"alpha", "beta"}[rng.IntN(2)]
			cmd = tasks.Create(proj, "task "+id)
			ids = append(ids, id)
			w.projects[proj] = append(w.projects[proj], id)
		} else {
			id = ids[rng.IntN(len(ids))]
			next := legal(states[id])
			if len(next) == 0 {
				continue
			}
			cmd = next[rng.IntN(len(next))]
		}
		res, err := w.repo.Execute(ctx, id, at(clock, cmd), aggregate.Options{})
		if err != nil {
			t.Fatalf("step %d on %s: %v", step, id, err)
		}
		states[id] = res.State.State
		w.times = append(w.times, clock)
	}
	return w
}

// deliverScrambled hands the events to the projection the way a stream poller may: streams
// interleaved at random, some events twice, some after a later one (a gap the engine fills
// from the store).
func (w *world) deliverScrambled(t *testing.T, seed uint64) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 11))
	var queues [][]event.Event
	for _, ids := range w.projects {
		for _, id := range ids {
			evs, err := w.store.Load(ctx, eventstore.Stream{Type: tasks.AggregateType, ID: id}, eventstore.Range{})
			if err != nil {
				t.Fatal(err)
			}
			queues = append(queues, evs)
		}
	}
	p := tasks.AnalyticsProjection{}
	for len(queues) > 0 {
		i := rng.IntN(len(queues))
		q := queues[i]
		k := 0
		if len(q) > 1 && rng.IntN(6) == 0 {
			k = 1 // deliver the next-but-one first: a gap
		}
		for _, e := range []event.Event{q[k], q[0]} {
			if _, err := w.engine.Deliver(ctx, p, e); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(2) == 0 {
				break
			}
		}
		if queues[i] = q[1:]; len(queues[i]) == 0 {
			queues = slices.Delete(queues, i, i+1)
		}
	}
}

// replayCounts counts the project's tasks per state by loading each task's stream as of
// ts (zero: now): the answer the analytics read model must give without doing this.
func (w *world) replayCounts(t *testing.T, project string, ts time.Time) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, s := range tasks.States {
		out[s] = 0
	}
	for _, id := range w.projects[project] {
		var l aggregate.Loaded[tasks.Task]
		var err error
		if ts.IsZero() {
			l, err = w.repo.Load(context.Background(), id)
		} else {
			l, err = w.repo.LoadAsOf(context.Background(), id, ts)
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.Exists() {
			out[l.State.State]++
		}
	}
	return out
}

func (w *world) analytics(t *testing.T, project string, at time.Time) map[string]int {
	t.Helper()
	got, err := tasks.TasksByState(context.Background(), w.docs, project, at)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// instants are every event time, a microsecond either side, and before/after everything.
func (w *world) instants() []time.Time {
	out := []time.Time{{}, w.times[0].Add(-time.Hour), w.times[len(w.times)-1].Add(time.Hour)}
	for _, ts := range w.times {
		out = append(out, ts.Add(-time.Microsecond), ts, ts.Add(time.Microsecond))
	}
	return out
}

func (w *world) check(t *testing.T, when string) {
	t.Helper()
	for project := range w.projects {
		for _, ts := range w.instants() {
			got, want := w.analytics(t, project, ts), w.replayCounts(t, project, ts)
			if !maps.Equal(got, want) {
				t.Fatalf("%s: project %s as of %v: analytics %v, replaying the streams %v", when, project, ts, got, want)
			}
		}
	}
}

// The analytics read model answers "tasks per state as of T" by folding its timeline; for
// every instant around every event it equals loading each task's stream as of T, whatever
// order, duplication and gaps the deliveries had, and after a rebuild from the store.
func TestAnalyticsAsOfEqualsReplayingStreams(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			w := simulate(t, seed, 120)
			w.deliverScrambled(t, seed)
			w.check(t, "live")
			if err := w.engine.Rebuild(context.Background(), tasks.AnalyticsProjection{}.Name()); err != nil {
				t.Fatal(err)
			}
			w.check(t, "rebuilt")
		})
	}
}

// Every project always reports all six states, also before it has any task.
func TestAnalyticsReportsEveryState(t *testing.T) {
	for _, trs := range [][]tasks.Transition{nil, {{TaskID: "a", Version: 5, To: tasks.StateMerged}}} {
		for _, ts := range []time.Time{{}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)} {
			got := tasks.FoldTimeline(trs, ts)
			if len(got) != len(tasks.States) {
				t.Fatalf("%+v as of %v: %v", trs, ts, got)
			}
			for _, s := range tasks.States {
				if _, ok := got[s]; !ok {
					t.Fatalf("%+v as of %v: no %s in %v", trs, ts, s, got)
				}
			}
		}
	}
	for _, ts := range []time.Time{{}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		got, err := tasks.TasksByState(context.Background(), memstore.NewDocs(), "no-project", ts)
		if err != nil || len(got) != len(tasks.States) {
			t.Fatalf("a project without tasks as of %v: %v %v", ts, got, err)
		}
	}
}
