package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func (s *Store) SaveSnapshot(ctx context.Context, snap eventstore.Snapshot) error {
	if err := eventstore.CheckSnapshot(snap); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO snapshots (aggregate_type, aggregate_id, version, state_version, ts, state)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (aggregate_type, aggregate_id, version)
		DO UPDATE SET state_version = EXCLUDED.state_version, ts = EXCLUDED.ts, state = EXCLUDED.state`,
		snap.Stream.Type, snap.Stream.ID, snap.Version, snap.StateVersion, snap.Timestamp, string(snap.State))
	if err != nil {
		return classify(fmt.Errorf("pgstore: save snapshot of %s: %w", snap.Stream, err))
	}
	return nil
}

func (s *Store) LoadFromSnapshot(ctx context.Context, st eventstore.Stream, r eventstore.Range) (*eventstore.Snapshot, []event.Event, error) {
	to := r.To
	if to <= 0 {
		to = 1 << 62
	}
	var snap eventstore.Snapshot
	var state []byte
	q := `SELECT version, state_version, ts, state FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2
		AND version <= $3 AND ($4::timestamptz IS NULL OR ts <= $4) ORDER BY version DESC LIMIT 1`
	var until any
	if !r.Until.IsZero() {
		until = r.Until
	}
	err := s.pool.QueryRow(ctx, q, st.Type, st.ID, to, until).Scan(&snap.Version, &snap.StateVersion, &snap.Timestamp, &state)
	var found *eventstore.Snapshot
	switch {
	case err == nil:
		snap.Stream, snap.State, snap.Timestamp = st, json.RawMessage(state), snap.Timestamp.UTC()
		found = &snap
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, nil, classify(fmt.Errorf("pgstore: load snapshot of %s: %w", st, err))
	}
	return eventstore.LoadSnapshotThenEvents(ctx, s, found, st, r)
}

func (s *Store) DeleteSnapshots(ctx context.Context, st eventstore.Stream, below int64) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND version < $3`,
		st.Type, st.ID, below)
	if err != nil {
		return classify(fmt.Errorf("pgstore: delete snapshots of %s: %w", st, err))
	}
	return nil
}
