package system_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/system"
)

// openapi.yaml and the handler agree both ways: every route the assembled handler
// registers (every domain's included) is an operation of the document, and every
// operation of the document is a route the handler serves. The served routes come from
// the mux registration itself (api.Server.Patterns), not from a second list.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	sys := start(t, system.Config{EventStore: "memory"})
	doc := apitest.Contract(t).Doc

	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, p := range sys.Handler.Patterns() {
		if p == "/" { // the catch-all: 404 not_found for whatever no route serves
			continue
		}
		method, path, ok := strings.Cut(p, " ")
		if !ok || method == "" {
			t.Errorf("route %q has no method: the document cannot describe it as one operation", p)
			continue
		}
		served[method+" "+path] = true
	}
	if len(served) == 0 {
		t.Fatal("the handler registered no routes")
	}
	diff := func(a, b map[string]bool) []string {
		var out []string
		for k := range a {
			if !b[k] {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	if missing := diff(served, documented); len(missing) > 0 {
		t.Errorf("served but not in openapi.yaml: %v", missing)
	}
	if extra := diff(documented, served); len(extra) > 0 {
		t.Errorf("in openapi.yaml but not served: %v", extra)
	}
}
