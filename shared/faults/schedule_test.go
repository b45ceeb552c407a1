package faults_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/faults"
)

func only(k faults.Kind) faults.Rates {
	var r faults.Rates
	switch k {
	case faults.ErrorBefore:
		r.ErrorBefore = 1
	case faults.LostResponse:
		r.LostResponse = 1
	case faults.Throttle:
		r.Throttle = 1
	case faults.Timeout:
		r.Timeout = 1
	case faults.Crash:
		r.Crash = 1
	}
	return r
}

// The same seed gives the same faults for the same sequence of operations; another seed
// gives others.
func TestScheduleIsReproducible(t *testing.T) {
	run := func(seed uint64) []faults.Decision {
		p := faults.NewProcess(faults.NewSchedule(seed, faults.DefaultFaults()), 1)
		p.Schedule.SetEnabled(true)
		for i := range 2000 {
			if p.Crashed() {
				p = faults.NewProcess(p.Schedule, p.ID+1)
			}
			_ = p.Do(context.Background(), fmt.Sprintf("op%d", i%7), func(context.Context) error { return nil })
		}
		return p.Schedule.Decisions()
	}
	a, b, c := run(42), run(42), run(43)
	if len(a) == 0 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("seed 42 twice: %d and %d decisions, equal=%v", len(a), len(b), fmt.Sprint(a) == fmt.Sprint(b))
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("seeds 42 and 43 injected the same faults")
	}
}

// Each kind does what it says to the operation and to the error the caller sees.
func TestFaultKinds(t *testing.T) {
	tests := []struct {
		kind      faults.Kind
		performed func(bool) bool
		is        error
		crashed   bool
	}{
		{faults.ErrorBefore, func(p bool) bool { return !p }, faults.ErrInjected, false},
		{faults.LostResponse, func(p bool) bool { return p }, faults.ErrInjected, false},
		{faults.Throttle, func(p bool) bool { return !p }, eventstore.ErrThrottled, false},
		{faults.Timeout, func(bool) bool { return true }, context.DeadlineExceeded, false},
		{faults.Crash, func(bool) bool { return true }, faults.ErrCrashed, true},
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := faults.NewSchedule(7, faults.Config{Ops: map[string]faults.Rates{"op": only(tc.kind)}})
			p := faults.NewProcess(s, 1)
			performed := false
			err := p.Do(context.Background(), "op", func(context.Context) error { performed = true; return nil })
			if !errors.Is(err, tc.is) || !tc.performed(performed) {
				t.Fatalf("err %v (want %v), performed %v", err, tc.is, performed)
			}
			if tc.kind == faults.Throttle {
				var te *eventstore.ThrottledError
				if !errors.As(err, &te) || te.RetryAfter <= 0 {
					t.Fatalf("throttle is not the store's typed error: %#v", err)
				}
			}
			if got := s.Counts()[tc.kind]; got != 1 {
				t.Fatalf("counted %d %s faults", got, tc.kind)
			}
			// After a crash nothing goes through, faults on or off, until a new process.
			s.SetEnabled(false)
			performed = false
			err = p.Do(context.Background(), "other", func(context.Context) error { performed = true; return nil })
			if tc.crashed != errors.Is(err, faults.ErrCrashed) || performed == tc.crashed {
				t.Fatalf("after %s: err %v, performed %v", tc.kind, err, performed)
			}
			if tc.crashed {
				cs := s.Crashes()
				if len(cs) != 1 || cs[0].Op != "op" || cs[0].N != 1 {
					t.Fatalf("crash points %v", cs)
				}
				if err := faults.NewProcess(s, 2).Do(context.Background(), "op", func(context.Context) error { return nil }); err != nil {
					t.Fatalf("restarted process: %v", err)
				}
			}
		})
	}
}

// The store and document-store wrappers: a lost response has written, an error before
// has not, and the caller sees an error either way.
func TestWrappers(t *testing.T) {
	ctx := context.Background()
	st := eventstore.Stream{Type: "T", ID: "x"}
	for _, k := range []faults.Kind{faults.ErrorBefore, faults.LostResponse} {
		t.Run(k.String(), func(t *testing.T) {
			raw, rawDocs := memstore.New(), memstore.NewDocs()
			p := faults.NewProcess(faults.NewSchedule(1, faults.Config{Ops: map[string]faults.Rates{
				"events.Append": only(k), "docs.Update": only(k)}}), 1)
			b, d := faults.Backend(raw, p), faults.Docs(rawDocs, p)
			if _, ok := b.(eventstore.Feed); !ok {
				t.Fatal("wrapped memory store lost its feed")
			}
			if _, err := b.Append(ctx, st, eventstore.NoStream, []event.Event{event.MustNew("E", map[string]int{})}); !errors.Is(err, faults.ErrInjected) {
				t.Fatalf("append: %v", err)
			}
			err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, "c", "k", 1) })
			if !errors.Is(err, faults.ErrInjected) {
				t.Fatalf("update: %v", err)
			}
			evs, _ := raw.Load(ctx, st, eventstore.Range{})
			var v int
			found, _ := rawDocs.Get(ctx, "c", "k", &v)
			if want := k == faults.LostResponse; (len(evs) == 1) != want || found != want {
				t.Fatalf("%s: %d events stored, document found %v", k, len(evs), found)
			}
		})
	}
}

// At the wire: the SDK middleware makes a DynamoDB write fail before it is sent, or
// after DynamoDB applied it, and a crashed process's client sends nothing more.
func TestDynamoDBWireFaults(t *testing.T) {
	ctx := context.Background()
	ddb, q := emulator.DynamoDB(t), emulator.SQS(t)
	names := infra.Names{EventsTable: "wire-events", ReadModelTable: "wire-models", DLQ: "wire-dlq", DLQArchive: "wire-dlq-archive", SagaDLQ: "wire-sdlq", SagaDLQArchive: "wire-sdlq-archive"}
	if _, err := infra.Ensure(ctx, emulator.DynamoDBClient(ddb), emulator.SQSClient(q), names); err != nil {
		t.Fatal(err)
	}
	clean := dynamostore.NewDocs(emulator.DynamoDBClient(ddb), names.ReadModelTable)
	writes := func(k faults.Kind) faults.Config {
		return faults.Config{Ops: map[string]faults.Rates{"dynamodb.PutItem": only(k), "dynamodb.TransactWriteItems": only(k),
			"dynamodb.UpdateItem": only(k)}}
	}
	for i, k := range []faults.Kind{faults.ErrorBefore, faults.LostResponse, faults.Crash} {
		t.Run(k.String(), func(t *testing.T) {
			s := faults.NewSchedule(uint64(i), writes(k))
			p := faults.NewProcess(s, 1)
			d := dynamostore.NewDocs(emulator.DynamoDBClient(ddb, faults.DynamoDBOptions(p)), names.ReadModelTable)
			key := "k-" + k.String()
			err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, "c", key, 1) })
			if err == nil {
				t.Fatal("write succeeded through a fault")
			}
			if n := s.Counts()[k]; n == 0 {
				t.Fatalf("no %s injected: %v", k, err)
			}
			var v int
			found, gerr := clean.Get(ctx, "c", key, &v)
			if gerr != nil {
				t.Fatal(gerr)
			}
			performed := k == faults.LostResponse || (k == faults.Crash && s.Crashes()[0].Performed)
			if found != performed {
				t.Fatalf("%s: document stored=%v, want %v (err %v)", k, found, performed, err)
			}
			if k == faults.Crash {
				s.SetEnabled(false)
				if _, err := d.Get(ctx, "c", key, &v); !errors.Is(err, faults.ErrCrashed) {
					t.Fatalf("read after the crash: %v", err)
				}
			}
		})
	}
}
