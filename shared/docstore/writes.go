package docstore

import "encoding/json"

// Writes is what an Update function has written so far: each document's latest value
// (nil: deleted), in first-write order so that applying them is deterministic. Backends
// that apply an update's writes when its function returns (memory, embedded) keep them
// here, and every backend counts them here towards MaxUpdateWrites.
type Writes struct {
	docs  map[docRef]json.RawMessage
	order []docRef
}

type docRef struct{ coll, key string }

// Set records a write of raw (nil: a delete) after checking the key and the limit, which
// count distinct documents, as on DynamoDB, where one transaction writes an item once.
func (w *Writes) Set(coll, key string, raw json.RawMessage) error {
	if err := CheckKey(coll, key); err != nil {
		return err
	}
	k := docRef{coll, key}
	if _, ok := w.docs[k]; !ok {
		if len(w.order) == MaxUpdateWrites {
			return ErrTooManyWrites
		}
		if w.docs == nil {
			w.docs = map[docRef]json.RawMessage{}
		}
		w.order = append(w.order, k)
	}
	w.docs[k] = raw
	return nil
}

// Get returns the document's buffered value; written is false when the update has not
// written it (read the store), raw is nil when it deleted it.
func (w *Writes) Get(coll, key string) (raw json.RawMessage, written bool) {
	raw, written = w.docs[docRef{coll, key}]
	return raw, written
}

// Each calls fn for every written document in first-write order until fn fails.
func (w *Writes) Each(fn func(coll, key string, raw json.RawMessage) error) error {
	for _, k := range w.order {
		if err := fn(k.coll, k.key, w.docs[k]); err != nil {
			return err
		}
	}
	return nil
}
