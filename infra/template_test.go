package infra_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/ecmstore/ecmstore/infra"
)

const templatePath = "../template.yaml"

// tmpl parses template.yaml with goformation (typed resources), and also returns the
// intrinsic-processed JSON for the SAM event-source properties goformation's types do
// not model (FunctionResponseTypes).
func tmpl(t *testing.T) (*cloudformation.Template, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := goformation.ParseYAML(raw)
	if err != nil {
		t.Fatalf("goformation: %v", err)
	}
	// Keep references visible ("GetAtt:EventsTable.Arn") instead of resolving them to
	// nothing, so policy and destination checks can see what they point at.
	keep := func(kind string) intrinsics.IntrinsicHandler {
		return func(_ string, input any, _ any) any {
			switch v := input.(type) {
			case string:
				return kind + ":" + v
			case []any:
				parts := make([]string, len(v))
				for i, p := range v {
					parts[i] = fmt.Sprint(p)
				}
				return kind + ":" + strings.Join(parts, ".")
			}
			return kind + ":?"
		}
	}
	processed, err := intrinsics.ProcessYAML(raw, &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Fn::GetAtt": keep("GetAtt"), "Fn::Sub": keep("Sub"), "Ref": keep("Ref")}})
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(processed, &generic); err != nil {
		t.Fatal(err)
	}
	return tp, generic
}

func resource(generic map[string]any, name string) map[string]any {
	r, _ := generic["Resources"].(map[string]any)[name].(map[string]any)
	return r
}

func dig(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

// Every function is built from a functions/<name> main package by the Makefile's
// build-<LogicalId> rule (BuildMethod makefile, CodeUri at the root holding the Makefile).
func TestTemplateFunctionsExist(t *testing.T) {
	tp, _ := tmpl(t)
	fns := tp.GetAllServerlessFunctionResources()
	if len(fns) < 4 {
		t.Fatalf("%d functions, want api, projector, redrive and saga", len(fns))
	}
	makefile, _ := os.ReadFile("../Makefile")
	for name, fn := range fns {
		dir := filepath.Join("..", "functions", strings.ToLower(strings.TrimSuffix(name, "Function")))
		if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
			t.Errorf("%s: no main package at %s", name, dir)
		}
		if fn.AWSCloudFormationMetadata["BuildMethod"] != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod = %v, want makefile", name, fn.AWSCloudFormationMetadata["BuildMethod"])
		}
		if fn.CodeUri == nil || fn.CodeUri.String == nil || *fn.CodeUri.String != "." {
			t.Errorf("%s: CodeUri must be . (the directory of the Makefile)", name)
		}
		if !strings.Contains(string(makefile), "build-%Function:") {
			t.Errorf("Makefile lacks the build-%%Function rule SAM calls")
		}
	}
}

// Every HTTP API route uses the JWT authorizer, except /healthz.
func TestTemplateRoutesAreAuthorized(t *testing.T) {
	tp, generic := tmpl(t)
	api := resource(generic, "HttpApi")
	if dig(api, "Properties", "Auth", "DefaultAuthorizer") != "JwtAuthorizer" ||
		dig(api, "Properties", "Auth", "Authorizers", "JwtAuthorizer", "JwtConfiguration") == nil {
		t.Fatalf("HttpApi must default to the JWT authorizer: %v", dig(api, "Properties", "Auth"))
	}
	routes := 0
	for name, fn := range tp.GetAllServerlessFunctionResources() {
		for ev, src := range fn.Events {
			if src.Type != "HttpApi" {
				continue
			}
			routes++
			props := dig(resource(generic, name), "Properties", "Events", ev, "Properties")
			path, _ := dig(props, "Path").(string)
			auth, _ := dig(props, "Auth", "Authorizer").(string)
			switch {
			case path == "/healthz" && auth != "NONE":
				t.Errorf("%s %s: /healthz should be public", name, ev)
			case path != "/healthz" && auth != "" && auth != "JwtAuthorizer":
				t.Errorf("%s %s %s: authorizer %q", name, ev, path, auth)
			}
		}
	}
	if routes < 2 {
		t.Fatalf("%d HTTP API routes", routes)
	}
}

// No function may change or delete events; only the projector and redrive touch the
// stream; nobody gets wildcards.
func TestTemplateLeastPrivilege(t *testing.T) {
	_, generic := tmpl(t)
	forbidden := forbiddenFor
	for fn, deny := range forbidden {
		policies, _ := dig(resource(generic, fn), "Properties", "Policies").([]any)
		if len(policies) == 0 {
			t.Errorf("%s has no inline policy", fn)
		}
		for _, p := range policies {
			stmts, _ := dig(p, "Statement").([]any)
			for _, st := range stmts {
				actions := toStrings(dig(st, "Action"))
				resources := strings.Join(toStrings(dig(st, "Resource")), " ")
				for _, a := range actions {
					if a == "*" || strings.HasSuffix(a, ":*") {
						t.Errorf("%s: wildcard action %s", fn, a)
					}
				}
				if strings.Contains(resources, "EventsTable") && !strings.Contains(resources, "StreamArn") {
					for _, a := range actions {
						if slices.Contains(deny, a) {
							t.Errorf("%s may %s on the events table", fn, a)
						}
					}
				}
				if resources == "*" {
					t.Errorf("%s: a statement on every resource", fn)
				}
			}
		}
	}
}

func toStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			} else {
				b, _ := json.Marshal(e)
				out = append(out, string(b))
			}
		}
		return out
	case map[string]any:
		b, _ := json.Marshal(x)
		return []string{string(b)}
	}
	return nil
}

// forbiddenFor lists, per function, the actions it must never have on the events table.
var forbiddenFor = map[string][]string{
	"ApiFunction":       {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:GetRecords"},
	"ProjectorFunction": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
	"RedriveFunction":   {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
	"SagaFunction":      {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
}

// The stream mapping: in order, bisecting, partial batch responses, bounded retries and
// age, failures to the dead-letter queue.
func TestTemplateStreamMapping(t *testing.T) {
	tp, generic := tmpl(t)
	found := 0
	for name, fn := range tp.GetAllServerlessFunctionResources() {
		if _, ok := forbiddenFor[name]; !ok {
			t.Errorf("%s has no least-privilege expectations in the template test", name)
		}
		for ev, src := range fn.Events {
			if src.Type != "DynamoDB" {
				continue
			}
			found++
			p := dig(resource(generic, name), "Properties", "Events", ev, "Properties")
			age, _ := dig(p, "MaximumRecordAgeInSeconds").(float64)
			retries, _ := dig(p, "MaximumRetryAttempts").(float64)
			for what, ok := range map[string]bool{
				"StartingPosition TRIM_HORIZON":  dig(p, "StartingPosition") == "TRIM_HORIZON",
				"ParallelizationFactor 1":        dig(p, "ParallelizationFactor") == float64(1),
				"BisectBatchOnFunctionError":     dig(p, "BisectBatchOnFunctionError") == true,
				"ReportBatchItemFailures":        slices.Contains(toStrings(dig(p, "FunctionResponseTypes")), "ReportBatchItemFailures"),
				"finite MaximumRetryAttempts":    retries >= 0 && retries <= 10 && dig(p, "MaximumRetryAttempts") != nil,
				"MaximumRecordAgeInSeconds < 1d": age > 0 && age < 86400,
				"OnFailure to the DLQ":           strings.Contains(strings.Join(toStrings(dig(p, "DestinationConfig", "OnFailure", "Destination")), ""), "DeadLetterQueue"),
			} {
				if !ok {
					t.Errorf("%s %s: %s", name, ev, what)
				}
			}
		}
	}
	if found < 2 {
		t.Fatalf("%d DynamoDB stream event sources, want the projector's and the saga's", found)
	}
}

// The queue is encrypted, keeps messages 14 days and has its own redrive target; the
// alarms the brief lists exist.
func TestTemplateQueueAndAlarms(t *testing.T) {
	tp, generic := tmpl(t)
	q := dig(resource(generic, "DeadLetterQueue"), "Properties")
	if dig(q, "SqsManagedSseEnabled") != true || dig(q, "MessageRetentionPeriod") != float64(infra.DLQRetentionSeconds) ||
		dig(q, "RedrivePolicy", "maxReceiveCount") != float64(infra.DLQMaxReceiveCount) {
		t.Errorf("dead-letter queue properties: %v", q)
	}
	var metrics []string
	for _, a := range tp.GetAllCloudWatchAlarmResources() {
		metrics = append(metrics, *a.MetricName)
	}
	for _, m := range []string{"ApproximateNumberOfMessagesVisible", "IteratorAge", "Errors"} {
		if !slices.Contains(metrics, m) {
			t.Errorf("no alarm on %s", m)
		}
	}
	errorsAlarms := 0
	for _, m := range metrics {
		if m == "Errors" {
			errorsAlarms++
		}
	}
	if errorsAlarms < len(tp.GetAllServerlessFunctionResources()) {
		t.Errorf("%d error alarms for %d functions", errorsAlarms, len(tp.GetAllServerlessFunctionResources()))
	}
	for _, a := range tp.GetAllCloudWatchAlarmResources() {
		if *a.MetricName == "IteratorAge" && (a.Threshold == nil || *a.Threshold >= 24*3600*1000) {
			t.Errorf("iterator-age alarm must fire well before 24 h")
		}
	}
}

// The tables declare exactly the keys, indexes and stream view of infra's definitions.
func TestTemplateTablesMatchInfra(t *testing.T) {
	tp, _ := tmpl(t)
	for logical, want := range map[string]any{"EventsTable": infra.EventsTable("x"), "ReadModelTable": infra.ReadModelTable("x")} {
		tbl, err := tp.GetDynamoDBTableWithName(logical)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{"attrs": map[string]string{}, "keys": map[string]string{}, "gsis": map[string]string{}}
		for _, a := range tbl.AttributeDefinitions {
			got["attrs"].(map[string]string)[a.AttributeName] = a.AttributeType
		}
		for _, k := range tbl.KeySchema {
			got["keys"].(map[string]string)[k.AttributeName] = k.KeyType
		}
		for _, g := range tbl.GlobalSecondaryIndexes {
			var ks []string
			for _, k := range g.KeySchema {
				ks = append(ks, k.AttributeName+":"+k.KeyType)
			}
			got["gsis"].(map[string]string)[g.IndexName] = strings.Join(ks, ",") + "/" + deref(g.Projection.ProjectionType)
		}
		if tbl.StreamSpecification != nil {
			got["stream"] = tbl.StreamSpecification.StreamViewType
		}
		wantJSON, _ := json.Marshal(normalise(want))
		gotJSON, _ := json.Marshal(got)
		if string(wantJSON) != string(gotJSON) {
			t.Errorf("%s:\ntemplate %s\ninfra    %s", logical, gotJSON, wantJSON)
		}
		if tbl.PointInTimeRecoverySpecification == nil {
			t.Errorf("%s: point-in-time recovery off", logical)
		}
	}
}

func normalise(in any) map[string]any {
	raw, _ := json.Marshal(in)
	var m struct {
		AttributeDefinitions   []struct{ AttributeName, AttributeType string }
		KeySchema              []struct{ AttributeName, KeyType string }
		GlobalSecondaryIndexes []struct {
			IndexName  string
			KeySchema  []struct{ AttributeName, KeyType string }
			Projection struct{ ProjectionType string }
		}
		StreamSpecification *struct{ StreamViewType string }
	}
	_ = json.Unmarshal(raw, &m)
	out := map[string]any{"attrs": map[string]string{}, "keys": map[string]string{}, "gsis": map[string]string{}}
	for _, a := range m.AttributeDefinitions {
		out["attrs"].(map[string]string)[a.AttributeName] = a.AttributeType
	}
	for _, k := range m.KeySchema {
		out["keys"].(map[string]string)[k.AttributeName] = k.KeyType
	}
	for _, g := range m.GlobalSecondaryIndexes {
		var ks []string
		for _, k := range g.KeySchema {
			ks = append(ks, k.AttributeName+":"+k.KeyType)
		}
		out["gsis"].(map[string]string)[g.IndexName] = strings.Join(ks, ",") + "/" + g.Projection.ProjectionType
	}
	if m.StreamSpecification != nil {
		out["stream"] = m.StreamSpecification.StreamViewType
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
