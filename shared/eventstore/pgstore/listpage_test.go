package pgstore_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/emulator"
)

// Listings page in the keys' byte order whatever the column's collation: a database
// created with a linguistic locale ("a" before "B") must page exactly as the other
// backends do ("B" before "a"), or a cursor taken from one order skips keys in the other.
func TestListPageIgnoresTheCollation(t *testing.T) {
	ctx := context.Background()
	s := open(t, emulator.Postgres(t))
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE documents ALTER COLUMN key TYPE text COLLATE "und-x-icu"`); err != nil {
		t.Fatalf("a linguistic collation (PostgreSQL is built with ICU): %v", err)
	}
	keys := []string{"a", "B", "b", "A", "é", "Z"}
	err := s.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		for _, k := range keys {
			if err := tx.Put(ctx, "coll", k, map[string]string{"k": k}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A", "B", "Z", "a", "b", "é"}
	var paged []string
	after := ""
	for {
		docs, next, err := s.ListPage(ctx, "coll", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			paged = append(paged, d.Key)
		}
		if next == "" {
			break
		}
		after = next
	}
	var listed []string
	if err := s.List(ctx, "coll", func(k string, _ json.RawMessage) error { listed = append(listed, k); return nil }); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]string{"ListPage": paged, "List": listed} {
		if len(got) != len(want) {
			t.Fatalf("%s: %q, want %q", name, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: %q, want %q (byte order)", name, got, want)
			}
		}
	}
}
