package ecmctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

func (a *app) deadLettersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dead-letters", Aliases: []string{"dl"}, Short: "Parked events: list, show, redrive"}
	list := &cobra.Command{
		Use:   "list",
		Short: "Every parked event with its projection, stream and error",
		Args:  cobra.NoArgs,
		RunE: a.withOps(func(cmd *cobra.Command, _ []string, ops Ops) error {
			dls, err := ops.DeadLetters(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(cmd.OutOrStdout(), map[string]any{"deadLetters": dls})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EVENT ID\tPROJECTION\tSTREAM\tVERSION\tTYPE\tATTEMPTS\tPARKED AT\tERROR")
			for _, d := range dls {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", d.EventID, d.Projection, d.Stream(), d.Version,
					d.EventType, d.Attempts, d.ParkedAt.Format(time.RFC3339), d.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d parked\n", len(dls))
			return nil
		}),
	}
	show := &cobra.Command{
		Use:   "show EVENT-ID",
		Short: "One dead letter in full, the parked event included (a unique id prefix will do)",
		Args:  cobra.ExactArgs(1),
		RunE: a.withOps(func(cmd *cobra.Command, args []string, ops Ops) error {
			dls, err := ops.DeadLetters(cmd.Context())
			if err != nil {
				return err
			}
			found, err := findDeadLetters(dls, args[0])
			if err != nil {
				return err
			}
			if len(found) == 1 {
				return a.printJSON(cmd.OutOrStdout(), found[0])
			}
			return a.printJSON(cmd.OutOrStdout(), found)
		}),
	}
	redrive := &cobra.Command{
		Use:   "redrive [EVENT-ID]",
		Short: "Re-apply parked events (one, or all without an id); those failing again stay parked",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.withOps(func(cmd *cobra.Command, args []string, ops Ops) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			res, err := ops.Redrive(cmd.Context(), id)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redriven: %d, still parked: %d\n", res.Redriven, len(res.Remaining))
			for _, d := range res.Remaining {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s %s %s v%d: %s\n", d.EventID, d.Projection, d.Stream(), d.Version, d.Error)
			}
			return nil
		}),
	}
	cmd.AddCommand(list, show, redrive)
	return cmd
}

func (a *app) streamsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "streams", Short: "One aggregate's event stream"}
	var asOf string
	show := &cobra.Command{
		Use:   "show TYPE ID",
		Short: "A stream's events (upcast to the current schemas), as of a time with --as-of",
		Args:  cobra.ExactArgs(2),
		RunE: a.withOps(func(cmd *cobra.Command, args []string, ops Ops) error {
			at, err := parseTime("--as-of", asOf)
			if err != nil {
				return err
			}
			st := eventstore.Stream{Type: args[0], ID: args[1]}
			events, err := ops.Stream(cmd.Context(), st, at)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				return fmt.Errorf("%s: %w", st, eventstore.ErrNotFound)
			}
			if a.jsonOut {
				return a.printJSON(cmd.OutOrStdout(), map[string]any{"stream": st, "events": events})
			}
			return printEvents(cmd.OutOrStdout(), events)
		}),
	}
	show.Flags().StringVar(&asOf, "as-of", "", "RFC 3339 time: the stream as it stood then")
	cmd.AddCommand(show)
	return cmd
}

type queryFlags struct {
	eventType, aggregateType, correlationID, since, until string
	limit                                                 int
}

func (q *queryFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&q.eventType, "type", "", "event type")
	f.StringVar(&q.aggregateType, "aggregate-type", "", "aggregate type")
	f.StringVar(&q.correlationID, "correlation-id", "", "correlation id")
	f.StringVar(&q.since, "since", "", "RFC 3339 time or a duration back from now (10m)")
	f.StringVar(&q.until, "until", "", "RFC 3339 time or a duration back from now")
}

func (q *queryFlags) filter() (eventstore.Filter, error) {
	f := eventstore.Filter{EventType: q.eventType, AggregateType: q.aggregateType, CorrelationID: q.correlationID}
	var err error
	if f.Since, err = parseTime("--since", q.since); err != nil {
		return f, err
	}
	if f.Until, err = parseTime("--until", q.until); err != nil {
		return f, err
	}
	return f, nil
}

func (a *app) eventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Events across streams"}
	var qf queryFlags
	query := &cobra.Command{
		Use:   "query",
		Short: "Events matching the filters, oldest first, following the pages",
		Args:  cobra.NoArgs,
		RunE: a.withOps(func(cmd *cobra.Command, _ []string, ops Ops) error {
			f, err := qf.filter()
			if err != nil {
				return err
			}
			n := 0
			err = eachEvent(cmd.Context(), ops, f, func(e event.Event) bool {
				a.printEvent(cmd.OutOrStdout(), e)
				n++
				return qf.limit == 0 || n < qf.limit
			})
			if err == nil && !a.jsonOut {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d events\n", n)
			}
			return err
		}),
	}
	qf.register(query)
	query.Flags().IntVar(&qf.limit, "limit", 0, "stop after this many events (0: all)")

	var tf queryFlags
	var follow bool
	var last int
	tail := &cobra.Command{
		Use:   "tail",
		Short: "The latest events (--since, default the last hour); --follow keeps printing new ones",
		Args:  cobra.NoArgs,
		RunE: a.withOps(func(cmd *cobra.Command, _ []string, ops Ops) error {
			if tf.since == "" {
				tf.since = "1h"
			}
			f, err := tf.filter()
			if err != nil {
				return err
			}
			return a.tail(cmd.Context(), cmd.OutOrStdout(), ops, f, last, follow)
		}),
	}
	tf.register(tail)
	tail.Flags().IntVarP(&last, "lines", "n", 20, "how many of the latest events to print first")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep polling for new events until interrupted")
	cmd.AddCommand(query, tail)
	return cmd
}

// eachEvent pages through a query; fn returns false to stop.
func eachEvent(ctx context.Context, ops Ops, f eventstore.Filter, fn func(event.Event) bool) error {
	f.Limit = eventstore.MaxPageSize
	for {
		page, err := ops.Query(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if !fn(e) {
				return nil
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		f.Cursor = page.NextCursor
	}
}

// tail prints the last n events matching f, then, following, polls for newer ones. A
// finished query has no cursor to continue from, so each poll asks again from the newest
// timestamp printed and skips the ids already printed at that timestamp.
func (a *app) tail(ctx context.Context, w io.Writer, ops Ops, f eventstore.Filter, n int, follow bool) error {
	var ring []event.Event
	err := eachEvent(ctx, ops, f, func(e event.Event) bool {
		ring = append(ring, e)
		if len(ring) > max(n, 0) {
			ring = ring[1:]
		}
		return true
	})
	if err != nil {
		return err
	}
	var newest time.Time
	seenAt := map[string]bool{}
	note := func(e event.Event) {
		if e.Timestamp.After(newest) {
			newest, seenAt = e.Timestamp, map[string]bool{}
		}
		seenAt[e.EventID] = true
	}
	for _, e := range ring {
		a.printEvent(w, e)
		note(e)
	}
	if !follow {
		return nil
	}
	tick := time.NewTicker(a.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: following ends normally
		case <-tick.C:
		}
		g := f
		if !newest.IsZero() {
			g.Since = newest
		}
		err := eachEvent(ctx, ops, g, func(e event.Event) bool {
			if e.Timestamp.Equal(newest) && seenAt[e.EventID] {
				return true
			}
			a.printEvent(w, e)
			note(e)
			return true
		})
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
}

func (a *app) printEvent(w io.Writer, e event.Event) {
	if a.jsonOut {
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "%s  %s v%d  %s  %s  %s\n", e.Timestamp.Format(time.RFC3339Nano), eventstore.StreamOf(e), e.Version,
		e.EventType, e.EventID, compact(e.Payload))
}

func printEvents(w io.Writer, events []event.Event) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTIMESTAMP\tTYPE\tSCHEMA\tEVENT ID\tACTOR\tPAYLOAD")
	for _, e := range events {
		fmt.Fprintf(tw, "%d\t%s\t%s\tv%d\t%s\t%s\t%s\n", e.Version, e.Timestamp.Format(time.RFC3339Nano), e.EventType,
			e.SchemaVersion, e.EventID, e.Metadata.Actor, compact(e.Payload))
	}
	return tw.Flush()
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// parseTime reads an RFC 3339 time or a duration back from now ("10m"); "" is zero.
func parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().UTC().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: an RFC 3339 time or a duration such as 10m", flag, v)
	}
	return t.UTC(), nil
}
