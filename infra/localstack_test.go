package infra_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ecmstore/ecmstore/infra"
)

var update = flag.Bool("update", false, "rewrite localstack/init/tables from the infra definitions")

// cliJSON renders an SDK input as the AWS CLI's --cli-input-json (the SDK's field names,
// nulls and empty enums dropped).
func cliJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	_ = json.Unmarshal(raw, &generic)
	out, _ := json.MarshalIndent(dropNulls(generic), "", "  ")
	return append(out, '\n')
}

func dropNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil || e == "" {
				delete(x, k)
				continue
			}
			x[k] = dropNulls(e)
		}
	case []any:
		for i := range x {
			x[i] = dropNulls(x[i])
		}
	}
	return v
}

// The LocalStack init hook creates the tables from these JSON files; they must describe
// exactly what infra defines (keys, attributes, GSIs, stream view).
func TestLocalStackTablesMatchInfra(t *testing.T) {
	for name, in := range map[string]any{
		"events.json":     infra.EventsTable(infra.DefaultEventsTable),
		"readmodels.json": infra.ReadModelTable(infra.DefaultReadModelTable),
	} {
		path := filepath.Join("..", "localstack", "init", "tables", name)
		want := cliJSON(t, in)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from infra (go test ./infra -run LocalStack -update rewrites it):\n%s", path, want)
		}
	}
}
