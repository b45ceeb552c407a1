// Package projectiontest checks a backend's rebuilds: a rebuild cut short at random points
// and resumed by the next process never shows readers a half-built read model, and ends
// equal to a fresh replay.
package projectiontest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// Env is the backend under test.
type Env struct {
	Store eventstore.Store
	Docs  docstore.Store // the raw document store
	// Index, when set, makes appended events visible to Query (DynamoDB's index, which
	// the projector fills on AWS).
	Index func(context.Context, []event.Event) error
	Seeds int
	// Accounts and Events per seed (defaults 5 and up to 8).
	Accounts, Events int
}

// errCut is what a process that died mid-rebuild would have returned.
var errCut = errors.New("process died")

// cutter is the document store of a process that dies after n operations: every later
// operation fails, or the process's context is cancelled (chosen per cut).
type cutter struct {
	docstore.Store
	n      atomic.Int64
	cancel context.CancelFunc // nil: fail with errCut
}

func (c *cutter) dead() error {
	if c.n.Add(-1) >= 0 {
		return nil
	}
	if c.cancel != nil {
		c.cancel()
		return context.Canceled
	}
	return errCut
}

func (c *cutter) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	if err := c.dead(); err != nil {
		return err
	}
	return c.Store.Update(ctx, fn)
}

func (c *cutter) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	if err := c.dead(); err != nil {
		return false, err
	}
	return c.Store.Get(ctx, coll, key, dst)
}

func (c *cutter) DeleteCollection(ctx context.Context, coll string) error {
	if err := c.dead(); err != nil {
		return err
	}
	return c.Store.DeleteCollection(ctx, coll)
}

// RunRebuildCuts rebuilds the accounts projection again and again, each time cutting the
// rebuilding process short after a seeded random number of document-store operations
// (an error, or its context cancelled) and resuming with a new process, while live events
// are appended and delivered and readers read every account. Readers must always find
// every account, at a version no older than what live delivery had applied, and equal
// to the replay of its events up to that version (a half-built model would show an
// account missing or behind); at the end every account equals a fresh replay.
func RunRebuildCuts(t *testing.T, env Env) {
	ctx := context.Background()
	reg := event.NewRegistry()
	bank.Register(reg)
	proj := bank.Projection{}
	live := projection.NewEngine(env.Store, env.Docs, reg, proj)
	readers := live.Docs
	if env.Accounts == 0 {
		env.Accounts = 5
	}
	if env.Events == 0 {
		env.Events = 8
	}
	run := fmt.Sprint(time.Now().UnixNano())
	var streams []eventstore.Stream
	applied := map[string]int64{} // what live delivery has applied, per account

	deliver := func(st eventstore.Stream, evs ...event.Event) {
		t.Helper()
		out, err := env.Store.Append(ctx, st, eventstore.Any, evs)
		if err != nil {
			t.Fatal(err)
		}
		if env.Index != nil {
			if err := env.Index(ctx, out); err != nil {
				t.Fatal(err)
			}
		}
		if err := live.CatchUpStream(ctx, st); err != nil {
			t.Fatal(err)
		}
		applied[st.ID] = out[len(out)-1].Version
	}
	read := func(when string) {
		t.Helper()
		for _, st := range streams {
			var v bank.View
			ok, err := readers.Get(ctx, bank.AccountsCollection, st.ID, &v)
			if err != nil {
				t.Fatal(err)
			}
			if !ok || v.Version < applied[st.ID] {
				t.Fatalf("%s: account %s read at version %d (found %v), live delivery had applied %d: a half-built model",
					when, st.ID, v.Version, ok, applied[st.ID])
			}
			evs, err := env.Store.Load(ctx, st, eventstore.Range{To: v.Version})
			if err != nil {
				t.Fatal(err)
			}
			want := bank.Account{ID: st.ID}
			for _, e := range evs {
				if want, err = bank.Evolve(want, e); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(v.Account, want) {
				t.Fatalf("%s: account %s read as %+v, its replay to v%d is %+v", when, st.ID, v.Account, v.Version, want)
			}
		}
	}

	for seed := range env.Seeds {
		rnd := rand.New(rand.NewPCG(uint64(seed), 11))
		for i := range env.Accounts {
			st := eventstore.Stream{Type: bank.AggregateType, ID: fmt.Sprintf("cut-%s-%d-%d", run, seed, i)}
			streams = append(streams, st)
			evs := []event.Event{event.MustNew(bank.AccountOpened, map[string]int{"initialDeposit": rnd.IntN(100)})}
			for range 1 + rnd.IntN(env.Events) {
				evs = append(evs, event.MustNew(bank.MoneyDeposited, map[string]int{"amount": 1 + rnd.IntN(50)}))
			}
			deliver(st, evs...)
		}
		read("before the rebuild")
		first, _, err := live.StartRebuild(ctx, proj.Name())
		if err != nil {
			t.Fatal(err)
		}
		cuts := 0
		for {
			// Meanwhile: live events, delivered to the active model, and readers.
			for range rnd.IntN(3) {
				st := streams[rnd.IntN(len(streams))]
				deliver(st, event.MustNew(bank.MoneyDeposited, map[string]int{"amount": 1 + rnd.IntN(9)}))
			}
			read(fmt.Sprintf("seed %d, after %d cuts", seed, cuts))
			pctx, cancel := context.WithCancel(ctx)
			c := &cutter{Store: env.Docs}
			// Anywhere in a whole rebuild's work: a few operations a stream, so most processes die before the end.
			c.n.Store(int64(1 + rnd.IntN(8*len(streams))))
			if rnd.IntN(2) == 0 {
				c.cancel = cancel
			}
			dying := projection.NewEngine(env.Store, c, reg, proj)
			dying.RebuildChunk = 1 + rnd.IntN(4)
			job, err := dying.RunRebuild(pctx, proj.Name())
			cancel()
			if err == nil && !job.Active() {
				break
			}
			if !errors.Is(err, errCut) && !errors.Is(err, context.Canceled) {
				t.Fatalf("seed %d: rebuild failed other than by the cut: %v", seed, err)
			}
			if cuts++; cuts > 2000 {
				t.Fatalf("seed %d: the rebuild never finished (job %+v)", seed, job)
			}
		}
		read(fmt.Sprintf("seed %d, after the rebuild", seed))
		job, _, err := live.RebuildJob(ctx, proj.Name())
		if err != nil || job.ID != first.ID || job.Phase != projection.PhaseDone || job.Generation != first.Generation {
			t.Fatalf("seed %d: job %+v (%v), want %s done, generation %d", seed, job, err, first.ID, first.Generation)
		}
		t.Logf("seed %d: rebuilt generation %d through %d cuts", seed, job.Generation, cuts)

		// The end equals a fresh replay.
		fresh := projection.NewEngine(env.Store, memstore.NewDocs(), reg, proj)
		for _, st := range streams {
			if err := fresh.CatchUpStream(ctx, st); err != nil {
				t.Fatal(err)
			}
			var got, want json.RawMessage
			if _, err := readers.Get(ctx, bank.AccountsCollection, st.ID, &got); err != nil {
				t.Fatal(err)
			}
			if _, err := fresh.Docs.Get(ctx, bank.AccountsCollection, st.ID, &want); err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(got, want) {
				t.Fatalf("seed %d: %s rebuilt as %s, a replay gives %s", seed, st.ID, got, want)
			}
		}
		dls, err := live.DeadLetters(ctx)
		if err != nil || len(dls) != 0 {
			t.Fatalf("seed %d: dead letters %v (%v)", seed, dls, err)
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
