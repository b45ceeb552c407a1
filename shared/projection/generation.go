package projection

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

// A projection's documents (its read-model collections, its guards and its dead letters)
// live in generations. Generation 0 is stored under the plain collection names (what
// every store held before rebuilds built shadow copies); generation n > 0 under
// "_g<n>:" + name. A pointer document per projection names the active generation. A
// rebuild builds the next generation while readers and live delivery keep using the
// active one, then moves the pointer in one transaction: the swap.
//
// Readers do not know about any of this: the system hands them the Generations view,
// which resolves the pointer on every read. A read outside a transaction reads the
// pointer and then the document, so a swap in between serves the old generation's
// document, which stays whole (the old generation is only deleted when the next rebuild
// starts). Inside an Update the pointer is read in the transaction, so a delivery that
// raced the swap conflicts and runs again against the new generation: nothing applied
// live is lost by the swap, and the guards keep anything from being applied twice.
const generationCollection = "_generations"

type generationDoc struct {
	Active   int64 `json:"active"`
	Previous int64 `json:"previous"`
	// Building is the generation a rebuild is building (0: none). Live delivery applies
	// to it as well as to the active one wherever the rebuild has already replayed the
	// stream, so the copy is as current as the active model when it is swapped in.
	Building int64 `json:"building,omitempty"`
}

// genName is a collection's name in a generation.
func genName(coll string, gen int64) string {
	if gen == 0 {
		return coll
	}
	return "_g" + strconv.FormatInt(gen, 10) + ":" + coll
}

// ownedCollections are the collections of a projection that a generation holds.
func ownedCollections(p Projection) []string {
	return append(append([]string(nil), p.Collections()...), guardCollection(p.Name()), parkedCollection(p.Name()))
}

// Generations is a document store that maps the registered projections' collections to
// their active generation. Other collections pass through unchanged.
type Generations struct {
	raw   docstore.Store
	mu    sync.RWMutex
	owner map[string]string // collection → projection
}

var _ docstore.Store = (*Generations)(nil)

// NewGenerations returns the generation-resolving view of raw. Projections are added by
// the engines built over it (NewEngine registers its projections).
func NewGenerations(raw docstore.Store) *Generations {
	if g, ok := raw.(*Generations); ok {
		return g
	}
	return &Generations{raw: raw, owner: map[string]string{}}
}

// Raw returns the store under the view.
func (g *Generations) Raw() docstore.Store { return g.raw }

func (g *Generations) register(ps ...Projection) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range ps {
		for _, c := range ownedCollections(p) {
			g.owner[c] = p.Name()
		}
	}
}

func (g *Generations) ownerOf(coll string) (string, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.owner[coll]
	return p, ok
}

func activeGeneration(ctx context.Context, get func(ctx context.Context, coll, key string, dst any) (bool, error), projection string) (generationDoc, error) {
	var d generationDoc
	_, err := get(ctx, generationCollection, projection, &d)
	return d, err
}

// resolve maps a collection to its active generation's name (outside a transaction).
func (g *Generations) resolve(ctx context.Context, coll string) (string, error) {
	p, ok := g.ownerOf(coll)
	if !ok {
		return coll, nil
	}
	d, err := activeGeneration(ctx, g.raw.Get, p)
	return genName(coll, d.Active), err
}

func (g *Generations) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	c, err := g.resolve(ctx, coll)
	if err != nil {
		return false, err
	}
	return g.raw.Get(ctx, c, key, dst)
}

func (g *Generations) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	c, err := g.resolve(ctx, coll)
	if err != nil {
		return err
	}
	return g.raw.List(ctx, c, fn)
}

func (g *Generations) ListPage(ctx context.Context, coll, after string, limit int) ([]docstore.Doc, string, error) {
	c, err := g.resolve(ctx, coll)
	if err != nil {
		return nil, "", err
	}
	return g.raw.ListPage(ctx, c, after, limit)
}

func (g *Generations) DeleteCollection(ctx context.Context, coll string) error {
	c, err := g.resolve(ctx, coll)
	if err != nil {
		return err
	}
	return g.raw.DeleteCollection(ctx, c)
}

func (g *Generations) Update(ctx context.Context, fn func(ctx context.Context, tx docstore.Tx) error) error {
	return g.raw.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return fn(ctx, &genTx{tx: tx, g: g, gens: map[string]generationDoc{}})
	})
}

// genTx resolves each projection's generation once per transaction, reading the pointer
// inside it (so a concurrent swap makes the transaction run again).
type genTx struct {
	tx   docstore.Tx
	g    *Generations
	gens map[string]generationDoc
}

func (t *genTx) generations(ctx context.Context, p string) (generationDoc, error) {
	d, ok := t.gens[p]
	if !ok {
		var err error
		if d, err = activeGeneration(ctx, t.tx.Get, p); err != nil {
			return d, err
		}
		t.gens[p] = d
	}
	return d, nil
}

func (t *genTx) name(ctx context.Context, coll string) (string, error) {
	p, ok := t.g.ownerOf(coll)
	if !ok {
		return coll, nil
	}
	d, err := t.generations(ctx, p)
	return genName(coll, d.Active), err
}

func (t *genTx) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	c, err := t.name(ctx, coll)
	if err != nil {
		return false, err
	}
	return t.tx.Get(ctx, c, key, dst)
}

func (t *genTx) Put(ctx context.Context, coll, key string, v any) error {
	c, err := t.name(ctx, coll)
	if err != nil {
		return err
	}
	return t.tx.Put(ctx, c, key, v)
}

func (t *genTx) Delete(ctx context.Context, coll, key string) error {
	c, err := t.name(ctx, coll)
	if err != nil {
		return err
	}
	return t.tx.Delete(ctx, c, key)
}

// pinned is one projection's documents in a fixed generation (the one a rebuild builds),
// whatever the pointer says; other collections pass through to the raw store.
type pinned struct {
	raw docstore.Store
	own map[string]bool
	gen int64
}

func (g *Generations) pin(p Projection, gen int64) *pinned {
	own := map[string]bool{}
	for _, c := range ownedCollections(p) {
		own[c] = true
	}
	return &pinned{raw: g.raw, own: own, gen: gen}
}

func (s *pinned) name(coll string) string {
	if s.own[coll] {
		return genName(coll, s.gen)
	}
	return coll
}

func (s *pinned) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	return s.raw.Get(ctx, s.name(coll), key, dst)
}

func (s *pinned) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	return s.raw.List(ctx, s.name(coll), fn)
}

func (s *pinned) ListPage(ctx context.Context, coll, after string, limit int) ([]docstore.Doc, string, error) {
	return s.raw.ListPage(ctx, s.name(coll), after, limit)
}

func (s *pinned) DeleteCollection(ctx context.Context, coll string) error {
	return s.raw.DeleteCollection(ctx, s.name(coll))
}

func (s *pinned) Update(ctx context.Context, fn func(ctx context.Context, tx docstore.Tx) error) error {
	return s.raw.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		return fn(ctx, pinnedTx{tx: tx, s: s})
	})
}

type pinnedTx struct {
	tx docstore.Tx
	s  *pinned
}

func (t pinnedTx) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	return t.tx.Get(ctx, t.s.name(coll), key, dst)
}

func (t pinnedTx) Put(ctx context.Context, coll, key string, v any) error {
	return t.tx.Put(ctx, t.s.name(coll), key, v)
}

func (t pinnedTx) Delete(ctx context.Context, coll, key string) error {
	return t.tx.Delete(ctx, t.s.name(coll), key)
}
