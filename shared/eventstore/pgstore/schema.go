package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order, once each, each in its own transaction, under an
// advisory lock so that two processes starting together do not race. Append only: a
// database records the versions it has, so an applied migration is never edited.
//
// event_id is text, not uuid: the store contract accepts any caller-chosen id (the other
// backends store it as given), and a uuid column would turn such an id into an error here
// only.
//
// events_position must keep CACHE 1: a session caching values would hand out positions
// below ones already committed, whatever the append lock does.
var migrations = []string{
	`CREATE SEQUENCE events_position;
	CREATE TABLE events (
		position       bigint PRIMARY KEY,
		aggregate_type text   NOT NULL,
		aggregate_id   text   NOT NULL,
		version        bigint NOT NULL,
		event_id       text   NOT NULL,
		event_type     text   NOT NULL,
		schema_version int    NOT NULL,
		ts             timestamptz NOT NULL,
		payload        jsonb  NOT NULL,
		metadata       jsonb  NOT NULL,
		correlation_id text GENERATED ALWAYS AS (metadata->>'correlationId') STORED,
		-- the last line of defence: whatever the application does, no duplicate versions
		CONSTRAINT events_stream_version UNIQUE (aggregate_type, aggregate_id, version)
	);
	CREATE INDEX events_by_type ON events (event_type, position);
	CREATE INDEX events_by_aggregate_type ON events (aggregate_type, position);
	CREATE INDEX events_by_correlation ON events (correlation_id, position) WHERE correlation_id IS NOT NULL;
	CREATE INDEX events_by_time ON events (ts);
	CREATE TABLE snapshots (
		aggregate_type text   NOT NULL,
		aggregate_id   text   NOT NULL,
		version        bigint NOT NULL,
		state_version  int    NOT NULL,
		ts             timestamptz NOT NULL,
		state          jsonb  NOT NULL,
		PRIMARY KEY (aggregate_type, aggregate_id, version)
	);
	CREATE TABLE documents (
		collection text  NOT NULL,
		key        text  NOT NULL,
		doc        jsonb NOT NULL,
		PRIMARY KEY (collection, key)
	);`,
	`ALTER TABLE documents ADD COLUMN rev bigint NOT NULL DEFAULT 1;`,
	// Event identity: appends look their ids up under the append lock. Not UNIQUE: a
	// database written before identity held may already hold a duplicated id, and the
	// migration must not fail on it.
	`CREATE INDEX events_by_event_id ON events (event_id);`,
	// Paged listing in byte order of the key, whatever the database's collation.
	`CREATE INDEX documents_by_key_bytes ON documents (collection, key COLLATE "C");`,
}

const migrationLock = 7201550001 // advisory lock id for migrations

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock) //nolint:errcheck
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var applied int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&applied); err != nil {
		return err
	}
	for i := applied; i < len(migrations); i++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", i+1); err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}
