package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// head is the stream's current version: its last key in the streams bucket.
func head(tx *bolt.Tx, key string) int64 {
	c := tx.Bucket(bStreams).Cursor()
	prefix := streamPrefix(key)
	k, _ := c.Seek(streamKey(key, math.MaxInt64))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return 0
	}
	v, _ := suffixVersion(k, prefix)
	return v
}

func getEvent(tx *bolt.Tx, pk []byte) (event.Event, error) {
	var e event.Event
	err := newLogReader(tx, &decoder{}).get(&e, pk)
	return e, err
}

// logReader reads events by position. A stream appended in batches holds runs of
// consecutive positions, which it follows with Next instead of a search from the root.
type logReader struct {
	c    *bolt.Cursor
	last uint64 // position under the cursor; 0: none
	d    *decoder
}

func newLogReader(tx *bolt.Tx, d *decoder) *logReader {
	return &logReader{c: tx.Bucket(bLog).Cursor(), d: d}
}

func (r *logReader) get(e *event.Event, pk []byte) error {
	if len(pk) != 8 {
		return fmt.Errorf("%w: index entry of %d bytes", ErrCorrupt, len(pk))
	}
	pos := binary.BigEndian.Uint64(pk)
	var k, v []byte
	if r.last != 0 && pos == r.last+1 {
		k, v = r.c.Next()
	}
	if k == nil || !bytes.Equal(k, pk) {
		k, v = r.c.Seek(pk)
	}
	if k == nil || !bytes.Equal(k, pk) {
		r.last = 0
		return fmt.Errorf("%w: position %d is indexed but missing from the log", ErrCorrupt, pos)
	}
	r.last = pos
	return r.d.decodeInto(e, pos, v)
}

// loadRange returns the stream's events from version from (inclusive) up to to (0: no
// bound), in version order; with until set, only the prefix of events at or before it.
// Events are decoded straight into a result sized from the stream's head.
func loadRange(tx *bolt.Tx, key string, from, to int64, until time.Time) ([]event.Event, error) {
	h := head(tx, key)
	if to > 0 {
		h = min(h, to)
	}
	from = max(from, 1)
	if h < from {
		return nil, nil
	}
	out := make([]event.Event, 0, h-from+1)
	c := tx.Bucket(bStreams).Cursor()
	prefix := streamPrefix(key)
	log := newLogReader(tx, pageDecoder())
	for k, v := c.Seek(streamKey(key, from)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if ver, ok := suffixVersion(k, prefix); !ok || ver > h {
			break
		}
		out = append(out, event.Event{})
		e := &out[len(out)-1]
		if err := log.get(e, v); err != nil {
			return nil, err
		}
		if !until.IsZero() && e.Timestamp.After(until) {
			return out[:len(out)-1], nil // as of until: the prefix of the stream up to then
		}
	}
	return out, nil
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validStream(st) {
		return nil, nil // nothing can have been stored under it
	}
	var out []event.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = loadRange(tx, st.Key(), r.From, r.To, r.Until)
		return err
	})
	return out, wrap(err)
}

// validStream keeps invalid input away from key prefixes it could alias.
func validStream(st eventstore.Stream) bool { return event.ValidID(st.Type) && event.ValidID(st.ID) }

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("boltstore: %w", err)
}

// Query walks the most selective index the filter names (correlation id, then event
// type, then aggregate type; the log itself when it names none) from the cursor's
// position, and checks every candidate against the whole filter. Timestamps are checked
// on each event rather than used to bound the walk: the store's own timestamps follow
// position order, but caller-given ones can be anything.
func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	q, err := eventstore.StartPositionQuery(ctx, f)
	if err != nil {
		return eventstore.Page{}, err
	}
	if q.After == math.MaxUint64 {
		return q.Page(), nil
	}
	var kind byte
	var value string
	switch {
	case f.CorrelationID != "":
		kind, value = idxCorr, f.CorrelationID
	case f.EventType != "":
		kind, value = idxType, f.EventType
	case f.AggregateType != "":
		kind, value = idxAggType, f.AggregateType
	}
	d := pageDecoder()
	err = s.db.View(func(tx *bolt.Tx) error {
		if kind == 0 {
			cur := tx.Bucket(bLog).Cursor()
			for k, v := cur.Seek(u64(q.After + 1)); k != nil; k, v = cur.Next() {
				e, err := d.decode(binary.BigEndian.Uint64(k), v)
				if err != nil {
					return err
				}
				if !q.Take(e) {
					return nil
				}
			}
			return nil
		}
		prefix := indexPrefix(kind, value)
		log := newLogReader(tx, d)
		cur := tx.Bucket(bIndex).Cursor()
		for k, _ := cur.Seek(indexKey(kind, value, q.After+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			if len(k) != len(prefix)+8 {
				continue // a longer value that begins with this one and a 0x00
			}
			var e event.Event
			if err := log.get(&e, k[len(prefix):]); err != nil {
				return err
			}
			if !q.Take(e) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return eventstore.Page{}, wrap(err)
	}
	return q.Page(), nil
}

func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	n := eventstore.PageSize(limit)
	var out []event.Event
	d := pageDecoder()
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bLog)
		if h := b.Sequence(); h > after {
			out = make([]event.Event, 0, min(uint64(n), h-after))
		}
		cur := b.Cursor()
		for k, v := cur.Seek(u64(after + 1)); k != nil && len(out) < n; k, v = cur.Next() {
			out = append(out, event.Event{})
			if err := d.decodeInto(&out[len(out)-1], binary.BigEndian.Uint64(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	return out, wrap(err)
}

// Head is the log's sequence: positions are assigned and committed together, so every
// position up to it is readable.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var h uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		h = tx.Bucket(bLog).Sequence()
		return nil
	})
	return h, wrap(err)
}

func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.nested(ctx) {
		return ErrNested
	}
	if err := eventstore.CheckSnapshot(snap); err != nil {
		return err
	}
	raw, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("boltstore: encode snapshot of %s: %w", snap.Stream, err)
	}
	return wrap(s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSnapshots).Put(streamKey(snap.Stream.Key(), snap.Version), raw)
	}))
}

func (s *Store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if !validStream(st) {
		return nil, nil, nil
	}
	var snap *eventstore.Snapshot
	err := s.db.View(func(tx *bolt.Tx) error {
		key := st.Key()
		prefix := streamPrefix(key)
		c := tx.Bucket(bSnapshots).Cursor()
		upper := streamKey(key, math.MaxInt64)
		if r.To > 0 {
			upper = streamKey(key, r.To)
		}
		// The newest snapshot at or below upper, then older ones until one is within Until.
		k, v := c.Seek(upper)
		if k == nil {
			k, v = c.Last()
		} else if !bytes.Equal(k, upper) {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			var sn eventstore.Snapshot
			if err := json.Unmarshal(v, &sn); err != nil {
				return fmt.Errorf("%w: snapshot of %s: %v", ErrCorrupt, st, err)
			}
			if (r.To > 0 && sn.Version > r.To) || (!r.Until.IsZero() && sn.Timestamp.After(r.Until)) {
				continue
			}
			snap = &sn
			return nil
		}
		return nil
	})
	if err != nil {
		return nil, nil, wrap(err)
	}
	return eventstore.LoadSnapshotThenEvents(ctx, s, snap, st, r)
}

func (s *Store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.nested(ctx) {
		return ErrNested
	}
	if !validStream(st) {
		return nil
	}
	return wrap(s.db.Update(func(tx *bolt.Tx) error {
		prefix := streamPrefix(st.Key())
		b := tx.Bucket(bSnapshots)
		c := b.Cursor()
		// Collected first: deleting under a cursor moves it.
		var del [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if v, ok := suffixVersion(k, prefix); !ok || v >= below {
				break
			}
			del = append(del, append([]byte(nil), k...))
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}))
}
