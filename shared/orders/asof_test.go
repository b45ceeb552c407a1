package orders_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
)

// As-of reads of orders start from the newest snapshot at or before the instant (not a
// replay of the whole stream); at every instant, before, at and between the events, the
// result must equal a fold of the events up to then, with snapshots present and after
// deleting them all.
func TestOrderAsOfFromSnapshotsEqualsReplay(t *testing.T) {
	items := []orders.Item{{ProductID: "p1", Quantity: 2, Price: money.Amount(2999)}, {ProductID: "p2", Quantity: 3, Price: money.Amount(10)}}
	lifecycles := map[string][]aggregate.Command[orders.Order]{
		"shipped":   {orders.Place("c", "acc", items), orders.MarkPaid(6028), orders.Confirm(), orders.Ship()},
		"cancelled": {orders.Place("c", "acc", items), orders.MarkPaid(6028), orders.Cancel(orders.ReasonOutOfStock, true)},
		"declined":  {orders.Place("c", "acc", items), orders.Cancel(orders.ReasonPaymentDeclined, false)},
	}
	for _, tc := range []struct {
		name      string
		lifecycle string
		every     int
		keep      int
	}{
		{"shipped, snapshot every event", "shipped", 1, 100},
		{"shipped, snapshot every 2", "shipped", 2, 100},
		{"cancelled, snapshot every 2", "cancelled", 2, 100},
		{"declined, snapshot every event", "declined", 1, 100},
		{"shipped, old snapshots collected", "shipped", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := memstore.New()
			cfg := aggregate.DefaultConfig()
			cfg.SnapshotEvery, cfg.KeepSnapshots = tc.every, tc.keep
			repo := aggregate.NewRepository(store, orders.Definition, cfg)
			for _, cmd := range lifecycles[tc.lifecycle] {
				if _, err := repo.Execute(ctx, "o", cmd, aggregate.Options{}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond) // distinct instants, so "between two events" exists
			}
			st := eventstore.Stream{Type: orders.AggregateType, ID: "o"}
			events, err := store.Load(ctx, st, eventstore.Range{})
			if err != nil {
				t.Fatal(err)
			}
			instants := []time.Time{events[0].Timestamp.Add(-time.Second)}
			for i, e := range events {
				instants = append(instants, e.Timestamp)
				if i+1 < len(events) {
					instants = append(instants, e.Timestamp.Add(events[i+1].Timestamp.Sub(e.Timestamp)/2))
				}
			}
			instants = append(instants, events[len(events)-1].Timestamp.Add(time.Hour))

			// The reference: a fold of the stream's events up to the instant.
			replay := func(at time.Time) string {
				o, v := orders.Definition.New("o"), int64(0)
				for _, e := range events {
					if e.Timestamp.After(at) {
						break
					}
					if o, err = orders.Evolve(o, e); err != nil {
						t.Fatal(err)
					}
					v = e.Version
				}
				return render(t, o, v)
			}
			check := func(phase string) (fromSnapshot int) {
				for _, at := range instants {
					l, err := repo.LoadAsOf(ctx, "o", at)
					if err != nil {
						t.Fatal(err)
					}
					if got, want := render(t, l.State, l.Version), replay(at); got != want {
						t.Errorf("%s, as of %s:\n got %s\nwant %s", phase, at.Format(time.RFC3339Nano), got, want)
					}
					if snap, _, _ := store.LoadFromSnapshot(ctx, st, eventstore.Range{Until: at}); snap != nil {
						fromSnapshot++
					}
				}
				return fromSnapshot
			}
			if n := check("with snapshots"); n == 0 {
				t.Fatal("no as-of read started from a snapshot")
			}
			if err := store.DeleteSnapshots(ctx, st, 1<<62); err != nil {
				t.Fatal(err)
			}
			if n := check("without snapshots"); n != 0 {
				t.Fatalf("%d snapshots survived deletion", n)
			}
		})
	}
}

func render(t *testing.T, state any, version int64) string {
	t.Helper()
	raw, err := json.Marshal(struct {
		State   any   `json:"state"`
		Version int64 `json:"version"`
	}{state, version})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
