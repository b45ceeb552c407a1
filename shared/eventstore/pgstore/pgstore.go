// Package pgstore is the PostgreSQL backend (seed 002's design: JSONB payload and
// metadata, UNIQUE(stream, version), indexes for the stream, event type and correlation
// id), with snapshots and read-model documents in the same database.
//
// The global position is gap-free for readers. A bigserial alone is not: transaction A
// takes position 5, B takes 6 and commits first, a feed reader reads 6 and moves past 5
// before A commits (Marten's "high water mark" problem). Here every appending transaction
// takes one transaction-scoped advisory lock before it allocates positions, so positions
// are allocated and committed in the same order, and a reader that sees position p has
// already been able to see everything below p; a rolled-back transaction leaves a gap
// that nothing fills later. To keep throughput, the appends waiting in one process are
// grouped into one transaction (each in its own savepoint, so one conflict fails only its
// own request), and the group commits once: group commit, as in the embedded store.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/groupcommit"
)

const appendLock = 7201550002 // advisory lock serialising position allocation

// Store is the PostgreSQL backend. Safe for concurrent use; Close it when done.
type Store struct {
	pool    *pgxpool.Pool
	now     func() time.Time
	batcher *groupcommit.Batcher[*appendReq]
	once    sync.Once
	lastTS  time.Time // committer-owned: store-assigned timestamps never go back
}

var (
	_ eventstore.Backend = (*Store)(nil)
	_ eventstore.Feed    = (*Store)(nil)
)

// Open connects, applies migrations and starts the committer.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, mapError(fmt.Errorf("pgstore: connect: %w", err))
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	s := &Store{pool: pool, now: event.Now}
	s.batcher = groupcommit.New(s.commit, func(r *appendReq) { r.done <- appendRes{err: ErrClosed} })
	s.batcher.MaxGroup = 256
	return s, nil
}

// Pool exposes the connection pool (tests, operational queries).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the committer and closes the pool.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.batcher.Close()
		s.pool.Close()
	})
	return nil
}

// ErrClosed is returned for appends after Close.
var ErrClosed = errors.New("pgstore: closed")

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
	res := <-req.done
	return res.events, res.err
}

func (s *Store) commit(group []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results := make([]appendRes, len(group))
	lastTS := s.lastTS
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", appendLock); err != nil {
			return err
		}
		lastTS = s.lastTS
		wrote := false
		for i, r := range group {
			// Under the lock no other writer can touch the events table, so a request
			// that conflicts is rejected before it writes anything: no savepoints needed.
			res := s.apply(ctx, tx, r, &lastTS)
			if res.fatal != nil {
				return res.fatal
			}
			wrote = wrote || (res.err == nil && res.wrote)
			results[i] = res.appendRes
		}
		if wrote {
			_, err := tx.Exec(ctx, "SELECT pg_notify('ecm_events', '')")
			return err
		}
		return nil
	})
	if err == nil {
		s.lastTS = lastTS
	} else if len(group) > 1 {
		// One request PostgreSQL rejects must not fail its neighbours: retry each alone.
		for _, r := range group {
			s.commit([]*appendReq{r})
		}
		return
	}
	for i, r := range group {
		if err != nil {
			r.done <- appendRes{err: mapError(fmt.Errorf("pgstore: append: %w", err))}
			continue
		}
		r.done <- results[i]
	}
}

type applyRes struct {
	appendRes
	wrote bool
	fatal error // the transaction itself failed: the whole group fails
}

func (s *Store) apply(ctx context.Context, tx pgx.Tx, r *appendReq, lastTS *time.Time) applyRes {
	n := int64(len(r.events))
	// One round trip: the stream's current version and, when it is what the request
	// expects, a block of n positions reserved from the sequence.
	expected := r.expected
	var current int64
	var last *int64
	err := tx.QueryRow(ctx, `SELECT c.v, CASE WHEN c.v = $3 OR $3 = -1
		THEN setval('events_position', nextval('events_position') + $4 - 1) END
		FROM (SELECT coalesce(max(version), 0) AS v FROM events WHERE aggregate_type = $1 AND aggregate_id = $2) c`,
		r.stream.Type, r.stream.ID, expected, n).Scan(&current, &last)
	if err != nil {
		return applyRes{fatal: err}
	}
	if expected == eventstore.Any {
		if current >= n {
			if stored, err := loadRange(ctx, tx, r.stream, current-n+1, current); err == nil && eventstore.SameEvents(stored, r.events) {
				return applyRes{appendRes: appendRes{events: stored}} // positions reserved but unused: a harmless gap
			}
		}
		expected = current
	}
	if last == nil {
		if expected >= 0 && expected+n <= current {
			if stored, err := loadRange(ctx, tx, r.stream, expected+1, expected+n); err == nil && eventstore.SameEvents(stored, r.events) {
				return applyRes{appendRes: appendRes{events: stored}}
			}
		}
		return applyRes{appendRes: appendRes{err: &eventstore.ConflictError{Stream: r.stream, Expected: r.expected, Current: current}}}
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	if !now.After(*lastTS) {
		now = lastTS.Add(time.Microsecond)
	}
	out, err := eventstore.Prepare(r.stream, current, r.events, now)
	if err != nil {
		return applyRes{appendRes: appendRes{err: err}}
	}
	first := *last - n + 1
	ids, types, payloads, mds := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	svs, vers, poss := make([]int32, n), make([]int64, n), make([]int64, n)
	tss := make([]time.Time, n)
	for i := range out {
		out[i].Position = uint64(first + int64(i))
		md, _ := json.Marshal(out[i].Metadata)
		payload := out[i].Payload
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		ids[i], types[i], payloads[i], mds[i] = out[i].EventID, out[i].EventType, string(payload), string(md)
		svs[i], vers[i], poss[i], tss[i] = int32(out[i].SchemaVersion), out[i].Version, first+int64(i), out[i].Timestamp
	}
	_, err = tx.Exec(ctx, `INSERT INTO events (position, aggregate_type, aggregate_id, version, event_id, event_type, schema_version, ts, payload, metadata)
		SELECT p, $1, $2, v, id, typ, sv, ts, payload::jsonb, md::jsonb
		FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::int[], $8::timestamptz[], $9::text[], $10::text[])
			AS d(p, v, id, typ, sv, ts, payload, md)`,
		r.stream.Type, r.stream.ID, poss, vers, ids, types, svs, tss, payloads, mds)
	if err != nil {
		return applyRes{fatal: err}
	}
	*lastTS = now
	return applyRes{appendRes: appendRes{events: out}, wrote: true}
}

const eventColumns = `position, aggregate_type, aggregate_id, version, event_id, event_type, schema_version, ts, payload, metadata`

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func scanEvents(rows pgx.Rows) ([]event.Event, error) {
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		var e event.Event
		var pos int64
		var payload, md []byte
		if err := rows.Scan(&pos, &e.AggregateType, &e.AggregateID, &e.Version, &e.EventID, &e.EventType,
			&e.SchemaVersion, &e.Timestamp, &payload, &md); err != nil {
			return nil, err
		}
		e.Position, e.Payload, e.Timestamp = uint64(pos), json.RawMessage(payload), e.Timestamp.UTC()
		if err := json.Unmarshal(md, &e.Metadata); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func loadRange(ctx context.Context, q queryer, st eventstore.Stream, from, to int64) ([]event.Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
		AND version BETWEEN $3 AND $4 ORDER BY version`, st.Type, st.ID, from, to)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	to := r.To
	if to <= 0 {
		to = 1 << 62
	}
	evs, err := loadRange(ctx, s.pool, st, max(r.From, 1), to)
	if err != nil {
		return nil, mapError(err)
	}
	if !r.Until.IsZero() {
		for i, e := range evs {
			if e.Timestamp.After(r.Until) {
				return evs[:i], nil
			}
		}
	}
	return evs, nil
}

type cursor struct {
	After uint64 `json:"after"`
}

func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	var c cursor
	if f.Cursor != "" {
		if err := eventstore.DecodeCursor(f.Cursor, &c); err != nil {
			return eventstore.Page{}, err
		}
	}
	limit := eventstore.PageSize(f.Limit)
	where := []string{"position > $1"}
	args := []any{int64(c.After)}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.EventType != "" {
		add("event_type = $%d", f.EventType)
	}
	if f.AggregateType != "" {
		add("aggregate_type = $%d", f.AggregateType)
	}
	if f.CorrelationID != "" {
		add("correlation_id = $%d", f.CorrelationID)
	}
	if !f.Since.IsZero() {
		add("ts >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		add("ts <= $%d", f.Until)
	}
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(" ORDER BY position LIMIT $%d", len(args)), args...)
	if err != nil {
		return eventstore.Page{}, mapError(err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return eventstore.Page{}, mapError(err)
	}
	page := eventstore.Page{Events: evs}
	if len(evs) > limit {
		page.Events = evs[:limit]
		page.NextCursor = eventstore.EncodeCursor(cursor{After: evs[limit-1].Position})
	}
	if page.Events == nil {
		page.Events = []event.Event{}
	}
	return page, nil
}

func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`,
		int64(after), eventstore.PageSize(limit))
	if err != nil {
		return nil, mapError(err)
	}
	evs, err := scanEvents(rows)
	return evs, mapError(err)
}

func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM events").Scan(&h)
	return uint64(h), mapError(err)
}

// Notify returns a channel signalled when appends commit (LISTEN/NOTIFY), so feed readers
// can react at once instead of waiting for their next poll. It closes when ctx ends.
func (s *Store) Notify(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		for ctx.Err() == nil {
			conn, err := s.pool.Acquire(ctx)
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			if _, err := conn.Exec(ctx, "LISTEN ecm_events"); err == nil {
				for {
					if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
						break
					}
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
			conn.Release()
		}
	}()
	return ch
}

// mapError turns connection exhaustion and unavailability into ThrottledError (503 with
// Retry-After at the edge).
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "53300", "57P03": // too many connections, cannot connect now
			return &eventstore.ThrottledError{RetryAfter: time.Second, Err: err}
		}
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return &eventstore.ThrottledError{RetryAfter: 2 * time.Second, Err: err}
	}
	return err
}
