package system_test

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/ecmstore/ecmstore/"

type goPackage struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Imports    []string
}

// packages lists the module's packages as the go command sees them (build files only:
// tests may import anything).
func packages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: not run from the module", len(pkgs))
	}
	return pkgs
}

// TestNoInitOutsideMain: wiring is explicit (system.Open's options, apitest.Suites), so no
// package but a main has an init function.
func TestNoInitOutsideMain(t *testing.T) {
	for _, p := range packages(t) {
		if p.Name == "main" {
			continue
		}
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "init" {
					t.Errorf("%s/%s has func init: construct explicitly instead", p.ImportPath, f)
				}
			}
		}
	}
}

// layer ranks the module's packages top-down: functions → system → domains →
// api/aggregate/projection → eventstore → event. A package may import its own layer or
// lower ones, never a higher one. Leaves (money, metrics, infra's names…) sit at 0.
func layer(path string) (rank int, name string) {
	under := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if path == p || strings.HasPrefix(path, p+"/") {
				return true
			}
		}
		return false
	}
	switch {
	case under("functions", "infra/cmd"):
		return 6, "functions"
	case under("shared/system", "shared/faults", "shared/ecmctl"):
		return 5, "system"
	case under("shared/bank", "shared/orders", "shared/tasks", "shared/usercontext"):
		return 4, "domains"
	case under("shared/api", "shared/aggregate", "shared/projection", "shared/ddbstream", "shared/metrics", "shared/migrate"):
		return 3, "api/aggregate/projection"
	case under("shared/eventstore", "shared/docstore"):
		return 2, "eventstore"
	case under("shared/event"):
		return 1, "event"
	}
	return 0, "leaf"
}

// testSupport packages (apitest, repotest, orderstest…) are imported by tests only and may
// reach up to build what they test.
func testSupport(p goPackage) bool { return strings.HasSuffix(p.Name, "test") }

func TestImportLayers(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range packages(t) {
		rank, name := layer(p.ImportPath)
		seen[name] = true
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			imp = strings.TrimPrefix(imp, module)
			if p.ImportPath == "shared/event" {
				t.Errorf("shared/event imports %s: the event model imports nothing of ours", imp)
			}
			if testSupport(p) {
				continue
			}
			if r, n := layer(imp); r > rank {
				t.Errorf("%s (%s) imports %s (%s): the import graph must read top-down", p.ImportPath, name, imp, n)
			}
		}
	}
	for _, name := range []string{"functions", "system", "domains", "api/aggregate/projection", "eventstore", "event"} {
		if !seen[name] {
			t.Errorf("no package in layer %s: the layer map is out of date", name)
		}
	}
}
