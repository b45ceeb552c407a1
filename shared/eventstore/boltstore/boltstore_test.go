package boltstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/aggregate/repotest"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func open(t testing.TB, path string, opts ...boltstore.Option) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func bg() context.Context { return context.Background() }

// One file serves the whole suite: the suite names everything uniquely, and a shared
// file exercises the indexes with other tests' entries around each test's own.
func TestConformance(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	storetest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestRepository(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	repotest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestDocs(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	doctest.Run(t, func(*testing.T) docstore.Store { return s.Docs() })
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st := eventstore.Stream{Type: "T", ID: "a"}
	first, err := s.Append(bg(), st, 0, []event.Event{event.MustNew("E", 1), event.MustNew("E", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(bg(), eventstore.Snapshot{Stream: st, Version: 2, StateVersion: 1, Timestamp: first[1].Timestamp, State: json.RawMessage(`{"n":2}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, "rm", "a", map[string]int{"n": 2}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(bg(), st, 2, []event.Event{event.MustNew("E", 3)}); !errors.Is(err, boltstore.ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}

	s = open(t, path)
	evs, err := s.Load(bg(), st, eventstore.Range{})
	if err != nil || len(evs) != 2 || evs[0].EventID != first[0].EventID || !evs[1].Timestamp.Equal(first[1].Timestamp) {
		t.Fatalf("after reopen: %+v %v", evs, err)
	}
	snap, tail, err := s.LoadFromSnapshot(bg(), st, eventstore.Range{})
	if err != nil || snap == nil || snap.Version != 2 || len(tail) != 0 {
		t.Fatalf("snapshot after reopen: %+v %v %v", snap, tail, err)
	}
	var doc map[string]int
	if ok, err := s.Get(bg(), "rm", "a", &doc); !ok || err != nil || doc["n"] != 2 {
		t.Fatalf("document after reopen: %v %v %v", doc, ok, err)
	}
	out, err := s.Append(bg(), st, 2, []event.Event{event.MustNew("E", 3)})
	if err != nil || out[0].Position != 3 || out[0].Version != 3 {
		t.Fatalf("append after reopen: %+v %v", out, err)
	}
	if !out[0].Timestamp.After(first[1].Timestamp) {
		t.Fatalf("timestamp after reopen %v not after %v", out[0].Timestamp, first[1].Timestamp)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
}

const (
	childEnv     = "BOLTSTORE_TEST_CHILD" // which child role to play
	childPathEnv = "BOLTSTORE_TEST_PATH"
)

// TestMain lets the test binary play the child processes of the tests below.
func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "crash":
		crashChild(os.Getenv(childPathEnv))
	case "open":
		openChild(os.Getenv(childPathEnv))
	case "fsync":
		fsyncChild(os.Getenv(childPathEnv))
	}
	os.Exit(m.Run())
}

func child(role, path string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childPathEnv+"="+path)
	return cmd
}

// A second user of the file, in this process or another, is refused quickly and clearly
// instead of hanging on the file lock.
func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	open(t, path)
	for _, tc := range []struct {
		name string
		try  func() error
	}{
		{"same process", func() error {
			s, err := boltstore.Open(path, boltstore.WithLockTimeout(200*time.Millisecond))
			if err == nil {
				_ = s.Close()
			}
			return err
		}},
		{"other process", func() error {
			out, err := child("open", path).CombinedOutput()
			if err != nil {
				return fmt.Errorf("child: %v: %s", err, out)
			}
			if !strings.Contains(string(out), "LOCKED") {
				return fmt.Errorf("child opened the file: %s", out)
			}
			return boltstore.ErrLocked
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.try()
			if !errors.Is(err, boltstore.ErrLocked) {
				t.Fatalf("second open: %v, want ErrLocked", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("second open took %v", d)
			}
		})
	}
}

func openChild(path string) {
	s, err := boltstore.Open(path)
	if errors.Is(err, boltstore.ErrLocked) {
		fmt.Println("LOCKED:", err)
		os.Exit(0)
	}
	if err == nil {
		_ = s.Close()
	}
	fmt.Println("OPENED:", err)
	os.Exit(0)
}

const crashWriters = 4

// TestKillNineLosesNothingAcknowledged runs a child process whose writers append
// concurrently (so acknowledgements come from shared group commits) and print each
// acknowledged version; the parent kills it with SIGKILL at a random moment, reopens the
// file, and checks that every acknowledged event is there with its payload, versions are
// contiguous, and bbolt's consistency check passes.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	for round := range 4 {
		path := filepath.Join(t.TempDir(), "crash.db")
		cmd := child("crash", path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := make([]int64, crashWriters)
		read, first := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(read)
			var once sync.Once
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var w int
				var v int64
				if _, err := fmt.Sscanf(sc.Text(), "%d %d", &w, &v); err == nil && w < crashWriters {
					acked[w] = max(acked[w], v)
					once.Do(func() { close(first) })
				}
			}
		}()
		// The random moment is counted from the first acknowledgement, not from the
		// start: a loaded machine may take longer than any fixed delay to get there.
		select {
		case <-first:
		case <-read:
		case <-time.After(time.Minute):
		}
		time.Sleep(time.Duration(rand.IntN(600)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-read
		_ = cmd.Wait()
		total := int64(0)
		for _, v := range acked {
			total += v
		}
		if total == 0 {
			t.Fatalf("round %d: the child acknowledged nothing before it was killed (stderr: %s)", round, stderr.String())
		}

		checkFile(t, path)
		s := open(t, path)
		onDisk := 0
		for w := range crashWriters {
			evs, err := s.Load(bg(), crashStream(w), eventstore.Range{})
			if err != nil {
				t.Fatalf("round %d: load after crash: %v", round, err)
			}
			if int64(len(evs)) < acked[w] {
				t.Fatalf("round %d writer %d: %d events on disk, %d were acknowledged", round, w, len(evs), acked[w])
			}
			for i, e := range evs {
				var p crashPayload
				if e.Version != int64(i+1) || e.Decode(&p) != nil || p.W != w || p.V != e.Version {
					t.Fatalf("round %d writer %d: event %d is v%d %s", round, w, i, e.Version, e.Payload)
				}
			}
			onDisk += len(evs)
		}
		// The file takes appends again where it stopped.
		if _, err := s.Append(bg(), crashStream(0), int64(len(mustLoad(t, s, crashStream(0)))), []event.Event{event.MustNew("Tick", 0)}); err != nil {
			t.Fatalf("round %d: append after crash: %v", round, err)
		}
		t.Logf("round %d: killed after %d acknowledged appends; %d on disk", round, total, onDisk)
	}
}

func mustLoad(t *testing.T, s *boltstore.Store, st eventstore.Stream) []event.Event {
	t.Helper()
	evs, err := s.Load(bg(), st, eventstore.Range{})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// checkFile runs bbolt's own consistency check on a closed store file.
func checkFile(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s after the crash: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("consistency check after the crash: %v", err)
	}
}

type crashPayload struct {
	W int   `json:"w"`
	V int64 `json:"v"`
}

func crashStream(w int) eventstore.Stream {
	return eventstore.Stream{Type: "Crash", ID: fmt.Sprintf("w%d", w)}
}

func crashChild(path string) {
	s, err := boltstore.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for i := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(1); ; v++ {
				if _, err := s.Append(bg(), crashStream(i), v-1, []event.Event{event.MustNew("Tick", crashPayload{W: i, V: v})}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(w, i, v)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// Store-assigned timestamps follow position order whatever the wall clock does, also
// across a restart; caller-given timestamps are kept as given, and time-window queries
// filter on the timestamps, not on positions.
func TestTimestamps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var clock time.Time
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s, err := boltstore.Open(path, boltstore.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	st := eventstore.Stream{Type: "Clock", ID: "c"}
	caller := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []event.Event
	for _, step := range []struct {
		clock  time.Time
		given  time.Time
		reopen bool
	}{
		{clock: base},
		{clock: base.Add(time.Hour)},
		{clock: base.Add(-time.Hour)}, // the wall clock stepped back
		{clock: base.Add(time.Hour)},  // and stands still
		{clock: base, given: caller},  // the caller's own timestamp, far in the past
		{clock: base.Add(-time.Minute), reopen: true},
	} {
		if step.reopen {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = boltstore.Open(path, boltstore.WithClock(now)); err != nil {
				t.Fatal(err)
			}
		}
		setClock(step.clock)
		e := event.MustNew("Tick", len(got))
		e.Timestamp = step.given
		out, err := s.Append(bg(), st, eventstore.Any, []event.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out[0])
	}
	defer s.Close()
	var last time.Time
	for i, e := range got {
		if i == 4 {
			if !e.Timestamp.Equal(caller) {
				t.Fatalf("caller's timestamp stored as %v", e.Timestamp)
			}
			continue
		}
		if !e.Timestamp.After(last) {
			t.Fatalf("event %d at %v, not after %v", i, e.Timestamp, last)
		}
		last = e.Timestamp
	}
	for _, tc := range []struct {
		name         string
		since, until time.Time
		want         []int64
	}{
		{"everything", time.Time{}, time.Time{}, []int64{1, 2, 3, 4, 5, 6}},
		{"until before the store's times", time.Time{}, base.Add(-time.Hour), []int64{5}},
		{"since the first", got[0].Timestamp, time.Time{}, []int64{1, 2, 3, 4, 6}},
		{"a window", got[1].Timestamp, got[2].Timestamp, []int64{2, 3}},
		{"nothing", caller.Add(time.Second), base.Add(-time.Hour), nil},
	} {
		for _, f := range []eventstore.Filter{
			{EventType: "Tick", Since: tc.since, Until: tc.until, Limit: 1},
			{Since: tc.since, Until: tc.until, Limit: 2}, // no index: the log itself
		} {
			var vs []int64
			for {
				p, err := s.Query(bg(), f)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range p.Events {
					vs = append(vs, e.Version)
				}
				if f.Cursor = p.NextCursor; f.Cursor == "" {
					break
				}
			}
			if fmt.Sprint(vs) != fmt.Sprint(tc.want) {
				t.Errorf("%s (%+v): versions %v, want %v", tc.name, f, vs, tc.want)
			}
		}
	}
}

// Index values are strings within the limits eventstore.CheckAppend enforces (0x00 and
// values over MaxTraceIDBytes are refused before anything is written, on every backend:
// storetest's KeyFieldLimits and QueryFilterLimits): one that begins with another must
// not alias it.
func TestQueryIndexEdgeCases(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	atLimit := strings.Repeat("d", eventstore.MaxTraceIDBytes)
	for i, e := range []struct{ typ, corr string }{
		{"A", "x"},
		{"A.zzzzzzzz", "x.yyyyyyyy"},
		{"A", atLimit},
		{"B", atLimit[1:] + "!"},
	} {
		ev := event.MustNew(e.typ, i)
		ev.Metadata.CorrelationID = e.corr
		if _, err := s.Append(bg(), eventstore.Stream{Type: "Idx", ID: fmt.Sprint("s", i)}, 0, []event.Event{ev}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	for _, tc := range []struct {
		name string
		f    eventstore.Filter
		want int
	}{
		{"type A", eventstore.Filter{EventType: "A"}, 2},
		{"type extending A", eventstore.Filter{EventType: "A.zzzzzzzz"}, 1},
		{"correlation x", eventstore.Filter{CorrelationID: "x"}, 1},
		{"correlation extending x", eventstore.Filter{CorrelationID: "x.yyyyyyyy"}, 1},
		{"correlation at the limit", eventstore.Filter{CorrelationID: atLimit}, 1},
		{"correlation at the limit and type", eventstore.Filter{CorrelationID: atLimit[1:] + "!", EventType: "B"}, 1},
		{"cursor at the end of positions", eventstore.Filter{EventType: "A", Cursor: eventstore.EncodeCursor(map[string]uint64{"after": math.MaxInt64})}, 0},
	} {
		p, err := s.Query(bg(), tc.f)
		if err != nil || len(p.Events) != tc.want {
			t.Errorf("%s: %d events (%v), want %d", tc.name, len(p.Events), err, tc.want)
		}
		for _, e := range p.Events {
			if !tc.f.Matches(e) {
				t.Errorf("%s: %s/%q does not match", tc.name, e.EventType, e.Metadata.CorrelationID)
			}
		}
	}
	if evs, err := s.ReadAll(bg(), math.MaxUint64, 10); err != nil || len(evs) != 0 {
		t.Fatalf("ReadAll after the last possible position: %d events, %v", len(evs), err)
	}
}
