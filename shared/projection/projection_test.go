package projection_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
	"github.com/ecmstore/ecmstore/shared/projection/projectiontest"
)

var bg = context.Background()

// flaky wraps the account projection and fails on chosen event ids while broken is set.
type flaky struct {
	bank.Projection
	broken atomic.Bool
	mu     sync.Mutex
	poison map[string]bool
}

func (f *flaky) Apply(ctx context.Context, tx docstore.Tx, e event.Event) error {
	f.mu.Lock()
	bad := f.poison[e.EventID]
	f.mu.Unlock()
	if bad && f.broken.Load() {
		return errors.New("cannot apply: downstream rejected it")
	}
	return f.Projection.Apply(ctx, tx, e)
}

type sink struct {
	mu   sync.Mutex
	sent []projection.DeadLetter
}

func (s *sink) Send(_ context.Context, d projection.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, d)
	return nil
}

type fixture struct {
	store  *memstore.Store
	docs   *memstore.Docs
	proj   *flaky
	engine *projection.Engine
	runner *projection.Runner
	sink   *sink
}

func newFixture(t *testing.T) *fixture {
	reg := event.NewRegistry()
	bank.Register(reg)
	f := &fixture{store: memstore.New(), docs: memstore.NewDocs(), proj: &flaky{poison: map[string]bool{}}, sink: &sink{}}
	f.engine = projection.NewEngine(f.store, f.docs, reg, f.proj)
	f.engine.Sink = f.sink
	f.engine.Attempts = 2
	f.runner = projection.NewRunner(f.engine, f.store)
	return f
}

func (f *fixture) append(t *testing.T, id string, expected int64, evs ...event.Event) []event.Event {
	t.Helper()
	out, err := f.store.Append(bg, eventstore.Stream{Type: bank.AggregateType, ID: id}, expected, evs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) account(t *testing.T, id string) bank.Account {
	t.Helper()
	var a bank.Account
	if _, err := f.engine.Docs.Get(bg, bank.AccountsCollection, id, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func opened(n int) event.Event {
	return event.MustNew(bank.AccountOpened, map[string]int{"initialDeposit": n})
}
func deposit(n int) event.Event {
	return event.MustNew(bank.MoneyDeposited, map[string]int{"amount": n})
}

func TestDuplicatesAndReplaysChangeNothing(t *testing.T) {
	f := newFixture(t)
	evs := f.append(t, "a", 0, opened(10), deposit(5))
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	before := f.account(t, "a")
	for _, e := range evs {
		o, err := f.engine.Deliver(bg, f.proj, e)
		if err != nil || o != projection.Duplicate {
			t.Fatalf("redelivery of v%d: %v, %v; want duplicate", e.Version, o, err)
		}
	}
	if after := f.account(t, "a"); !reflect.DeepEqual(before, after) {
		t.Fatalf("redelivery changed the read model: %+v → %+v", before, after)
	}
	if before.Balance.String() != "15" || before.Version != 2 {
		t.Fatalf("read model %+v", before)
	}
}

func TestOutOfOrderDeliveryFillsTheGap(t *testing.T) {
	f := newFixture(t)
	evs := f.append(t, "a", 0, opened(10), deposit(5), deposit(1))
	o, err := f.engine.Deliver(bg, f.proj, evs[2])
	if err != nil || o != projection.Gap {
		t.Fatalf("v3 first: %v, %v; want gap", o, err)
	}
	if a := f.account(t, "a"); a.Version != 3 || a.Balance.String() != "16" {
		t.Fatalf("after the gap was filled: %+v", a)
	}
	if o, _ := f.engine.Deliver(bg, f.proj, evs[0]); o != projection.Duplicate {
		t.Fatalf("late v1: %v, want duplicate", o)
	}
}

// A poison event parks its aggregate (later events wait), other aggregates flow, redrive
// after the fix levels the read model, and a second redrive changes nothing.
func TestParkWaitBehindAndRedrive(t *testing.T) {
	f := newFixture(t)
	f.proj.broken.Store(true)
	f.append(t, "good", 0, opened(1))
	bad := f.append(t, "bad", 0, opened(100), deposit(1))
	f.proj.poison[bad[1].EventID] = true
	f.append(t, "bad", 2, deposit(2))
	f.append(t, "good", 1, deposit(7))
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	if g := f.account(t, "good"); g.Balance.String() != "8" {
		t.Fatalf("other aggregate blocked: %+v", g)
	}
	if b := f.account(t, "bad"); b.Version != 1 {
		t.Fatalf("parked aggregate moved past the poison event: %+v", b)
	}
	dls, err := f.engine.DeadLetters(bg)
	if err != nil || len(dls) != 1 || dls[0].Version != 2 || dls[0].EventID != bad[1].EventID || dls[0].Error == "" {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	if len(f.sink.sent) != 1 || f.sink.sent[0].Event.EventID != bad[1].EventID {
		t.Fatalf("sink got %+v", f.sink.sent)
	}
	st, _ := f.engine.Statuses(bg, nil)
	if st[0].Parked != 1 || st[0].Status != "blocked" {
		t.Fatalf("status %+v", st[0])
	}
	// Redrive while still broken: stays parked, error kept.
	res, err := f.engine.Redrive(bg)
	if err != nil || res.Redriven != 0 || len(res.Remaining) != 1 {
		t.Fatalf("redrive while broken: %+v, %v", res, err)
	}
	f.proj.broken.Store(false)
	res, err = f.engine.Redrive(bg)
	if err != nil || res.Redriven != 1 || len(res.Remaining) != 0 {
		t.Fatalf("redrive after fix: %+v, %v", res, err)
	}
	b := f.account(t, "bad")
	if b.Version != 3 || b.Balance.String() != "103" {
		t.Fatalf("after redrive: %+v", b)
	}
	res, err = f.engine.Redrive(bg)
	if err != nil || res.Redriven != 0 {
		t.Fatalf("second redrive: %+v, %v", res, err)
	}
	if again := f.account(t, "bad"); !reflect.DeepEqual(again, b) {
		t.Fatalf("second redrive changed the read model")
	}
}

func TestUnknownEventTypeIsParked(t *testing.T) {
	f := newFixture(t)
	f.append(t, "x", 0, opened(1), event.MustNew("SomethingNew", map[string]int{}))
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	dls, _ := f.engine.DeadLetters(bg)
	if len(dls) != 1 || dls[0].EventType != "SomethingNew" || !json.Valid(dls[0].Event.Payload) {
		t.Fatalf("dead letters %+v", dls)
	}
}

func TestRebuildEqualsLive(t *testing.T) {
	f := newFixture(t)
	for i, id := range []string{"a", "b", "c"} {
		f.append(t, id, 0, opened(i))
		for j := range 4 {
			f.append(t, id, int64(j+1), deposit(j+i))
		}
	}
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	live := map[string]bank.Account{}
	for _, id := range []string{"a", "b", "c"} {
		live[id] = f.account(t, id)
	}
	if err := f.engine.Rebuild(bg, "accounts"); err != nil {
		t.Fatal(err)
	}
	for id, want := range live {
		if got := f.account(t, id); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s rebuilt as %+v, live was %+v", id, got, want)
		}
	}
	if err := f.engine.Rebuild(bg, "nope"); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("unknown projection: %v", err)
	}
}

// The runner and concurrent writers: every account ends equal to its replay.
func TestRunnerUnderConcurrentWrites(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { f.runner.Run(ctx); close(done) }()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + w))
			f.append(t, id, 0, opened(0))
			for i := range 30 {
				f.append(t, id, int64(i+1), deposit(1))
				f.runner.Wake()
			}
		}()
	}
	wg.Wait()
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	for w := range 4 {
		if a := f.account(t, string(rune('a'+w))); a.Version != 31 || a.Balance.String() != "30" {
			t.Fatalf("account %c: %+v", 'a'+w, a)
		}
	}
}

// A rebuild cut at random points (many seeds) and resumed by the next process: readers
// never see a half-built model, and the end equals a fresh replay.
func TestRebuildCutAtRandomPointsInMemory(t *testing.T) {
	projectiontest.RunRebuildCuts(t, projectiontest.Env{Store: memstore.New(), Docs: memstore.NewDocs(), Seeds: 20})
}

// A store left by a rebuild in place that a crash cut short (before rebuilds were jobs):
// its status says rebuilding and its read model is half built. The next runner starts a
// job for it, and the read model ends equal to a replay.
func TestRebuildInPlaceCutShortIsRebuiltAsAJob(t *testing.T) {
	f := newFixture(t)
	for i, id := range []string{"a", "b"} {
		f.append(t, id, 0, opened(10*i))
		f.append(t, id, 1, deposit(5))
	}
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	want := map[string]bank.Account{"a": f.account(t, "a"), "b": f.account(t, "b")}
	// What the old rebuild left: b's document cleared, not replayed yet, status rebuilding.
	if err := f.docs.Update(bg, func(ctx context.Context, tx docstore.Tx) error {
		if err := tx.Delete(ctx, bank.AccountsCollection, "b"); err != nil {
			return err
		}
		return tx.Put(ctx, "_projections", "accounts", map[string]any{"rebuilding": true, "checkpoint": 4})
	}); err != nil {
		t.Fatal(err)
	}
	next := projection.NewRunner(projection.NewEngine(f.store, f.docs, f.engine.Registry, f.proj), f.store)
	for range 100 {
		if moved, err := next.Step(bg); err != nil {
			t.Fatal(err)
		} else if !moved {
			break
		}
	}
	for id, w := range want {
		if got := f.account(t, id); !reflect.DeepEqual(got, w) {
			t.Fatalf("%s after the job: %+v, want %+v", id, got, w)
		}
	}
	st, err := next.Engine.Statuses(bg, nil)
	if err != nil || len(st) != 1 || st[0].Status != "running" || st[0].Rebuild == nil || st[0].Rebuild.Phase != projection.PhaseDone {
		t.Fatalf("status %+v (%v)", st, err)
	}
}

// Two processes stepping one rebuild job at once (a duplicate queue message on AWS, two
// local servers on one database): each checkpoint is written only by the stepper that
// read the one before, the work is idempotent, and the end equals what live delivery built.
func TestRebuildSteppedByTwoProcessesAtOnce(t *testing.T) {
	f := newFixture(t)
	for i, id := range []string{"a", "b", "c", "d"} {
		f.append(t, id, 0, opened(i))
		for j := range 5 {
			f.append(t, id, int64(j+1), deposit(j))
		}
	}
	if err := f.runner.CatchUpAll(bg); err != nil {
		t.Fatal(err)
	}
	want := map[string]bank.Account{}
	for _, id := range []string{"a", "b", "c", "d"} {
		want[id] = f.account(t, id)
	}
	if _, _, err := f.engine.StartRebuild(bg, "accounts"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		en := projection.NewEngine(f.store, f.docs, f.engine.Registry, f.proj)
		en.RebuildChunk = 1
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = en.RunRebuild(bg, "accounts") }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	job, _, err := f.engine.RebuildJob(bg, "accounts")
	if err != nil || job.Phase != projection.PhaseDone || job.Done != job.Total || job.Total != 24 {
		t.Fatalf("job %+v (%v)", job, err)
	}
	for id, w := range want {
		if got := f.account(t, id); !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: %+v, want %+v", id, got, w)
		}
	}
}
