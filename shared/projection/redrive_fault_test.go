package projection_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

var errInjected = errors.New("injected fault")

// faultDocs wraps the document store and injects one failure around the point where a
// redrive deletes a dead letter.
type faultDocs struct {
	*memstore.Docs
	mu sync.Mutex
	// abortUnpark fails the transaction that deletes a dead letter, after the delete.
	abortUnpark bool
	// failAfterUnpark fails the next document-store call after that transaction commits.
	failAfterUnpark bool
	// onUnpark runs inside the deleting transaction (appends an event "meanwhile").
	onUnpark func()
	// parkedLater makes a transaction read the dead letter as another process had
	// just moved it on to a later event.
	parkedLater int64
	armed       bool // the next call fails
	fired       bool
}

func (d *faultDocs) trip() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.armed {
		d.armed, d.fired = false, true
		return errInjected
	}
	return nil
}

func (d *faultDocs) Get(ctx context.Context, c, k string, dst any) (bool, error) {
	if err := d.trip(); err != nil {
		return false, err
	}
	return d.Docs.Get(ctx, c, k, dst)
}

func (d *faultDocs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	if err := d.trip(); err != nil {
		return err
	}
	unparked := false
	err := d.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		unparked = false
		d.mu.Lock()
		later := d.parkedLater
		d.mu.Unlock()
		if later > 0 {
			d.mu.Lock()
			d.fired = true
			d.mu.Unlock()
		}
		if err := fn(ctx, &faultTx{Tx: tx, deleted: &unparked, parkedLater: later}); err != nil {
			return err
		}
		if unparked {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.onUnpark != nil {
				d.onUnpark()
				d.onUnpark = nil
			}
			if d.abortUnpark {
				d.abortUnpark, d.fired = false, true
				return errInjected // after the delete, before the commit
			}
		}
		return nil
	})
	if err == nil && unparked {
		d.mu.Lock()
		if d.failAfterUnpark {
			d.failAfterUnpark, d.armed = false, true
		}
		d.mu.Unlock()
	}
	return err
}

type faultTx struct {
	docstore.Tx
	deleted     *bool
	parkedLater int64
}

func (t *faultTx) Get(ctx context.Context, c, k string, dst any) (bool, error) {
	ok, err := t.Tx.Get(ctx, c, k, dst)
	if dl, isDL := dst.(*projection.DeadLetter); ok && isDL && t.parkedLater > 0 {
		dl.Version = t.parkedLater
	}
	return ok, err
}

func (t *faultTx) Delete(ctx context.Context, c, k string) error {
	if strings.HasPrefix(c, "_parked:") {
		*t.deleted = true
	}
	return t.Tx.Delete(ctx, c, k)
}

// A redrive that fails anywhere from the dead letter's deletion on never loses it: the
// dead letter is still listed (or the failing later event is), and a clean redrive then
// levels the read model.
func TestRedriveNeverLosesADeadLetter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*faultDocs, *fixture)
		// wantVersion is the parked version after the failed redrive.
		wantVersion int64
		balance     string
	}{
		{"the unparking transaction fails after its delete", func(d *faultDocs, _ *fixture) { d.abortUnpark = true }, 2, "103"},
		{"the catch-up after the unpark fails", func(d *faultDocs, _ *fixture) { d.failAfterUnpark = true }, 2, "103"},
		{"an event appended meanwhile fails in the catch-up", func(d *faultDocs, f *fixture) {
			d.onUnpark = func() {
				evs := f.append(t, "bad", 3, deposit(5))
				f.proj.mu.Lock()
				f.proj.poison[evs[0].EventID] = true
				f.proj.mu.Unlock()
			}
		}, 4, "108"},
		{"another process parked a later event meanwhile", func(d *faultDocs, _ *fixture) { d.parkedLater = 99 }, 2, "103"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			docs := &faultDocs{Docs: f.docs}
			reg := event.NewRegistry()
			bank.Register(reg)
			f.engine = projection.NewEngine(f.store, docs, reg, f.proj)
			f.engine.Sink, f.engine.Attempts = f.sink, 1
			f.runner = projection.NewRunner(f.engine, f.store)

			f.proj.broken.Store(true)
			bad := f.append(t, "bad", 0, opened(100), deposit(1))
			f.proj.poison[bad[1].EventID] = true
			f.append(t, "bad", 2, deposit(2))
			if err := f.runner.CatchUpAll(bg); err != nil {
				t.Fatal(err)
			}
			if dls, _ := f.engine.DeadLetters(bg); len(dls) != 1 {
				t.Fatalf("dead letters before the redrive: %+v", dls)
			}
			// Fixed for the parked event; a poisoned event appended meanwhile still fails.
			f.proj.mu.Lock()
			delete(f.proj.poison, bad[1].EventID)
			f.proj.mu.Unlock()
			tc.fault(docs, f)

			ok, err := f.engine.RedriveOne(bg, "accounts", eventstore.StreamOf(bad[0]))
			if ok {
				t.Fatalf("redrive reported success despite the fault (err %v)", err)
			}
			if !docs.fired && tc.wantVersion == 2 {
				t.Fatal("the fault was never injected")
			}
			dls, lerr := f.engine.DeadLetters(bg)
			if lerr != nil || len(dls) != 1 || dls[0].AggregateID != "bad" || dls[0].Version != tc.wantVersion {
				t.Fatalf("dead letters after the failed redrive: %+v, %v (redrive err %v)", dls, lerr, err)
			}

			docs.mu.Lock()
			docs.parkedLater = 0
			docs.mu.Unlock()
			f.proj.broken.Store(false)
			res, err := f.engine.Redrive(bg)
			if err != nil || res.Redriven != 1 || len(res.Remaining) != 0 {
				t.Fatalf("clean redrive: %+v, %v", res, err)
			}
			if a := f.account(t, "bad"); a.Balance.String() != tc.balance {
				t.Fatalf("after the clean redrive: %+v", a)
			}
		})
	}
}

// A redrive racing live delivery of the same aggregate loses nothing: events delivered
// while it was still parked are skipped by delivery and taken by the redrive's catch-up,
// so in the end the read model holds every event and nothing is parked.
func TestRedriveRacesLiveDelivery(t *testing.T) {
	for round := range 20 {
		f := newFixture(t)
		f.engine.Attempts = 1
		f.proj.broken.Store(true)
		bad := f.append(t, "race", 0, opened(100), deposit(1))
		f.proj.poison[bad[1].EventID] = true
		if err := f.runner.CatchUpAll(bg); err != nil {
			t.Fatal(err)
		}
		f.proj.broken.Store(false)
		const live = 10
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range live {
				evs, err := f.store.Append(bg, eventstore.StreamOf(bad[0]), int64(2+i), []event.Event{deposit(1)})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := f.engine.Deliver(bg, f.proj, evs[0]); err != nil {
					t.Error(err)
				}
			}
		}()
		var ok bool
		var rerr error
		go func() {
			defer wg.Done()
			ok, rerr = f.engine.RedriveOne(bg, "accounts", eventstore.StreamOf(bad[0]))
		}()
		wg.Wait()
		if rerr != nil || !ok {
			t.Fatalf("round %d: redrive %v, %v", round, ok, rerr)
		}
		if dls, _ := f.engine.DeadLetters(bg); len(dls) != 0 {
			t.Fatalf("round %d: still parked %+v", round, dls)
		}
		if a := f.account(t, "race"); a.Version != 2+live || a.Balance.String() != "111" {
			t.Fatalf("round %d: read model %+v, want every event applied", round, a)
		}
	}
}
