// Package system assembles the product from configuration: the chosen backend, the event
// registry with its upcasters, the repositories, the projections and the HTTP handler.
// The local server and every Lambda main call it, so all of them run the same wiring.
package system

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ecmstore/ecmstore/infra"
)

// Config is read from the environment (see README's configuration table).
type Config struct {
	EventStore     string // memory | embedded (default) | dynamodb | postgres
	DataDir        string // embedded store directory
	DatabaseURL    string // postgres
	EventsTable    string
	ReadModelTable string
	// IndexTable (DynamoDB) is the stream-fed index cross-stream queries read
	// (INDEX_TABLE); IndexShards its fixed shard count (INDEX_SHARDS, default 32: changing
	// it means re-filling the index); IndexSettle how far behind now the feed over all
	// events reads (INDEX_SETTLE, a duration, default 5s).
	IndexTable  string
	IndexShards int
	IndexSettle time.Duration
	DLQName     string
	DLQURL      string
	// The saga's dead letters go to their own queue (SAGA_DLQ_NAME / SAGA_DLQ_URL), whose
	// redrive may append events; the read models' redrive may not.
	SagaDLQName   string
	SagaDLQURL    string
	SnapshotEvery int
	// RedriveScope is what a redrive handler re-applies (REDRIVE_SCOPE): "read-models"
	// (the DLQ's consumer), "sagas" (the saga DLQ's consumer) or "all" (the default).
	RedriveScope string
	// QueuePoller runs the local stand-in for Lambda's SQS event source mappings (each
	// dead-letter queue → its redrive handler) in process (DLQ_POLLER; default: with
	// the stream poller).
	QueuePoller bool
	// Endpoint overrides (emulators, LocalStack). With one set, missing tables and
	// queues are created at start; against real AWS nothing is ever created.
	EndpointOverride bool
	// StreamPoller runs the local stand-in for Lambda's event source mapping (DynamoDB
	// Streams → projector) in process. Default: on with an endpoint override, off on AWS,
	// where the mappings in template.yaml do it.
	StreamPoller bool
	// EnsureResources creates missing tables and queues at start: only for a local server
	// with an endpoint override, never inside a Lambda (the template owns its resources).
	EnsureResources bool
	// SnapshotTTL (DynamoDB): superseded snapshots expire through DynamoDB's TTL this long
	// after they were superseded, instead of being deleted by the writer (SNAPSHOT_TTL_HOURS; default 168 in Lambda,
	// where the function roles have no DeleteItem on the events table).
	SnapshotTTL time.Duration
	// RebuildQueueURL (DynamoDB, REBUILD_QUEUE_URL) is the rebuild function's queue: a
	// rebuild started through the API is dispatched there (template.yaml sets it for the
	// API function). Without it, the process steps rebuild jobs itself in the background.
	RebuildQueueURL string
	// IdempotencyLease is how long a keyed command's claim on its Idempotency-Key lasts
	// without renewal (IDEMPOTENCY_LEASE, a duration; default api.DefaultIdempotencyLease):
	// after a crash, how long retries of the key answer 409 request_in_progress.
	IdempotencyLease time.Duration
}

// FromEnv reads the configuration.
func FromEnv() (Config, error) {
	def := "embedded"
	if os.Getenv("AWS_LAMBDA_FUNCTION_NAME") != "" {
		def = "dynamodb" // a Lambda has no durable local disk
	}
	c := Config{
		EventStore:      strings.ToLower(env("EVENT_STORE", def)),
		DataDir:         env("DATA_DIR", ".data"),
		DatabaseURL:     os.Getenv("DATABASE_URL"),
		EventsTable:     env("EVENTS_TABLE", infra.DefaultEventsTable),
		ReadModelTable:  env("READMODEL_TABLE", infra.DefaultReadModelTable),
		IndexTable:      env("INDEX_TABLE", infra.DefaultIndexTable),
		DLQName:         env("DLQ_NAME", infra.DefaultDLQName),
		DLQURL:          os.Getenv("DLQ_URL"),
		SagaDLQName:     env("SAGA_DLQ_NAME", infra.DefaultSagaDLQName),
		SagaDLQURL:      os.Getenv("SAGA_DLQ_URL"),
		RebuildQueueURL: os.Getenv("REBUILD_QUEUE_URL"),
		SnapshotEvery:   50,
		RedriveScope:    env("REDRIVE_SCOPE", RedriveAll),
	}
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS", "AWS_ENDPOINT_URL_SQS"} {
		if os.Getenv(k) != "" {
			c.EndpointOverride = true
		}
	}
	inLambda := os.Getenv("AWS_LAMBDA_FUNCTION_NAME") != ""
	c.StreamPoller = c.EndpointOverride && !inLambda
	c.EnsureResources = c.EndpointOverride && !inLambda
	if v := os.Getenv("STREAM_POLLER"); v != "" {
		c.StreamPoller = v == "on" || v == "true" || v == "1"
	}
	c.QueuePoller = c.StreamPoller
	if v := os.Getenv("DLQ_POLLER"); v != "" {
		c.QueuePoller = v == "on" || v == "true" || v == "1"
	}
	switch c.RedriveScope {
	case RedriveAll, RedriveReadModels, RedriveSagas:
	default:
		return c, fmt.Errorf("REDRIVE_SCOPE must be %s, %s or %s, got %q", RedriveAll, RedriveReadModels, RedriveSagas, c.RedriveScope)
	}
	if os.Getenv("AWS_LAMBDA_FUNCTION_NAME") != "" {
		c.SnapshotTTL = 7 * 24 * time.Hour
	}
	if v := os.Getenv("SNAPSHOT_TTL_HOURS"); v != "" {
		h, err := strconv.Atoi(v)
		if err != nil || h < 0 {
			return c, fmt.Errorf("SNAPSHOT_TTL_HOURS must be a non-negative integer, got %q", v)
		}
		c.SnapshotTTL = time.Duration(h) * time.Hour
	}
	if v := os.Getenv("INDEX_SHARDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c, fmt.Errorf("INDEX_SHARDS must be an integer from 1 to 1000, got %q", v)
		}
		c.IndexShards = n
	}
	if v := os.Getenv("INDEX_SETTLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("INDEX_SETTLE must be a positive duration, got %q", v)
		}
		c.IndexSettle = d
	}
	if v := os.Getenv("IDEMPOTENCY_LEASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return c, fmt.Errorf("IDEMPOTENCY_LEASE must be a duration of at least 1s, got %q", v)
		}
		c.IdempotencyLease = d
	}
	if v := os.Getenv("SNAPSHOT_EVERY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, fmt.Errorf("SNAPSHOT_EVERY must be a non-negative integer, got %q", v)
		}
		c.SnapshotEvery = n
	}
	switch c.EventStore {
	case "bolt", "file":
		c.EventStore = "embedded"
	case "memory", "embedded", "dynamodb", "postgres":
	default:
		return c, fmt.Errorf("EVENT_STORE must be memory, embedded, dynamodb or postgres, got %q", c.EventStore)
	}
	if c.EventStore == "postgres" && c.DatabaseURL == "" {
		return c, fmt.Errorf("EVENT_STORE=postgres needs DATABASE_URL")
	}
	return c, nil
}

// Redrive scopes (REDRIVE_SCOPE).
const (
	RedriveAll        = "all"
	RedriveReadModels = "read-models"
	RedriveSagas      = "sagas"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// MustOpen reads the configuration from the environment and opens the system, or logs
// why not and exits: what every Lambda main does at cold start.
func MustOpen(log *slog.Logger, opts ...Option) *System {
	cfg, err := FromEnv()
	if err == nil {
		var sys *System
		if sys, err = Open(context.Background(), cfg, log, opts...); err == nil {
			return sys
		}
	}
	log.Error("cannot start", "err", err)
	os.Exit(1)
	return nil
}
