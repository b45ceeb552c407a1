// Package ecmctl is the operator's command line (functions/ecmctl): projections, dead
// letters, streams and events through the HTTP API or directly on a store, and the
// store-level work only direct access can do (export, import, migrate between backends).
package ecmctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// app holds the global flags.
type app struct {
	api, token string
	jsonOut    bool
	quiet      bool
	store      string
	dataDir    string
	dbURL      string
	tables     struct{ events, readModels, index string }
	interval   time.Duration
	httpClient *http.Client
	log        *slog.Logger
	// changed reports whether a flag was given on the command line.
	changed func(name string) bool
	// wrapTarget, set by tests, stands between migrate and its target (fault injection).
	wrapTarget func(eventstore.Store) eventstore.Store
}

// NewRoot returns the ecmctl command tree. Configuration comes from the same environment
// variables as the server (EVENT_STORE, DATA_DIR, DATABASE_URL, EVENTS_TABLE, …, and the
// AWS SDK's AWS_ENDPOINT_URL_* and credentials), which flags override; --api (or
// ECMCTL_API) switches the commands that can to the HTTP API.
func NewRoot() *cobra.Command { return newRoot(&app{}) }

func newRoot(a *app) *cobra.Command {
	a.httpClient = &http.Client{Timeout: 10 * time.Minute}
	root := &cobra.Command{
		Use:   "ecmctl",
		Short: "Operate an ecmstore system: projections, dead letters, streams, events, export/import, migrate",
		Long: `ecmctl operates an ecmstore system.

Direct access (the default) opens the store the server would open, from the same
environment (EVENT_STORE, DATA_DIR, DATABASE_URL, EVENTS_TABLE, READMODEL_TABLE,
INDEX_TABLE, AWS_ENDPOINT_URL_*) or the flags below. With --api URL (and --token) the
commands that make sense over HTTP go through the API instead: projections, dead-letters,
streams and events.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.api, "api", os.Getenv("ECMCTL_API"), "base URL of the HTTP API (env ECMCTL_API); unset: work on the store directly")
	pf.StringVar(&a.token, "token", os.Getenv("ECMCTL_TOKEN"), "bearer token for the HTTP API (env ECMCTL_TOKEN)")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON instead of tables")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "no progress bars")
	pf.StringVar(&a.store, "store", "", "event store: embedded, postgres, dynamodb or memory (env EVENT_STORE)")
	pf.StringVar(&a.dataDir, "data-dir", "", "embedded store directory (env DATA_DIR)")
	pf.StringVar(&a.dbURL, "database-url", "", "PostgreSQL connection string (env DATABASE_URL)")
	pf.StringVar(&a.tables.events, "events-table", "", "DynamoDB events table (env EVENTS_TABLE)")
	pf.StringVar(&a.tables.readModels, "readmodel-table", "", "DynamoDB read-model table (env READMODEL_TABLE)")
	pf.StringVar(&a.tables.index, "index-table", "", "DynamoDB index table (env INDEX_TABLE)")
	pf.DurationVar(&a.interval, "interval", time.Second, "polling interval of --watch and --follow")
	a.changed = func(name string) bool { return pf.Changed(name) }
	a.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	root.AddCommand(a.projectionsCmd(), a.deadLettersCmd(), a.streamsCmd(), a.eventsCmd(),
		a.exportCmd(), a.importCmd(), a.migrateCmd())
	return root
}

// Execute runs the CLI with the process's arguments and returns the exit code.
func Execute(ctx context.Context) int {
	root := NewRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ecmctl:", err)
		return 1
	}
	return 0
}

// config is the system configuration for one backend: the environment, overridden by
// the flags given, with store (when not "") as the backend.
func (a *app) config(store string) (system.Config, error) {
	c, envErr := system.FromEnv()
	if a.changed("store") {
		c.EventStore = a.store
	}
	if store != "" {
		c.EventStore = store
	}
	if a.changed("data-dir") {
		c.DataDir = a.dataDir
	}
	if a.changed("database-url") {
		c.DatabaseURL = a.dbURL
	}
	if a.changed("events-table") {
		c.EventsTable = a.tables.events
	}
	if a.changed("readmodel-table") {
		c.ReadModelTable = a.tables.readModels
	}
	if a.changed("index-table") {
		c.IndexTable = a.tables.index
	}
	if c.EventStore == "bolt" || c.EventStore == "file" {
		c.EventStore = "embedded"
	}
	if !slices.Contains([]string{"memory", "embedded", "dynamodb", "postgres"}, c.EventStore) {
		return c, fmt.Errorf("event store must be memory, embedded, dynamodb or postgres, got %q", c.EventStore)
	}
	if c.EventStore == "postgres" && c.DatabaseURL == "" {
		return c, fmt.Errorf("the postgres store needs --database-url or DATABASE_URL")
	}
	// The environment's own checks, except the ones the flags just settled.
	if envErr != nil && !strings.Contains(envErr.Error(), "EVENT_STORE") {
		return c, envErr
	}
	return c, nil
}

// ops returns the HTTP API client with --api, else the system opened directly.
func (a *app) ops(ctx context.Context) (Ops, func(), error) {
	if a.api != "" {
		return remote{base: a.api, token: a.token, client: a.httpClient}, func() {}, nil
	}
	c, err := a.config("")
	if err != nil {
		return nil, nil, err
	}
	sys, err := openSystem(ctx, c, a.log)
	if err != nil {
		return nil, nil, err
	}
	return direct{sys: sys}, func() { _ = sys.Close() }, nil
}

// withOps wraps a command that works both ways: fn gets the system the flags name.
func (a *app) withOps(fn func(cmd *cobra.Command, args []string, ops Ops) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ops, done, err := a.ops(cmd.Context())
		if err != nil {
			return err
		}
		defer done()
		return fn(cmd, args, ops)
	}
}

// openDirect opens a system directly; the commands that only work on a store call it.
func (a *app) openDirect(ctx context.Context, what string, store string) (*system.System, error) {
	if a.api != "" {
		return nil, fmt.Errorf("%s: %w (it works on a store directly; drop --api)", what, ErrUnsupported)
	}
	c, err := a.config(store)
	if err != nil {
		return nil, err
	}
	return openSystem(ctx, c, a.log)
}

func (a *app) printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// bar is a progress bar of events on stderr (none with --quiet). total -1 makes a spinner.
func (a *app) bar(cmd *cobra.Command, total int64, what string) *progressbar.ProgressBar {
	return a.barOf(cmd, total, what, "events")
}

func (a *app) barOf(cmd *cobra.Command, total int64, what, unit string) *progressbar.ProgressBar {
	w := cmd.ErrOrStderr()
	if a.quiet {
		w = io.Discard
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

// spinner shows that work goes on when its size is unknown; it clears itself at the end.
func (a *app) spinner(cmd *cobra.Command, what string) *progressbar.ProgressBar {
	w := cmd.ErrOrStderr()
	if a.quiet {
		w = io.Discard
	}
	return progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionSpinnerType(14), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(200*time.Millisecond),
		// No spinning goroutine of its own (it reads the bar's state unlocked: a data race):
		// the spinner turns on each poll.
		progressbar.OptionSetSpinnerChangeInterval(0))
}

func sortStrings(s []string) { sort.Strings(s) }
