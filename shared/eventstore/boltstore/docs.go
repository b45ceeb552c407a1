package boltstore

import (
	"context"
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

var _ docstore.Store = (*Store)(nil)

func docBucket(coll string) []byte { return []byte("d:" + coll) }

type boltTx struct {
	tx     *bolt.Tx
	writes map[[2]string]bool
}

func (t *boltTx) Get(_ context.Context, coll, key string, dst any) (bool, error) {
	b := t.tx.Bucket(docBucket(coll))
	if b == nil {
		return false, nil
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	return true, json.Unmarshal(raw, dst)
}

func (t *boltTx) count(coll, key string) error {
	k := [2]string{coll, key}
	if !t.writes[k] {
		t.writes[k] = true
		if len(t.writes) > docstore.MaxUpdateWrites {
			return docstore.ErrTooManyWrites
		}
	}
	return nil
}

func (t *boltTx) Put(_ context.Context, coll, key string, v any) error {
	if err := t.count(coll, key); err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b, err := t.tx.CreateBucketIfNotExists(docBucket(coll))
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

func (t *boltTx) Delete(_ context.Context, coll, key string) error {
	if err := t.count(coll, key); err != nil {
		return err
	}
	b := t.tx.Bucket(docBucket(coll))
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}

// Update runs fn in one bbolt write transaction: serializable (bbolt has one writer) and
// durable on return.
func (s *Store) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return fn(ctx, &boltTx{tx: tx, writes: map[[2]string]bool{}})
	})
}

func (s *Store) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = (&boltTx{tx: tx}).Get(ctx, coll, key, dst)
		return err
	})
	return found, err
}

func (s *Store) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(docBucket(coll))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			return fn(string(k), append(json.RawMessage(nil), v...))
		})
	})
}

func (s *Store) DeleteCollection(ctx context.Context, coll string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(docBucket(coll)) == nil {
			return nil
		}
		return tx.DeleteBucket(docBucket(coll))
	})
}
