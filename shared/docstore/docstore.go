// Package docstore is the small transactional document store that read models,
// projection checkpoints, parked (dead-lettered) events and idempotency records live in.
// Every backend provides one next to its event store (memory, embedded file, DynamoDB
// read-model table, PostgreSQL), so a projection's read-model write and its
// per-aggregate guard commit together or not at all. The conformance suite in
// docstore/doctest proves a backend meets the contract.
package docstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrConflict reports that a concurrent Update touched the same documents; Update retries
// on it internally and returns it only when retries are exhausted.
var ErrConflict = errors.New("docstore: concurrent update")

// Tx reads and writes documents inside one Update. Values are JSON-encoded. Reads see the
// transaction's own earlier writes.
type Tx interface {
	Get(ctx context.Context, collection, key string, dst any) (bool, error)
	Put(ctx context.Context, collection, key string, v any) error
	Delete(ctx context.Context, collection, key string) error
}

// Store is a collection → key → JSON document store.
type Store interface {
	// Update runs fn in one atomic, isolated transaction: either all its writes commit or
	// none. Isolation is serializable for the documents fn read or wrote (optimistic:
	// on a concurrent change fn runs again, so fn must have no side effects outside tx).
	// An error returned by fn aborts the transaction and is returned as it is.
	Update(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error
	// Get reads one document outside a transaction (a consistent read of committed data).
	Get(ctx context.Context, collection, key string, dst any) (bool, error)
	// List calls fn for every document of a collection in key order. Meant for small
	// operational collections (parked events, projection status), not for read models.
	List(ctx context.Context, collection string, fn func(key string, raw json.RawMessage) error) error
	// ListPage returns up to limit documents of a collection whose keys sort after `after`
	// ("" = from the first), in key order (bytewise), and next: the cursor of the
	// following page (the last key returned), "" when no document follows. Pages never
	// repeat a key and never skip one that existed throughout the paging; a document
	// written while paging is listed or not depending on where its key falls. A limit
	// outside 1–MaxPageLimit or a cursor that is not a valid key is ErrInvalidPage.
	ListPage(ctx context.Context, collection, after string, limit int) (docs []Doc, next string, err error)
	// DeleteCollection removes every document of a collection (used by projection rebuild).
	DeleteCollection(ctx context.Context, collection string) error
}

// Doc is one listed document.
type Doc struct {
	Key string
	Raw json.RawMessage
}

// MaxPageLimit bounds one ListPage (DynamoDB returns at most 1 MB per query anyway).
const MaxPageLimit = 1000

// ErrInvalidPage is returned by ListPage for a limit or cursor out of bounds.
var ErrInvalidPage = errors.New("docstore: invalid page")

// ErrNotListed is returned by a backend that keeps a collection unlisted (DynamoDB keeps
// command-path collections such as idempotency records out of its listing index, so a
// keyed write pays no index write): List, ListPage and DeleteCollection refuse it.
var ErrNotListed = errors.New("docstore: collection is not listable on this backend")

// CheckPage validates ListPage's arguments.
func CheckPage(collection, after string, limit int) error {
	if err := CheckCollection(collection); err != nil {
		return err
	}
	if limit < 1 || limit > MaxPageLimit {
		return fmt.Errorf("%w: limit %d outside 1–%d", ErrInvalidPage, limit, MaxPageLimit)
	}
	if after != "" && !valid(after, MaxKeyBytes) {
		return fmt.Errorf("%w: cursor of %d bytes is not a document key", ErrInvalidPage, len(after))
	}
	return nil
}

// MaxUpdateWrites bounds how many documents one Update may write (DynamoDB transactions
// take at most 100 items; the rest is headroom for guards and condition checks).
const MaxUpdateWrites = 90

// ErrTooManyWrites is returned when one Update writes more than MaxUpdateWrites documents.
var ErrTooManyWrites = errors.New("docstore: too many writes in one update")

// Limits of collection names and document keys, which every backend uses as keys:
// DynamoDB's read-model table (pk = collection#key ≤ 2048 bytes, sk = collection, and the
// listing index's sort key = key ≤ 1024 bytes),
// PostgreSQL's (collection, key) primary key (a B-tree row of at most ~2700 bytes),
// bbolt (a bucket per collection, keys ≤ 32 KB). Both must be valid UTF-8 without NUL:
// DynamoDB strings are UTF-8 and PostgreSQL text cannot hold NUL.
const (
	MaxCollectionBytes = 255
	MaxKeyBytes        = 1024
)

// ErrInvalidKey is returned for a collection name or document key outside those limits,
// by every backend and before anything is read or written.
var ErrInvalidKey = errors.New("docstore: invalid collection or document key")

// CheckKey validates a collection name and a document key.
func CheckKey(collection, key string) error {
	if err := CheckCollection(collection); err != nil {
		return err
	}
	if !valid(key, MaxKeyBytes) {
		return fmt.Errorf("%w: key of %d bytes in %q: must be 1–%d bytes of UTF-8 without NUL", ErrInvalidKey, len(key), collection, MaxKeyBytes)
	}
	return nil
}

// CheckCollection validates a collection name.
func CheckCollection(collection string) error {
	if !valid(collection, MaxCollectionBytes) {
		return fmt.Errorf("%w: collection name of %d bytes: must be 1–%d bytes of UTF-8 without NUL", ErrInvalidKey, len(collection), MaxCollectionBytes)
	}
	return nil
}

func valid(s string, max int) bool {
	return len(s) > 0 && len(s) <= max && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// Creator is implemented by stores that can create a document where none exists in one
// round trip, and hand back the document in the way otherwise (DynamoDB: a conditional
// PutItem returning the old item on failure, where an Update costs a read and a write).
type Creator interface {
	// Create writes v at collection/key if no document is there and reports created;
	// otherwise it writes nothing and returns the document there. A create whose answer
	// was lost and that was resent finds its own document: created is true when the
	// document there is byte for byte the one this call wrote.
	Create(ctx context.Context, collection, key string, v any) (created bool, existing json.RawMessage, err error)
}

// Create writes v at collection/key if no document is there, else returns the document
// there: one request on a store that is a Creator, an Update (read, then write) on others.
func Create(ctx context.Context, s Store, collection, key string, v any) (bool, json.RawMessage, error) {
	if c, ok := s.(Creator); ok {
		return c.Create(ctx, collection, key, v)
	}
	var created bool
	var existing json.RawMessage
	err := s.Update(ctx, func(ctx context.Context, tx Tx) error {
		created, existing = false, nil
		ok, err := tx.Get(ctx, collection, key, &existing)
		if err != nil || ok {
			return err
		}
		created = true
		return tx.Put(ctx, collection, key, v)
	})
	if err != nil {
		return false, nil, err
	}
	return created, existing, nil
}
