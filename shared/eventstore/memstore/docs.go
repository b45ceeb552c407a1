package memstore

import (
	"context"
	"encoding/json"
	"sort"
	"sync"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

// Docs is an in-memory document store. Update holds one lock, so transactions are
// serial and never conflict.
type Docs struct {
	mu   sync.Mutex
	data map[string]map[string]json.RawMessage
}

var _ docstore.Store = (*Docs)(nil)

// NewDocs returns an empty document store.
func NewDocs() *Docs { return &Docs{data: map[string]map[string]json.RawMessage{}} }

type memTx struct {
	d      *Docs
	writes docstore.Writes
}

func (t *memTx) Get(_ context.Context, coll, key string, dst any) (bool, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, err
	}
	raw, ok := t.writes.Get(coll, key)
	if !ok {
		raw, ok = t.d.data[coll][key]
	}
	if !ok || raw == nil {
		return false, nil
	}
	return true, json.Unmarshal(raw, dst)
}

func (t *memTx) Put(_ context.Context, coll, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.write(coll, key, raw)
}

func (t *memTx) Delete(_ context.Context, coll, key string) error { return t.write(coll, key, nil) }

func (t *memTx) write(coll, key string, raw json.RawMessage) error {
	return t.writes.Set(coll, key, raw)
}

func (d *Docs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	tx := &memTx{d: d}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.writes.Each(func(coll, key string, raw json.RawMessage) error {
		if raw == nil {
			delete(d.data[coll], key)
			return nil
		}
		if d.data[coll] == nil {
			d.data[coll] = map[string]json.RawMessage{}
		}
		d.data[coll][key] = raw
		return nil
	})
}

func (d *Docs) Get(_ context.Context, coll, key string, dst any) (bool, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, err
	}
	d.mu.Lock()
	raw, ok := d.data[coll][key]
	d.mu.Unlock()
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(raw, dst)
}

func (d *Docs) List(_ context.Context, coll string, fn func(string, json.RawMessage) error) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	d.mu.Lock()
	keys := make([]string, 0, len(d.data[coll]))
	for k := range d.data[coll] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := make([]json.RawMessage, len(keys))
	for i, k := range keys {
		vals[i] = d.data[coll][k]
	}
	d.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (d *Docs) DeleteCollection(_ context.Context, coll string) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.data, coll)
	return nil
}

func (d *Docs) ListPage(ctx context.Context, coll, after string, limit int) ([]docstore.Doc, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := docstore.CheckPage(coll, after, limit); err != nil {
		return nil, "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.data[coll]))
	for k := range d.data[coll] {
		if k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = keys[limit-1]
	}
	docs := make([]docstore.Doc, len(keys))
	for i, k := range keys {
		docs[i] = docstore.Doc{Key: k, Raw: d.data[coll][k]}
	}
	return docs, next, nil
}
