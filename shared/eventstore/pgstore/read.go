package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

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
			return nil, fmt.Errorf("metadata of event at position %d: %w", pos, err)
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

type cursor struct {
	After uint64 `json:"after"`
}

func (s *Store) Query(ctx context.Context, f eventstore.Filter) (eventstore.Page, error) {
	if err := eventstore.CheckFilter(f); err != nil {
		return eventstore.Page{}, err
	}
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
		return eventstore.Page{}, classify(fmt.Errorf("pgstore: query: %w", err))
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return eventstore.Page{}, classify(fmt.Errorf("pgstore: query: %w", err))
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

// ReadAll is one statement, hence one snapshot: with positions drawn in commit order
// (package comment) it returns a prefix of the log above after, never a set whose holes
// fill later.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]event.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`,
		int64(after), eventstore.PageSize(limit))
	if err != nil {
		return nil, classify(fmt.Errorf("pgstore: read feed: %w", err))
	}
	evs, err := scanEvents(rows)
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
