// Package boltstore is the embedded file store, the product's default backend: pure Go
// (bbolt, no cgo), one file holding events, snapshots, read models and checkpoints, so a
// projection's read-model write and its guard commit together.
//
// Durability and throughput come from group commit: appends go to one committer
// goroutine, which takes every request already waiting, applies them all in a single
// write transaction (each checked on its own against the transaction's state: a conflict
// fails that request only, and two appends to one stream in a group see each other) and
// commits once — one fsync for the whole group — before acknowledging any of them. An
// acknowledged append is on disk; concurrent writers share fsyncs instead of queueing
// for one each. Validation and encoding happen in the appending goroutine, so the
// serial part of a commit is little more than key lookups and puts. Document updates
// (read models, guards, idempotency records) go through the same committer, each with
// its writes buffered until its function succeeds, so they share those fsyncs too.
//
// Layout (bbolt buckets):
//
//	log        position (8-byte big endian) → binary envelope (encoding.go)
//	streams    stream key 0x00 version (8B) → position (the last key of a stream is its head)
//	idx        kind byte ('t' type, 'a' aggregate type, 'c' correlation) value 0x00 position → nil
//	ids        event id → stream key 0x00 version (8B): event identity (a re-append of held
//	           ids is the original append, at any version)
//	snapshots  stream key 0x00 version (8B) → snapshot JSON
//	clock      empty; its sequence is the last timestamp the store assigned (µs)
//	meta       "format" → the log values' encoding (encoding.go; older files are migrated at Open)
//	d:<coll>   document key → JSON (docstore)
//
// Few buckets per event matter: a commit writes every page the group dirtied, so each
// extra bucket an append touches costs a page write inside the shared fsync. The clock
// costs none: a bucket's sequence lives in the root page, which every commit rewrites.
package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	bClock     = []byte("clock")
	bIDs       = []byte("ids")
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("boltstore: the store file is in use by another process")

// ErrClosed is returned for appends after Close.
var ErrClosed = errors.New("boltstore: closed")

// Store is the embedded backend. Safe for concurrent use; Close it when done.
type Store struct {
	db          *bolt.DB
	now         func() time.Time
	lockTimeout time.Duration
	noSync      bool // tests only (export_test.go): commits skip fsync, to prove the durability test catches it
	batcher     *groupcommit.Batcher[*request]
	closing     sync.Once

	// Committer-owned: the last timestamp the store assigned, so that store-assigned
	// timestamps follow position order even when the wall clock steps back (also across
	// restarts: it is persisted with every commit).
	lastTS time.Time
	// Committer-owned: how many write transactions the committer has used (tests).
	commits int
}

var (
	_ eventstore.Backend = (*Store)(nil)
	_ eventstore.Feed    = (*Store)(nil)
)

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock that assigns event timestamps (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLockTimeout sets how long Open waits for another process to release the file
// before it fails with ErrLocked (default one second).
func WithLockTimeout(d time.Duration) Option { return func(s *Store) { s.lockTimeout = d } }

// initialMmapSize is address space, not memory: mapping 1 GiB up front means the file
// grows without bbolt remapping it (a remap waits for every read transaction and blocks
// new ones), until it is larger than that.
const initialMmapSize = 1 << 30

// Open opens (or creates, mode 0600) the store file at path.
func Open(path string, opts ...Option) (*Store, error) {
	s := &Store{now: event.Now, lockTimeout: time.Second}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	// NoFreelistSync: the freelist is rebuilt on open instead of written on every commit,
	// which removes pages from every fsync; durability of the data is unchanged. NoSync
	// stays false: every commit is fsynced before Append returns.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: s.lockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
		NoSync: s.noSync, InitialMmapSize: initialMmapSize})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bLog, bStreams, bIndex, bSnapshots, bClock} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bIDs) == nil {
			if err := backfillIDs(tx); err != nil {
				return err
			}
		}
		if us := tx.Bucket(bClock).Sequence(); us > 0 {
			s.lastTS = time.UnixMicro(int64(us)).UTC()
		}
		return nil
	})
	if err == nil {
		_, err = migrateFormat(db)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	s.db = db
	s.batcher = groupcommit.New(s.commit, func(r *request) { r.done <- result{err: ErrClosed} })
	return s, nil
}

// Close stops the committer (appends and updates still queued are answered with
// ErrClosed) and closes the file.
func (s *Store) Close() error {
	var err error
	s.closing.Do(func() {
		s.batcher.Close()
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("boltstore: close: %w", cerr)
		}
	})
	return err
}

// request is one unit of work for the committer: an append or a document update.
type request struct {
	append *appendReq // exactly one of append and update is set
	update *updateReq
	done   chan result
}

type result struct {
	events   []event.Event
	err      error
	panicked bool // the update function panicked with panicVal: re-raised in its caller
	panicVal any
}

type appendReq struct {
	stream   eventstore.Stream
	key      string
	expected int64
	prepared []event.Event // ids assigned, versions 1..n; a zero timestamp is the store's to assign
	values   [][]byte      // encoded envelopes, header to be filled by the committer
}

// ErrNested is returned by a write (Append, Update, snapshots, DeleteCollection) made
// with the context an Update function received: it would wait for the commit that is
// waiting for it.
var ErrNested = errors.New("boltstore: write from inside an Update function")

type insideUpdate struct{}

func (s *Store) nested(ctx context.Context) bool { return ctx.Value(insideUpdate{}) == s }

// submit hands r to the committer and waits for its answer. Once queued, a request
// completes whatever its context does: "acknowledged" keeps meaning "durable".
func (s *Store) submit(ctx context.Context, r *request) result {
	if err := ctx.Err(); err != nil {
		return result{err: err}
	}
	if s.nested(ctx) {
		return result{err: ErrNested}
	}
	if err := s.batcher.Submit(ctx, r); errors.Is(err, groupcommit.ErrClosed) {
		return result{err: ErrClosed}
	} else if err != nil {
		return result{err: err}
	}
	return <-r.done
}

func (s *Store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := newAppendReq(st, expected, events)
	if err != nil {
		return nil, err
	}
	res := s.submit(ctx, &request{append: a, done: make(chan result, 1)})
	return res.events, res.err
}

// newAppendReq validates and encodes an append in the caller's goroutine, leaving the
// committer only what depends on the stream's state: versions, positions, timestamps.
func newAppendReq(st eventstore.Stream, expected int64, events []event.Event) (*appendReq, error) {
	if expected < eventstore.Any {
		return nil, eventstore.Invalid("expected version %d is neither a version nor a sentinel", expected)
	}
	// A zero clock leaves zero timestamps zero: the committer assigns them, in order.
	prepared, err := eventstore.Prepare(st, 0, events, time.Time{})
	if err != nil {
		return nil, err
	}
	values := make([][]byte, len(prepared))
	for i, e := range prepared {
		if values[i], err = encodeBody(e); err != nil {
			return nil, err
		}
	}
	return &appendReq{stream: st, key: st.Key(), expected: expected, prepared: prepared, values: values}, nil
}

// storageError marks a failure of bbolt itself while applying one request (as opposed to
// a conflict or an error of an update function): the group's transaction is rolled back
// so that the request leaves no partial write, and the rest of the group runs again
// without it.
type storageError struct {
	req int
	err error
}

func (e *storageError) Error() string { return e.err.Error() }

func (s *Store) commit(group []*request) {
	results := make([]result, len(group))
	pending := make([]int, len(group))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		lastTS := s.lastTS
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, i := range pending {
				var res result
				var err error
				if r := group[i]; r.append != nil {
					res, err = s.apply(tx, r.append, &lastTS)
				} else {
					res, err = s.runUpdate(tx, r.update)
				}
				if err != nil {
					return &storageError{req: i, err: err}
				}
				results[i] = res
			}
			if lastTS.After(s.lastTS) && lastTS.UnixMicro() > 0 {
				return tx.Bucket(bClock).SetSequence(uint64(lastTS.UnixMicro()))
			}
			return nil
		})
		s.commits++
		var se *storageError
		switch {
		case err == nil:
			s.lastTS = lastTS
			pending = nil
		case errors.As(err, &se):
			what := "update"
			if a := group[se.req].append; a != nil {
				what = "append to " + a.stream.String()
			}
			results[se.req] = result{err: fmt.Errorf("boltstore: %s: %w", what, se.err)}
			pending = without(pending, se.req)
		default: // the commit itself failed: nothing of the group was written
			for _, i := range pending {
				results[i] = result{err: fmt.Errorf("boltstore: commit: %w", err)}
			}
			pending = nil
		}
	}
	for i, r := range group {
		r.done <- results[i]
	}
}

func without(list []int, v int) []int {
	out := list[:0:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// apply runs one append inside the group's transaction, against the state earlier
// appends of the group left. A conflict or an idempotent retry writes nothing; a non-nil
// error is a storage failure that must abort the transaction.
func (s *Store) apply(tx *bolt.Tx, r *appendReq, lastTS *time.Time) (result, error) {
	ids := tx.Bucket(bIDs)
	for i, e := range r.prepared {
		ref := ids.Get([]byte(e.EventID))
		if ref == nil {
			continue
		}
		held, v, ok := parseIDRef(ref)
		if !ok {
			return result{}, fmt.Errorf("event id %s: malformed reference %q", e.EventID, ref)
		}
		if i > 0 {
			return result{err: &eventstore.DuplicateEventError{EventID: e.EventID, Held: held, Version: v}}, nil
		}
		stored, err := loadRange(tx, held.Key(), v, v+int64(len(r.prepared))-1, time.Time{})
		if err != nil {
			return result{}, err
		}
		evs, err := eventstore.Recognise(r.stream, held, v, stored, r.prepared)
		return result{events: evs, err: err}, nil
	}
	current := head(tx, r.key)
	if r.expected != eventstore.Any && r.expected != current {
		return result{err: &eventstore.ConflictError{Stream: r.stream, Expected: r.expected, Current: current}}, nil
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	if !now.After(*lastTS) {
		now = lastTS.Add(time.Microsecond)
	}
	out := make([]event.Event, len(r.prepared))
	logB, streams, idx := tx.Bucket(bLog), tx.Bucket(bStreams), tx.Bucket(bIndex)
	for i, e := range r.prepared {
		e.Version = current + int64(i) + 1
		if e.Timestamp.IsZero() {
			e.Timestamp = now
			*lastTS = now
		}
		pos, err := logB.NextSequence()
		if err != nil {
			return result{}, err
		}
		e.Position = pos
		setHeader(r.values[i], e.Version, e.Timestamp)
		pk := u64(pos)
		if err := firstErr(
			logB.Put(pk, r.values[i]),
			streams.Put(streamKey(r.key, e.Version), pk),
			ids.Put([]byte(e.EventID), streamKey(r.key, e.Version)),
			idx.Put(indexKey(idxType, e.EventType, pos), nil),
			idx.Put(indexKey(idxAggType, e.AggregateType, pos), nil),
		); err != nil {
			return result{}, err
		}
		if c := e.Metadata.CorrelationID; c != "" {
			if err := idx.Put(indexKey(idxCorr, c, pos), nil); err != nil {
				return result{}, err
			}
		}
		out[i] = e
	}
	return result{events: out}, nil
}

// parseIDRef reads an ids-bucket value: the stream key, 0x00, the version.
func parseIDRef(ref []byte) (eventstore.Stream, int64, bool) {
	if len(ref) < 10 || ref[len(ref)-9] != 0 {
		return eventstore.Stream{}, 0, false
	}
	key := string(ref[:len(ref)-9])
	typ, id, ok := strings.Cut(key, "#")
	if !ok {
		return eventstore.Stream{}, 0, false
	}
	return eventstore.Stream{Type: typ, ID: id}, int64(binary.BigEndian.Uint64(ref[len(ref)-8:])), true
}

// backfillIDs creates the ids bucket and fills it from the streams a store written
// before event identity holds. A duplicate id among old events keeps its first place.
func backfillIDs(tx *bolt.Tx) error {
	ids, err := tx.CreateBucket(bIDs)
	if err != nil {
		return err
	}
	return tx.Bucket(bStreams).ForEach(func(k, pos []byte) error {
		e, err := getEvent(tx, pos)
		if err != nil {
			return err
		}
		if ids.Get([]byte(e.EventID)) != nil {
			return nil
		}
		return ids.Put([]byte(e.EventID), append([]byte(nil), k...))
	})
}

// FindEvent looks the id up in the ids bucket.
func (s *Store) FindEvent(ctx context.Context, st eventstore.Stream, id string) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	var v int64
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		ref := tx.Bucket(bIDs).Get([]byte(id))
		if ref == nil {
			return nil
		}
		held, hv, ok := parseIDRef(ref)
		switch {
		case !ok:
			return fmt.Errorf("boltstore: event id %s: malformed reference", id)
		case held != st:
			return &eventstore.DuplicateEventError{EventID: id, Held: held, Version: hv}
		}
		v, found = hv, true
		return nil
	})
	return v, found, err
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
