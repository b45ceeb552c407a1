package pgstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/internal/arena"
)

// eventColumns are read in binary (readFormats) and decoded by decodeRow without pgx's
// per-value scan plans, and the metadata comes as four text columns instead of a JSON
// object to parse: replay spent most of its client CPU there.
const eventColumns = `position, aggregate_type, aggregate_id, version, event_id, event_type, schema_version, ts, payload,
	coalesce(metadata->>'actor', ''), coalesce(metadata->>'source', ''), coalesce(correlation_id, ''),
	coalesce(metadata->>'causationId', '')`

const eventColumnCount = 13

var readFormats = func() pgx.QueryResultFormats {
	f := make(pgx.QueryResultFormats, eventColumnCount)
	for i := range f {
		f[i] = pgx.BinaryFormatCode
	}
	return f
}()

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryEvents runs a SELECT of eventColumns and decodes its rows; capHint sizes the result.
func queryEvents(ctx context.Context, q queryer, capHint int, sql string, args ...any) ([]event.Event, error) {
	rows, err := q.Query(ctx, sql, append([]any{readFormats}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]event.Event, 0, capHint)
	a := arena.New(32 << 10)
	for rows.Next() {
		out = append(out, event.Event{})
		if err := decodeRow(&out[len(out)-1], rows.RawValues(), a); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// decodeRow reads one row of eventColumns in the binary format: integers big endian,
// text as its bytes, timestamptz as microseconds since 2000, jsonb as a version byte and
// the JSON text.
func decodeRow(e *event.Event, v [][]byte, a *arena.Arena) error {
	if len(v) != eventColumnCount {
		return fmt.Errorf("%w: %d columns", errRow, len(v))
	}
	for _, i := range [...]int{0, 3} {
		if len(v[i]) != 8 {
			return fmt.Errorf("%w: column %d of %d bytes", errRow, i, len(v[i]))
		}
	}
	if len(v[6]) != 4 || len(v[7]) != 8 || len(v[8]) < 2 || v[8][0] != 1 {
		return fmt.Errorf("%w: schema version, timestamp or payload", errRow)
	}
	e.Position = binary.BigEndian.Uint64(v[0])
	e.AggregateType = a.String(v[1])
	e.AggregateID = a.String(v[2])
	e.Version = int64(binary.BigEndian.Uint64(v[3]))
	e.EventID = a.String(v[4])
	e.EventType = a.String(v[5])
	e.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[6])))
	e.Timestamp = time.UnixMicro(pgEpoch + int64(binary.BigEndian.Uint64(v[7]))).UTC()
	e.Payload = json.RawMessage(a.Copy(v[8][1:]))
	e.Metadata = event.Metadata{Actor: a.String(v[9]), Source: a.String(v[10]),
		CorrelationID: a.String(v[11]), CausationID: a.String(v[12])}
	return nil
}

var errRow = errors.New("pgstore: unexpected event row")

func loadRange(ctx context.Context, q queryer, st eventstore.Stream, from, to int64) ([]event.Event, error) {
	return queryEvents(ctx, q, int(min(to-from+1, 1024)), `SELECT `+eventColumns+` FROM events
		WHERE aggregate_type = $1 AND aggregate_id = $2 AND version BETWEEN $3 AND $4 ORDER BY version`,
		st.Type, st.ID, from, to)
}

func (s *Store) Load(ctx context.Context, st eventstore.Stream, r eventstore.Range) ([]event.Event, error) {
	to := r.To
	if to <= 0 {
		to = 1 << 62
	}
	evs, err := loadRange(ctx, s.pool, st, max(r.From, 1), to)
	if err != nil {
		return nil, classify(fmt.Errorf("pgstore: load %s: %w", st, err))
	}
	if !r.Until.IsZero() {
		// The longest prefix at or before Until, not a filter: caller-supplied timestamps
		// need not grow with versions.
		for i, e := range evs {
			if e.Timestamp.After(r.Until) {
				return evs[:i], nil
			}
		}
	}
	return evs, nil
}

func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	q, err := eventstore.StartPositionQuery(ctx, f)
	if err != nil {
		return eventstore.Page{}, err
	}
	where := []string{"position > $1"}
	args := []any{int64(q.After)}
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
	args = append(args, q.Limit()+1)
	evs, err := queryEvents(ctx, s.pool, q.Limit()+1, `SELECT `+eventColumns+` FROM events WHERE `+
		strings.Join(where, " AND ")+fmt.Sprintf(" ORDER BY position LIMIT $%d", len(args)), args...)
	if err != nil {
		return eventstore.Page{}, classify(fmt.Errorf("pgstore: query: %w", err))
	}
	for _, e := range evs {
		if !q.Take(e) {
			break
		}
	}
	return q.Page(), nil
}

// ReadAll is one statement, hence one snapshot: with positions drawn in commit order
// (package comment) it returns a prefix of the log above after, never a set whose holes
// fill later.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	n := eventstore.PageSize(limit)
	evs, err := queryEvents(ctx, s.pool, n, `SELECT `+eventColumns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`,
		int64(after), n)
	if err != nil {
		return nil, classify(fmt.Errorf("pgstore: read feed: %w", err))
	}
	return evs, nil
}

// Head reads the highest committed position, not the sequence, which runs ahead of
// commits (uncommitted and rolled-back reservations).
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h int64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM events").Scan(&h); err != nil {
		return 0, classify(fmt.Errorf("pgstore: head: %w", err))
	}
	return uint64(h), nil
}
