package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func openT(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func withID(id string) event.Event {
	e := event.MustNew("E", map[string]string{"id": id})
	e.EventID = id
	return e
}

func req(t *testing.T, st eventstore.Stream, expected int64, drafts ...event.Event) *request {
	t.Helper()
	a, err := newAppendReq(st, expected, drafts)
	if err != nil {
		t.Fatal(err)
	}
	return &request{append: a, done: make(chan result, 1)}
}

func upd(fn func(context.Context, docstore.Tx) error) *request {
	return &request{update: &updateReq{ctx: context.Background(), fn: fn}, done: make(chan result, 1)}
}

// One group, one transaction: each request is checked against the state the earlier
// requests of the group left, and fails or succeeds on its own.
func TestGroupAppliesEachRequestOnItsOwn(t *testing.T) {
	s := openT(t)
	x, y := eventstore.Stream{Type: "G", ID: "x"}, eventstore.Stream{Type: "G", ID: "y"}
	tests := []struct {
		name     string
		r        *request
		versions string // of the returned events
		conflict int64  // current version reported by a conflict; -1: no conflict
	}{
		{"creates x", req(t, x, eventstore.NoStream, withID("a")), "[1]", -1},
		{"sees the creation", req(t, x, eventstore.NoStream, withID("b")), "", 1},
		{"appends after it", req(t, x, 1, withID("c"), withID("d")), "[2 3]", -1},
		{"retry of the first", req(t, x, eventstore.NoStream, withID("a")), "[1]", -1},
		{"other stream, any", req(t, y, eventstore.Any, withID("e")), "[1]", -1},
		{"retry at any", req(t, x, eventstore.Any, withID("c"), withID("d")), "[2 3]", -1},
		{"stale expectation", req(t, y, 5, withID("f")), "", 1},
		{"any appends", req(t, x, eventstore.Any, withID("g")), "[4]", -1},
	}
	group := make([]*request, len(tests))
	for i, tc := range tests {
		group[i] = tc.r
	}
	before := s.commits
	s.commit(group)
	if n := s.commits - before; n != 1 {
		t.Fatalf("%d transactions for one group", n)
	}
	var positions []uint64
	for _, tc := range tests {
		res := <-tc.r.done
		var ce *eventstore.ConflictError
		switch {
		case tc.conflict >= 0:
			if !errors.As(res.err, &ce) || ce.Current != tc.conflict {
				t.Errorf("%s: %v, want a conflict at %d", tc.name, res.err, tc.conflict)
			}
		case res.err != nil:
			t.Errorf("%s: %v", tc.name, res.err)
		default:
			var vs []int64
			for _, e := range res.events {
				vs = append(vs, e.Version)
				if !strings.Contains(tc.name, "retry") {
					positions = append(positions, e.Position)
				}
			}
			if fmt.Sprint(vs) != tc.versions {
				t.Errorf("%s: versions %v, want %s", tc.name, vs, tc.versions)
			}
		}
	}
	if fmt.Sprint(positions) != "[1 2 3 4 5]" {
		t.Fatalf("positions %v: not the group's order without gaps", positions)
	}
}

// A failure of bbolt itself on one append (here a key bbolt refuses, which validation
// keeps real appends from producing) rolls the transaction back, so that append leaves no
// partial write, and the rest of the group commits without it.
func TestStorageFailureFailsOnlyThatAppend(t *testing.T) {
	s := openT(t)
	good1 := req(t, eventstore.Stream{Type: "G", ID: "a"}, 0, withID("1"))
	bad := req(t, eventstore.Stream{Type: "G", ID: "b"}, 0, withID("2"))
	bad.append.key = strings.Repeat("k", bolt.MaxKeySize) // the stream-index key is now too long
	good2 := req(t, eventstore.Stream{Type: "G", ID: "c"}, 0, withID("3"))
	s.commit([]*request{good1, bad, good2})
	for i, r := range []*request{good1, bad, good2} {
		res := <-r.done
		if (res.err != nil) != (r == bad) {
			t.Errorf("request %d: %v", i, res.err)
		}
	}
	evs, err := s.ReadAll(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Position != 1 || evs[1].Position != 2 || evs[1].EventID != "3" {
		t.Fatalf("log after the failed append: %+v", evs)
	}
	if h, _ := s.Head(context.Background()); h != 2 {
		t.Fatalf("head %d, want 2", h)
	}
}

// Concurrent appends share commits (fewer transactions than appends) and every one of
// them is answered.
func TestConcurrentAppendsShareCommits(t *testing.T) {
	s := openT(t)
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := eventstore.Stream{Type: "G", ID: fmt.Sprint("w", w)}
			for v := range int64(each) {
				if _, err := s.Append(context.Background(), st, v, []event.Event{event.MustNew("E", v)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if s.commits >= writers*each {
		t.Fatalf("%d transactions for %d concurrent appends: no group was shared", s.commits, writers*each)
	}
	t.Logf("%d appends in %d transactions", writers*each, s.commits)
}

// Files written before log values had a header hold the plain JSON envelope.
func TestLegacyJSONValuesStillRead(t *testing.T) {
	s := openT(t)
	st := eventstore.Stream{Type: "Old", ID: "a"}
	legacy := event.Event{EventID: "old-1", EventType: "E", AggregateID: "a", AggregateType: "Old", Version: 1,
		SchemaVersion: 1, Timestamp: event.Now(), Position: 1, Payload: json.RawMessage(`{"n":1}`)}
	raw, _ := json.Marshal(legacy)
	err := s.db.Update(func(tx *bolt.Tx) error {
		_, _ = tx.Bucket(bLog).NextSequence()
		return firstErr(
			tx.Bucket(bLog).Put(u64(1), raw),
			tx.Bucket(bStreams).Put(streamKey(st.Key(), 1), u64(1)),
			tx.Bucket(bIndex).Put(indexKey(idxType, "E", 1), nil),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Append(context.Background(), st, 1, []event.Event{event.MustNew("E", 2)})
	if err != nil || out[0].Version != 2 || out[0].Position != 2 {
		t.Fatalf("append after a legacy event: %+v %v", out, err)
	}
	p, err := s.Query(context.Background(), eventstore.Filter{EventType: "E"})
	if err != nil || len(p.Events) != 2 {
		t.Fatalf("query: %+v %v", p, err)
	}
	got := p.Events[0]
	if got.EventID != "old-1" || got.Version != 1 || got.Position != 1 || !got.Timestamp.Equal(legacy.Timestamp) {
		t.Fatalf("legacy event read as %+v", got)
	}
}

// What durability rests on: bbolt fsyncs every commit unless told not to.
func TestEveryCommitIsSynced(t *testing.T) {
	s := openT(t)
	if s.db.NoSync || s.db.NoGrowSync {
		t.Fatal("the store file is opened without fsync on commit")
	}
}

// Document updates share the appends' transaction: each update function runs on the
// state the group left so far, and one that fails or panics leaves no write behind and
// does not touch the others.
func TestGroupRunsUpdatesOnTheirOwn(t *testing.T) {
	s := openT(t)
	boom := errors.New("boom")
	incr := func(ctx context.Context, tx docstore.Tx) error {
		var n int
		if _, err := tx.Get(ctx, "c", "n", &n); err != nil {
			return err
		}
		return tx.Put(ctx, "c", "n", n+1)
	}
	tests := []struct {
		name string
		r    *request
		want func(result) bool
	}{
		{"increments", upd(incr), func(r result) bool { return r.err == nil }},
		{"append between", req(t, eventstore.Stream{Type: "G", ID: "u"}, 0, withID("a")), func(r result) bool { return r.err == nil && r.events[0].Position == 1 }},
		{"fails after writing", upd(func(ctx context.Context, tx docstore.Tx) error {
			if err := tx.Put(ctx, "c", "n", 100); err != nil {
				return err
			}
			return boom
		}), func(r result) bool { return errors.Is(r.err, boom) }},
		{"panics after writing", upd(func(ctx context.Context, tx docstore.Tx) error {
			_ = tx.Put(ctx, "c", "n", 200)
			panic("bad projection")
		}), func(r result) bool { return r.panicked && r.panicVal == "bad projection" }},
		{"sees the first increment only", upd(incr), func(r result) bool { return r.err == nil }},
		{"reads own writes, deletes", upd(func(ctx context.Context, tx docstore.Tx) error {
			var n int
			if err := tx.Put(ctx, "c", "tmp", 1); err != nil {
				return err
			}
			if ok, err := tx.Get(ctx, "c", "tmp", &n); !ok || err != nil || n != 1 {
				return fmt.Errorf("own write not visible: %v %v %d", ok, err, n)
			}
			return tx.Delete(ctx, "c", "tmp")
		}), func(r result) bool { return r.err == nil }},
		{"refused key", upd(func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, "c", "", 1) }),
			func(r result) bool { return errors.Is(r.err, ErrInvalidKey) }},
		{"nested append", upd(func(ctx context.Context, tx docstore.Tx) error {
			_, err := s.Append(ctx, eventstore.Stream{Type: "G", ID: "v"}, 0, []event.Event{withID("b")})
			return err
		}), func(r result) bool { return errors.Is(r.err, ErrNested) }},
		{"nested update", upd(func(ctx context.Context, tx docstore.Tx) error {
			return s.Update(ctx, func(context.Context, docstore.Tx) error { return nil })
		}), func(r result) bool { return errors.Is(r.err, ErrNested) }},
		{"nested snapshot", upd(func(ctx context.Context, tx docstore.Tx) error {
			return s.SaveSnapshot(ctx, eventstore.Snapshot{Stream: eventstore.Stream{Type: "G", ID: "u"}, Version: 1})
		}), func(r result) bool { return errors.Is(r.err, ErrNested) }},
		{"reads the store", upd(func(ctx context.Context, tx docstore.Tx) error {
			evs, err := s.Load(ctx, eventstore.Stream{Type: "G", ID: "u"}, eventstore.Range{})
			if err != nil || len(evs) != 0 {
				return fmt.Errorf("load inside an update: %d events (the group is not committed yet), %v", len(evs), err)
			}
			return nil
		}), func(r result) bool { return r.err == nil }},
	}
	group := make([]*request, len(tests))
	for i, tc := range tests {
		group[i] = tc.r
	}
	before := s.commits
	s.commit(group)
	if n := s.commits - before; n != 1 {
		t.Fatalf("%d transactions for one group", n)
	}
	for _, tc := range tests {
		if res := <-tc.r.done; !tc.want(res) {
			t.Errorf("%s: %+v", tc.name, res)
		}
	}
	var n int
	if ok, err := s.Get(context.Background(), "c", "n", &n); !ok || err != nil || n != 2 {
		t.Fatalf("counter %d (%v %v), want 2", n, ok, err)
	}
	if ok, _ := s.Get(context.Background(), "c", "tmp", &n); ok {
		t.Fatal("deleted document still there")
	}
}

// A panic in an update function reaches the caller of Update, as with bbolt's own Update,
// and the store keeps working.
func TestUpdatePanicReachesTheCaller(t *testing.T) {
	s := openT(t)
	func() {
		defer func() {
			if p := recover(); p != "bad projection" {
				t.Fatalf("recovered %v", p)
			}
		}()
		_ = s.Update(context.Background(), func(context.Context, docstore.Tx) error { panic("bad projection") })
		t.Fatal("Update returned")
	}()
	if err := s.Update(context.Background(), func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, "c", "k", 1) }); err != nil {
		t.Fatal(err)
	}
}

// A store written before event identity has no ids bucket: opening it fills the bucket
// from the streams, so a command retried across the upgrade is still recognised.
func TestOpenBackfillsEventIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st := eventstore.Stream{Type: "Acc", ID: "a1"}
	ctx := context.Background()
	evs := []event.Event{withID("k-0"), withID("k-1")}
	if _, err := s.Append(ctx, st, eventstore.NoStream, evs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, st, 2, []event.Event{withID("other")}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bIDs) }); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Append(ctx, st, 3, evs)
	if err != nil || len(got) != 2 || got[0].Version != 1 || got[1].Version != 2 {
		t.Fatalf("re-append after backfill = %+v, %v; want the original v1–v2", got, err)
	}
	if v, ok, err := s.FindEvent(ctx, st, "other"); err != nil || !ok || v != 3 {
		t.Fatalf("FindEvent(other) = %d, %v, %v", v, ok, err)
	}
}
