package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
	"github.com/ecmstore/ecmstore/shared/migrate"
)

func TestMain(m *testing.M) { emulator.Main(m) }

var update = flag.Bool("update", false, "rewrite testdata/export.golden.jsonl")

var bg = context.Background()

// store is a target backend; each test gets an empty one.
type store interface {
	eventstore.Store
	eventstore.Feed
}

var targets = []struct {
	name string
	open func(t *testing.T) store
}{
	{"memory", func(*testing.T) store { return memstore.New() }},
	{"embedded", func(t *testing.T) store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "ecmstore.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"postgres", func(t *testing.T) store {
		s, err := pgstore.Open(bg, emulator.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

var base = time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.UTC)

// history appends events that exercise every stored field: caller-given timestamps
// (some older than their predecessors in other streams), metadata, old schema versions,
// payloads whose text a store may reformat (spacing, key order, long numbers, unicode).
func history(t *testing.T, s eventstore.Store, streams, perStream int) {
	t.Helper()
	for i := range streams {
		st := eventstore.Stream{Type: []string{"BankAccount", "Order", "user-context"}[i%3], ID: fmt.Sprintf("s-%03d", i)}
		for v := 1; v <= perStream; {
			n := min(1+(i+v)%3, perStream-v+1)
			batch := make([]event.Event, n)
			for j := range batch {
				batch[j] = event.Event{
					EventID:       fmt.Sprintf("id-%03d-%03d", i, v+j),
					EventType:     fmt.Sprintf("Happened%d", (v+j)%4),
					SchemaVersion: 1 + (v+j)%3,
					Timestamp:     base.Add(time.Duration(v+j)*time.Second - time.Duration(i)*time.Minute),
					Payload:       json.RawMessage(fmt.Sprintf(`{ "z": %d,  "a": 12345678901234567890.50, "text": "h\u00e9 <%d>", "nested": {"y": [1, 2], "x": null} }`, i, v+j)),
					Metadata:      event.Metadata{Actor: "actor-" + fmt.Sprint(i%5), Source: "test", CorrelationID: fmt.Sprintf("c-%d", v), CausationID: "cmd"},
				}
			}
			if _, err := s.Append(bg, st, int64(v-1), batch); err != nil {
				t.Fatal(err)
			}
			v += n
		}
	}
}

func manifest(t *testing.T, s eventstore.Feed) *migrate.Manifest {
	t.Helper()
	m := migrate.NewManifest()
	if err := migrate.ReadFeed(bg, s, m.Add); err != nil {
		t.Fatal(err)
	}
	return m
}

func noCheckpoint() migrate.Checkpoints { return &memCheckpoint{} }

type memCheckpoint struct {
	mu  sync.Mutex
	pos uint64
}

func (c *memCheckpoint) Load(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos, nil
}

func (c *memCheckpoint) Save(_ context.Context, p uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos = p
	return nil
}

// A copy keeps every field: ids, versions, timestamps, schema versions, metadata and
// payload values, on every target backend.
func TestCopyKeepsEveryField(t *testing.T) {
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := memstore.New(), tc.open(t)
			history(t, src, 30, 7)
			stats, err := migrate.Copy(bg, src, dst, noCheckpoint(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if stats.Read != 210 || stats.Written != 210 || stats.Skipped != 0 {
				t.Fatalf("stats %+v", stats)
			}
			m := manifest(t, src)
			if _, err := migrate.Verify(bg, dst, m, nil); err != nil {
				t.Fatal(err)
			}
			if err := migrate.VerifyCount(bg, dst, m); err != nil {
				t.Fatal(err)
			}
			// Field by field, not only through the digest.
			st := eventstore.Stream{Type: "Order", ID: "s-001"}
			want, _ := src.Load(bg, st, eventstore.Range{})
			got, err := dst.Load(bg, st, eventstore.Range{})
			if err != nil || len(got) != len(want) {
				t.Fatalf("%s: %d events, %v", st, len(got), err)
			}
			for i := range want {
				w, g := want[i], got[i]
				if g.EventID != w.EventID || g.Version != w.Version || !g.Timestamp.Equal(w.Timestamp) ||
					g.SchemaVersion != w.SchemaVersion || g.Metadata != w.Metadata || g.EventType != w.EventType {
					t.Fatalf("v%d: got %+v, want %+v", w.Version, g, w)
				}
				var gv, wv any
				_ = json.Unmarshal(g.Payload, &gv)
				_ = json.Unmarshal(w.Payload, &wv)
				if fmt.Sprint(gv) != fmt.Sprint(wv) {
					t.Fatalf("v%d payload: %s, want %s", w.Version, g.Payload, w.Payload)
				}
			}
		})
	}
}

// failing fails appends from the nth on; lostAck writes that one before failing, as when
// the answer of a successful write is lost.
type failing struct {
	eventstore.Store
	mu      sync.Mutex
	n       int
	lostAck bool
}

var errFault = errors.New("injected")

func (f *failing) Append(ctx context.Context, s eventstore.Stream, exp int64, evs []event.Event) ([]event.Event, error) {
	f.mu.Lock()
	f.n--
	n := f.n
	f.mu.Unlock()
	if n > 0 {
		return f.Store.Append(ctx, s, exp, evs)
	}
	if f.lostAck && n == 0 {
		if _, err := f.Store.Append(ctx, s, exp, evs); err != nil {
			return nil, err
		}
	}
	return nil, errFault
}

// Cut at many points, with and without the answer of the last write lost, a copy run
// again and again ends equal to the source, each event written once.
func TestCopyResumesAfterFaults(t *testing.T) {
	for _, tc := range targets {
		for _, lost := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/lostAck=%v", tc.name, lost), func(t *testing.T) {
				src, dst := memstore.New(), tc.open(t)
				history(t, src, 60, 25) // 1,500 events: more than one page
				cp := noCheckpoint()
				written, runs := 0, 0
				for _, cut := range []int{3, 17, 1, 40, 9, 250} {
					runs++
					stats, err := migrate.Copy(bg, src, &failing{Store: dst, n: cut, lostAck: lost}, cp, nil)
					written += stats.Written
					if err == nil {
						break
					}
					if !errors.Is(err, errFault) {
						t.Fatalf("run %d: %v", runs, err)
					}
				}
				stats, err := migrate.Copy(bg, src, dst, cp, nil)
				if err != nil {
					t.Fatal(err)
				}
				written += stats.Written
				m := manifest(t, src)
				if _, err := migrate.Verify(bg, dst, m, nil); err != nil {
					t.Fatal(err)
				}
				if err := migrate.VerifyCount(bg, dst, m); err != nil {
					t.Fatal(err)
				}
				if !lost && written != m.Events() {
					t.Fatalf("%d events written over %d runs for %d", written, runs+1, m.Events())
				}
			})
		}
	}
}

// A copy of a store that is being written meanwhile, finished by a second run, holds
// everything; the race detector watches the copy and the writers.
func TestCopyWhileTheSourceIsWritten(t *testing.T) {
	src, dst := memstore.New(), targets[1].open(t)
	history(t, src, 10, 10)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := eventstore.Stream{Type: "Live", ID: fmt.Sprintf("w%d", w)}
			for v := range 200 {
				if _, err := src.Append(bg, st, int64(v), []event.Event{event.MustNew("Tick", map[string]int{"v": v})}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	cp := noCheckpoint()
	if _, err := migrate.Copy(bg, src, dst, cp, nil); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := migrate.Copy(bg, src, dst, cp, nil); err != nil {
		t.Fatal(err)
	}
	m := manifest(t, src)
	if _, err := migrate.Verify(bg, dst, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := migrate.VerifyCount(bg, dst, m); err != nil {
		t.Fatal(err)
	}
}

// Verification fails loudly on any difference, and a target that holds other events
// where the source has its own is refused, not overwritten.
func TestDifferencesAreReported(t *testing.T) {
	st := eventstore.Stream{Type: "Order", ID: "s-001"}
	tests := []struct {
		name                         string
		before                       func(dst eventstore.Store) // on the target before the copy
		after                        func(dst eventstore.Store) // on the target after it
		copyErr, verifyErr, countErr error
	}{
		{name: "an extra event in a stream", after: func(dst eventstore.Store) {
			_, _ = dst.Append(bg, st, eventstore.Any, []event.Event{event.MustNew("Extra", map[string]int{})})
		}, verifyErr: migrate.ErrMismatch, countErr: migrate.ErrMismatch},
		{name: "an extra stream", after: func(dst eventstore.Store) {
			_, _ = dst.Append(bg, eventstore.Stream{Type: "Other", ID: "x"}, 0, []event.Event{event.MustNew("Extra", map[string]int{})})
		}, countErr: migrate.ErrMismatch},
		{name: "another event at a copied version", before: func(dst eventstore.Store) {
			_, _ = dst.Append(bg, st, 0, []event.Event{event.MustNew("Foreign", map[string]int{})})
		}, copyErr: migrate.ErrDiverged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := memstore.New(), targets[1].open(t)
			history(t, src, 3, 4)
			if tc.before != nil {
				tc.before(dst)
			}
			_, err := migrate.Copy(bg, src, dst, noCheckpoint(), nil)
			if !errors.Is(err, tc.copyErr) || (tc.copyErr == nil) != (err == nil) {
				t.Fatalf("copy: %v, want %v", err, tc.copyErr)
			}
			if tc.copyErr != nil {
				return
			}
			tc.after(dst)
			m := manifest(t, src)
			rep, err := migrate.Verify(bg, dst, m, nil)
			if !errors.Is(err, tc.verifyErr) || (tc.verifyErr == nil) != (err == nil) {
				t.Fatalf("verify: %v, want %v", err, tc.verifyErr)
			}
			if tc.verifyErr != nil && (len(rep.Mismatches) != 1 || rep.Mismatches[0].Source.Stream != st ||
				rep.Mismatches[0].Target.Events != rep.Mismatches[0].Source.Events+1) {
				t.Fatalf("report %+v", rep)
			}
			if err := migrate.VerifyCount(bg, dst, m); !errors.Is(err, tc.countErr) {
				t.Fatalf("count: %v, want %v", err, tc.countErr)
			}
		})
	}
}

// The export format is one stored event per line with every field (golden file); an
// import of it into each backend verifies, and a second import writes nothing.
func TestExportImport(t *testing.T) {
	src := memstore.New()
	history(t, src, 4, 3)
	var buf bytes.Buffer
	n, err := migrate.Export(bg, src, &buf, nil)
	if err != nil || n != 12 {
		t.Fatalf("export: %d, %v", n, err)
	}
	golden := filepath.Join("testdata", "export.golden.jsonl")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("export differs from %s (go test -update rewrites it):\n%s", golden, buf.Bytes())
	}
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			dst := tc.open(t)
			stats, m, err := migrate.Import(bg, bytes.NewReader(want), dst, nil)
			if err != nil || stats.Written != 12 {
				t.Fatalf("import: %+v %v", stats, err)
			}
			if _, err := migrate.Verify(bg, dst, m, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := migrate.Verify(bg, dst, manifest(t, src), nil); err != nil {
				t.Fatal(err)
			}
			stats, _, err = migrate.Import(bg, bytes.NewReader(want), dst, nil)
			if err != nil || stats.Written != 0 || stats.Skipped != 12 {
				t.Fatalf("second import: %+v %v", stats, err)
			}
		})
	}
	for _, bad := range []string{`{"eventId":"x"}`, `not json`} {
		if _, _, err := migrate.Import(bg, bytes.NewReader([]byte(bad+"\n")), memstore.New(), nil); err == nil {
			t.Fatalf("import of %s succeeded", bad)
		}
	}
}
