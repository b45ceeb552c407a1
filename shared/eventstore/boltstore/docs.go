package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

var _ docstore.Store = (*Store)(nil)

// Docs returns the store's document store: the Store itself, whose docstore methods do
// not clash with the event-store ones. It exists for callers that want the narrower type.
func (s *Store) Docs() docstore.Store { return s }

// A collection is a bucket of its own, so DeleteCollection is one bucket deletion.
func docBucket(coll string) []byte { return []byte("d:" + coll) }

// ErrInvalidKey is docstore.ErrInvalidKey, under the name this package used for it.
var ErrInvalidKey = docstore.ErrInvalidKey

// updateReq is a document update waiting for the committer.
type updateReq struct {
	ctx context.Context
	fn  func(context.Context, docstore.Tx) error
}

// docTx buffers an update function's writes over the group's bbolt transaction: they
// reach the transaction only when the function returns nil, so a failing function leaves
// nothing behind in a transaction it shares with other requests. Reads see the buffer
// first, then what the group wrote so far, then the file.
type docTx struct {
	tx     *bolt.Tx
	writes docstore.Writes
}

func (t *docTx) Get(_ context.Context, coll, key string, dst any) (bool, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, err
	}
	raw, buffered := t.writes.Get(coll, key)
	if !buffered {
		if b := t.tx.Bucket(docBucket(coll)); b != nil {
			raw = b.Get([]byte(key))
		}
	}
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return true, fmt.Errorf("boltstore: decode %s/%s: %w", coll, key, err)
	}
	return true, nil
}

func (t *docTx) Put(_ context.Context, coll, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("boltstore: encode %s/%s: %w", coll, key, err)
	}
	return t.write(coll, key, raw)
}

func (t *docTx) Delete(_ context.Context, coll, key string) error { return t.write(coll, key, nil) }

// write checks here what any backend would refuse at commit, so the caller's function
// sees it.
func (t *docTx) write(coll, key string, raw json.RawMessage) error {
	return t.writes.Set(coll, key, raw)
}

// runUpdate runs one update function inside the group's transaction. The function's
// error (or panic) is its caller's answer; a non-nil error is a storage failure that must
// abort the transaction.
func (s *Store) runUpdate(tx *bolt.Tx, u *updateReq) (res result, err error) {
	t := &docTx{tx: tx}
	func() {
		defer func() {
			if p := recover(); p != nil {
				res = result{panicked: true, panicVal: p}
			}
		}()
		res.err = u.fn(context.WithValue(u.ctx, insideUpdate{}, s), t)
	}()
	if res.err != nil || res.panicked {
		return res, nil
	}
	err = t.writes.Each(func(coll, key string, raw json.RawMessage) error {
		if raw == nil {
			if b := tx.Bucket(docBucket(coll)); b != nil {
				return b.Delete([]byte(key))
			}
			return nil
		}
		b, err := tx.CreateBucketIfNotExists(docBucket(coll))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), raw)
	})
	if err != nil {
		return result{}, err
	}
	return res, nil
}

// Update runs fn through the committer, in the same write transactions as appends, so
// concurrent updates (and appends) share one fsync instead of queueing for one each.
// Updates are serializable (the committer runs one function at a time, each seeing the
// effects of those before it) and durable on return. fn runs on the committer's
// goroutine: it must be quick, may read the store, and must not write through it other
// than by tx (with its context such a write fails with ErrNested; with another context it
// would deadlock). A panic in fn is raised again in the caller.
func (s *Store) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	res := s.submit(ctx, &request{update: &updateReq{ctx: ctx, fn: fn}, done: make(chan result, 1)})
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}

func (s *Store) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = (&docTx{tx: tx}).Get(ctx, coll, key, dst)
		return err
	})
	return found, err
}

// List copies the collection out of the read transaction before calling fn, so fn may
// write to the store: a read transaction held open across an Update would block the
// file's remapping when it grows.
func (s *Store) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	var keys []string
	var vals []json.RawMessage
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(docBucket(coll))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			keys = append(keys, string(k))
			vals = append(vals, append(json.RawMessage(nil), v...))
			return nil
		})
	})
	if err != nil {
		return wrap(err)
	}
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) DeleteCollection(ctx context.Context, coll string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.nested(ctx) {
		return ErrNested
	}
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	return wrap(s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(docBucket(coll)) == nil {
			return nil
		}
		return tx.DeleteBucket(docBucket(coll))
	}))
}

// ListPage seeks past the cursor in the collection's bucket (bbolt keeps keys in byte
// order) and copies the page out of the read transaction.
func (s *Store) ListPage(ctx context.Context, coll, after string, limit int) ([]docstore.Doc, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := docstore.CheckPage(coll, after, limit); err != nil {
		return nil, "", err
	}
	var docs []docstore.Doc
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(docBucket(coll))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if len(docs) == limit {
				next = docs[limit-1].Key
				break
			}
			docs = append(docs, docstore.Doc{Key: string(k), Raw: append(json.RawMessage(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return nil, "", wrap(err)
	}
	return docs, next, nil
}
