package boltstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/docstore/doctest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/storetest"
)

func open(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	storetest.Run(t, func(*testing.T) eventstore.Backend { return s })
}

func TestDocs(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "events.db"))
	doctest.Run(t, func(*testing.T) docstore.Store { return s })
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st := eventstore.Stream{Type: "T", ID: "a"}
	if _, err := s.Append(context.Background(), st, 0, []event.Event{event.MustNew("E", 1), event.MustNew("E", 2)}); err != nil {
		t.Fatal(err)
	}
	// A second process (here: a second Open) is refused quickly and clearly.
	if _, err := boltstore.Open(path); !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	evs, err := s.Load(context.Background(), st, eventstore.Range{})
	if err != nil || len(evs) != 2 {
		t.Fatalf("after reopen: %v %v", evs, err)
	}
	out, err := s.Append(context.Background(), st, 2, []event.Event{event.MustNew("E", 3)})
	if err != nil || out[0].Position != 3 || out[0].Version != 3 {
		t.Fatalf("append after reopen: %+v %v", out, err)
	}
	if _, err := s.Append(context.Background(), st, 3, nil); !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatal("empty append accepted")
	}
}

const childEnv = "BOLTSTORE_CRASH_CHILD"

// TestKillNineLosesNothingAcknowledged runs a child process that appends in a loop and
// prints each acknowledged version; the parent kills it with SIGKILL at a random moment,
// reopens the file, and checks that every acknowledged event is there and versions are
// contiguous.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		crashChild(path)
		return
	}
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "crash.db")
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillNineLosesNothingAcknowledged$")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := make(chan int64, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if v, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
					acked <- v
				}
			}
			close(acked)
		}()
		time.Sleep(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		var last int64
		for v := range acked {
			last = max(last, v)
		}
		if last == 0 {
			t.Fatalf("round %d: the child acknowledged nothing before it was killed", round)
		}
		s := open(t, path)
		evs, err := s.Load(context.Background(), eventstore.Stream{Type: "Crash", ID: "c"}, eventstore.Range{})
		if err != nil {
			t.Fatalf("round %d: load after crash: %v", round, err)
		}
		if int64(len(evs)) < last {
			t.Fatalf("round %d: %d events on disk, %d were acknowledged", round, len(evs), last)
		}
		for i, e := range evs {
			if e.Version != int64(i+1) {
				t.Fatalf("round %d: version %d at %d", round, e.Version, i)
			}
		}
		t.Logf("round %d: killed after %d acknowledged appends; %d on disk", round, last, len(evs))
	}
}

func crashChild(path string) {
	s, err := boltstore.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st := eventstore.Stream{Type: "Crash", ID: "c"}
	w := bufio.NewWriter(os.Stdout)
	for v := int64(0); ; v++ {
		if _, err := s.Append(context.Background(), st, v, []event.Event{event.MustNew("Tick", v)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Fprintln(w, v+1)
		w.Flush()
	}
}
