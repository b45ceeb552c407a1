package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// testdata/format1.db was written by the release before the binary envelope (values of
// 0x01 + header + JSON, and one plain JSON value of the release before that);
// format1.events.json is what that release's ReadAll returned for it. A user upgrading
// keeps every event, snapshot and document, and the file is rewritten once.
func TestOpenMigratesEarlierFormats(t *testing.T) {
	path := format1Copy(t)
	var want []event.Event
	golden, err := os.ReadFile("testdata/format1.events.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(golden, &want); err != nil {
		t.Fatal(err)
	}
	if got := logFormats(t, path); got[formatBinary] != 0 || got['{'] != 1 || got[formatJSONHeader] != len(want)-1 {
		t.Fatalf("the fixture's formats are %v: not a file of the earlier formats", got)
	}

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	all, err := s.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	assertSameEvents(t, "ReadAll", all, want)

	acc := eventstore.Stream{Type: "Account", ID: "acc-1"}
	var accWant []event.Event
	for _, e := range want {
		if eventstore.StreamOf(e) == acc {
			accWant = append(accWant, e)
		}
	}
	for _, tc := range []struct {
		name string
		got  func() ([]event.Event, error)
		want []event.Event
	}{
		{"Load", func() ([]event.Event, error) { return s.Load(ctx, acc, eventstore.Range{}) }, accWant},
		{"Query by correlation", func() ([]event.Event, error) {
			p, err := s.Query(ctx, eventstore.Filter{CorrelationID: "corr-1"})
			return p.Events, err
		}, want[:1]},
		{"Query by type (the plain JSON value)", func() ([]event.Event, error) {
			p, err := s.Query(ctx, eventstore.Filter{EventType: "Placed"})
			return p.Events, err
		}, []event.Event{want[2]}},
	} {
		got, err := tc.got()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		assertSameEvents(t, tc.name, got, tc.want)
	}
	if v, found, err := s.FindEvent(ctx, acc, want[0].EventID); err != nil || !found || v != 1 {
		t.Fatalf("FindEvent = %d %v %v, want version 1", v, found, err)
	}
	snap, rest, err := s.LoadFromSnapshot(ctx, acc, eventstore.Range{})
	if err != nil || snap == nil || snap.Version != 2 || len(rest) != 1 || rest[0].Version != 3 {
		t.Fatalf("LoadFromSnapshot = %+v, %d events, %v; want the snapshot at 2 and event 3", snap, len(rest), err)
	}
	var doc struct{ Balance int }
	if err := s.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		found, err := tx.Get(ctx, "accounts", "acc-1", &doc)
		if err == nil && !found {
			err = errors.New("missing")
		}
		return err
	}); err != nil || doc.Balance != 3 {
		t.Fatalf("document accounts/acc-1: %+v, %v", doc, err)
	}
	// Appending after the migration continues the stream and the log.
	next, err := s.Append(ctx, acc, 3, []event.Event{event.MustNew("Deposited", map[string]int{"amount": 1})})
	if err != nil || next[0].Version != 4 || next[0].Position != uint64(len(want)+1) {
		t.Fatalf("append after migration: %+v, %v", next, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if got := logFormats(t, path); got[formatBinary] != len(want)+1 || len(got) != 1 {
		t.Fatalf("after Open the log's formats are %v, want only the binary envelope", got)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := migrateFormat(db); err != nil || n != 0 {
		t.Fatalf("a second migration rewrote %d values (%v), want none", n, err)
	}
}

// A migration interrupted after some steps resumes: values already rewritten are skipped.
func TestMigrationResumes(t *testing.T) {
	path := format1Copy(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Half-migrated by hand: the first value rewritten, no format recorded.
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bLog)
		k, v := b.Cursor().First()
		body, err := reencode(1, v)
		if err != nil {
			return err
		}
		return b.Put(append([]byte(nil), k...), body)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := migrateFormat(db)
	if err != nil || n != 3 {
		t.Fatalf("resumed migration rewrote %d values (%v), want the 3 left", n, err)
	}
	_ = db.Close()
}

// format1Copy copies the fixture where a test may change it.
func format1Copy(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ecmstore.db")
	raw, err := os.ReadFile("testdata/format1.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func logFormats(t *testing.T, path string) map[byte]int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	formats := map[byte]int{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bLog).ForEach(func(_, v []byte) error {
			formats[v[0]]++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return formats
}

func assertSameEvents(t *testing.T, what string, got, want []event.Event) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}
