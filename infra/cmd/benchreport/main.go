// Command benchreport reads `go test -bench` output on stdin and prints the storage
// figures with their same-run ratios and goals (package infra/benchreport); `make bench`
// runs it after the benchmarks.
package main

import (
	"fmt"
	"os"

	"github.com/ecmstore/ecmstore/infra/benchreport"
)

func main() {
	r, err := benchreport.Parse(os.Stdin)
	if err == nil {
		err = benchreport.Write(os.Stdout, r)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}
