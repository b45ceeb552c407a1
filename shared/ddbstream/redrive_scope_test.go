package ddbstream

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/projection"
)

// countingDocs counts transactions: a message found done must write nothing.
type countingDocs struct {
	*memstore.Docs
	updates atomic.Int64
}

func (d *countingDocs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	d.updates.Add(1)
	return d.Docs.Update(ctx, fn)
}

// failingSaga is a reactor that rejects every event while broken.
type failingSaga struct{ broken atomic.Bool }

func (*failingSaga) Name() string             { return "test-saga" }
func (*failingSaga) AggregateTypes() []string { return []string{bank.AggregateType} }
func (*failingSaga) Collections() []string    { return nil }
func (*failingSaga) Apply(context.Context, docstore.Tx, event.Event) error {
	return nil
}
func (s *failingSaga) React(context.Context, event.Event) error {
	if s.broken.Load() {
		return errors.New("payment service down")
	}
	return nil
}

func parkedMessage(t *testing.T, d projection.DeadLetter) events.SQSMessage {
	t.Helper()
	body, err := json.Marshal(Message{Kind: "parked", DeadLetter: &d})
	if err != nil {
		t.Fatal(err)
	}
	return events.SQSMessage{MessageId: d.Projection + "/" + d.AggregateID, Body: string(body)}
}

// Each redrive runs the projections of its own queue only, and a message whose dead
// letter is no longer parked (redriven through the API) is done without any write.
func TestRedriverScopeAndRedrivenMessages(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	docs := &countingDocs{Docs: memstore.NewDocs()}
	reg := event.NewRegistry()
	bank.Register(reg)
	saga := &failingSaga{}
	saga.broken.Store(true)
	sink := &recordingSink{}
	all := projection.NewEngine(store, docs, reg, bank.Projection{}, saga)
	all.Attempts, all.Sink = 1, sink
	evs, err := store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "acc-s"}, 0,
		[]event.Event{event.MustNew(bank.AccountOpened, map[string]int{"initialDeposit": 3})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := all.Handle(ctx, evs[0]); err != nil {
		t.Fatal(err)
	}
	if len(sink.sent) != 1 || sink.sent[0].Projection != "test-saga" || !sink.sent[0].Reactor {
		t.Fatalf("sent %+v, want the saga's dead letter marked as a reactor's", sink.sent)
	}
	sqsSink := &SQSSink{QueueURL: "read-models", SagaQueueURL: "sagas"}
	if q := sqsSink.queueFor(sink.sent[0]); q != "sagas" {
		t.Fatalf("a saga's dead letter goes to %q", q)
	}
	if q := sqsSink.queueFor(projection.DeadLetter{Projection: "accounts"}); q != "read-models" {
		t.Fatalf("a read model's dead letter goes to %q", q)
	}
	sagaMsg := parkedMessage(t, sink.sent[0])
	readModelMsg := parkedMessage(t, projection.DeadLetter{Projection: "accounts", AggregateType: bank.AggregateType, AggregateID: "acc-s", Version: 1})

	readModels := &Redriver{Engine: all.Subset(func(p projection.Projection) bool { return !projection.IsReactor(p) })}
	sagas := &Redriver{Engine: all.Subset(projection.IsReactor)}
	for _, tc := range []struct {
		name   string
		r      *Redriver
		fix    bool
		msg    events.SQSMessage
		failed bool
		writes bool
		parked bool // the saga's dead letter afterwards
	}{
		{"the read models' redrive refuses a saga's dead letter", readModels, false, sagaMsg, true, false, true},
		{"the saga's redrive refuses a read model's dead letter", sagas, false, readModelMsg, true, false, true},
		{"the saga's redrive keeps a dead letter that still fails", sagas, false, sagaMsg, true, true, true},
		{"the saga's redrive redrives it once fixed", sagas, true, sagaMsg, false, true, false},
		{"a message whose dead letter is already redriven is done, with no write", sagas, true, sagaMsg, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saga.broken.Store(!tc.fix)
			before := docs.updates.Load()
			res, err := tc.r.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{tc.msg}})
			if err != nil {
				t.Fatal(err)
			}
			if failed := len(res.BatchItemFailures) == 1; failed != tc.failed {
				t.Fatalf("batch item failures %+v, want failed=%v", res.BatchItemFailures, tc.failed)
			}
			if wrote := docs.updates.Load() > before; wrote != tc.writes {
				t.Fatalf("wrote=%v, want %v", wrote, tc.writes)
			}
			parked, err := all.IsParked(ctx, "test-saga", eventstore.StreamOf(evs[0]))
			if err != nil || parked != tc.parked {
				t.Fatalf("saga's dead letter parked=%v (%v), want %v", parked, err, tc.parked)
			}
		})
	}
}
