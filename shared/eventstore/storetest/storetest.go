// Package storetest is the conformance suite every event-store backend runs, unchanged:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eventstore.Backend { return newBackend(t) })
//	}
//
// Each test names its streams, event types and correlation ids uniquely, so a backend may
// hand every test the same underlying database. Feed tests run when the backend also
// implements eventstore.Feed.
package storetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Constructor returns the backend under test. It may return the same backend every time.
type Constructor func(t *testing.T) eventstore.Backend

// Run runs the whole suite.
func Run(t *testing.T, newBackend Constructor) {
	tests := []struct {
		name string
		fn   func(*testing.T, eventstore.Backend)
	}{
		{"AppendAndLoad", testAppendAndLoad},
		{"EmptyStream", testEmptyStream},
		{"ExpectedVersion", testExpectedVersion},
		{"StreamsAreIsolatedByType", testStreamIdentity},
		{"ConcurrentSameExpectedVersion", testRaceOneWinner},
		{"ConcurrentAnyAppendsAreContiguous", testRaceAny},
		{"MultiEventAllOrNothing", testAllOrNothing},
		{"IdempotentRetry", testIdempotentRetry},
		{"IdentityAtAnyVersion", testIdentityAtAnyVersion},
		{"DuplicateEventID", testDuplicateEventID},
		{"LoadRange", testLoadRange},
		{"LoadUntil", testLoadUntil},
		{"Limits", testLimits},
		{"InvalidInput", testInvalidInput},
		{"KeyFieldLimits", testKeyFieldLimits},
		{"SnapshotLimits", testSnapshotLimits},
		{"QueryFilters", testQueryFilters},
		{"QueryPaging", testQueryPaging},
		{"QueryTimeWindow", testQueryTimeWindow},
		{"QueryBadCursor", testQueryBadCursor},
		{"QueryFilterLimits", testQueryFilterLimits},
		{"Snapshots", testSnapshots},
		{"SnapshotsAsOf", testSnapshotsAsOf},
		{"Feed", testFeed},
		{"FeedConcurrentWriters", testFeedConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBackend(t)) })
	}
}

var seq atomic.Int64

// unique returns a name no other test (or earlier run against the same database) uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e12, seq.Add(1))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func stream(prefix string) eventstore.Stream {
	return eventstore.Stream{Type: "Test", ID: unique(prefix)}
}

func draft(typ string, payload any) event.Event { return event.MustNew(typ, payload) }

func drafts(typ string, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = draft(typ, map[string]int{"n": i})
	}
	return out
}

func mustAppend(t *testing.T, b eventstore.Store, s eventstore.Stream, expected int64, evs ...event.Event) []event.Event {
	t.Helper()
	out, err := b.Append(ctx(t), s, expected, evs)
	if err != nil {
		t.Fatalf("append to %s at %d: %v", s, expected, err)
	}
	return out
}

func mustLoad(t *testing.T, b eventstore.Store, s eventstore.Stream, r eventstore.Range) []event.Event {
	t.Helper()
	out, err := b.Load(ctx(t), s, r)
	if err != nil {
		t.Fatalf("load %s: %v", s, err)
	}
	return out
}

func versions(evs []event.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Version
	}
	return out
}

func assertVersions(t *testing.T, evs []event.Event, want ...int64) {
	t.Helper()
	got := versions(evs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("versions = %v, want %v", got, want)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func assertConflict(t *testing.T, err error, current int64) {
	t.Helper()
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("err = %v, want a version conflict", err)
	}
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T, want *eventstore.ConflictError", err)
	}
	if ce.Current != current {
		t.Fatalf("conflict current version = %d, want %d", ce.Current, current)
	}
}

func testAppendAndLoad(t *testing.T, b eventstore.Backend) {
	s := stream("acc")
	ts := time.Date(2024, 1, 15, 10, 30, 0, 123456000, time.UTC)
	in := []event.Event{
		draft("Opened", map[string]any{"initialDeposit": "1000", "note": "héllo ✓", "nested": map[string]any{"a": []int{1, 2}}}),
		draft("Deposited", map[string]any{"amount": 500}),
		draft("Withdrawn", map[string]any{"amount": 200}),
	}
	in[0].Metadata = event.Metadata{Actor: "user-123", Source: "api", CorrelationID: "req-abc", CausationID: "cmd-1"}
	in[1].EventID = event.NewID()
	in[2].Timestamp = ts
	in[2].SchemaVersion = 3

	before := time.Now().Add(-time.Second)
	out := mustAppend(t, b, s, eventstore.NoStream, in...)
	assertVersions(t, out, 1, 2, 3)
	if out[1].EventID != in[1].EventID {
		t.Errorf("caller's event id not kept: %s, want %s", out[1].EventID, in[1].EventID)
	}
	for i, e := range out {
		if e.EventID == "" || e.AggregateID != s.ID || e.AggregateType != s.Type {
			t.Errorf("event %d not filled in: %+v", i, e)
		}
		if i < 2 && (e.Timestamp.Before(before) || e.Timestamp.After(time.Now().Add(time.Second))) {
			t.Errorf("event %d timestamp %v is not now", i, e.Timestamp)
		}
	}
	if !out[2].Timestamp.Equal(ts) {
		t.Errorf("caller's timestamp not kept: %v, want %v", out[2].Timestamp, ts)
	}

	got := mustLoad(t, b, s, eventstore.Range{})
	assertVersions(t, got, 1, 2, 3)
	for i := range got {
		w, g := out[i], got[i]
		if g.EventID != w.EventID || g.EventType != w.EventType || g.SchemaVersion != w.SchemaVersion ||
			!g.Timestamp.Equal(w.Timestamp) || g.Metadata != w.Metadata || g.Position != w.Position ||
			g.AggregateID != s.ID || g.AggregateType != s.Type {
			t.Errorf("event %d loaded as %+v, appended as %+v", i, g, w)
		}
		if !jsonEqual(g.Payload, in[i].Payload) {
			t.Errorf("event %d payload %s, want %s", i, g.Payload, in[i].Payload)
		}
	}
	if got[0].SchemaVersion != 1 || got[2].SchemaVersion != 3 {
		t.Errorf("schema versions %d, %d; want 1 (default) and 3", got[0].SchemaVersion, got[2].SchemaVersion)
	}
	if _, ok := b.(eventstore.Feed); ok {
		if !(got[0].Position > 0 && got[0].Position < got[1].Position && got[1].Position < got[2].Position) {
			t.Errorf("positions not increasing: %d %d %d", got[0].Position, got[1].Position, got[2].Position)
		}
	}
}

func testEmptyStream(t *testing.T, b eventstore.Backend) {
	got := mustLoad(t, b, stream("none"), eventstore.Range{})
	if len(got) != 0 {
		t.Fatalf("load of a missing stream = %d events", len(got))
	}
	snap, evs, err := b.LoadFromSnapshot(ctx(t), stream("none"), eventstore.Range{})
	if err != nil || snap != nil || len(evs) != 0 {
		t.Fatalf("LoadFromSnapshot of a missing stream = %v, %d events, %v", snap, len(evs), err)
	}
}

func testExpectedVersion(t *testing.T, b eventstore.Backend) {
	s := stream("ev")
	mustAppend(t, b, s, eventstore.NoStream, draft("A", 1))

	_, err := b.Append(ctx(t), s, eventstore.NoStream, []event.Event{draft("B", 2)})
	assertConflict(t, err, 1)
	_, err = b.Append(ctx(t), s, 5, []event.Event{draft("B", 2)})
	assertConflict(t, err, 1)
	_, err = b.Append(ctx(t), stream("fresh"), 3, []event.Event{draft("B", 2)})
	assertConflict(t, err, 0)

	assertVersions(t, mustAppend(t, b, s, 1, draft("B", 2)), 2)
	assertVersions(t, mustAppend(t, b, s, eventstore.Any, draft("C", 3), draft("D", 4)), 3, 4)
	assertVersions(t, mustAppend(t, b, stream("any"), eventstore.Any, draft("A", 1)), 1)
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{}), 1, 2, 3, 4)
}

func testStreamIdentity(t *testing.T, b eventstore.Backend) {
	id := unique("same")
	a := eventstore.Stream{Type: "Account", ID: id}
	c := eventstore.Stream{Type: "Context", ID: id}
	mustAppend(t, b, a, eventstore.NoStream, draft("A", 1), draft("A", 2))
	assertVersions(t, mustAppend(t, b, c, eventstore.NoStream, draft("C", 1)), 1)
	assertVersions(t, mustLoad(t, b, a, eventstore.Range{}), 1, 2)
	got := mustLoad(t, b, c, eventstore.Range{})
	if len(got) != 1 || got[0].AggregateType != "Context" {
		t.Fatalf("streams with the same id but different types mixed: %+v", got)
	}
}

func testRaceOneWinner(t *testing.T, b eventstore.Backend) {
	s := stream("race")
	mustAppend(t, b, s, eventstore.NoStream, draft("Opened", 0))
	const n = 50
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := b.Append(context.Background(), s, 1, []event.Event{draft("Raced", i), draft("Raced2", i)})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, eventstore.ErrConflict):
				conflicts.Add(1)
			default:
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	if wins.Load() != 1 || conflicts.Load() != n-1 {
		t.Fatalf("wins = %d, conflicts = %d; want 1 and %d", wins.Load(), conflicts.Load(), n-1)
	}
	got := mustLoad(t, b, s, eventstore.Range{})
	assertVersions(t, got, 1, 2, 3)
	if !jsonEqual(got[1].Payload, got[2].Payload) {
		t.Fatalf("the winner's two events are not from one append: %s, %s", got[1].Payload, got[2].Payload)
	}
}

func testRaceAny(t *testing.T, b eventstore.Backend) {
	s := stream("anyrace")
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				for attempt := 0; ; attempt++ {
					_, err := b.Append(context.Background(), s, eventstore.Any, []event.Event{draft("W", fmt.Sprintf("%d-%d", w, i))})
					// A backend may report a conflict for Any under contention (it read the
					// end, then lost the race); the caller retries. It must never duplicate.
					if errors.Is(err, eventstore.ErrConflict) && attempt < 100 {
						continue
					}
					if err != nil {
						errs <- err
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	got := mustLoad(t, b, s, eventstore.Range{})
	if len(got) != writers*each {
		t.Fatalf("%d events, want %d", len(got), writers*each)
	}
	seen := map[string]bool{}
	for i, e := range got {
		if e.Version != int64(i+1) {
			t.Fatalf("version %d at index %d: gap or duplicate", e.Version, i)
		}
		if seen[string(e.Payload)] {
			t.Fatalf("payload %s stored twice", e.Payload)
		}
		seen[string(e.Payload)] = true
	}
}

func testAllOrNothing(t *testing.T, b eventstore.Backend) {
	s := stream("atomic")
	mustAppend(t, b, s, eventstore.NoStream, draft("A", 1))
	// A competing writer got in first: the three-event append must leave no trace.
	mustAppend(t, b, s, 1, draft("B", 2))
	_, err := b.Append(ctx(t), s, 1, drafts("C", 3))
	assertConflict(t, err, 2)
	// One oversized event among small ones: nothing is written.
	big := draft("Big", map[string]string{"blob": strings.Repeat("x", eventstore.MaxEventBytes)})
	_, err = b.Append(ctx(t), s, 2, []event.Event{draft("C", 1), big, draft("C", 3)})
	if !errors.Is(err, eventstore.ErrTooLarge) {
		t.Fatalf("oversized event: err = %v, want ErrTooLarge", err)
	}
	got := mustLoad(t, b, s, eventstore.Range{})
	assertVersions(t, got, 1, 2)
	// The full batch then lands whole.
	assertVersions(t, mustAppend(t, b, s, 2, drafts("D", 100)...)[99:], 102)
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{From: 100}), 100, 101, 102)
}

func testIdempotentRetry(t *testing.T, b eventstore.Backend) {
	s := stream("idem")
	evs := drafts("E", 2)
	evs[0].EventID, evs[1].EventID = event.NewID(), event.NewID()
	first := mustAppend(t, b, s, eventstore.NoStream, evs...)

	// The client timed out and retries the very same append.
	again := mustAppend(t, b, s, eventstore.NoStream, evs...)
	assertVersions(t, again, 1, 2)
	if again[0].EventID != first[0].EventID || again[1].EventID != first[1].EventID {
		t.Fatalf("retry returned other events: %+v", again)
	}
	// Also after other events followed.
	mustAppend(t, b, s, 2, draft("F", 3))
	assertVersions(t, mustAppend(t, b, s, eventstore.NoStream, evs...), 1, 2)
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{}), 1, 2, 3)

	// Any: a retry whose events are the stream's tail is recognised.
	tail := drafts("G", 2)
	tail[0].EventID, tail[1].EventID = event.NewID(), event.NewID()
	mustAppend(t, b, s, eventstore.Any, tail...)
	assertVersions(t, mustAppend(t, b, s, eventstore.Any, tail...), 4, 5)
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{}), 1, 2, 3, 4, 5)

	// Only some ids matching is not a retry: the held id is reported, nothing written.
	mixed := []event.Event{evs[0], draft("H", 1)}
	mixed[1].EventID = event.NewID()
	_, err := b.Append(ctx(t), s, eventstore.NoStream, mixed)
	assertDuplicate(t, err, evs[0].EventID)
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{}), 1, 2, 3, 4, 5)
}

// testIdentityAtAnyVersion: a command retried after a crash re-decides on a newer state,
// so its re-append comes with whatever expected version the stream has then. The store
// recognises the ids, not the position.
func testIdentityAtAnyVersion(t *testing.T, b eventstore.Backend) {
	s := stream("identity")
	mustAppend(t, b, s, eventstore.NoStream, draft("A", 1))
	cmd := drafts("Deposit", 2)
	key := s.Key() + "/key-1" // tables outlive one run on some backends
	cmd[0].EventID, cmd[1].EventID = event.DerivedID(key, 0), event.DerivedID(key, 1)
	first := mustAppend(t, b, s, 1, cmd...)
	assertVersions(t, first, 2, 3)
	mustAppend(t, b, s, 3, drafts("Other", 60)...)
	for _, tc := range []struct {
		name     string
		expected int64
	}{{"current version", 63}, {"any", eventstore.Any}, {"stale version", 1}, {"no stream", eventstore.NoStream}} {
		t.Run(tc.name, func(t *testing.T) {
			again := mustAppend(t, b, s, tc.expected, cmd...)
			assertVersions(t, again, 2, 3)
			if again[0].EventID != cmd[0].EventID || !again[0].Timestamp.Equal(first[0].Timestamp) {
				t.Fatalf("re-append returned %+v, want the original %+v", again[0], first[0])
			}
		})
	}
	if got := mustLoad(t, b, s, eventstore.Range{}); len(got) != 63 {
		t.Fatalf("re-appends wrote events: %d, want 63", len(got))
	}
	for _, tc := range []struct {
		name string
		s    eventstore.Stream
		id   string
		v    int64
		ok   bool
	}{{"an append's first id", s, cmd[0].EventID, 2, true},
		{"unknown", s, event.DerivedID(s.Key()+"/key-2", 0), 0, false}} {
		v, ok, err := b.FindEvent(ctx(t), tc.s, tc.id)
		if err != nil || ok != tc.ok || v != tc.v {
			t.Errorf("FindEvent %s = %d, %v, %v; want %d, %v", tc.name, v, ok, err, tc.v, tc.ok)
		}
	}
}

// testDuplicateEventID: an id names one event in the whole store.
func testDuplicateEventID(t *testing.T, b eventstore.Backend) {
	a, other := stream("dup-a"), stream("dup-b")
	e := draft("A", 1)
	e.EventID = event.DerivedID(a.Key()+"/dup", 0)
	mustAppend(t, b, a, eventstore.NoStream, e)
	for _, tc := range []struct {
		name   string
		s      eventstore.Stream
		events []event.Event
	}{
		{"same id in another stream", other, []event.Event{e}},
		{"held id first, then new ones", a, []event.Event{e, withID(draft("C", 1), event.NewID())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Append(ctx(t), tc.s, eventstore.Any, tc.events)
			assertDuplicate(t, err, e.EventID)
		})
	}
	if got := mustLoad(t, b, other, eventstore.Range{}); len(got) != 0 {
		t.Fatalf("rejected appends wrote %d events", len(got))
	}
	assertVersions(t, mustLoad(t, b, a, eventstore.Range{}), 1)
	if _, _, err := b.FindEvent(ctx(t), other, e.EventID); !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("FindEvent in another stream: %v, want ErrDuplicateEvent", err)
	}
}

func withID(e event.Event, id string) event.Event {
	e.EventID = id
	return e
}

func assertDuplicate(t *testing.T, err error, id string) {
	t.Helper()
	var de *eventstore.DuplicateEventError
	if !errors.As(err, &de) || !errors.Is(err, eventstore.ErrDuplicateEvent) || de.EventID != id {
		t.Fatalf("err = %v, want a DuplicateEventError for %s", err, id)
	}
}

func testLoadRange(t *testing.T, b eventstore.Backend) {
	s := stream("range")
	mustAppend(t, b, s, eventstore.NoStream, drafts("R", 10)...)
	for _, tc := range []struct {
		r    eventstore.Range
		want []int64
	}{
		{eventstore.Range{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{eventstore.Range{From: 8}, []int64{8, 9, 10}},
		{eventstore.Range{To: 3}, []int64{1, 2, 3}},
		{eventstore.Range{From: 4, To: 6}, []int64{4, 5, 6}},
		{eventstore.Range{From: 11}, []int64{}},
		{eventstore.Range{From: 5, To: 5}, []int64{5}},
	} {
		got := mustLoad(t, b, s, tc.r)
		if fmt.Sprint(versions(got)) != fmt.Sprint(tc.want) {
			t.Errorf("range %+v: versions %v, want %v", tc.r, versions(got), tc.want)
		}
	}
}

func testLoadUntil(t *testing.T, b eventstore.Backend) {
	s := stream("until")
	t0 := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	evs := drafts("U", 4)
	for i := range evs {
		evs[i].Timestamp = t0.Add(time.Duration(i) * time.Hour)
	}
	mustAppend(t, b, s, eventstore.NoStream, evs...)
	for _, tc := range []struct {
		until time.Time
		want  string
	}{
		{t0.Add(-time.Second), "[]"},
		{t0, "[1]"},
		{t0.Add(90 * time.Minute), "[1 2]"},
		{t0.Add(2 * time.Hour), "[1 2 3]"},
		{t0.Add(100 * time.Hour), "[1 2 3 4]"},
	} {
		got := mustLoad(t, b, s, eventstore.Range{Until: tc.until})
		if fmt.Sprint(versions(got)) != tc.want {
			t.Errorf("until %v: versions %v, want %s", tc.until, versions(got), tc.want)
		}
	}
}

func testLimits(t *testing.T, b eventstore.Backend) {
	s := stream("limits")
	tooMany := drafts("L", eventstore.MaxEventsPerAppend+1)
	big := draft("Big", map[string]string{"blob": strings.Repeat("x", eventstore.MaxEventBytes)})
	var heavy []event.Event
	for range 15 { // 15 × 300 KB > 4 MB, each event under the per-event limit
		heavy = append(heavy, draft("Heavy", map[string]string{"blob": strings.Repeat("y", 300*1024)}))
	}
	for _, tc := range []struct {
		name string
		evs  []event.Event
		what string
	}{
		{"too many events", tooMany, "events per append"},
		{"event too large", []event.Event{big}, "event size"},
		{"append too large", heavy, "append size"},
	} {
		_, err := b.Append(ctx(t), s, eventstore.Any, tc.evs)
		var le *eventstore.LimitError
		if !errors.Is(err, eventstore.ErrTooLarge) || !errors.As(err, &le) || le.What != tc.what {
			t.Errorf("%s: err = %v, want a LimitError for %q", tc.name, err, tc.what)
		}
	}
	if got := mustLoad(t, b, s, eventstore.Range{}); len(got) != 0 {
		t.Fatalf("limits violated but %d events written", len(got))
	}
	// Right at the limits it works.
	assertVersions(t, mustAppend(t, b, s, eventstore.NoStream, drafts("L", eventstore.MaxEventsPerAppend)...)[99:], 100)
}

func testInvalidInput(t *testing.T, b eventstore.Backend) {
	valid := stream("valid")
	dup := drafts("D", 2)
	dup[0].EventID = event.NewID()
	dup[1].EventID = dup[0].EventID
	for _, tc := range []struct {
		name     string
		s        eventstore.Stream
		expected int64
		evs      []event.Event
	}{
		{"empty id", eventstore.Stream{Type: "Test", ID: ""}, 0, drafts("X", 1)},
		{"bad id", eventstore.Stream{Type: "Test", ID: "a/b"}, 0, drafts("X", 1)},
		{"long id", eventstore.Stream{Type: "Test", ID: strings.Repeat("a", 129)}, 0, drafts("X", 1)},
		{"bad type", eventstore.Stream{Type: "Te#st", ID: "a"}, 0, drafts("X", 1)},
		{"no events", valid, 0, nil},
		{"no event type", valid, 0, []event.Event{{Payload: json.RawMessage(`{}`)}}},
		{"bad json", valid, 0, []event.Event{{EventType: "X", Payload: json.RawMessage(`{`)}}},
		{"duplicate ids", valid, 0, dup},
		{"bad expected", valid, -7, drafts("X", 1)},
	} {
		_, err := b.Append(ctx(t), tc.s, tc.expected, tc.evs)
		if !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
	if got := mustLoad(t, b, valid, eventstore.Range{}); len(got) != 0 {
		t.Fatalf("invalid appends wrote %d events", len(got))
	}
}

// testKeyFieldLimits: every field a backend puts into a key or an index (or a typed
// column) is checked before anything is written, with the same typed error on every
// backend. The bad event comes second, after a good one, so a backend that wrote as it
// went would leave the first behind. At the limits, every backend stores and finds it.
func testKeyFieldLimits(t *testing.T, b eventstore.Backend) {
	s := stream("keys")
	typ := unique("Keyed")
	seed := draft(typ, 0)
	seed.Metadata.CorrelationID = unique("corr")
	mustAppend(t, b, s, eventstore.NoStream, seed)
	var feedHead uint64
	feed, hasFeed := b.(eventstore.Feed)
	if hasFeed {
		var err error
		if feedHead, err = feed.Head(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}

	long := func(n int) string { return strings.Repeat("a", n) }
	badCorr := unique("badcorr")
	for _, tc := range []struct {
		name  string
		field string
		edit  func(*event.Event)
	}{
		{"event id too long", "eventId", func(e *event.Event) { e.EventID = long(eventstore.MaxTypeLength + 1) }},
		{"event id with #", "eventId", func(e *event.Event) { e.EventID = "a#b" }},
		{"event id with NUL", "eventId", func(e *event.Event) { e.EventID = "a\x00b" }},
		{"event id with space", "eventId", func(e *event.Event) { e.EventID = "a b" }},
		{"event type too long", "eventType", func(e *event.Event) { e.EventType = long(eventstore.MaxTypeLength + 1) }},
		{"event type with #", "eventType", func(e *event.Event) { e.EventType = typ + "#x" }},
		{"event type with NUL", "eventType", func(e *event.Event) { e.EventType = typ + "\x00x" }},
		{"event type with slash", "eventType", func(e *event.Event) { e.EventType = "a/b" }},
		{"correlation id too long", "metadata.correlationId", func(e *event.Event) {
			e.Metadata.CorrelationID = badCorr + long(eventstore.MaxTraceIDBytes)
		}},
		{"correlation id over a bbolt key", "metadata.correlationId", func(e *event.Event) {
			e.Metadata.CorrelationID = badCorr + long(40<<10)
		}},
		{"correlation id over a DynamoDB key", "metadata.correlationId", func(e *event.Event) {
			e.Metadata.CorrelationID = badCorr + long(2049)
		}},
		{"correlation id with #", "metadata.correlationId", func(e *event.Event) { e.Metadata.CorrelationID = badCorr + "#1" }},
		{"correlation id with NUL", "metadata.correlationId", func(e *event.Event) { e.Metadata.CorrelationID = badCorr + "\x00" }},
		{"correlation id with space", "metadata.correlationId", func(e *event.Event) { e.Metadata.CorrelationID = badCorr + " 1" }},
		{"correlation id not ASCII", "metadata.correlationId", func(e *event.Event) { e.Metadata.CorrelationID = badCorr + "é" }},
		{"causation id too long", "metadata.causationId", func(e *event.Event) { e.Metadata.CausationID = long(eventstore.MaxTraceIDBytes + 1) }},
		{"causation id with #", "metadata.causationId", func(e *event.Event) { e.Metadata.CausationID = "cmd#1" }},
		{"actor too long", "metadata.actor", func(e *event.Event) { e.Metadata.Actor = long(eventstore.MaxActorBytes + 1) }},
		{"actor not UTF-8", "metadata.actor", func(e *event.Event) { e.Metadata.Actor = "bob\xff" }},
		{"actor with NUL", "metadata.actor", func(e *event.Event) { e.Metadata.Actor = "bob\x00" }},
		{"source too long", "metadata.source", func(e *event.Event) { e.Metadata.Source = long(eventstore.MaxActorBytes + 1) }},
		{"source not UTF-8", "metadata.source", func(e *event.Event) { e.Metadata.Source = "\xc3" }},
		{"schema version beyond int32", "schemaVersion", func(e *event.Event) { e.SchemaVersion = math.MaxInt32 + 1 }},
		{"negative schema version", "schemaVersion", func(e *event.Event) { e.SchemaVersion = -1 }},
		{"timestamp after 9999", "timestamp", func(e *event.Event) { e.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		// Not keys, but typed storage: PostgreSQL's jsonb and DynamoDB's strings.
		{"payload with \\u0000", "payload", func(e *event.Event) { e.Payload = json.RawMessage(`{"a":"x\u0000y"}`) }},
		{"payload with a lone surrogate", "payload", func(e *event.Event) { e.Payload = json.RawMessage(`{"a":"\ud83d"}`) }},
		{"payload not UTF-8", "payload", func(e *event.Event) { e.Payload = json.RawMessage("{\"a\":\"\xff\"}") }},
	} {
		bad := draft(typ, 2)
		tc.edit(&bad)
		_, err := b.Append(ctx(t), s, 1, []event.Event{draft(typ, 1), bad})
		var fe *eventstore.FieldError
		if !errors.Is(err, eventstore.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field || fe.Event != 1 {
			t.Errorf("%s: err = %v, want a *eventstore.FieldError for %s of event 1", tc.name, err, tc.field)
		}
	}

	// Nothing was written: not to the stream, not to the indexes, not to the feed.
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{}), 1)
	if got := queryAll(t, b, eventstore.Filter{EventType: typ}); len(got) != 1 {
		t.Errorf("query by type finds %d events, want the seed only", len(got))
	}
	if hasFeed {
		evs, err := feed.ReadAll(ctx(t), feedHead, eventstore.MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.AggregateID == s.ID || strings.HasPrefix(e.Metadata.CorrelationID, badCorr) {
				t.Errorf("rejected append reached the feed: %s v%d", e.EventType, e.Version)
			}
		}
	}

	// Right at the limits every backend stores the event and finds it by its indexes.
	u := unique("lim")
	edge := draft((u + long(eventstore.MaxTypeLength))[:eventstore.MaxTypeLength], 3)
	edge.EventID = ("id." + u + long(eventstore.MaxTypeLength))[:eventstore.MaxTypeLength]
	punct := "!\"$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
	edge.Metadata = event.Metadata{
		CorrelationID: (u + punct + long(eventstore.MaxTraceIDBytes))[:eventstore.MaxTraceIDBytes],
		CausationID:   (punct + long(eventstore.MaxTraceIDBytes))[:eventstore.MaxTraceIDBytes],
		Actor:         strings.Repeat("é", eventstore.MaxActorBytes/2),
		Source:        strings.Repeat("s", eventstore.MaxActorBytes),
	}
	edge.SchemaVersion = math.MaxInt32
	edge.Payload = json.RawMessage(`{"s":"\ud83d\ude00 \\u0000 é","n":1}`) // a pair, an escaped backslash, UTF-8
	edge.Timestamp = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	out := mustAppend(t, b, s, 1, edge)
	assertVersions(t, out, 2)
	for _, f := range []eventstore.Filter{{CorrelationID: edge.Metadata.CorrelationID}, {EventType: edge.EventType}} {
		got := queryAll(t, b, f)
		if len(got) != 1 || got[0].EventID != edge.EventID || got[0].Metadata != edge.Metadata ||
			got[0].SchemaVersion != edge.SchemaVersion || !got[0].Timestamp.Equal(edge.Timestamp) ||
			!jsonEqual(got[0].Payload, edge.Payload) {
			t.Errorf("query %+v: %+v, want the event at the limits as appended", f, got)
		}
	}
}

// testSnapshotLimits: a snapshot no backend could store, or could not read back, is
// refused by every backend before it is written.
func testSnapshotLimits(t *testing.T, b eventstore.Backend) {
	s := stream("snaplim")
	out := mustAppend(t, b, s, eventstore.NoStream, drafts("S", 2)...)
	good := snapshotOf(s, 2, out[1].Timestamp)
	for _, tc := range []struct {
		name  string
		field string // "" for a *eventstore.LimitError
		edit  func(*eventstore.Snapshot)
	}{
		{"bad aggregate id", "aggregateId", func(x *eventstore.Snapshot) { x.Stream.ID = "a#b" }},
		{"bad aggregate type", "aggregateType", func(x *eventstore.Snapshot) { x.Stream.Type = "" }},
		{"version 0", "version", func(x *eventstore.Snapshot) { x.Version = 0 }},
		{"state version beyond int32", "stateVersion", func(x *eventstore.Snapshot) { x.StateVersion = math.MaxInt32 + 1 }},
		{"no state", "state", func(x *eventstore.Snapshot) { x.State = nil }},
		{"state not JSON", "state", func(x *eventstore.Snapshot) { x.State = json.RawMessage(`{"a":`) }},
		{"state with \\u0000", "state", func(x *eventstore.Snapshot) { x.State = json.RawMessage(`{"a":"\u0000"}`) }},
		{"timestamp after 9999", "timestamp", func(x *eventstore.Snapshot) { x.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"state too large", "", func(x *eventstore.Snapshot) {
			x.State = json.RawMessage(`"` + strings.Repeat("x", eventstore.MaxSnapshotBytes) + `"`)
		}},
	} {
		snap := good
		tc.edit(&snap)
		err := b.SaveSnapshot(ctx(t), snap)
		var fe *eventstore.FieldError
		var le *eventstore.LimitError
		switch {
		case tc.field == "" && (!errors.Is(err, eventstore.ErrTooLarge) || !errors.As(err, &le) || le.What != "snapshot size"):
			t.Errorf("%s: err = %v, want a *eventstore.LimitError for the snapshot size", tc.name, err)
		case tc.field != "" && (!errors.Is(err, eventstore.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: err = %v, want a *eventstore.FieldError for %s", tc.name, err, tc.field)
		}
	}
	if snap, evs, err := b.LoadFromSnapshot(ctx(t), s, eventstore.Range{}); err != nil || snap != nil || len(evs) != 2 {
		t.Fatalf("after refused snapshots: snapshot %+v, %d events, %v; want none and 2", snap, len(evs), err)
	}
}

// seedQuery writes events of two unique types across three streams, with two
// correlation ids, and returns (typeA, typeB, corr1, aggregateType).
func seedQuery(t *testing.T, b eventstore.Backend) (string, string, string, string) {
	typA, typB, corr, aggType := unique("TypeA"), unique("TypeB"), unique("corr"), unique("Agg")
	for i := range 3 {
		s := eventstore.Stream{Type: aggType, ID: unique("q")}
		a := draft(typA, map[string]int{"stream": i, "n": 0})
		a.Metadata.CorrelationID = corr
		bb := draft(typB, map[string]int{"stream": i, "n": 1})
		a2 := draft(typA, map[string]int{"stream": i, "n": 2})
		a2.Metadata.CorrelationID = corr + "-other"
		mustAppend(t, b, s, eventstore.NoStream, a, bb, a2)
	}
	return typA, typB, corr, aggType
}

func queryAll(t *testing.T, b eventstore.Backend, f eventstore.Filter) []event.Event {
	t.Helper()
	var all []event.Event
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		p, err := b.Query(ctx(t), f)
		if err != nil {
			t.Fatalf("query %+v: %v", f, err)
		}
		if f.Limit > 0 && len(p.Events) > f.Limit {
			t.Fatalf("page of %d events, limit %d", len(p.Events), f.Limit)
		}
		all = append(all, p.Events...)
		if p.NextCursor == "" {
			return all
		}
		f.Cursor = p.NextCursor
	}
}

func testQueryFilters(t *testing.T, b eventstore.Backend) {
	typA, typB, corr, aggType := seedQuery(t, b)
	for _, tc := range []struct {
		name string
		f    eventstore.Filter
		want int
		ok   func(event.Event) bool
	}{
		{"event type", eventstore.Filter{EventType: typA}, 6, func(e event.Event) bool { return e.EventType == typA }},
		{"other type", eventstore.Filter{EventType: typB}, 3, func(e event.Event) bool { return e.EventType == typB }},
		{"aggregate type", eventstore.Filter{AggregateType: aggType}, 9, func(e event.Event) bool { return e.AggregateType == aggType }},
		{"correlation", eventstore.Filter{CorrelationID: corr}, 3, func(e event.Event) bool { return e.Metadata.CorrelationID == corr }},
		{"type and correlation", eventstore.Filter{EventType: typA, CorrelationID: corr + "-other"}, 3, func(e event.Event) bool { return e.Metadata.CorrelationID == corr+"-other" }},
		{"aggregate type and event type", eventstore.Filter{AggregateType: aggType, EventType: typB}, 3, func(e event.Event) bool { return e.EventType == typB }},
		{"no match", eventstore.Filter{EventType: unique("Nothing")}, 0, nil},
	} {
		got := queryAll(t, b, tc.f)
		if len(got) != tc.want {
			t.Errorf("%s: %d events, want %d", tc.name, len(got), tc.want)
			continue
		}
		for _, e := range got {
			if !tc.ok(e) {
				t.Errorf("%s: event does not match: %+v", tc.name, e)
			}
		}
		// Within a stream, query order follows versions.
		last := map[string]int64{}
		for _, e := range got {
			k := eventstore.StreamOf(e).Key()
			if e.Version <= last[k] {
				t.Errorf("%s: %s v%d after v%d", tc.name, k, e.Version, last[k])
			}
			last[k] = e.Version
		}
	}
}

func testQueryPaging(t *testing.T, b eventstore.Backend) {
	_, _, _, aggType := seedQuery(t, b)
	full := queryAll(t, b, eventstore.Filter{AggregateType: aggType})
	for _, limit := range []int{1, 2, 4, 9, 10} {
		paged := queryAll(t, b, eventstore.Filter{AggregateType: aggType, Limit: limit})
		if len(paged) != len(full) {
			t.Fatalf("limit %d: %d events, want %d", limit, len(paged), len(full))
		}
		seen := map[string]bool{}
		for i := range paged {
			if seen[paged[i].EventID] {
				t.Fatalf("limit %d: event %s twice", limit, paged[i].EventID)
			}
			seen[paged[i].EventID] = true
			if paged[i].EventID != full[i].EventID {
				t.Fatalf("limit %d: order differs from the unpaged query at %d", limit, i)
			}
		}
	}
}

func testQueryTimeWindow(t *testing.T, b eventstore.Backend) {
	typ := unique("Timed")
	t0 := time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		e := draft(typ, i)
		e.Timestamp = t0.Add(time.Duration(i) * 24 * time.Hour)
		mustAppend(t, b, eventstore.Stream{Type: "Test", ID: unique("tw")}, eventstore.NoStream, e)
	}
	for _, tc := range []struct {
		since, until time.Time
		want         int
	}{
		{time.Time{}, time.Time{}, 5},
		{t0.Add(24 * time.Hour), time.Time{}, 4},
		{time.Time{}, t0.Add(24 * time.Hour), 2},
		{t0.Add(24 * time.Hour), t0.Add(3 * 24 * time.Hour), 3},
		{t0.Add(time.Hour), t0.Add(2 * time.Hour), 0},
	} {
		got := queryAll(t, b, eventstore.Filter{EventType: typ, Since: tc.since, Until: tc.until, Limit: 2})
		if len(got) != tc.want {
			t.Errorf("since %v until %v: %d events, want %d", tc.since, tc.until, len(got), tc.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Timestamp.Before(got[i-1].Timestamp) {
				t.Errorf("time-window results out of time order")
			}
		}
	}
}

// A cursor no query handed out is refused, never read as a position: a huge offset once
// wrapped to a negative one in a signed column and restarted the query at the first page.
func testQueryBadCursor(t *testing.T, b eventstore.Backend) {
	enc := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	for _, tc := range []struct{ name, cursor string }{
		{"not base64", "%%%not-a-cursor"},
		{"not JSON", enc("after")},
		{"max uint64 offset", enc(`{"after":18446744073709551615}`)},
		{"just past max int64", enc(`{"after":9223372036854775808}`)},
		{"negative", enc(`{"after":-1}`)},
		{"fraction", enc(`{"after":1.5}`)},
		{"exponent", enc(`{"after":1e3}`)},
		{"unknown field", enc(`{"after":1,"x":2}`)},
		{"trailing data", enc(`{"after":1}{}`)},
		{"too long", strings.Repeat("A", eventstore.MaxCursorLength+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Query(ctx(t), eventstore.Filter{EventType: "X", Cursor: tc.cursor})
			if !errors.Is(err, eventstore.ErrInvalidCursor) || !errors.Is(err, eventstore.ErrInvalid) {
				t.Fatalf("cursor %q: err = %v, want ErrInvalidCursor", tc.cursor, err)
			}
		})
	}
}

// testQueryFilterLimits: a filter value no event can hold is the same typed error on
// every backend (on DynamoDB it would be a key attribute over its limit).
func testQueryFilterLimits(t *testing.T, b eventstore.Backend) {
	for _, tc := range []struct {
		name  string
		f     eventstore.Filter
		field string
	}{
		{"correlation id over a DynamoDB key", eventstore.Filter{CorrelationID: strings.Repeat("c", 2049)}, "correlationId"},
		{"correlation id with #", eventstore.Filter{CorrelationID: "a#b"}, "correlationId"},
		{"event type over a DynamoDB key", eventstore.Filter{EventType: strings.Repeat("t", 2049)}, "eventType"},
		{"event type with NUL", eventstore.Filter{EventType: "A\x00"}, "eventType"},
		{"aggregate type with #", eventstore.Filter{AggregateType: "A#B"}, "aggregateType"},
		{"since after 9999", eventstore.Filter{EventType: "X", Since: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "since"},
	} {
		_, err := b.Query(ctx(t), tc.f)
		var fe *eventstore.FieldError
		if !errors.Is(err, eventstore.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want a *eventstore.FieldError for %s", tc.name, err, tc.field)
		}
	}
}

func snapshotOf(s eventstore.Stream, v int64, ts time.Time) eventstore.Snapshot {
	return eventstore.Snapshot{Stream: s, Version: v, StateVersion: 1, Timestamp: ts,
		State: json.RawMessage(fmt.Sprintf(`{"upTo":%d}`, v))}
}

func testSnapshots(t *testing.T, b eventstore.Backend) {
	s := stream("snap")
	out := mustAppend(t, b, s, eventstore.NoStream, drafts("S", 7)...)
	for _, v := range []int64{2, 4} {
		if err := b.SaveSnapshot(ctx(t), snapshotOf(s, v, out[v-1].Timestamp)); err != nil {
			t.Fatalf("save snapshot: %v", err)
		}
	}
	check := func(r eventstore.Range, wantSnap int64, wantEvents string) {
		t.Helper()
		snap, evs, err := b.LoadFromSnapshot(ctx(t), s, r)
		if err != nil {
			t.Fatalf("LoadFromSnapshot(%+v): %v", r, err)
		}
		var got int64
		if snap != nil {
			got = snap.Version
			if !jsonEqual(snap.State, []byte(fmt.Sprintf(`{"upTo":%d}`, got))) || snap.StateVersion != 1 || snap.Stream != s {
				t.Errorf("snapshot %d loaded as %+v", got, snap)
			}
		}
		if got != wantSnap || fmt.Sprint(versions(evs)) != wantEvents {
			t.Errorf("range %+v: snapshot %d and events %v, want %d and %s", r, got, versions(evs), wantSnap, wantEvents)
		}
	}
	check(eventstore.Range{}, 4, "[5 6 7]")
	check(eventstore.Range{To: 3}, 2, "[3]")
	check(eventstore.Range{To: 4}, 4, "[]")
	check(eventstore.Range{To: 1}, 0, "[1]")
	// Replacing a snapshot at the same version keeps one.
	if err := b.SaveSnapshot(ctx(t), snapshotOf(s, 4, out[3].Timestamp)); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSnapshots(ctx(t), s, 4); err != nil {
		t.Fatalf("delete snapshots: %v", err)
	}
	check(eventstore.Range{To: 3}, 0, "[1 2 3]")
	check(eventstore.Range{}, 4, "[5 6 7]")
	if err := b.DeleteSnapshots(ctx(t), s, 100); err != nil {
		t.Fatal(err)
	}
	check(eventstore.Range{}, 0, "[1 2 3 4 5 6 7]")
	// Snapshot items never show up as events.
	assertVersions(t, mustLoad(t, b, s, eventstore.Range{}), 1, 2, 3, 4, 5, 6, 7)
}

func testSnapshotsAsOf(t *testing.T, b eventstore.Backend) {
	s := stream("snapasof")
	t0 := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	evs := drafts("S", 6)
	for i := range evs {
		evs[i].Timestamp = t0.Add(time.Duration(i) * time.Minute)
	}
	mustAppend(t, b, s, eventstore.NoStream, evs...)
	for _, v := range []int64{3, 5} {
		if err := b.SaveSnapshot(ctx(t), snapshotOf(s, v, evs[v-1].Timestamp)); err != nil {
			t.Fatal(err)
		}
	}
	snap, got, err := b.LoadFromSnapshot(ctx(t), s, eventstore.Range{Until: t0.Add(3*time.Minute + 30*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if snap == nil || snap.Version != 3 || fmt.Sprint(versions(got)) != "[4]" {
		t.Fatalf("as of 3.5 min: snapshot %+v, events %v; want snapshot 3 and [4]", snap, versions(got))
	}
}

func testFeed(t *testing.T, b eventstore.Backend) {
	f, ok := b.(eventstore.Feed)
	if !ok {
		t.Log("backend has no global feed: nothing to check")
		return
	}
	head, err := f.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	s := stream("feed")
	written := mustAppend(t, b, s, eventstore.NoStream, drafts("F", 5)...)
	var got []event.Event
	for after := head; ; {
		page, err := f.ReadAll(ctx(t), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("ReadAll returned %d events, limit 2", len(page))
		}
		got = append(got, page...)
		after = page[len(page)-1].Position
	}
	var mine []event.Event
	for i, e := range got {
		if i > 0 && e.Position <= got[i-1].Position {
			t.Fatalf("feed positions not increasing: %d then %d", got[i-1].Position, e.Position)
		}
		if e.AggregateID == s.ID {
			mine = append(mine, e)
		}
	}
	if len(mine) != 5 || mine[0].EventID != written[0].EventID || mine[4].EventID != written[4].EventID {
		t.Fatalf("feed after %d holds %d of the 5 appended events", head, len(mine))
	}
	newHead, _ := f.Head(ctx(t))
	if newHead < written[4].Position {
		t.Fatalf("head %d below the last written position %d", newHead, written[4].Position)
	}
}

// testFeedConcurrent: while 8 writers append, a reader following the feed sees every
// event exactly once and in position order.
func testFeedConcurrent(t *testing.T, b eventstore.Backend) {
	f, ok := b.(eventstore.Feed)
	if !ok {
		t.Log("backend has no global feed: nothing to check")
		return
	}
	head, err := f.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	typ := unique("Fc")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := eventstore.Stream{Type: "Test", ID: unique(fmt.Sprintf("fc%d", w))}
			for i := range each {
				if _, err := b.Append(context.Background(), s, int64(i), []event.Event{draft(typ, i)}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]bool{}
	var last uint64 = head
	count := 0
	deadline := time.Now().Add(time.Minute)
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		page, err := f.ReadAll(ctx(t), last, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if e.Position <= last {
				t.Fatalf("position %d after %d", e.Position, last)
			}
			last = e.Position
			if e.EventType != typ {
				continue
			}
			if seen[e.EventID] {
				t.Fatalf("event %s delivered twice", e.EventID)
			}
			seen[e.EventID] = true
			count++
		}
		if finished && len(page) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader saw %d of %d events within a minute", count, writers*each)
		}
	}
	if count != writers*each {
		t.Fatalf("reader saw %d events, want %d", count, writers*each)
	}
}
