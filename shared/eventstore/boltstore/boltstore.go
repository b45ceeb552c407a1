// Package boltstore is the embedded file store, the product's default backend: pure Go
// (bbolt, no cgo), one file holding events, snapshots, read models and checkpoints, so a
// projection's read-model write and its guard commit together.
//
// Durability and throughput come from group commit: appends go to one committer
// goroutine, which takes every request already waiting, applies them all in a single
// write transaction (each checked on its own: a conflict fails that request only) and
// commits once — one fsync for the whole group — before acknowledging any of them. An
// acknowledged append is on disk; concurrent writers share fsyncs instead of queueing
// for one each.
//
// Layout (bbolt buckets):
//
//	log        position (8-byte big endian) → event JSON (the global, gap-free feed)
//	streams    stream key 0x00 version (8B) → position (the last key of a stream is its head)
//	idx        kind byte ('t' type, 'a' aggregate type, 'c' correlation) value 0x00 position → nil
//	snapshots  stream key 0x00 version (8B) → snapshot JSON
//	d:<coll>   document key → JSON (docstore)
//
// Few buckets per event matter: a commit writes every page the group dirtied, so each
// extra bucket an append touches costs a page write inside the shared fsync.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/groupcommit"
)

var (
	bLog       = []byte("log")
	bStreams   = []byte("streams")
	bIndex     = []byte("idx")
	bSnapshots = []byte("snapshots")
)

// Index kinds within the idx bucket.
const (
	idxType    = 't'
	idxAggType = 'a'
	idxCorr    = 'c'
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("boltstore: the store file is in use by another process")

// Store is the embedded backend. Safe for concurrent use; Close it when done.
type Store struct {
	db      *bolt.DB
	now     func() time.Time
	batcher *groupcommit.Batcher[*appendReq]
	closing sync.Once

	lastTS time.Time // committer-owned: keeps store-assigned timestamps in position order
}

var (
	_ eventstore.Backend = (*Store)(nil)
	_ eventstore.Feed    = (*Store)(nil)
)

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock that assigns event timestamps (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// Open opens (or creates) the store file at path.
func Open(path string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	// NoFreelistSync: the freelist is rebuilt on open instead of written on every commit,
	// which removes pages from every fsync; durability of the data is unchanged.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bLog, bStreams, bIndex, bSnapshots} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	s := &Store{db: db, now: event.Now}
	for _, o := range opts {
		o(s)
	}
	s.batcher = groupcommit.New(s.commit, func(r *appendReq) { r.done <- appendRes{err: ErrClosed} })
	return s, nil
}

// Close stops the committer and closes the file.
func (s *Store) Close() error {
	var err error
	s.closing.Do(func() {
		s.batcher.Close()
		err = s.db.Close()
	})
	return err
}

// ErrClosed is returned for appends after Close.
var ErrClosed = errors.New("boltstore: closed")

type appendReq struct {
	stream   eventstore.Stream
	expected int64
	events   []event.Event
	done     chan appendRes
}

type appendRes struct {
	events []event.Event
	err    error
}

func (s *Store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if expected < eventstore.Any {
		return nil, eventstore.Invalid("expected version %d is neither a version nor a sentinel", expected)
	}
	if err := eventstore.CheckAppend(st, events); err != nil {
		return nil, err
	}
	req := &appendReq{stream: st, expected: expected, events: events, done: make(chan appendRes, 1)}
	if err := s.batcher.Submit(ctx, req); errors.Is(err, groupcommit.ErrClosed) {
		return nil, ErrClosed
	} else if err != nil {
		return nil, err
	}
	// Once queued the append completes either way; waiting for it keeps "acknowledged"
	// meaning "durable".
	res := <-req.done
	return res.events, res.err
}

func (s *Store) commit(group []*appendReq) {
	results := make([]appendRes, len(group))
	lastTS := s.lastTS
	err := s.db.Update(func(tx *bolt.Tx) error {
		lastTS = s.lastTS
		for i, r := range group {
			results[i] = s.apply(tx, r, &lastTS)
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("boltstore: commit: %w", err)
	} else {
		s.lastTS = lastTS
	}
	for i, r := range group {
		if err != nil {
			r.done <- appendRes{err: err}
			continue
		}
		r.done <- results[i]
	}
}

// apply runs one append inside the group's transaction. It writes nothing unless the
// whole append is valid, so a failed request leaves no trace in the shared transaction.
func (s *Store) apply(tx *bolt.Tx, r *appendReq, lastTS *time.Time) appendRes {
	key := r.stream.Key()
	current := head(tx, key)
	n := int64(len(r.events))
	if r.expected != eventstore.Any && r.expected != current {
		if r.expected >= 0 && r.expected+n <= current {
			if stored := loadRange(tx, key, r.expected+1, r.expected+n); eventstore.SameEvents(stored, r.events) {
				return appendRes{events: stored}
			}
		}
		return appendRes{err: &eventstore.ConflictError{Stream: r.stream, Expected: r.expected, Current: current}}
	}
	if r.expected == eventstore.Any && current >= n {
		if stored := loadRange(tx, key, current-n+1, current); eventstore.SameEvents(stored, r.events) {
			return appendRes{events: stored}
		}
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	if !now.After(*lastTS) {
		now = lastTS.Add(time.Microsecond)
	}
	out, err := eventstore.Prepare(r.stream, current, r.events, now)
	if err != nil {
		return appendRes{err: err}
	}
	*lastTS = now
	logB := tx.Bucket(bLog)
	for i := range out {
		pos, err := logB.NextSequence()
		if err != nil {
			return appendRes{err: err}
		}
		out[i].Position = pos
		raw, err := json.Marshal(out[i])
		if err != nil {
			return appendRes{err: err}
		}
		pk := u64(pos)
		idx := tx.Bucket(bIndex)
		if err := firstErr(
			logB.Put(pk, raw),
			tx.Bucket(bStreams).Put(streamKey(key, out[i].Version), pk),
			idx.Put(indexKey(idxType, out[i].EventType, pos), nil),
			idx.Put(indexKey(idxAggType, out[i].AggregateType, pos), nil),
		); err != nil {
			return appendRes{err: err}
		}
		if c := out[i].Metadata.CorrelationID; c != "" {
			if err := idx.Put(indexKey(idxCorr, c, pos), nil); err != nil {
				return appendRes{err: err}
			}
		}
	}
	return appendRes{events: out}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func streamKey(key string, version int64) []byte {
	return append(append([]byte(key), 0), u64(uint64(version))...)
}

func indexPrefix(kind byte, value string) []byte {
	return append(append([]byte{kind}, value...), 0)
}

func indexKey(kind byte, value string, pos uint64) []byte {
	return append(indexPrefix(kind, value), u64(pos)...)
}

// head is the stream's current version: its last key in the streams bucket.
func head(tx *bolt.Tx, key string) int64 {
	c := tx.Bucket(bStreams).Cursor()
	prefix := append([]byte(key), 0)
	k, _ := c.Seek(streamKey(key, 1<<62))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(k[len(prefix):]))
}

func getEvent(tx *bolt.Tx, pos []byte) (event.Event, error) {
	var e event.Event
	raw := tx.Bucket(bLog).Get(pos)
	if raw == nil {
		return e, fmt.Errorf("boltstore: position %d missing from the log", binary.BigEndian.Uint64(pos))
	}
	return e, json.Unmarshal(raw, &e)
}

// loadRange returns the stream's events from..to (inclusive); nil on any inconsistency.
func loadRange(tx *bolt.Tx, key string, from, to int64) []event.Event {
	var out []event.Event
	c := tx.Bucket(bStreams).Cursor()
	prefix := append([]byte(key), 0)
	for k, v := c.Seek(streamKey(key, from)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if int64(binary.BigEndian.Uint64(k[len(prefix):])) > to {
			break
		}
		e, err := getEvent(tx, v)
		if err != nil {
			return nil
		}
		out = append(out, e)
	}
	return out
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []event.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		key := st.Key()
		prefix := append([]byte(key), 0)
		c := tx.Bucket(bStreams).Cursor()
		for k, v := c.Seek(streamKey(key, max(r.From, 1))); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if r.To > 0 && int64(binary.BigEndian.Uint64(k[len(prefix):])) > r.To {
				break
			}
			e, err := getEvent(tx, v)
			if err != nil {
				return err
			}
			if !r.Until.IsZero() && e.Timestamp.After(r.Until) {
				break
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

type cursor struct {
	After uint64 `json:"after"`
}

func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Page{}, err
	}
	var c cursor
	if f.Cursor != "" {
		if err := eventstore.DecodeCursor(f.Cursor, &c); err != nil {
			return eventstore.Page{}, err
		}
	}
	limit := eventstore.PageSize(f.Limit)
	page := eventstore.Page{Events: []event.Event{}}
	err := s.db.View(func(tx *bolt.Tx) error {
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
		take := func(e event.Event) bool { // false: page full
			if !f.Matches(e) {
				return true
			}
			if len(page.Events) == limit {
				page.NextCursor = eventstore.EncodeCursor(cursor{After: page.Events[limit-1].Position})
				return false
			}
			page.Events = append(page.Events, e)
			return true
		}
		if kind == 0 {
			cur := tx.Bucket(bLog).Cursor()
			for k, v := cur.Seek(u64(c.After + 1)); k != nil; k, v = cur.Next() {
				var e event.Event
				if err := json.Unmarshal(v, &e); err != nil {
					return err
				}
				if !take(e) {
					return nil
				}
			}
			return nil
		}
		prefix := indexPrefix(kind, value)
		cur := tx.Bucket(bIndex).Cursor()
		for k, _ := cur.Seek(indexKey(kind, value, c.After+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			e, err := getEvent(tx, k[len(prefix):])
			if err != nil {
				return err
			}
			if !take(e) {
				return nil
			}
		}
		return nil
	})
	return page, err
}

func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := eventstore.PageSize(limit)
	var out []event.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bLog).Cursor()
		for k, v := cur.Seek(u64(after + 1)); k != nil && len(out) < n; k, v = cur.Next() {
			var e event.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		h = tx.Bucket(bLog).Sequence()
		return nil
	})
	return h, err
}

func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	raw, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSnapshots).Put(streamKey(snap.Stream.Key(), snap.Version), raw)
	})
}

func (s *Store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	var snap *eventstore.Snapshot
	err := s.db.View(func(tx *bolt.Tx) error {
		key := st.Key()
		prefix := append([]byte(key), 0)
		c := tx.Bucket(bSnapshots).Cursor()
		upper := streamKey(key, 1<<62)
		if r.To > 0 {
			upper = streamKey(key, r.To)
		}
		k, v := c.Seek(upper)
		if k == nil {
			k, v = c.Last()
		} else if !bytes.Equal(k, upper) {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			var sn eventstore.Snapshot
			if err := json.Unmarshal(v, &sn); err != nil {
				return err
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
		return nil, nil, err
	}
	return eventstore.LoadSnapshotThenEvents(ctx, s, snap, st, r)
}

func (s *Store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		key := st.Key()
		prefix := append([]byte(key), 0)
		c := tx.Bucket(bSnapshots).Cursor()
		var del [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if int64(binary.BigEndian.Uint64(k[len(prefix):])) >= below {
				break
			}
			del = append(del, append([]byte(nil), k...))
		}
		for _, k := range del {
			if err := tx.Bucket(bSnapshots).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
