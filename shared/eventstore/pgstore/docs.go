package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

var _ docstore.Store = (*Store)(nil)

// maxUpdateAttempts bounds the reruns of an Update that keeps losing serialization
// races; with the backoff below that is a few seconds of contention.
const maxUpdateAttempts = 30

// pgTx writes through to the transaction; writes only counts them towards
// MaxUpdateWrites (PostgreSQL itself keeps the values).
type pgTx struct {
	tx     pgx.Tx
	writes docstore.Writes
}

type rowQueryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func getDoc(ctx context.Context, q rowQueryer, coll, key string, dst any) (bool, error) {
	if err := docstore.CheckKey(coll, key); err != nil {
		return false, err
	}
	var raw []byte
	err := q.QueryRow(ctx, "SELECT doc FROM documents WHERE collection = $1 AND key = $2", coll, key).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, classify(fmt.Errorf("pgstore: get %s/%s: %w", coll, key, err))
	}
	return true, json.Unmarshal(raw, dst)
}

func (t *pgTx) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	return getDoc(ctx, t.tx, coll, key, dst)
}

func (t *pgTx) Put(ctx context.Context, coll, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := t.writes.Set(coll, key, raw); err != nil {
		return err
	}
	// rev counts the document's writes: operators (and a future compare-and-set) can
	// tell whether a read model moved without comparing documents.
	_, err = t.tx.Exec(ctx, `INSERT INTO documents (collection, key, doc) VALUES ($1, $2, $3)
		ON CONFLICT (collection, key) DO UPDATE SET doc = EXCLUDED.doc, rev = documents.rev + 1`, coll, key, string(raw))
	if err != nil {
		return classify(fmt.Errorf("pgstore: put %s/%s: %w", coll, key, err))
	}
	return nil
}

func (t *pgTx) Delete(ctx context.Context, coll, key string) error {
	if err := t.writes.Set(coll, key, nil); err != nil {
		return err
	}
	if _, err := t.tx.Exec(ctx, "DELETE FROM documents WHERE collection = $1 AND key = $2", coll, key); err != nil {
		return classify(fmt.Errorf("pgstore: delete %s/%s: %w", coll, key, err))
	}
	return nil
}

// Update runs fn in a SERIALIZABLE transaction: PostgreSQL's predicate locks give the
// contract's isolation, including for documents fn found missing (two creators of one
// document cannot both succeed), which SELECT ... FOR UPDATE cannot lock. Serialization
// failures and deadlocks rerun fn with jittered exponential backoff, bounded, then
// surface as docstore.ErrConflict.
func (s *Store) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	for attempt := 1; ; attempt++ {
		var fnErr error
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			fnErr = fn(ctx, &pgTx{tx: tx})
			return fnErr
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01") {
			if attempt >= maxUpdateAttempts {
				return fmt.Errorf("pgstore: update gave up after %d attempts: %w (%w)", attempt, docstore.ErrConflict, err)
			}
			d := time.Duration(2<<min(attempt, 6)) * time.Millisecond
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d/2 + time.Duration(rand.Int64N(int64(d)))):
			}
			continue
		}
		if err != nil && fnErr != nil && errors.Is(err, fnErr) {
			return fnErr // as it is: the contract lets callers compare it
		}
		if err != nil {
			return classify(fmt.Errorf("pgstore: update: %w", err))
		}
		return nil
	}
}

func (s *Store) Get(ctx context.Context, coll, key string, dst any) (bool, error) {
	return getDoc(ctx, s.pool, coll, key, dst)
}

// List reads the whole collection before calling fn, so that fn may itself use the
// store without holding a pooled connection.
func (s *Store) List(ctx context.Context, coll string, fn func(string, json.RawMessage) error) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT key, doc FROM documents WHERE collection = $1 ORDER BY key COLLATE "C"`, coll)
	if err != nil {
		return classify(fmt.Errorf("pgstore: list %s: %w", coll, err))
	}
	type kv struct {
		k string
		v []byte
	}
	var all []kv
	for rows.Next() {
		var x kv
		if err := rows.Scan(&x.k, &x.v); err != nil {
			rows.Close()
			return classify(fmt.Errorf("pgstore: list %s: %w", coll, err))
		}
		all = append(all, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return classify(fmt.Errorf("pgstore: list %s: %w", coll, err))
	}
	for _, x := range all {
		if err := fn(x.k, json.RawMessage(x.v)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) DeleteCollection(ctx context.Context, coll string) error {
	if err := docstore.CheckCollection(coll); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, "DELETE FROM documents WHERE collection = $1", coll); err != nil {
		return classify(fmt.Errorf("pgstore: delete collection %s: %w", coll, err))
	}
	return nil
}

// ListPage orders by the key's bytes (COLLATE "C", whatever the database's locale) over
// the index migration 4 adds for exactly that order, and reads one row past the page to
// know whether another follows.
func (s *Store) ListPage(ctx context.Context, coll, after string, limit int) ([]docstore.Doc, string, error) {
	if err := docstore.CheckPage(coll, after, limit); err != nil {
		return nil, "", err
	}
	rows, err := s.pool.Query(ctx, `SELECT key, doc FROM documents WHERE collection = $1 AND key COLLATE "C" > $2
		ORDER BY key COLLATE "C" LIMIT $3`, coll, after, limit+1)
	if err != nil {
		return nil, "", classify(fmt.Errorf("pgstore: list %s: %w", coll, err))
	}
	defer rows.Close()
	var docs []docstore.Doc
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, "", classify(fmt.Errorf("pgstore: list %s: %w", coll, err))
		}
		docs = append(docs, docstore.Doc{Key: k, Raw: json.RawMessage(v)})
	}
	if err := rows.Err(); err != nil {
		return nil, "", classify(fmt.Errorf("pgstore: list %s: %w", coll, err))
	}
	next := ""
	if len(docs) > limit {
		docs = docs[:limit]
		next = docs[limit-1].Key
	}
	return docs, next, nil
}
