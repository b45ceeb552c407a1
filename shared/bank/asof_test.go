package bank_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/money"
)

// As-of reads of accounts start from the newest snapshot at or before the instant; at
// every event's instant (and before the first, between two, after the last) the result
// must equal a fold of the events up to then, with snapshots present and after deleting
// them all. shared/aggregate covers one instant; this covers the whole history.
func TestAccountAsOfFromSnapshotsEqualsReplay(t *testing.T) {
	for _, tc := range []struct {
		name        string
		every, keep int
		wantSnaps   bool // some as-of read starts from a snapshot
	}{
		{"snapshot every 3, all kept", 3, 100, true},
		{"snapshot every 5, all kept", 5, 100, true},
		{"snapshot every 3, old ones collected", 3, 1, true},
		{"no snapshots", 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := memstore.New()
			cfg := aggregate.DefaultConfig()
			cfg.SnapshotEvery, cfg.KeepSnapshots = tc.every, tc.keep
			repo := aggregate.NewRepository(store, bank.Definition, cfg)
			cmds := []aggregate.Command[bank.Account]{bank.Open(amt("100"))}
			for i := range 20 {
				if i%3 == 2 {
					cmds = append(cmds, bank.Withdraw(money.Amount(i+1), fmt.Sprintf("order-%d", i)))
				} else {
					cmds = append(cmds, bank.Deposit(money.Amount(7*i+1), ""))
				}
			}
			cmds = append(cmds, bank.Withdraw(amt("0.01"), ""))
			for _, cmd := range cmds {
				if _, err := repo.Execute(ctx, "acc", cmd, aggregate.Options{}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Microsecond) // distinct instants, so "between two events" exists
			}
			st := eventstore.Stream{Type: bank.AggregateType, ID: "acc"}
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
			replay := func(at time.Time) string {
				a, v := bank.Definition.New("acc"), int64(0)
				for _, e := range events {
					if e.Timestamp.After(at) {
						break
					}
					if a, err = bank.Evolve(a, e); err != nil {
						t.Fatal(err)
					}
					v = e.Version
				}
				return renderAccount(t, a, v)
			}
			check := func(phase string) (fromSnapshot int) {
				for _, at := range instants {
					l, err := repo.LoadAsOf(ctx, "acc", at)
					if err != nil {
						t.Fatal(err)
					}
					if got, want := renderAccount(t, l.State, l.Version), replay(at); got != want {
						t.Errorf("%s, as of %s:\n got %s\nwant %s", phase, at.Format(time.RFC3339Nano), got, want)
					}
					if snap, _, _ := store.LoadFromSnapshot(ctx, st, eventstore.Range{Until: at}); snap != nil {
						fromSnapshot++
					}
				}
				return fromSnapshot
			}
			if n := check("with snapshots"); (n > 0) != tc.wantSnaps {
				t.Fatalf("%d as-of reads started from a snapshot, want some: %v", n, tc.wantSnaps)
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

func renderAccount(t *testing.T, a bank.Account, version int64) string {
	t.Helper()
	raw, err := json.Marshal(struct {
		State   bank.Account `json:"state"`
		Version int64        `json:"version"`
	}{a, version})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
