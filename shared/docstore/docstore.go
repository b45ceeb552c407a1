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
	// DeleteCollection removes every document of a collection (used by projection rebuild).
	DeleteCollection(ctx context.Context, collection string) error
}

// MaxUpdateWrites bounds how many documents one Update may write (DynamoDB transactions
// take at most 100 items; the rest is headroom for guards and condition checks).
const MaxUpdateWrites = 90

// ErrTooManyWrites is returned when one Update writes more than MaxUpdateWrites documents.
var ErrTooManyWrites = errors.New("docstore: too many writes in one update")
