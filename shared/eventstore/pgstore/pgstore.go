// Package pgstore is the PostgreSQL backend: events, snapshots and read-model documents
// in one database (seed 002's design: JSONB payload and metadata, a unique (stream,
// version) constraint, indexes for the stream, the event type, the aggregate type and the
// correlation id), so that a projection commits its read-model write and its checkpoint
// in one transaction.
//
// # A global order with no gaps visible to readers
//
// The feed (ReadAll, Head) promises that a reader never later sees an event at a
// position it has already passed. A sequence (bigserial) alone breaks that: transaction A
// draws position 5, B draws 6 and commits first; a reader sees 6 and moves its checkpoint
// past 5, and A's event, committed a moment later, is never delivered. This is Marten's
// "high water mark" problem (its async daemon could still skip in-flight events under
// concurrent appends until 9.16.1: JasperFx/marten discussion #4953) and the ordering
// problem of every transactional outbox read by position.
//
// Designs weighed:
//
//   - Gap detection (Marten's high water mark): the reader stops at the first hole and
//     skips it after a timeout. It is exact only if no append ever stays uncommitted
//     longer than the timeout: a rolled-back append and a slow one look the same.
//   - Transaction ids: store pg_current_xact_id() with each event and read only rows of
//     transactions below pg_snapshot_xmin(pg_current_snapshot()). Nothing visible is
//     skipped, but delivery follows transaction-id order, not position order (the id is
//     drawn at a transaction's first write, the position later), so the feed's uint64
//     cursor would have to become (xid, position); and any long transaction anywhere in
//     the database (a report, an idle session, a document update) holds every reader back.
//   - Positions drawn in commit order (this package). Every appending transaction takes
//     one transaction-scoped advisory lock before it draws positions and holds it until
//     it ends. PostgreSQL makes a committing transaction visible to new snapshots
//     (ProcArrayEndTransaction) before it releases its locks (see CommitTransaction in
//     src/backend/access/transam/xact.c, which requires exactly that order), so the next
//     holder of the lock, the only transaction that can draw higher positions, starts
//     after its predecessor is visible. Hence every snapshot that sees position p sees
//     every committed position below p. ReadAll is one SELECT, one snapshot, so it
//     returns a prefix of the log above `after`, never a set whose holes fill later; the
//     holes left by rolled-back appends are never filled, so skipping them is safe. No
//     timeout, no reader state, no dependence on unrelated transactions. (The same holds
//     on a hot standby: commit records are replayed in lock order.)
//
// The price is that appends are serialised on one lock across all processes. Two things
// buy the throughput back. Group commit: the appends waiting in one process are written
// by one transaction (groupcommit.Batcher), so the lock and the WAL flush are paid once
// per group. And the group is one pipeline: the lock, one statement per append (version
// check, position reservation and multi-row insert in a single statement) and the NOTIFY
// are sent together and run as one implicit transaction that commits at the protocol
// Sync, so the lock is held for about one round trip plus the commit, whatever the group
// size. A statement PostgreSQL rejects aborts its group; the failing append is then
// answered alone and the others are sent again without it.
//
// The unique (aggregate_type, aggregate_id, version) constraint is the last line of
// defence: a writer that bypassed the lock gets a unique violation, which Append reports
// as a *eventstore.ConflictError.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/groupcommit"
)

// appendLock is the advisory lock that orders position allocation with commits. Every
// process appending to the database must use the same id.
const appendLock = 7201550002

// notifyChannel is the LISTEN/NOTIFY channel appends signal on.
const notifyChannel = "ecm_events"

// ErrClosed is returned for appends after Close.
var ErrClosed = errors.New("pgstore: closed")

// Store is the PostgreSQL backend. Safe for concurrent use; Close it when done.
type Store struct {
	pool    *pgxpool.Pool
	cfg     config
	batcher *groupcommit.Batcher[*appendReq]
	lastTS  time.Time // committer-owned: store-assigned timestamps never go back

	// gate, when set (tests only), makes every group wait for this advisory lock after
	// its inserts and before it commits, so that a test can hold an append uncommitted.
	gate int64

	closing   context.Context // cancelled by Close: stops Notify listeners
	stop      context.CancelFunc
	mu        sync.Mutex // orders listeners.Add with Close's Wait
	closed    bool
	listeners sync.WaitGroup
	once      sync.Once
}

var (
	_ eventstore.Backend = (*Store)(nil)
	_ eventstore.Feed    = (*Store)(nil)
)

type config struct {
	maxGroup      int
	commitTimeout time.Duration
	now           func() time.Time
	poolConfig    []func(*pgxpool.Config)
}

// Option configures Open.
type Option func(*config)

// WithPoolConfig adjusts the connection pool before it is created (pool size, TLS,
// tracers, connection hooks).
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return func(c *config) { c.poolConfig = append(c.poolConfig, fn) }
}

// WithMaxGroup bounds how many concurrent appends share one transaction (default 256).
func WithMaxGroup(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxGroup = n
		}
	}
}

// WithCommitTimeout bounds one group's transaction, including the wait for the append
// lock held by other processes (default 30s).
func WithCommitTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.commitTimeout = d
		}
	}
}

// WithClock replaces the clock that stamps events appended without a timestamp.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// Open connects, applies the schema migrations and starts the committer. A database that
// cannot be reached yields an *eventstore.ThrottledError.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{maxGroup: 256, commitTimeout: 30 * time.Second, now: event.Now}
	for _, o := range opts {
		o(&cfg)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	// An append is acknowledged when its commit returns, which means durable only if the
	// commit waited for the WAL flush: whatever the database's or role's default (off is a
	// common bulk-load tuning), the store's sessions wait. A DSN parameter or
	// WithPoolConfig that sets synchronous_commit is an explicit choice and wins.
	if _, set := pcfg.ConnConfig.RuntimeParams["synchronous_commit"]; !set {
		pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	for _, fn := range cfg.poolConfig {
		fn(pcfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, classify(fmt.Errorf("pgstore: connect: %w", err))
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, classify(fmt.Errorf("pgstore: migrate: %w", err))
	}
	s := &Store{pool: pool, cfg: cfg}
	s.closing, s.stop = context.WithCancel(context.Background())
	s.batcher = groupcommit.New(s.commit, func(r *appendReq) { r.done <- appendRes{err: ErrClosed} })
	s.batcher.MaxGroup = cfg.maxGroup
	return s, nil
}

// Pool exposes the connection pool: operational queries, and transactions that join a
// read-model write to the events table.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the committer (appends already queued are answered) and the Notify
// listeners, then closes the pool.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.batcher.Close()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stop()
		s.listeners.Wait()
		s.pool.Close()
	})
	return nil
}

// appendReq is one Append waiting for its group. Everything that does not depend on the
// stream's current version is prepared by the caller, outside the lock.
type appendReq struct {
	stream   eventstore.Stream
	expected int64
	out      []event.Event // prepared copies; versions, positions and timestamps set at commit
	stampTS  []bool        // out[i] takes the store's time (the caller gave none)
	payloads []string
	metas    []string
	done     chan appendRes
}

// appendRes answers a request. Without err, either events holds what was written, or
// the append was not applied and settle decides between an idempotent retry and a
// conflict, from the stream version the statement saw (current < 0: read it again).
type appendRes struct {
	events  []event.Event
	err     error
	settle  bool
	current int64
}

func (s *Store) Append(ctx context.Context, st eventstore.Stream, expected int64, events []event.Event) ([]event.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if expected < eventstore.Any {
		return nil, eventstore.Invalid("expected version %d is neither a version nor a sentinel", expected)
	}
	// Versions are placeholders until commit; a zero now leaves zero timestamps for the
	// committer to stamp, so that they follow commit order.
	out, err := eventstore.Prepare(st, 0, events, time.Time{})
	if err != nil {
		return nil, err
	}
	req := &appendReq{stream: st, expected: expected, out: out,
		payloads: make([]string, len(out)), metas: make([]string, len(out)), stampTS: make([]bool, len(out)),
		done: make(chan appendRes, 1)}
	for i, e := range out {
		req.stampTS[i] = e.Timestamp.IsZero()
		req.payloads[i] = "null"
		if len(e.Payload) > 0 {
			req.payloads[i] = string(e.Payload)
		}
		md, err := json.Marshal(e.Metadata)
		if err != nil {
			return nil, eventstore.Invalid("metadata of %s: %v", e.EventType, err)
		}
		req.metas[i] = string(md)
	}
	if err := s.batcher.Submit(ctx, req); errors.Is(err, groupcommit.ErrClosed) {
		return nil, ErrClosed
	} else if err != nil {
		return nil, err
	}
	res := <-req.done
	switch {
	case res.err != nil:
		return nil, res.err
	case res.settle:
		return s.settle(ctx, req, res.current)
	}
	return res.events, nil
}

// settle answers an append that was not applied: a re-append of held ids returns the
// original append; anything else is a conflict. It runs in the caller's goroutine, after
// the group committed: stored events never change, so reading them outside the group's
// transaction is exact.
func (s *Store) settle(ctx context.Context, r *appendReq, current int64) ([]event.Event, error) {
	ids := make([]string, len(r.out))
	for i, e := range r.out {
		ids[i] = e.EventID
	}
	rows, err := s.pool.Query(ctx, `SELECT event_id, aggregate_type, aggregate_id, version FROM events
		WHERE event_id = ANY($1::text[]) ORDER BY position`, ids)
	if err != nil {
		return nil, classify(fmt.Errorf("pgstore: append: %w", err))
	}
	held := map[string]idRef{}
	for rows.Next() {
		var id string
		var ref idRef
		if err := rows.Scan(&id, &ref.stream.Type, &ref.stream.ID, &ref.version); err != nil {
			rows.Close()
			return nil, classify(fmt.Errorf("pgstore: append: %w", err))
		}
		if _, dup := held[id]; !dup {
			held[id] = ref
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("pgstore: append: %w", err))
	}
	if ref, ok := held[ids[0]]; ok {
		stored, err := loadRange(ctx, s.pool, ref.stream, ref.version, ref.version+int64(len(ids))-1)
		if err != nil {
			return nil, classify(fmt.Errorf("pgstore: append: %w", err))
		}
		return eventstore.Recognise(r.stream, ref.stream, ref.version, stored, r.out)
	}
	for _, id := range ids[1:] {
		if ref, ok := held[id]; ok {
			return nil, &eventstore.DuplicateEventError{EventID: id, Held: ref.stream, Version: ref.version}
		}
	}
	if current < 0 {
		if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events
			WHERE aggregate_type = $1 AND aggregate_id = $2`, r.stream.Type, r.stream.ID).Scan(&current); err != nil {
			return nil, classify(fmt.Errorf("pgstore: append: %w", err))
		}
	}
	return nil, &eventstore.ConflictError{Stream: r.stream, Expected: r.expected, Current: current}
}

type idRef struct {
	stream  eventstore.Stream
	version int64
}

// FindEvent looks the id up through events_by_event_id.
func (s *Store) FindEvent(ctx context.Context, st eventstore.Stream, id string) (int64, bool, error) {
	var ref idRef
	err := s.pool.QueryRow(ctx, `SELECT aggregate_type, aggregate_id, version FROM events
		WHERE event_id = $1 ORDER BY position LIMIT 1`, id).Scan(&ref.stream.Type, &ref.stream.ID, &ref.version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, classify(fmt.Errorf("pgstore: find event: %w", err))
	case ref.stream != st:
		return 0, false, &eventstore.DuplicateEventError{EventID: id, Held: ref.stream, Version: ref.version}
	}
	return ref.version, true, nil
}

// appendSQL applies one append in one statement: it reads the stream's version, and
// when it is the expected one (or the expectation is Any) and none of the ids is held
// already, reserves a block of positions and inserts the events. It returns the version
// it saw and the last reserved position (NULL: nothing written, settle decides why). The
// caller holds appendLock, so nothing else draws positions or writes events in between.
const appendSQL = `WITH cur AS (
	SELECT coalesce(max(version), 0) AS v FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
), held AS (
	SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ANY($5::text[])) AS h
), res AS (
	SELECT cur.v, CASE
		WHEN (cur.v = $3::bigint OR $3::bigint = -1) AND NOT held.h
		THEN setval('events_position', nextval('events_position') + $4::bigint - 1) END AS last
	FROM cur, held
), ins AS (
	INSERT INTO events (position, aggregate_type, aggregate_id, version, event_id, event_type, schema_version, ts, payload, metadata)
	SELECT res.last - $4::bigint + d.o, $1, $2, res.v + d.o, d.id, d.typ, d.sv, d.ts, d.payload::jsonb, d.md::jsonb
	FROM res, unnest($5::text[], $6::text[], $7::int[], $8::timestamptz[], $9::text[], $10::text[])
		WITH ORDINALITY AS d(id, typ, sv, ts, payload, md, o)
	WHERE res.last IS NOT NULL
)
SELECT v, last FROM res`

// commit writes one group: one pipeline, one implicit transaction (see the package
// comment). The committer goroutine is the only caller.
func (s *Store) commit(group []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.commitTimeout)
	defer cancel()
	results, culprit, err := s.send(ctx, group)
	switch {
	case err == nil:
		for i, r := range group {
			r.done <- results[i]
		}
	case culprit >= 0 && len(group) > 1:
		// PostgreSQL rejected one append's statement and rolled the group back: the others
		// are innocent and go again without it; the culprit gets its own answer.
		rest := make([]*appendReq, 0, len(group)-1)
		rest = append(rest, group[:culprit]...)
		s.commit(append(rest, group[culprit+1:]...))
		s.commit(group[culprit : culprit+1])
	default:
		for _, r := range group {
			r.done <- s.failed(r, err)
		}
	}
}

// failed answers a request whose group could not commit.
func (s *Store) failed(r *appendReq, err error) appendRes {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "events_stream_version" {
		// Someone wrote these versions without the append lock: still only a conflict.
		return appendRes{settle: true, current: -1}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The group's own deadline: the lock or the database was too slow, not the caller.
		return appendRes{err: &eventstore.ThrottledError{RetryAfter: 2 * time.Second,
			Err: fmt.Errorf("pgstore: append to %s: %w", r.stream, err)}}
	}
	return appendRes{err: classify(fmt.Errorf("pgstore: append to %s: %w", r.stream, err))}
}

// send runs the group's pipeline. On failure, culprit is the index of the request whose
// statement failed, or -1 when the failure is the group's (connection, lock, commit).
func (s *Store) send(ctx context.Context, group []*appendReq) (results []appendRes, culprit int, err error) {
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", appendLock)
	for _, r := range group {
		s.stamp(r)
		n := len(r.out)
		ids, types, svs, tss := make([]string, n), make([]string, n), make([]int32, n), make([]time.Time, n)
		for i, e := range r.out {
			ids[i], types[i], svs[i], tss[i] = e.EventID, e.EventType, int32(e.SchemaVersion), e.Timestamp
		}
		b.Queue(appendSQL, r.stream.Type, r.stream.ID, r.expected, int64(n), ids, types, svs, tss, r.payloads, r.metas)
	}
	if s.gate != 0 {
		b.Queue("SELECT pg_advisory_xact_lock_shared($1)", s.gate)
	}
	// Delivered at commit, and only if the group commits.
	b.Queue("SELECT pg_notify($1, '')", notifyChannel)

	br := s.pool.SendBatch(ctx, b)
	culprit = -1
	results = make([]appendRes, len(group))
	if _, err = br.Exec(); err == nil {
		for i, r := range group {
			var v int64
			var last *int64
			if err = br.QueryRow().Scan(&v, &last); err != nil {
				culprit = i
				break
			}
			results[i] = s.applied(r, v, last)
		}
	}
	if err == nil {
		for range b.Len() - len(group) - 1 {
			if _, err = br.Exec(); err != nil {
				break
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pgErr *pgconn.PgError
	if culprit >= 0 && !errors.As(err, &pgErr) {
		culprit = -1 // the connection failed, not the statement
	}
	return results, culprit, err
}

// stamp gives the request's events without a caller timestamp the store's time, never
// earlier than a previous group's, so that timestamps follow positions within a process.
func (s *Store) stamp(r *appendReq) {
	now := s.cfg.now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastTS) {
		now = s.lastTS.Add(time.Microsecond)
	}
	s.lastTS = now
	for i := range r.out {
		if r.stampTS[i] {
			r.out[i].Timestamp = now
		}
	}
}

// applied turns one statement's answer into the request's result.
func (s *Store) applied(r *appendReq, current int64, last *int64) appendRes {
	if last == nil {
		return appendRes{settle: true, current: current}
	}
	n := int64(len(r.out))
	out := make([]event.Event, n)
	for i, e := range r.out {
		e.Version = current + int64(i) + 1
		e.Position = uint64(*last - n + 1 + int64(i))
		out[i] = e
	}
	return appendRes{events: out}
}
