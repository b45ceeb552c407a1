// Package benchreport turns `go test -bench` output into the storage figures of the
// README's performance section: the median of each figure over the run's repetitions
// (-count), and the ratios the goals are stated in, each computed from figures of the
// same run (the fsync ceiling the benchmark measured on the same disk, the same backend's
// 1-writer figure), so that a loaded or faster machine moves both sides alike.
package benchreport

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Results holds every value of every metric, by package (its last path element) and
// benchmark name without the -GOMAXPROCS suffix.
type Results struct {
	CPU    string
	values map[string][]float64 // "pkg Benchmark unit"
}

// Parse reads benchmark output; lines that are not benchmark results are skipped.
func Parse(r io.Reader) (*Results, error) {
	res := &Results{values: map[string][]float64{}}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = line[strings.LastIndex(line, "/")+1:]
		case strings.HasPrefix(line, "cpu: "):
			res.CPU = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "Benchmark"):
			f := strings.Fields(line)
			if len(f) < 4 || len(f)%2 != 0 {
				continue // a benchmark's name printed before its result, or a failure
			}
			name := f[0]
			if i := strings.LastIndex(name, "-"); i > 0 {
				if _, err := strconv.Atoi(name[i+1:]); err == nil {
					name = name[:i]
				}
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					continue
				}
				k := pkg + " " + name + " " + f[i+1]
				res.values[k] = append(res.values[k], v)
			}
		}
	}
	return res, sc.Err()
}

// Median is the median of a metric over the repetitions, and how many there were.
func (r *Results) Median(pkg, bench, unit string) (float64, int) {
	v := slices.Clone(r.values[pkg+" "+bench+" "+unit])
	if len(v) == 0 {
		return math.NaN(), 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], len(v)
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, len(v)
}

// figure is one benchmark metric.
type figure struct{ bench, unit string }

// row is one line of a backend's table: a figure, and optionally its ratio to another
// figure of the same run with the goal for that ratio (or a goal for the figure itself).
type row struct {
	what   string
	fig    figure
	per    *figure // ratio denominator
	perWho string
	goal   float64 // 0: none
	extra  []figure
}

type backend struct {
	title, pkg string
	rows       []row
}

var (
	ceiling   = figure{"BenchmarkDisk/fsync-ceiling", "syncs/s"}
	boltOne   = figure{"BenchmarkStore/Append/sequential", "appends/s"}
	boltLeast = figure{"BenchmarkDisk/bbolt-commit", "commits/s"}
	pgOne     = figure{"BenchmarkStore/Append/sequential", "appends/s"}
	pgFloor   = figure{"BenchmarkReplayFloor", "rows/s"}
	perEvent  = []figure{{"", "allocs/event"}, {"", "B/event"}}
)

// backends are the tables `make bench` prints; a backend none of whose benchmarks ran is
// left out.
var backends = []backend{
	{"Embedded (boltstore)", "boltstore", []row{
		{what: "raw write(512 B)+fsync loop (the fsync ceiling)", fig: ceiling},
		{what: "bbolt's least commit: 10 pages + fdatasync, meta + fdatasync", fig: boltLeast, per: &ceiling, perWho: "× ceiling"},
		{what: "appends, 1 writer", fig: boltOne, per: &ceiling, perWho: "× ceiling", goal: 0.9},
		{what: "appends, 1 writer", fig: boltOne, per: &boltLeast, perWho: "× bbolt's least commit"},
		{what: "appends, 8 writers (distinct streams)", fig: figure{"BenchmarkStore/Append/8writers", "appends/s"}, per: &boltOne, perWho: "× 1 writer", goal: 3},
		{what: "appends, 8 writers (distinct streams)", fig: figure{"BenchmarkStore/Append/8writers", "appends/s"}, per: &ceiling, perWho: "× ceiling", goal: 2.5},
		{what: "replay of a 10,000-event stream", fig: figure{"BenchmarkStore/Replay", "events/s"}, goal: 1.3e6, extra: perEvent},
		{what: "global feed (ReadAll, pages of 500)", fig: figure{"BenchmarkStore/Feed", "events/s"}, goal: 1.3e6, extra: perEvent},
		{what: "document updates, 1 writer", fig: figure{"BenchmarkDocs/Update/sequential", "updates/s"}, per: &ceiling, perWho: "× ceiling"},
		{what: "document updates, 8 writers", fig: figure{"BenchmarkDocs/Update/8writers", "updates/s"}, per: &ceiling, perWho: "× ceiling"},
	}},
	{"PostgreSQL (pgstore)", "pgstore", []row{
		{what: "appends, 1 writer", fig: pgOne},
		{what: "appends, 8 writers (distinct streams)", fig: figure{"BenchmarkStore/Append/8writers", "appends/s"}, per: &pgOne, perWho: "× 1 writer", goal: 2},
		{what: "appends, 8 writers over two stores (two processes)", fig: figure{"BenchmarkAppendTwoProcesses", "appends/s"}, per: &pgOne, perWho: "× 1 writer"},
		{what: "the server alone: the replay's rows, position only, unread (the floor)", fig: pgFloor},
		{what: "replay of a 10,000-event stream", fig: figure{"BenchmarkStore/Replay", "events/s"}, goal: 8e5, extra: perEvent},
		{what: "replay of a 10,000-event stream", fig: figure{"BenchmarkStore/Replay", "events/s"}, per: &pgFloor, perWho: "× the server alone"},
		{what: "global feed (ReadAll, pages of 500)", fig: figure{"BenchmarkStore/Feed", "events/s"}, goal: 8e5, extra: perEvent},
	}},
}

// Write prints one Markdown table per backend: figure, median, ratio, goal, met.
func Write(w io.Writer, r *Results) error {
	bw := bufio.NewWriter(w)
	if r.CPU != "" {
		fmt.Fprintf(bw, "cpu: %s\n\n", r.CPU)
	}
	for _, b := range backends {
		if !r.ran(b) {
			continue
		}
		fmt.Fprintf(bw, "%s\n\n| figure | median | ratio (same run) | goal | met |\n|---|---|---|---|---|\n", b.title)
		for _, row := range b.rows {
			v, n := r.Median(b.pkg, row.fig.bench, row.fig.unit)
			val := fmt.Sprintf("%s %s (n=%d)", human(v), row.fig.unit, n)
			for _, x := range row.extra {
				if xv, xn := r.Median(b.pkg, row.fig.bench, x.unit); xn > 0 {
					val += fmt.Sprintf(", %.3g %s", xv, x.unit)
				}
			}
			ratio, goal, met := "", "", ""
			switch {
			case row.per != nil:
				d, _ := r.Median(b.pkg, row.per.bench, row.per.unit)
				q := v / d
				ratio = fmt.Sprintf("%.2f %s", q, row.perWho)
				if row.goal > 0 {
					goal, met = fmt.Sprintf("≥ %.2g %s", row.goal, row.perWho), yesNo(q >= row.goal)
				}
			case row.goal > 0:
				goal, met = fmt.Sprintf("≥ %s %s", human(row.goal), row.fig.unit), yesNo(v >= row.goal)
			}
			if n == 0 {
				ratio, met = "", "not measured"
			}
			fmt.Fprintf(bw, "| %s | %s | %s | %s | %s |\n", row.what, val, ratio, goal, met)
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

func (r *Results) ran(b backend) bool {
	for _, row := range b.rows {
		if _, n := r.Median(b.pkg, row.fig.bench, row.fig.unit); n > 0 {
			return true
		}
	}
	return false
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// human prints 1234567 as 1.23 M and 12345 as 12,345.
func human(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1000:
		s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
