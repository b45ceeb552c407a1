package ecmctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/migrate"
	"github.com/ecmstore/ecmstore/shared/system"
)

// rawFeed is a system's store as stored (no upcasting: a copy keeps old schemas as they
// are) with its global log, which reading a whole store needs.
func rawFeed(sys *system.System) (eventstore.Feed, error) {
	f, ok := sys.Raw.(eventstore.Feed)
	if !ok || sys.Feed == nil {
		return nil, fmt.Errorf("the %s store has no global log to read every event from (use embedded, postgres or memory as the source)",
			sys.Config.EventStore)
	}
	return f, nil
}

func (a *app) exportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write every event as JSON lines (one stored event per line, every field), in the store's global order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sys, err := a.openDirect(cmd.Context(), "export", "")
			if err != nil {
				return err
			}
			defer sys.Close()
			feed, err := rawFeed(sys)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			head, err := feed.Head(cmd.Context())
			if err != nil {
				return err
			}
			bar := a.bar(cmd, int64(head), "export")
			n, err := migrate.Export(cmd.Context(), feed, w, func(done, total uint64) {
				bar.ChangeMax64(int64(total))
				_ = bar.Set64(int64(done))
			})
			_ = bar.Finish()
			if err != nil {
				return err
			}
			if f, ok := w.(*os.File); ok && out != "" {
				if err := f.Sync(); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d events\n", n)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write (default: standard output)")
	return cmd
}

func (a *app) importCmd() *cobra.Command {
	var in string
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Append the events of a JSON-lines export, ids, versions and timestamps kept; repeating it writes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sys, err := a.openDirect(cmd.Context(), "import", "")
			if err != nil {
				return err
			}
			defer sys.Close()
			var r io.Reader = cmd.InOrStdin()
			if in != "" && in != "-" {
				f, err := os.Open(in)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			bar := a.bar(cmd, -1, "import")
			stats, m, err := migrate.Import(cmd.Context(), r, sys.Raw, func(n int) { _ = bar.Set(n) })
			_ = bar.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d events: %d written, %d already there\n", stats.Read, stats.Written, stats.Skipped)
			if noVerify {
				return nil
			}
			return a.verify(cmd, sys.Raw, m, false)
		},
	}
	cmd.Flags().StringVarP(&in, "in", "i", "", "file to read (default: standard input)")
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "skip comparing every imported stream's digest with the file's")
	return cmd
}

func (a *app) migrateCmd() *cobra.Command {
	var from, to, targetDataDir, targetDatabaseURL string
	var restart, noVerify bool
	cmd := &cobra.Command{
		Use:   "migrate --from embedded --to dynamodb|postgres",
		Short: "Copy a whole store to another backend, resumably, and verify it",
		Long: `migrate copies every event of one store to another, in the source's global order,
keeping event ids, versions, timestamps, schema versions, metadata and payloads as stored.

It resumes: a checkpoint in the target's document store (collection _migrate) records the
last source position copied, and every event is appended under its own id at its own
version, so a run after an interruption (or a second run) skips what the target holds,
checking each id, and never writes an event twice.

At the end it verifies: every stream's event count and SHA-256 digest (over the canonical
encoding of its events) in the target must equal the source's, and a target with a global
log must hold no other events. Any difference is reported and the exit status is 1.

The source is configured as for the other commands (--data-dir, --database-url, …); the
target's location too, or with --target-data-dir / --target-database-url where both sides
would otherwise share one. DynamoDB tables are named by EVENTS_TABLE, READMODEL_TABLE and
INDEX_TABLE (or the --*-table flags); with an endpoint override (DynamoDB Local) missing
tables are created. Read models are not copied: start the system on the target and its
projections build from the events.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.api != "" {
				return fmt.Errorf("migrate: %w (it works on stores directly; drop --api)", ErrUnsupported)
			}
			ctx := cmd.Context()
			srcCfg, err := a.config(from)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			dstCfg, err := a.config(to)
			if err != nil && !(to == "postgres" && targetDatabaseURL != "") {
				return fmt.Errorf("target: %w", err)
			}
			if targetDataDir != "" {
				dstCfg.DataDir = targetDataDir
			}
			if targetDatabaseURL != "" {
				dstCfg.DatabaseURL = targetDatabaseURL
			}
			if sourceName(srcCfg) == sourceName(dstCfg) && srcCfg.EventStore != "dynamodb" {
				return fmt.Errorf("source and target are the same store (%s)", sourceName(srcCfg))
			}
			src, err := openSystem(ctx, srcCfg, a.log)
			if err != nil {
				return fmt.Errorf("open source: %w", err)
			}
			defer src.Close()
			feed, err := rawFeed(src)
			if err != nil {
				return err
			}
			dst, err := openSystem(ctx, dstCfg, a.log)
			if err != nil {
				return fmt.Errorf("open target: %w", err)
			}
			defer dst.Close()
			target := eventstore.Store(dst.Raw)
			if a.wrapTarget != nil {
				target = a.wrapTarget(target)
			}
			var cp migrate.Checkpoints = migrate.DocCheckpoint{Docs: dst.Docs, Source: sourceName(srcCfg)}
			if restart {
				cp = fromStart{cp}
			}
			head, err := feed.Head(ctx)
			if err != nil {
				return err
			}
			bar := a.bar(cmd, int64(head), "copy")
			stats, err := migrate.Copy(ctx, feed, target, cp, func(done, total uint64) {
				bar.ChangeMax64(int64(total))
				_ = bar.Set64(int64(done))
			})
			if err != nil {
				_ = bar.Exit()
				return fmt.Errorf("migrate stopped after %d events written (run it again to resume): %w", stats.Written, err)
			}
			_ = bar.Finish()
			fmt.Fprintf(cmd.OutOrStdout(), "copied %s → %s: %d events read, %d written, %d already in the target\n",
				sourceName(srcCfg), sourceName(dstCfg), stats.Read, stats.Written, stats.Skipped)
			if noVerify {
				return nil
			}
			m := migrate.NewManifest()
			if err := migrate.ReadFeed(ctx, feed, m.Add); err != nil {
				return fmt.Errorf("digest source: %w", err)
			}
			return a.verify(cmd, dst.Raw, m, true)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "embedded", "source backend: embedded, postgres or memory")
	f.StringVar(&to, "to", "", "target backend: dynamodb, postgres, embedded or memory")
	f.StringVar(&targetDataDir, "target-data-dir", "", "the target's embedded store directory")
	f.StringVar(&targetDatabaseURL, "target-database-url", "", "the target's PostgreSQL connection string")
	f.BoolVar(&restart, "restart", false, "ignore the checkpoint and re-read the source from its first event (still writes nothing twice)")
	f.BoolVar(&noVerify, "no-verify", false, "skip the verification")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// verify compares the target with the manifest and prints the outcome; a difference is
// an error (exit status 1).
func (a *app) verify(cmd *cobra.Command, dst eventstore.Store, m *migrate.Manifest, whole bool) error {
	bar := a.barOf(cmd, int64(len(m.Digests())), "verify", "streams")
	rep, err := migrate.Verify(cmd.Context(), dst, m, func(done, _ uint64) { _ = bar.Set64(int64(done)) })
	_ = bar.Finish()
	if err == nil && whole {
		err = migrate.VerifyCount(cmd.Context(), dst, m)
	}
	if a.jsonOut {
		_ = a.printJSON(cmd.OutOrStdout(), rep)
	}
	var me *migrate.MismatchError
	switch {
	case errors.As(err, &me):
		for _, mm := range me.Report.Mismatches {
			fmt.Fprintf(cmd.OutOrStdout(), "MISMATCH %s: source %d events v%d sha256 %s, target %d events v%d sha256 %s\n",
				mm.Source.Stream, mm.Source.Events, mm.Source.Version, mm.Source.SHA256, mm.Target.Events, mm.Target.Version, mm.Target.SHA256)
		}
		return fmt.Errorf("verification FAILED: %w", err)
	case err != nil:
		return fmt.Errorf("verification FAILED: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "verified %d streams, %d events: every stream's count and SHA-256 digest match\n", rep.Streams, rep.Events)
	return nil
}

// sourceName names a store for the checkpoint and the messages (no password).
func sourceName(c system.Config) string {
	switch c.EventStore {
	case "embedded":
		dir, err := filepath.Abs(c.DataDir)
		if err != nil {
			dir = c.DataDir
		}
		return "embedded:" + filepath.Join(dir, "ecmstore.db")
	case "postgres":
		if u, err := url.Parse(c.DatabaseURL); err == nil && u.Scheme != "" {
			return "postgres:" + u.Redacted()
		}
		return "postgres"
	case "dynamodb":
		return "dynamodb:" + c.EventsTable
	}
	return c.EventStore
}

// fromStart ignores the saved checkpoint (it still saves new ones).
type fromStart struct{ migrate.Checkpoints }

func (fromStart) Load(context.Context) (uint64, error) { return 0, nil }
