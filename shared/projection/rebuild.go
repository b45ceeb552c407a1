package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Rebuild phases.
const (
	PhaseQueued     = "queued"      // accepted; nothing built yet
	PhaseReplaying  = "replaying"   // replaying every stream into the shadow generation
	PhaseCatchingUp = "catching-up" // replaying the streams that changed during the replay
	PhaseSettling   = "settling"    // swapped; catching up what was applied live meanwhile
	PhaseDone       = "done"
)

// rebuildCollection holds one rebuild job per projection (the latest).
const rebuildCollection = "_rebuilds"

// clockMargin widens the catch-up windows: event timestamps come from the clocks of the
// processes that appended them.
const clockMargin = time.Minute

// RebuildJob is a projection's rebuild: a background job that builds the next generation
// of its documents while readers keep the active one, swaps, and finishes. It is
// checkpointed after every chunk, so whichever process steps it next (after a crash, the
// next process; on AWS, the next invocation of the rebuild function) continues from there.
type RebuildJob struct {
	ID         string `json:"id"`
	Projection string `json:"projection"`
	Phase      string `json:"phase"`
	// Generation is the one being built; From the one active when the job started.
	Generation int64     `json:"generation"`
	From       int64     `json:"from"`
	Done       int64     `json:"eventsDone"`
	Total      int64     `json:"eventsTotal"`
	StartedAt  time.Time `json:"startedAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	LastError  string    `json:"lastError,omitempty"`

	// The checkpoint: the sweep's aggregate type, its query cursor and window.
	Seq        int64     `json:"seq"` // bumped by every saved chunk: a stale stepper's save is dropped
	TypeIndex  int       `json:"typeIndex"`
	Cursor     string    `json:"cursor,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	SweepStart time.Time `json:"sweepStart,omitzero"`
	ReplayFrom time.Time `json:"replayFrom,omitzero"`
	Cleared    bool      `json:"cleared,omitempty"` // queued: the stale generations are gone
}

// Active reports whether the job still has work to do.
func (j RebuildJob) Active() bool { return j.ID != "" && j.Phase != PhaseDone }

// RebuildProgress is a job as GET /projections reports it.
type RebuildProgress struct {
	ID          string    `json:"id"`
	Phase       string    `json:"phase"`
	Generation  int64     `json:"generation"`
	EventsDone  int64     `json:"eventsDone"`
	EventsTotal int64     `json:"eventsTotal"`
	Rate        float64   `json:"eventsPerSecond"`
	ETASeconds  *float64  `json:"etaSeconds"`
	StartedAt   time.Time `json:"startedAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	FinishedAt  time.Time `json:"finishedAt,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
}

// Progress reports the job's figures: the rate over the replay so far and the time left
// at that rate (nil before there is a rate, and once the replay is over).
func (j RebuildJob) Progress() RebuildProgress {
	p := RebuildProgress{ID: j.ID, Phase: j.Phase, Generation: j.Generation, EventsDone: j.Done, EventsTotal: j.Total,
		StartedAt: j.StartedAt, UpdatedAt: j.UpdatedAt, FinishedAt: j.FinishedAt, LastError: j.LastError}
	end := j.UpdatedAt
	if !j.FinishedAt.IsZero() {
		end = j.FinishedAt
	}
	if !j.ReplayFrom.IsZero() && end.After(j.ReplayFrom) && j.Done > 0 {
		p.Rate = float64(j.Done) / end.Sub(j.ReplayFrom).Seconds()
	}
	if p.Rate > 0 && j.Phase == PhaseReplaying {
		eta := float64(max(0, j.Total-j.Done)) / p.Rate
		p.ETASeconds = &eta
	}
	return p
}

// Dispatcher runs rebuild jobs elsewhere (the rebuild function's queue on AWS); told of
// every job started.
type Dispatcher interface {
	Dispatch(ctx context.Context, projection string) error
}

// errStale: another stepper checkpointed the job first; its checkpoint stands.
var errStale = errors.New("rebuild job moved on")

func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartRebuild starts a rebuild of the projection as a background job and returns it, or
// returns the job already running (started false). It does no rebuilding itself: the
// runner's steps (locally) or the rebuild function (on AWS, through Dispatch) do.
func (en *Engine) StartRebuild(ctx context.Context, name string) (job RebuildJob, started bool, err error) {
	p, err := en.Lookup(name)
	if err != nil {
		return job, false, err
	}
	err = en.raw().Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		started = false
		if _, err := tx.Get(ctx, rebuildCollection, p.Name(), &job); err != nil {
			return err
		}
		if job.Active() {
			return nil
		}
		var g generationDoc
		if _, err := tx.Get(ctx, generationCollection, p.Name(), &g); err != nil {
			return err
		}
		now := en.now()
		job = RebuildJob{ID: newJobID(), Projection: p.Name(), Phase: PhaseQueued, Generation: g.Active + 1, From: g.Active,
			StartedAt: now, UpdatedAt: now}
		started = true
		return tx.Put(ctx, rebuildCollection, p.Name(), job)
	})
	if err != nil {
		return job, started, err
	}
	// Told again of a job already running: a lost dispatch must not strand it, and a
	// second stepper is harmless (see saveJobWith).
	if en.Dispatcher != nil {
		if err := en.Dispatcher.Dispatch(ctx, p.Name()); err != nil {
			// The job is recorded: the caller's retry dispatches it again.
			return job, started, fmt.Errorf("rebuild %s: dispatch: %w", p.Name(), err)
		}
	}
	return job, started, nil
}

// RebuildJob returns the projection's latest rebuild job (found false if it never had one).
func (en *Engine) RebuildJob(ctx context.Context, name string) (job RebuildJob, found bool, err error) {
	p, err := en.Lookup(name)
	if err != nil {
		return job, false, err
	}
	found, err = en.raw().Get(ctx, rebuildCollection, p.Name(), &job)
	return job, found, err
}

// Rebuild rebuilds a projection and waits for the job to finish (tools and tests; the
// API starts the job and answers at once).
func (en *Engine) Rebuild(ctx context.Context, name string) error {
	if _, _, err := en.StartRebuild(ctx, name); err != nil {
		return err
	}
	_, err := en.RunRebuild(ctx, name)
	return err
}

// RunRebuild steps the projection's job until it is done or ctx ends (on AWS the rebuild
// function gives it a context that ends before the invocation's deadline).
func (en *Engine) RunRebuild(ctx context.Context, name string) (RebuildJob, error) {
	return en.RunRebuildChunks(ctx, name, 0)
}

// RunRebuildChunks is RunRebuild stopping after at most n chunks (n ≤ 0: no limit).
func (en *Engine) RunRebuildChunks(ctx context.Context, name string, n int) (RebuildJob, error) {
	p, err := en.Lookup(name)
	if err != nil {
		return RebuildJob{}, err
	}
	mu := en.rebuildLock(p.Name())
	mu.Lock()
	defer mu.Unlock()
	for i := 1; ; i++ {
		job, err := en.stepRebuild(ctx, p)
		if err != nil || !job.Active() || i == n {
			return job, err
		}
		if ctx.Err() != nil {
			return job, ctx.Err()
		}
	}
}

// ResumeRebuilds runs every unfinished rebuild job to its end.
func (en *Engine) ResumeRebuilds(ctx context.Context) error {
	for _, p := range en.projections {
		if _, err := en.RunRebuild(ctx, p.Name()); err != nil {
			return err
		}
	}
	return nil
}

// StepRebuilds does one chunk of every unfinished rebuild job that no one in this process
// is stepping now, and reports whether any moved. The runner calls it between feed
// batches, so a rebuild progresses in the background while live delivery goes on.
func (en *Engine) StepRebuilds(ctx context.Context) (bool, error) {
	if !en.legacyChecked.Load() {
		if err := en.resumeLegacy(ctx); err != nil {
			return false, err
		}
		en.legacyChecked.Store(true)
	}
	moved := false
	for _, p := range en.projections {
		mu := en.rebuildLock(p.Name())
		if !mu.TryLock() {
			continue
		}
		before, _, err := en.RebuildJob(ctx, p.Name())
		if err == nil && before.Active() {
			var after RebuildJob
			after, err = en.stepRebuild(ctx, p)
			moved = moved || after.Seq != before.Seq || after.ID != before.ID
		}
		mu.Unlock()
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// resumeLegacy starts a job for a projection whose status still says rebuilding from
// before rebuilds were jobs (a rebuild in place that a crash cut short): its half-built
// documents are replaced by a new generation.
func (en *Engine) resumeLegacy(ctx context.Context) error {
	for _, p := range en.projections {
		var sd statusDoc
		if _, err := en.raw().Get(ctx, statusCollection, p.Name(), &sd); err != nil {
			return err
		}
		if !sd.Rebuilding {
			continue
		}
		en.Logger.Warn("a rebuild in place was cut short: rebuilding it as a job", "projection", p.Name())
		if _, _, err := en.StartRebuild(ctx, p.Name()); err != nil {
			return err
		}
		if err := en.setStatus(ctx, p.Name(), func(s *statusDoc) { s.Rebuilding = false }); err != nil {
			return err
		}
	}
	return nil
}

func (en *Engine) rebuildLock(name string) *sync.Mutex {
	m, _ := en.rebuildMu.LoadOrStore(name, &sync.Mutex{})
	return m.(*sync.Mutex)
}

func (en *Engine) raw() docstore.Store { return en.gens.Raw() }

func (en *Engine) now() time.Time {
	if en.Now != nil {
		return en.Now().UTC()
	}
	return time.Now().UTC()
}

// stepRebuild does one chunk of the job and saves the checkpoint; a failure is recorded
// on the job (for the operator) and returned, and the next step retries the chunk.
func (en *Engine) stepRebuild(ctx context.Context, p Projection) (RebuildJob, error) {
	job, found, err := en.RebuildJob(ctx, p.Name())
	if err != nil || !found || !job.Active() {
		return job, err
	}
	next, err := en.chunk(ctx, p, job)
	if errors.Is(err, errStale) {
		cur, _, gerr := en.RebuildJob(ctx, p.Name())
		return cur, gerr
	}
	if err != nil {
		if ctx.Err() == nil {
			_, _ = en.saveJob(ctx, job, func(j *RebuildJob) { j.LastError = err.Error() })
		}
		return job, fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	if next.Phase == PhaseDone && job.Phase != PhaseDone && en.OnRebuilt != nil {
		en.OnRebuilt(p.Name(), next.FinishedAt.Sub(next.StartedAt))
	}
	return next, nil
}

// chunk does one unit of work of the job's phase and saves where it got to.
func (en *Engine) chunk(ctx context.Context, p Projection, job RebuildJob) (RebuildJob, error) {
	shadow := en.shadow(p, job.Generation)
	switch job.Phase {
	case PhaseQueued:
		return en.prepare(ctx, p, job)
	case PhaseReplaying, PhaseCatchingUp, PhaseSettling:
	default:
		return job, fmt.Errorf("unknown phase %q", job.Phase)
	}
	types := p.AggregateTypes()
	if job.TypeIndex >= len(types) {
		return en.endSweep(ctx, p, job)
	}
	f := eventstore.Filter{AggregateType: types[job.TypeIndex], Since: job.Since, Limit: en.rebuildChunk(), Cursor: job.Cursor}
	page, err := en.Store.Query(ctx, f)
	if err != nil {
		return job, err
	}
	seen := map[string]bool{}
	for _, e := range page.Events {
		st := eventstore.StreamOf(e)
		if seen[st.Key()] {
			continue
		}
		seen[st.Key()] = true
		if _, err := shadow.catchUp(ctx, p, st, false); err != nil {
			var ae *applyError
			if !errors.As(err, &ae) || IsTransient(err) {
				return job, err
			}
			if err := shadow.park(ctx, p, ae.event, err); err != nil {
				return job, err
			}
		}
	}
	return en.saveJob(ctx, job, func(j *RebuildJob) {
		if j.Phase == PhaseReplaying {
			j.Done += int64(len(page.Events))
			j.Total = max(j.Total, j.Done) // events appended since the count
		}
		j.Cursor = page.NextCursor
		if page.NextCursor == "" {
			j.TypeIndex++
		}
	})
}

// prepare clears what an earlier generation left (the generation before the active one,
// kept until now for readers that resolved the pointer just before the last swap; and
// any half-built copy of a job that never finished) and counts the events to replay.
func (en *Engine) prepare(ctx context.Context, p Projection, job RebuildJob) (RebuildJob, error) {
	if !job.Cleared {
		var g generationDoc
		if _, err := en.raw().Get(ctx, generationCollection, p.Name(), &g); err != nil {
			return job, err
		}
		stale := []int64{job.Generation}
		if g.Previous != g.Active && g.Previous != job.Generation {
			stale = append(stale, g.Previous)
		}
		for _, gen := range stale {
			for _, c := range ownedCollections(p) {
				if err := en.raw().DeleteCollection(ctx, genName(c, gen)); err != nil {
					return job, fmt.Errorf("clear %s: %w", genName(c, gen), err)
				}
			}
		}
		// From here on live delivery also applies to the copy (where it has been built).
		return en.saveJobWith(ctx, job, func(ctx context.Context, tx docstore.Tx, j *RebuildJob) error {
			j.Cleared, j.Total, j.TypeIndex, j.Cursor = true, 0, 0, ""
			var g generationDoc
			if _, err := tx.Get(ctx, generationCollection, p.Name(), &g); err != nil {
				return err
			}
			g.Building = j.Generation
			return tx.Put(ctx, generationCollection, p.Name(), g)
		})
	}
	// Counting, a page a step (checkpointed like the replay: a large store takes more
	// than one invocation to count on AWS).
	types := p.AggregateTypes()
	if job.TypeIndex < len(types) {
		page, err := en.Store.Query(ctx, eventstore.Filter{AggregateType: types[job.TypeIndex], Limit: eventstore.MaxPageSize, Cursor: job.Cursor})
		if err != nil {
			return job, err
		}
		return en.saveJob(ctx, job, func(j *RebuildJob) {
			j.Total += int64(len(page.Events))
			j.Cursor = page.NextCursor
			if page.NextCursor == "" {
				j.TypeIndex++
			}
		})
	}
	now := en.now()
	return en.saveJob(ctx, job, func(j *RebuildJob) {
		j.Phase, j.Done, j.TypeIndex, j.Cursor = PhaseReplaying, 0, 0, ""
		j.Since, j.SweepStart, j.ReplayFrom = time.Time{}, now, now
	})
}

// endSweep moves the job past a finished sweep: from the replay to a catch-up on what
// changed meanwhile; from the catch-up to the swap; from the settling sweep to done.
func (en *Engine) endSweep(ctx context.Context, p Projection, job RebuildJob) (RebuildJob, error) {
	now := en.now()
	restart := func(j *RebuildJob) {
		j.TypeIndex, j.Cursor, j.Since, j.SweepStart = 0, "", j.SweepStart.Add(-clockMargin), now
	}
	switch job.Phase {
	case PhaseReplaying:
		return en.saveJob(ctx, job, func(j *RebuildJob) { restart(j); j.Phase = PhaseCatchingUp; j.Done = j.Total })
	case PhaseCatchingUp:
		// The swap: the pointer moves in the transaction that checkpoints the job, so the
		// job is either before the swap or after it, whatever happens.
		return en.saveJobWith(ctx, job, func(ctx context.Context, tx docstore.Tx, j *RebuildJob) error {
			var g generationDoc
			if _, err := tx.Get(ctx, generationCollection, p.Name(), &g); err != nil {
				return err
			}
			if g.Active == j.Generation {
				return nil // already swapped (a step that crashed after the commit)
			}
			restart(j)
			j.Phase = PhaseSettling
			return tx.Put(ctx, generationCollection, p.Name(), generationDoc{Active: j.Generation, Previous: g.Active})
		})
	default: // settling
		return en.saveJobWith(ctx, job, func(ctx context.Context, tx docstore.Tx, j *RebuildJob) error {
			j.Phase, j.FinishedAt, j.Cursor = PhaseDone, now, ""
			var s statusDoc
			if _, err := tx.Get(ctx, statusCollection, p.Name(), &s); err != nil {
				return err
			}
			s.Rebuilding, s.RebuiltAt = false, now
			return tx.Put(ctx, statusCollection, p.Name(), s)
		})
	}
}

func (en *Engine) saveJob(ctx context.Context, job RebuildJob, fn func(*RebuildJob)) (RebuildJob, error) {
	return en.saveJobWith(ctx, job, func(_ context.Context, _ docstore.Tx, j *RebuildJob) error { fn(j); return nil })
}

// saveJobWith checkpoints the job, unless another stepper saved it since it was read
// (errStale: that one's checkpoint stands; the work done here was idempotent).
func (en *Engine) saveJobWith(ctx context.Context, job RebuildJob, fn func(context.Context, docstore.Tx, *RebuildJob) error) (RebuildJob, error) {
	var saved RebuildJob
	err := en.raw().Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		var cur RebuildJob
		if _, err := tx.Get(ctx, rebuildCollection, job.Projection, &cur); err != nil {
			return err
		}
		if cur.ID != job.ID || cur.Seq != job.Seq {
			return errStale
		}
		j := cur
		if err := fn(ctx, tx, &j); err != nil {
			return err
		}
		j.Seq++
		j.UpdatedAt = en.now()
		saved = j
		return tx.Put(ctx, rebuildCollection, job.Projection, j)
	})
	return saved, err
}

func (en *Engine) rebuildChunk() int {
	if en.RebuildChunk > 0 {
		return min(en.RebuildChunk, eventstore.MaxPageSize)
	}
	return 100
}

// shadow is an engine over the projection's documents in the generation being built.
func (en *Engine) shadow(p Projection, gen int64) *Engine {
	sh := newEngine(en.Store, en.gens, en.gens.pin(p, gen), en.Registry, []Projection{p})
	sh.Logger, sh.Attempts, sh.OnParked, sh.Now = en.Logger, en.Attempts, en.OnParked, en.Now
	// No sink: a dead letter of the shadow copy is not the live one's until the swap, when
	// it shows in GET /dead-letters and redrive takes it; the sink would call for a redrive
	// of a generation nobody reads yet.
	return sh
}
