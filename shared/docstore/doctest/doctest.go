// Package doctest is the conformance suite every document-store backend runs, unchanged:
//
//	doctest.Run(t, func(t *testing.T) docstore.Store { return newDocs(t) })
//
// Collections are named uniquely per test, so one database may serve every test.
package doctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

// Constructor returns the store under test; it may return the same store every time.
type Constructor func(t *testing.T) docstore.Store

// Run runs the whole suite.
func Run(t *testing.T, newStore Constructor) {
	tests := []struct {
		name string
		fn   func(*testing.T, docstore.Store)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"ReadYourWrites", testReadYourWrites},
		{"ErrorAborts", testErrorAborts},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"ConcurrentCreateOnce", testCreateOnce},
		{"CreateIfAbsent", testCreateIfAbsent},
		{"ConcurrentTakeOverOnce", testTakeOverOnce},
		{"ListAndDeleteCollection", testListAndDeleteCollection},
		{"ManyWrites", testManyWrites},
		{"KeyLimits", testKeyLimits},
		{"ListPage", testListPage},
		{"ListPageInvalid", testListPageInvalid},
		{"ListPageConcurrentWrites", testListPageConcurrentWrites},
		{"ListPageCancelled", testListPageCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var seq atomic.Int64

func coll(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e12, seq.Add(1))
}

type doc struct {
	N    int    `json:"n"`
	Name string `json:"name,omitempty"`
}

func bg() context.Context { return context.Background() }

func mustGet(t *testing.T, s docstore.Store, c, k string) (doc, bool) {
	t.Helper()
	var d doc
	ok, err := s.Get(bg(), c, k, &d)
	if err != nil {
		t.Fatalf("get %s/%s: %v", c, k, err)
	}
	return d, ok
}

func testPutGetDelete(t *testing.T, s docstore.Store) {
	c := coll("pgd")
	if _, ok := mustGet(t, s, c, "a"); ok {
		t.Fatal("missing document found")
	}
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		if err := tx.Put(ctx, c, "a", doc{N: 1, Name: "ünï"}); err != nil {
			return err
		}
		return tx.Put(ctx, c, "b:x.y_z-1", doc{N: 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := mustGet(t, s, c, "a"); !ok || d.N != 1 || d.Name != "ünï" {
		t.Fatalf("a = %+v, %v", d, ok)
	}
	if d, ok := mustGet(t, s, c, "b:x.y_z-1"); !ok || d.N != 2 {
		t.Fatalf("b = %+v, %v", d, ok)
	}
	if _, ok := mustGet(t, s, coll("other"), "a"); ok {
		t.Fatal("document visible in another collection")
	}
	err = s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error { return tx.Delete(ctx, c, "a") })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mustGet(t, s, c, "a"); ok {
		t.Fatal("deleted document still there")
	}
	// Deleting a missing document is not an error.
	if err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error { return tx.Delete(ctx, c, "zzz") }); err != nil {
		t.Fatalf("delete of a missing document: %v", err)
	}
}

func testReadYourWrites(t *testing.T, s docstore.Store) {
	c := coll("ryw")
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		if err := tx.Put(ctx, c, "k", doc{N: 7}); err != nil {
			return err
		}
		var d doc
		if ok, err := tx.Get(ctx, c, "k", &d); err != nil || !ok || d.N != 7 {
			return fmt.Errorf("own write not visible: %+v %v %v", d, ok, err)
		}
		if err := tx.Delete(ctx, c, "k"); err != nil {
			return err
		}
		if ok, err := tx.Get(ctx, c, "k", &d); err != nil || ok {
			return fmt.Errorf("own delete not visible: %v %v", ok, err)
		}
		return tx.Put(ctx, c, "k", doc{N: 8})
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := mustGet(t, s, c, "k"); d.N != 8 {
		t.Fatalf("k = %+v, want 8", d)
	}
}

func testErrorAborts(t *testing.T, s docstore.Store) {
	c := coll("abort")
	boom := errors.New("boom")
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		if err := tx.Put(ctx, c, "x", doc{N: 1}); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if _, ok := mustGet(t, s, c, "x"); ok {
		t.Fatal("aborted transaction left a write behind")
	}
}

// Two documents updated together by racing transactions: no lost update, and the pair
// always moves together (atomicity and isolation).
func testConcurrentIncrements(t *testing.T, s docstore.Store) {
	c := coll("inc")
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
					var a, b doc
					if _, err := tx.Get(ctx, c, "a", &a); err != nil {
						return err
					}
					if _, err := tx.Get(ctx, c, "b", &b); err != nil {
						return err
					}
					if a.N != b.N {
						return fmt.Errorf("torn read: a=%d b=%d", a.N, b.N)
					}
					if err := tx.Put(ctx, c, "a", doc{N: a.N + 1}); err != nil {
						return err
					}
					return tx.Put(ctx, c, "b", doc{N: b.N + 1})
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("update: %v", err)
	}
	a, _ := mustGet(t, s, c, "a")
	b, _ := mustGet(t, s, c, "b")
	if a.N != workers*each || b.N != workers*each {
		t.Fatalf("a=%d b=%d, want %d each (lost update)", a.N, b.N, workers*each)
	}
}

// Create-if-absent under contention: exactly one transaction sees the document missing
// (how idempotency keys and parking claim a slot).
func testCreateOnce(t *testing.T, s docstore.Store) {
	c := coll("once")
	if n := race(t, s, func(ctx context.Context, tx docstore.Tx, i int) (bool, error) {
		var d doc
		ok, err := tx.Get(ctx, c, "slot", &d)
		if err != nil || ok {
			return false, err
		}
		return true, tx.Put(ctx, c, "slot", doc{N: i})
	}); n != 1 {
		t.Fatalf("%d transactions created the slot, want 1", n)
	}
}

// Replace-if-unchanged under contention: of racing transactions that read the same
// existing document and replace it only if it still is what they read, exactly one does
// (how a retry takes over an idempotency record whose lease lapsed).
func testTakeOverOnce(t *testing.T, s docstore.Store) {
	c := coll("takeover")
	if err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		return tx.Put(ctx, c, "claim", doc{N: 0})
	}); err != nil {
		t.Fatal(err)
	}
	if n := race(t, s, func(ctx context.Context, tx docstore.Tx, i int) (bool, error) {
		var d doc
		ok, err := tx.Get(ctx, c, "claim", &d)
		if err != nil || !ok || d.N != 0 {
			return false, err
		}
		return true, tx.Put(ctx, c, "claim", doc{N: i + 1})
	}); n != 1 {
		t.Fatalf("%d transactions took the document over, want 1", n)
	}
}

// race runs 16 transactions of claim at once and returns how many committed having
// claimed (claim's bool of the attempt that committed).
func race(t *testing.T, s docstore.Store, claim func(ctx context.Context, tx docstore.Tx, i int) (bool, error)) int {
	const n = 16
	var claimed atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine bool
			err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) (err error) {
				mine, err = claim(ctx, tx, i)
				return err
			})
			if err != nil {
				t.Errorf("update: %v", err)
			}
			if mine {
				claimed.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(claimed.Load())
}

// docstore.Create (one conditional put on DynamoDB, an Update elsewhere) under
// contention: exactly one caller creates, every other one is handed the winner's document,
// and the document is the winner's.
func testCreateIfAbsent(t *testing.T, s docstore.Store) {
	c := coll("create")
	const n = 16
	var mu sync.Mutex
	winners, seen := []int{}, map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			created, existing, err := docstore.Create(bg(), s, c, "slot", doc{N: i, Name: "claim"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("create: %v", err)
			case created:
				winners = append(winners, i)
			default:
				var d doc
				if err := json.Unmarshal(existing, &d); err != nil {
					t.Errorf("existing document %q: %v", existing, err)
				}
				seen[fmt.Sprint(d.N)]++
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d callers created the document (%v), want 1", len(winners), winners)
	}
	if got, ok := mustGet(t, s, c, "slot"); !ok || got.N != winners[0] {
		t.Fatalf("stored %+v (present %v), want the winner's n=%d", got, ok, winners[0])
	}
	if len(seen) != 1 || seen[fmt.Sprint(winners[0])] != n-1 {
		t.Fatalf("losers were handed %v, want the winner's document %d times", seen, n-1)
	}
	// Present: nothing written.
	created, existing, err := docstore.Create(bg(), s, c, "slot", doc{N: -1})
	if err != nil || created || len(existing) == 0 {
		t.Fatalf("create over a document: created %v, existing %q, err %v", created, existing, err)
	}
	if got, _ := mustGet(t, s, c, "slot"); got.N != winners[0] {
		t.Fatalf("create over a document changed it to %+v", got)
	}
}

func testListAndDeleteCollection(t *testing.T, s docstore.Store) {
	c, other := coll("list"), coll("keep")
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		for i, k := range []string{"b", "a", "c"} {
			if err := tx.Put(ctx, c, k, doc{N: i}); err != nil {
				return err
			}
		}
		return tx.Put(ctx, other, "a", doc{N: 9})
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	err = s.List(bg(), c, func(k string, raw json.RawMessage) error {
		var d doc
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil || fmt.Sprint(keys) != "[a b c]" {
		t.Fatalf("list = %v, %v; want [a b c]", keys, err)
	}
	if err := s.DeleteCollection(bg(), c); err != nil {
		t.Fatal(err)
	}
	keys = nil
	_ = s.List(bg(), c, func(k string, _ json.RawMessage) error { keys = append(keys, k); return nil })
	if len(keys) != 0 {
		t.Fatalf("collection not emptied: %v", keys)
	}
	if _, ok := mustGet(t, s, other, "a"); !ok {
		t.Fatal("DeleteCollection removed another collection's document")
	}
}

func testManyWrites(t *testing.T, s docstore.Store) {
	c := coll("many")
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		for i := range docstore.MaxUpdateWrites {
			if err := tx.Put(ctx, c, fmt.Sprint(i), doc{N: i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%d writes in one update: %v", docstore.MaxUpdateWrites, err)
	}
	err = s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		for i := range docstore.MaxUpdateWrites + 1 {
			if err := tx.Put(ctx, c, fmt.Sprint(i), doc{N: -1}); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, docstore.ErrTooManyWrites) {
		t.Fatalf("%d writes: err = %v, want ErrTooManyWrites", docstore.MaxUpdateWrites+1, err)
	}
	if d, _ := mustGet(t, s, c, "0"); d.N != 0 {
		t.Fatal("rejected update wrote something")
	}
}

// testKeyLimits: a collection name or key some backend cannot use as a key is refused by
// every backend, by each operation, before anything is read or written; a failed Put
// aborts its update. At the limits every backend stores and lists the document.
func testKeyLimits(t *testing.T, s docstore.Store) {
	c := coll("keys")
	for _, tc := range []struct{ name, coll, key string }{
		{"empty key", c, ""},
		{"key over a DynamoDB sort key", c, strings.Repeat("k", docstore.MaxKeyBytes+1)},
		{"key over a bbolt key", c, strings.Repeat("k", 40<<10)},
		{"key with NUL", c, "a\x00b"},
		{"key not UTF-8", c, "a\xffb"},
		{"empty collection", "", "a"},
		{"long collection", strings.Repeat("c", docstore.MaxCollectionBytes+1), "a"},
		{"collection with NUL", c + "\x00", "a"},
	} {
		type keyOp struct {
			op string
			fn func() error
		}
		ops := []keyOp{
			{"Put", func() error {
				return s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
					if err := tx.Put(ctx, c, "good", doc{N: 1}); err != nil {
						return err
					}
					return tx.Put(ctx, tc.coll, tc.key, doc{N: 2})
				})
			}},
			{"Delete", func() error {
				return s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
					if err := tx.Put(ctx, c, "good", doc{N: 1}); err != nil {
						return err
					}
					return tx.Delete(ctx, tc.coll, tc.key)
				})
			}},
			{"Tx.Get", func() error {
				return s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
					_, err := tx.Get(ctx, tc.coll, tc.key, &doc{})
					return err
				})
			}},
			{"Get", func() error { _, err := s.Get(bg(), tc.coll, tc.key, &doc{}); return err }},
		}
		if tc.key == "a" { // a bad collection name: the collection-wide operations too
			ops = append(ops,
				keyOp{"List", func() error { return s.List(bg(), tc.coll, func(string, json.RawMessage) error { return nil }) }},
				keyOp{"DeleteCollection", func() error { return s.DeleteCollection(bg(), tc.coll) }})
		}
		for _, o := range ops {
			if err := o.fn(); !errors.Is(err, docstore.ErrInvalidKey) {
				t.Errorf("%s: %s: err = %v, want ErrInvalidKey", tc.name, o.op, err)
			}
		}
	}
	var n int
	if err := s.List(bg(), c, func(string, json.RawMessage) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("refused updates left %d documents (%v)", n, err)
	}

	long := (coll("lim") + strings.Repeat("c", docstore.MaxCollectionBytes))[:docstore.MaxCollectionBytes]
	key := strings.Repeat("é", docstore.MaxKeyBytes/2)
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, long, key, doc{N: 7}) })
	if err != nil {
		t.Fatalf("put at the limits: %v", err)
	}
	if d, ok := mustGet(t, s, long, key); !ok || d.N != 7 {
		t.Fatalf("get at the limits: %+v %v", d, ok)
	}
	var keys []string
	if err := s.List(bg(), long, func(k string, _ json.RawMessage) error { keys = append(keys, k); return nil }); err != nil || len(keys) != 1 || keys[0] != key {
		t.Fatalf("list at the limits: %d keys, %v", len(keys), err)
	}
	if err := s.DeleteCollection(bg(), long); err != nil {
		t.Fatal(err)
	}
}

// pageAll reads a collection page by page, failing on any page out of order.
func pageAll(t *testing.T, s docstore.Store, c string, limit int) ([]docstore.Doc, int) {
	t.Helper()
	var all []docstore.Doc
	after, pages := "", 0
	for {
		docs, next, err := s.ListPage(bg(), c, after, limit)
		if err != nil {
			t.Fatalf("page after %q: %v", after, err)
		}
		pages++
		if len(docs) > limit {
			t.Fatalf("page after %q: %d documents, limit %d", after, len(docs), limit)
		}
		for _, d := range docs {
			if d.Key <= after {
				t.Fatalf("page after %q holds %q: out of order or repeated", after, d.Key)
			}
			after = d.Key
		}
		all = append(all, docs...)
		if next == "" {
			return all, pages
		}
		if len(docs) == 0 || next != docs[len(docs)-1].Key {
			t.Fatalf("next cursor %q after a page of %d ending %q", next, len(docs), after)
		}
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
	}
}

func testListPage(t *testing.T, s docstore.Store) {
	c, other := coll("page"), coll("page-other")
	// Keys whose byte order differs from a locale's order (case, accents, digits), and
	// more than one page of every limit below.
	var want []string
	for _, k := range []string{"B", "a", "b", "Z", "é", "e", "10", "9", "a b", "a-b", "zz", "ä"} {
		want = append(want, k)
	}
	for i := range 30 {
		want = append(want, fmt.Sprintf("k%03d", i))
	}
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		for i, k := range want {
			if err := tx.Put(ctx, c, k, doc{N: i, Name: k}); err != nil {
				return err
			}
		}
		return tx.Put(ctx, other, "a0", doc{})
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want) // Go orders strings bytewise, the order every backend must page in
	for _, tc := range []struct {
		name  string
		limit int
		pages int // the last page is full, so "next" must say whether another follows
	}{
		{"one at a time", 1, len(want)},
		{"uneven", 5, (len(want) + 4) / 5},
		{"exact", len(want), 1},
		{"all", docstore.MaxPageLimit, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, pages := pageAll(t, s, c, tc.limit)
			var keys []string
			for _, d := range got {
				var x doc
				if err := json.Unmarshal(d.Raw, &x); err != nil || x.Name != d.Key {
					t.Fatalf("document %q = %s (%v)", d.Key, d.Raw, err)
				}
				keys = append(keys, d.Key)
			}
			if !slices.Equal(keys, want) {
				t.Fatalf("paged keys\n%q\nwant\n%q", keys, want)
			}
			if pages != tc.pages {
				t.Fatalf("%d pages, want %d (a full last page must have no next cursor)", pages, tc.pages)
			}
		})
	}
	// A cursor need not be a key of the collection: paging resumes after it.
	docs, _, err := s.ListPage(bg(), c, "k0145", 2)
	if err != nil || len(docs) != 2 || docs[0].Key != "k015" || docs[1].Key != "k016" {
		t.Fatalf("page after k0145 = %v, %v", docs, err)
	}
	docs, next, err := s.ListPage(bg(), coll("empty"), "", 10)
	if err != nil || len(docs) != 0 || next != "" {
		t.Fatalf("empty collection: %v %q %v", docs, next, err)
	}
}

func testListPageInvalid(t *testing.T, s docstore.Store) {
	c := coll("pageinv")
	for _, tc := range []struct {
		name, coll, after string
		limit             int
		want              error
	}{
		{"zero limit", c, "", 0, docstore.ErrInvalidPage},
		{"negative limit", c, "", -1, docstore.ErrInvalidPage},
		{"limit over the maximum", c, "", docstore.MaxPageLimit + 1, docstore.ErrInvalidPage},
		{"cursor not UTF-8", c, "a\xff", 10, docstore.ErrInvalidPage},
		{"cursor with NUL", c, "a\x00", 10, docstore.ErrInvalidPage},
		{"cursor too long", c, strings.Repeat("k", docstore.MaxKeyBytes+1), 10, docstore.ErrInvalidPage},
		{"empty collection name", "", "", 10, docstore.ErrInvalidKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.ListPage(bg(), tc.coll, tc.after, tc.limit); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// Paging while other transactions insert, update and delete: the keys that exist
// throughout appear exactly once, in order, whatever moves around them.
func testListPageConcurrentWrites(t *testing.T, s docstore.Store) {
	c := coll("pagecc")
	const stable = 40
	err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
		for i := range stable {
			if err := tx.Put(ctx, c, fmt.Sprintf("s%03d", i), doc{N: i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: unbounded writers grow the collection faster than a reader paging
			// three at a time can reach its end on a loaded machine (the listing would
			// never finish).
			for i := 0; i < 300; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Transient keys between and around the stable ones, and rewrites of the
				// stable ones, so every page boundary sees changes.
				key := fmt.Sprintf("s%03d-%d-%d", i%stable, w, i)
				err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error {
					if err := tx.Put(ctx, c, key, doc{N: -1}); err != nil {
						return err
					}
					return tx.Put(ctx, c, fmt.Sprintf("s%03d", (i*7+w)%stable), doc{N: i})
				})
				if err == nil && i%2 == 1 {
					err = s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error { return tx.Delete(ctx, c, key) })
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var rounds [][]docstore.Doc
	for range 3 {
		got, _ := pageAll(t, s, c, 3)
		rounds = append(rounds, got)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	for r, got := range rounds {
		seen := map[string]int{}
		for _, d := range got {
			seen[d.Key]++
		}
		for i := range stable {
			if k := fmt.Sprintf("s%03d", i); seen[k] != 1 {
				t.Fatalf("round %d: %s listed %d times", r, k, seen[k])
			}
		}
	}
}

// A listing whose context is gone fails with the context's error and no page, rather
// than a short page that looks like the end of the collection.
func testListPageCancelled(t *testing.T, s docstore.Store) {
	c := coll("pagecancel")
	if err := s.Update(bg(), func(ctx context.Context, tx docstore.Tx) error { return tx.Put(ctx, c, "a", doc{N: 1}) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg())
	cancel()
	docs, next, err := s.ListPage(ctx, c, "", 10)
	if !errors.Is(err, context.Canceled) || len(docs) != 0 || next != "" {
		t.Fatalf("cancelled ListPage = %d documents, next %q, err %v; want context.Canceled", len(docs), next, err)
	}
}
