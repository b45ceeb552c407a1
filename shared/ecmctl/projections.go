package ecmctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

func (a *app) projectionsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "projections", Short: "Projection status and rebuilds"}
	status := &cobra.Command{
		Use:   "status",
		Short: "Each projection's status, checkpoint, lag, parked events and rebuild progress",
		Args:  cobra.NoArgs,
		RunE: a.withOps(func(cmd *cobra.Command, _ []string, ops Ops) error {
			st, err := ops.Projections(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(cmd.OutOrStdout(), map[string]any{"projections": st})
			}
			return printProjections(cmd.OutOrStdout(), st)
		}),
	}
	var watch bool
	rebuild := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Rebuild a projection from the event store; --watch follows it to the end",
		Args:  cobra.ExactArgs(1),
		RunE: a.withOps(func(cmd *cobra.Command, args []string, ops Ops) error {
			if !watch {
				res, err := ops.Rebuild(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(cmd.OutOrStdout(), res)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %v\n", args[0], describe(res))
				return nil
			}
			return a.watchRebuild(cmd, ops, args[0])
		}),
	}
	rebuild.Flags().BoolVarP(&watch, "watch", "w", false, "poll GET /projections and show progress until the rebuild ends")
	cmd.AddCommand(status, rebuild)
	return cmd
}

// watchRebuild starts a rebuild and polls the projection's status until it is no longer
// rebuilding and the start request has returned (a server that rebuilds inside the
// request answers at the end; one that runs it as a job answers at once). Whatever
// progress the status carries (a "rebuild" object: done/total events, rate, ETA, phase)
// drives the bar; without it the bar spins.
func (a *app) watchRebuild(cmd *cobra.Command, ops Ops, name string) error {
	ctx := cmd.Context()
	type result struct {
		res map[string]any
		err error
	}
	started := make(chan result, 1)
	go func() {
		res, err := ops.Rebuild(ctx, name)
		started <- result{res, err}
	}()
	// A spinner until the status reports a total; then a bar with count, rate and ETA.
	spin := a.spinner(cmd, "rebuild "+name)
	var bar *progressbar.ProgressBar
	var (
		res  *result
		last map[string]any
		tick = time.NewTicker(a.interval)
	)
	defer tick.Stop()
	for {
		st, err := findProjection(ctx, ops, name)
		if err != nil {
			return err
		}
		last = st
		desc := "rebuild " + name
		if p := progressOf(st); p.phase != "" {
			desc += " (" + p.phase + ")"
		}
		if p := progressOf(st); p.total > 0 {
			if bar == nil {
				_ = spin.Clear()
				bar = a.bar(cmd, p.total, desc)
			}
			bar.Describe(desc)
			bar.ChangeMax64(p.total)
			_ = bar.Set64(p.done)
		} else if bar == nil {
			spin.Describe(desc)
			_ = spin.Add(1)
		}
		rebuilding := st["status"] == "rebuilding"
		if res != nil && !rebuilding {
			break
		}
		select {
		case r := <-started:
			if r.err != nil {
				_ = spin.Clear()
				return r.err
			}
			res = &r
			continue // poll at once: a synchronous rebuild has just ended
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_ = spin.Finish()
	if bar != nil {
		_ = bar.Finish()
	}
	if a.jsonOut {
		return a.printJSON(cmd.OutOrStdout(), last)
	}
	// A rebuild that parked events has still finished: the status line says "blocked" and
	// names the error, and `dead-letters list` shows them.
	fmt.Fprintf(cmd.OutOrStdout(), "%s: rebuilt (%s)\n", name, describe(res.res))
	return printProjections(cmd.OutOrStdout(), []map[string]any{last})
}

func findProjection(ctx context.Context, ops Ops, name string) (map[string]any, error) {
	all, err := ops.Projections(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		if p["name"] == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no projection named %s", name)
}

type progress struct {
	done, total int64
	phase       string
}

// progressOf reads a status's rebuild progress, whatever of it the server reports.
func progressOf(st map[string]any) progress {
	rb, _ := st["rebuild"].(map[string]any)
	if rb == nil {
		return progress{}
	}
	num := func(keys ...string) int64 {
		for _, k := range keys {
			if f, ok := rb[k].(float64); ok {
				return int64(f)
			}
		}
		return 0
	}
	p := progress{done: num("eventsDone"), total: num("eventsTotal")}
	p.phase, _ = rb["phase"].(string)
	return p
}

func printProjections(w io.Writer, st []map[string]any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tCHECKPOINT\tLAG\tPARKED\tREBUILT\tNOTE")
	for _, p := range st {
		note := str(p["lastError"])
		if rb, ok := p["rebuild"].(map[string]any); ok {
			note = strings.TrimSpace(describe(rb) + " " + note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", str(p["name"]), str(p["status"]), orDash(p["checkpoint"]),
			orDash(p["lag"]), orDash(p["parked"]), orDash(p["rebuiltAt"]), note)
	}
	return tw.Flush()
}

// describe renders an object's fields as "k=v" pairs in key order.
func describe(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+str(m[k]))
	}
	return strings.Join(parts, " ")
}

func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		if v == float64(int64(v)) {
			return fmt.Sprint(int64(v))
		}
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprint(v)
}

func orDash(v any) string {
	if s := str(v); s != "" {
		return s
	}
	return "-"
}
