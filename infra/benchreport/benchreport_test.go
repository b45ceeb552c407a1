package benchreport

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/report.md")

// testdata/bench.txt is `go test -bench` output with repetitions, a name line without a
// result and a failed benchmark; report.md is what make bench prints for it: medians
// (1000 appends/s of 900, 1000, 1100; a ceiling of 1500, the median of two), ratios of
// medians, goals met or not, and figures not measured said so.
func TestReport(t *testing.T) {
	in, err := os.Open("testdata/bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Write(&out, r); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/report.md", out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/report.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("report:\n%s\nwant:\n%s", out.Bytes(), want)
	}
}

func TestMedian(t *testing.T) {
	r := &Results{values: map[string][]float64{"p B u": {3, 1, 2, 10}}}
	for _, tc := range []struct {
		bench string
		want  float64
		n     int
	}{{"B", 2.5, 4}} {
		if got, n := r.Median("p", tc.bench, "u"); got != tc.want || n != tc.n {
			t.Fatalf("Median = %v (n=%d), want %v (n=%d)", got, n, tc.want, tc.n)
		}
	}
	if _, n := r.Median("p", "missing", "u"); n != 0 {
		t.Fatalf("a missing figure has %d values", n)
	}
}
