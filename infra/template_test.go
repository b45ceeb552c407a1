package infra_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/metrics"
)

// The template test reads template.yaml with goformation and holds it to the rules the
// product needs from a deployment. Each rule is a check returning what is wrong, so
// TestTemplateChecksCatchBreakage can prove every check fails on a template broken in the
// way it guards against.

const (
	templatePath = "../template.yaml"
	repoRoot     = ".."
)

// stack is the template parsed twice by goformation: typed (its CloudFormation and SAM
// structs, intrinsics resolved the default way) and generic, with Ref, Fn::GetAtt, Fn::Sub
// and Fn::If kept as text ("GetAtt:EventsTable.Arn") so a check sees what a property
// points at. SAM's Globals section is not merged into the resources by goformation, so
// the generic view keeps it for the checks that need a global default.
type stack struct {
	typed   *cloudformation.Template
	res     map[string]map[string]any
	globals map[string]any // Globals.Function
}

// keep leaves an intrinsic readable instead of resolving it (the default handlers turn
// a resource's attribute into nothing, which would hide what a policy points at).
func keep(kind string) intrinsics.IntrinsicHandler {
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

func parse(raw []byte) (*stack, error) {
	typed, err := goformation.ParseYAML(raw)
	if err != nil {
		return nil, fmt.Errorf("goformation: %w", err)
	}
	processed, err := intrinsics.ProcessYAML(raw, &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Ref": keep("Ref"), "Fn::GetAtt": keep("GetAtt"), "Fn::Sub": keep("Sub"), "Fn::If": keep("If")}})
	if err != nil {
		return nil, fmt.Errorf("goformation intrinsics: %w", err)
	}
	var doc struct {
		Resources map[string]map[string]any
		Globals   struct{ Function map[string]any }
	}
	if err := json.Unmarshal(processed, &doc); err != nil {
		return nil, err
	}
	return &stack{typed: typed, res: doc.Resources, globals: doc.Globals.Function}, nil
}

func load(t *testing.T) (*stack, string) {
	t.Helper()
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s, string(raw)
}

// ofType lists the logical ids of one resource type, sorted for stable messages.
func (s *stack) ofType(typ string) []string {
	var out []string
	for name, r := range s.res {
		if r["Type"] == typ {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (s *stack) functions() []string { return s.ofType("AWS::Serverless::Function") }

// prop reads a function property, falling back to Globals as SAM does.
func (s *stack) prop(fn string, path ...string) any {
	if v := dig(s.res[fn], append([]string{"Properties"}, path...)...); v != nil {
		return v
	}
	return dig(s.globals, path...)
}

// events lists a function's event sources of one type: event name → properties.
func (s *stack) events(fn, typ string) map[string]any {
	out := map[string]any{}
	evs, _ := dig(s.res[fn], "Properties", "Events").(map[string]any)
	for name, ev := range evs {
		if dig(ev, "Type") == typ {
			out[name] = dig(ev, "Properties")
		}
	}
	return out
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

func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, strs(e)...)
		}
		return out
	case nil:
		return nil
	}
	b, _ := json.Marshal(v)
	return []string{string(b)}
}

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		var f float64
		_, err := fmt.Sscan(x, &f)
		return f, err == nil
	}
	return 0, false
}

// sharedCode are the functions built from another function's main package (the
// Makefile has an explicit build-<LogicalId> rule for each): the saga's redrive is the
// redrive binary with REDRIVE_SCOPE=sagas.
var sharedCode = map[string]string{"SagaRedriveFunction": "functions/redrive"}

// fnDir is the main package a function is built from: ApiFunction → functions/api.
func fnDir(fn string) string {
	if dir, ok := sharedCode[fn]; ok {
		return filepath.FromSlash(dir)
	}
	return filepath.Join("functions", strings.ToLower(strings.TrimSuffix(fn, "Function")))
}

type check struct {
	name string
	run  func(*stack) []string
}

var checks = []check{
	{"code", checkCode},
	{"routes", checkRoutes},
	{"iam", checkIAM},
	{"mappings", checkMappings},
	{"queue", checkQueue},
	{"deadletters", checkDeadLetters},
	{"alarms", checkAlarms},
	{"tables", checkTables},
	{"dashboard", checkDashboard},
}

func TestTemplate(t *testing.T) {
	s, _ := load(t)
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range c.run(s) {
				t.Error(p)
			}
		})
	}
}

// ---------------------------------------------------------------- code

// wantFunctions are the Lambdas the product deploys.
var wantFunctions = []string{"ApiFunction", "ProjectorFunction", "RebuildFunction", "RedriveFunction", "SagaFunction", "SagaRedriveFunction"}

// SAM's makefile build method runs `make build-<LogicalId>` with ARTIFACTS_DIR in the
// function's CodeUri, where it expects the Makefile: CodeUri is the root for every
// function, the root Makefile's rule must build functions/<name> for the architecture the
// function declares, and that directory must hold a main package.
func checkCode(s *stack) []string {
	var p []string
	fns := s.functions()
	for _, want := range wantFunctions {
		if !slices.Contains(fns, want) {
			p = append(p, "no "+want)
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "Makefile")); err != nil {
		p = append(p, "no Makefile at the root, where CodeUri . makes SAM look")
	}
	for _, fn := range fns {
		if m := dig(s.res[fn], "Metadata", "BuildMethod"); m != "makefile" {
			p = append(p, fmt.Sprintf("%s: Metadata.BuildMethod %v, want makefile", fn, m))
		}
		if cu := s.prop(fn, "CodeUri"); cu != "." {
			p = append(p, fmt.Sprintf("%s: CodeUri %v, want . (the directory of the Makefile)", fn, cu))
		}
		if rt := s.prop(fn, "Runtime"); rt != "provided.al2023" || s.prop(fn, "Handler") != "bootstrap" {
			p = append(p, fmt.Sprintf("%s: runtime %v handler %v, want provided.al2023 and bootstrap", fn, rt, s.prop(fn, "Handler")))
		}
		src, err := os.ReadFile(filepath.Join(repoRoot, fnDir(fn), "main.go"))
		if err != nil || !regexp.MustCompile(`(?m)^package main$`).Match(src) {
			p = append(p, fmt.Sprintf("%s: no main package at %s", fn, fnDir(fn)))
		}
		arch := strs(s.prop(fn, "Architectures"))
		goarch := map[string]string{"arm64": "arm64", "x86_64": "amd64"}[strings.Join(arch, "")]
		out, err := exec.Command("make", "-n", "-s", "-C", repoRoot, "build-"+fn, "ARTIFACTS_DIR=/sam-artifacts").CombinedOutput()
		cmd := string(out)
		switch {
		case err != nil:
			p = append(p, fmt.Sprintf("%s: make build-%s: %v\n%s", fn, fn, err, out))
		case !strings.Contains(cmd, "./"+filepath.ToSlash(fnDir(fn))):
			p = append(p, fmt.Sprintf("%s: make build-%s does not build ./%s:\n%s", fn, fn, fnDir(fn), cmd))
		case goarch == "" || !strings.Contains(cmd, "GOARCH="+goarch):
			p = append(p, fmt.Sprintf("%s: Architectures %v but make build-%s runs:\n%s", fn, arch, fn, cmd))
		case !strings.Contains(cmd, "/sam-artifacts/bootstrap"):
			p = append(p, fmt.Sprintf("%s: make build-%s does not write $(ARTIFACTS_DIR)/bootstrap:\n%s", fn, fn, cmd))
		}
	}
	return p
}

// ---------------------------------------------------------------- routes

// Every HTTP API route uses the JWT authorizer except GET /healthz, which is public. A
// route without ApiId would land on SAM's implicit API, which has no authorizer at all.
// publicRoutes answer without a token: liveness, and the ops page's static files (no
// data; the page's own calls carry the operator's token).
var publicRoutes = map[string]bool{"/healthz": true, "/ops": true, "/ops/{asset}": true}

func checkRoutes(s *stack) []string {
	var p []string
	apis := s.ofType("AWS::Serverless::HttpApi")
	if len(apis) != 1 {
		return []string{fmt.Sprintf("HTTP APIs %v, want one", apis)}
	}
	api := apis[0]
	auth := dig(s.res[api], "Properties", "Auth")
	def, _ := dig(auth, "DefaultAuthorizer").(string)
	jwt := dig(auth, "Authorizers", def, "JwtConfiguration")
	if def == "" || dig(jwt, "issuer") == nil || dig(jwt, "audience") == nil ||
		dig(auth, "Authorizers", def, "IdentitySource") != "$request.header.Authorization" {
		p = append(p, fmt.Sprintf("%s must default to a JWT authorizer (issuer, audience, Authorization header): %v", api, auth))
	}
	routes := map[string]string{} // "METHOD path" → function
	for _, fn := range s.functions() {
		for ev, props := range s.events(fn, "HttpApi") {
			path, _ := dig(props, "Path").(string)
			method, _ := dig(props, "Method").(string)
			routes[strings.ToUpper(method)+" "+path] = fn
			if dig(props, "ApiId") != "Ref:"+api {
				p = append(p, fmt.Sprintf("%s %s: ApiId %v, want Ref %s (the implicit API has no authorizer)", fn, ev, dig(props, "ApiId"), api))
			}
			a, _ := dig(props, "Auth", "Authorizer").(string)
			switch {
			case publicRoutes[path] && a != "NONE":
				p = append(p, fmt.Sprintf("%s %s: %s must be public (Authorizer NONE), has %q", fn, ev, path, a))
			case !publicRoutes[path] && a != "" && a != def:
				p = append(p, fmt.Sprintf("%s %s %s: authorizer %q, want %s", fn, ev, path, a, def))
			}
		}
	}
	for _, r := range []string{"ANY /{proxy+}", "GET /healthz", "GET /ops", "GET /ops/{asset}"} {
		if routes[r] != "ApiFunction" {
			p = append(p, fmt.Sprintf("route %s served by %q, want ApiFunction", r, routes[r]))
		}
	}
	return p
}

// ---------------------------------------------------------------- iam

// A statement's resources are named by what they are, so the rules below read as the
// design does.
func classify(r string) string {
	switch r {
	case "GetAtt:EventsTable.Arn":
		return "events"
	case "Sub:${EventsTable.Arn}/index/*":
		return "events-index"
	case "GetAtt:EventsTable.StreamArn", "Sub:${EventsTable.Arn}/stream/*":
		return "events-stream"
	case "Sub:${IndexTable.Arn}/index/*":
		return "index-gsi"
	case "GetAtt:IndexTable.Arn":
		return "index"
	case "GetAtt:ReadModelTable.Arn":
		return "readmodel"
	case "Sub:${ReadModelTable.Arn}/index/*":
		return "readmodel-index"
	case "GetAtt:DeadLetterQueue.Arn":
		return "dlq"
	case "GetAtt:SagaDeadLetterQueue.Arn":
		return "saga-dlq"
	case "GetAtt:RebuildQueue.Arn":
		return "rebuild-queue"
	case "*":
		return "*"
	}
	if m := regexp.MustCompile(`^GetAtt:(\w+LogGroup)\.Arn$`).FindStringSubmatch(r); m != nil {
		return "log:" + m[1]
	}
	return "unknown " + r
}

var (
	appendEvents = []string{"dynamodb:PutItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:Query"}
	readModelRW  = []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem"}
	streamRead   = []string{"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"}
	// Nobody changes or deletes events, nor the table itself.
	neverOnEvents = []string{"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
		"dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:UpdateTimeToLive"}
	xray = []string{"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
	// What writes an event: a TransactWriteItems is authorised per item as these.
	appendOnly = []string{"dynamodb:PutItem", "dynamodb:ConditionCheckItem", "dynamodb:PartiQLInsert"}
	// What writes the index table: the projector's alone.
	indexWrites = []string{"dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
		"dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:DeleteTable", "dynamodb:UpdateTable"}
	consume = []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}
	redrive = []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage"}
)

type rule struct {
	fn      string // a logical id, or * for every function
	on      string // a resource class (classify), "own-log" for the function's log group
	actions []string
}

// forbidden: what a function must never be able to do, whatever else it is granted.
var forbidden = []rule{
	{"*", "events", neverOnEvents},
	{"*", "events-index", neverOnEvents},
	// The events table has no GSIs any more: nothing is granted on them.
	{"*", "events-index", []string{"dynamodb:Query", "dynamodb:Scan"}},
	// Only the projector writes the index table (from the stream), and it never deletes.
	{"ApiFunction", "index", indexWrites},
	{"SagaFunction", "index", indexWrites},
	{"RedriveFunction", "index", indexWrites},
	{"SagaRedriveFunction", "index", indexWrites},
	{"RebuildFunction", "index", indexWrites},
	// Only the rebuild function consumes its queue; the API only dispatches to it.
	{"ApiFunction", "rebuild-queue", consume},
	{"*", "rebuild-queue", []string{"sqs:PurgeQueue", "sqs:DeleteQueue", "sqs:SetQueueAttributes"}},
	{"ProjectorFunction", "index", []string{"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:PartiQLDelete",
		"dynamodb:DeleteTable", "dynamodb:UpdateTable"}},
	// The read models' side never writes events: the projector, and the redrive of the
	// read models' queue (a saga dead letter there is refused, not run).
	{"ProjectorFunction", "events", appendOnly},
	{"RedriveFunction", "events", appendOnly},
	// Requests never read the stream; only each queue's redrive consumes it.
	{"ApiFunction", "events-stream", []string{"dynamodb:GetRecords", "dynamodb:GetShardIterator"}},
	{"ApiFunction", "dlq", consume},
	{"ApiFunction", "saga-dlq", consume},
	{"ProjectorFunction", "dlq", consume},
	{"ProjectorFunction", "saga-dlq", append(consume, "sqs:SendMessage")},
	{"SagaFunction", "dlq", append(consume, "sqs:SendMessage")},
	{"SagaFunction", "saga-dlq", consume},
	{"RedriveFunction", "saga-dlq", append(consume, "sqs:SendMessage")},
	{"SagaRedriveFunction", "dlq", append(consume, "sqs:SendMessage")},
	{"*", "dlq", []string{"sqs:PurgeQueue", "sqs:DeleteQueue", "sqs:SetQueueAttributes"}},
	{"*", "saga-dlq", []string{"sqs:PurgeQueue", "sqs:DeleteQueue", "sqs:SetQueueAttributes"}},
}

// required: what the code calls (shared/eventstore/dynamostore, shared/ddbstream) and
// what Lambda's event source mappings do with the function's role. A grant missing here
// deploys fine and fails at the first event.
var required = []rule{
	{"*", "own-log", []string{"logs:CreateLogStream", "logs:PutLogEvents"}},
	{"*", "*", xray},
	{"*", "readmodel", readModelRW},
	{"ApiFunction", "events", appendEvents},
	{"ApiFunction", "index", []string{"dynamodb:Query"}},
	// Listings (GET /accounts, a customer's orders, dead letters, rebuilds) read the
	// read models' listing index.
	{"ApiFunction", "readmodel-index", []string{"dynamodb:Query"}},
	// The API's rebuilds and redrives run every projection, the saga included, and park
	// in both queues.
	{"ApiFunction", "dlq", []string{"sqs:SendMessage"}},
	{"ApiFunction", "saga-dlq", []string{"sqs:SendMessage"}},
	{"ProjectorFunction", "events-stream", streamRead},
	{"ProjectorFunction", "events", []string{"dynamodb:GetItem", "dynamodb:Query"}},
	{"ProjectorFunction", "index", []string{"dynamodb:BatchWriteItem", "dynamodb:PutItem"}},
	{"ProjectorFunction", "dlq", []string{"sqs:SendMessage"}},
	{"SagaFunction", "events-stream", streamRead},
	{"SagaFunction", "events", appendEvents},
	{"SagaFunction", "index", []string{"dynamodb:Query"}},
	{"SagaFunction", "saga-dlq", []string{"sqs:SendMessage"}},
	{"RedriveFunction", "dlq", redrive},
	{"RedriveFunction", "events-stream", []string{"dynamodb:GetShardIterator", "dynamodb:GetRecords"}},
	{"RedriveFunction", "events", []string{"dynamodb:GetItem", "dynamodb:Query"}},
	{"RedriveFunction", "index", []string{"dynamodb:Query"}},
	// A redriven saga step issues commands: the saga's redrive appends as the saga does.
	{"SagaRedriveFunction", "saga-dlq", redrive},
	{"SagaRedriveFunction", "events-stream", []string{"dynamodb:GetShardIterator", "dynamodb:GetRecords"}},
	{"SagaRedriveFunction", "events", appendEvents},
	{"SagaRedriveFunction", "index", []string{"dynamodb:Query"}},
	// Rebuilds: dispatched by the API, run by the rebuild function, which continues a
	// job through its own queue, replays from the events table (re-issuing the saga's
	// commands when the saga is rebuilt) and clears old generations through the listing.
	{"ApiFunction", "rebuild-queue", []string{"sqs:SendMessage"}},
	{"RebuildFunction", "rebuild-queue", redrive},
	{"RebuildFunction", "events", appendEvents},
	{"RebuildFunction", "index", []string{"dynamodb:Query"}},
	{"RebuildFunction", "readmodel-index", []string{"dynamodb:Query"}},
}

// actionMatches reports whether an IAM action pattern (case-insensitive, * and ?) covers
// an action, so "dynamodb:*Item" is caught as granting DeleteItem.
func actionMatches(pattern, action string) bool {
	re := "(?i)^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile(re).MatchString(action)
}

type grant struct{ action, on string }

// checkIAM: each function has its own role declared in the template (so SAM attaches no
// managed policy the test cannot see); the role's inline statements are all it may do.
func checkIAM(s *stack) []string {
	var p []string
	for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"} {
		for _, name := range s.ofType(typ) {
			p = append(p, fmt.Sprintf("%s (%s): keep statements inline in the function roles, where this test reads them", name, typ))
		}
	}
	for _, fn := range s.functions() {
		if dig(s.res[fn], "Properties", "Policies") != nil {
			p = append(p, fmt.Sprintf("%s: Policies makes SAM generate a role with managed policies on every resource; name a Role", fn))
		}
		m := regexp.MustCompile(`^GetAtt:(\w+)\.Arn$`).FindStringSubmatch(fmt.Sprint(s.prop(fn, "Role")))
		if m == nil || s.res[m[1]]["Type"] != "AWS::IAM::Role" {
			p = append(p, fmt.Sprintf("%s: Role %v, want !GetAtt of a role in this template", fn, s.prop(fn, "Role")))
			continue
		}
		role := s.res[m[1]]
		if arns := dig(role, "Properties", "ManagedPolicyArns"); arns != nil {
			p = append(p, fmt.Sprintf("%s: managed policies %v", m[1], arns))
		}
		if tr := fmt.Sprint(strs(dig(role, "Properties", "AssumeRolePolicyDocument", "Statement"))); !strings.Contains(tr, `"lambda.amazonaws.com"`) || strings.Count(tr, "Principal") != 1 {
			p = append(p, fmt.Sprintf("%s: trust policy %s, want lambda.amazonaws.com only", m[1], tr))
		}
		ownLog := "log:" + s.logGroupOf(fn, &p)
		var grants []grant
		for _, pol := range strs2(dig(role, "Properties", "Policies")) {
			stmts, _ := dig(pol, "PolicyDocument", "Statement").([]any)
			for _, st := range stmts {
				if dig(st, "NotAction") != nil || dig(st, "NotResource") != nil {
					p = append(p, fmt.Sprintf("%s: NotAction/NotResource grants everything else", m[1]))
				}
				if dig(st, "Effect") != "Allow" {
					continue
				}
				actions := strs(dig(st, "Action"))
				for _, r := range strs(dig(st, "Resource")) {
					on := classify(r)
					switch {
					case strings.HasPrefix(on, "unknown"):
						p = append(p, fmt.Sprintf("%s: a statement on %s, which this test does not know: classify it", fn, r))
					case strings.HasPrefix(on, "log:") && on != ownLog:
						p = append(p, fmt.Sprintf("%s: writes to %s, not its own log group (%s)", fn, on, ownLog))
					}
					if on == ownLog {
						on = "own-log"
					}
					for _, a := range actions {
						if strings.ContainsAny(a, "*?") {
							p = append(p, fmt.Sprintf("%s: wildcard action %s on %s", fn, a, r))
						}
						if on == "*" && !slices.Contains(xray, a) {
							p = append(p, fmt.Sprintf("%s: %s on every resource", fn, a))
						}
						grants = append(grants, grant{a, on})
					}
				}
			}
		}
		for _, f := range forbidden {
			if f.fn != "*" && f.fn != fn {
				continue
			}
			for _, a := range f.actions {
				for _, g := range grants {
					if (g.on == f.on || g.on == "*") && actionMatches(g.action, a) {
						p = append(p, fmt.Sprintf("%s may %s on %s (granted as %s)", fn, a, f.on, g.action))
					}
				}
			}
		}
		for _, r := range required {
			if r.fn != "*" && r.fn != fn {
				continue
			}
			for _, a := range r.actions {
				if !slices.ContainsFunc(grants, func(g grant) bool { return g.on == r.on && actionMatches(g.action, a) }) {
					p = append(p, fmt.Sprintf("%s lacks %s on %s", fn, a, r.on))
				}
			}
		}
	}
	return p
}

// strs2 is v as a list (nil when it is not one).
func strs2(v any) []any {
	x, _ := v.([]any)
	return x
}

// logGroupOf finds the log group declared for a function: named /aws/lambda/<FunctionName>,
// so Lambda writes into it (with its retention) instead of creating one that never expires.
func (s *stack) logGroupOf(fn string, p *[]string) string {
	name, _ := s.prop(fn, "FunctionName").(string)
	if !strings.HasPrefix(name, "Sub:") {
		*p = append(*p, fmt.Sprintf("%s: FunctionName %q: set it (!Sub) so its log group can be declared", fn, name))
		return ""
	}
	want := "Sub:/aws/lambda/" + strings.TrimPrefix(name, "Sub:")
	for _, lg := range s.ofType("AWS::Logs::LogGroup") {
		if dig(s.res[lg], "Properties", "LogGroupName") == want {
			if dig(s.res[lg], "Properties", "RetentionInDays") == nil {
				*p = append(*p, fmt.Sprintf("%s: no retention", lg))
			}
			return lg
		}
	}
	*p = append(*p, fmt.Sprintf("%s: no log group named %s", fn, strings.TrimPrefix(want, "Sub:")))
	return ""
}

// ---------------------------------------------------------------- mappings

// streamConsumers are the functions on the events stream, each with the dead-letter
// queue its mapping hands what it gives up on to (the saga's to its own, so only the
// redrive allowed to append re-runs it).
var streamConsumers = map[string]string{"ProjectorFunction": "DeadLetterQueue", "SagaFunction": "SagaDeadLetterQueue"}

// deadLetterQueues are the dead-letter queues with the function that consumes each and
// the REDRIVE_SCOPE it must run with; each has its archive.
// workQueues are the queues that carry work rather than dead letters, with their one
// consumer and archive: the rebuild function's.
var workQueues = []struct{ queue, archive, consumer string }{{"RebuildQueue", "RebuildArchiveQueue", "RebuildFunction"}}

var deadLetterQueues = []struct{ queue, archive, consumer, scope string }{
	{"DeadLetterQueue", "DeadLetterArchiveQueue", "RedriveFunction", "read-models"},
	{"SagaDeadLetterQueue", "SagaDeadLetterArchiveQueue", "SagaRedriveFunction", "sagas"},
}

// Stream mappings keep each aggregate in order (one batch per shard), split a failing
// batch to isolate the poison record, checkpoint at the first failed record, give up after
// bounded retries and well inside the stream's 24 hours, and hand what they give up on to
// the dead-letter queue, where the redrive function reads it.
func checkMappings(s *stack) []string {
	var p []string
	for _, fn := range s.functions() {
		evs := s.events(fn, "DynamoDB")
		want := 0
		onFailure, isConsumer := streamConsumers[fn]
		if isConsumer {
			want = 1
		}
		if len(evs) != want {
			p = append(p, fmt.Sprintf("%s: %d DynamoDB stream sources, want %d", fn, len(evs), want))
		}
		for ev, props := range evs {
			retries, rok := num(dig(props, "MaximumRetryAttempts"))
			age, aok := num(dig(props, "MaximumRecordAgeInSeconds"))
			for _, c := range []struct {
				what string
				ok   bool
			}{
				{"Stream is the events table's", dig(props, "Stream") == "GetAtt:EventsTable.StreamArn"},
				{"StartingPosition TRIM_HORIZON", dig(props, "StartingPosition") == "TRIM_HORIZON"},
				{"ParallelizationFactor 1", dig(props, "ParallelizationFactor") == float64(1)},
				{"BisectBatchOnFunctionError true", dig(props, "BisectBatchOnFunctionError") == true},
				{"ReportBatchItemFailures", slices.Contains(strs(dig(props, "FunctionResponseTypes")), "ReportBatchItemFailures")},
				{"finite MaximumRetryAttempts (0–10)", rok && retries >= 0 && retries <= 10},
				{"MaximumRecordAgeInSeconds in [60, 86400)", aok && age >= 60 && age < 86400},
				{"OnFailure destination is " + onFailure, dig(props, "DestinationConfig", "OnFailure", "Destination") == "GetAtt:"+onFailure+".Arn"},
				{"BatchSize set", dig(props, "BatchSize") != nil},
			} {
				if !c.ok {
					p = append(p, fmt.Sprintf("%s %s: want %s", fn, ev, c.what))
				}
			}
		}
	}
	for _, d := range deadLetterQueues {
		q := s.events(d.consumer, "SQS")
		if len(q) != 1 {
			p = append(p, fmt.Sprintf("%s: %d SQS sources, want %s", d.consumer, len(q), d.queue))
		}
		for ev, props := range q {
			if dig(props, "Queue") != "GetAtt:"+d.queue+".Arn" || !slices.Contains(strs(dig(props, "FunctionResponseTypes")), "ReportBatchItemFailures") {
				p = append(p, fmt.Sprintf("%s %s: want %s with ReportBatchItemFailures: %v", d.consumer, ev, d.queue, props))
			}
		}
		if scope := dig(s.res[d.consumer], "Properties", "Environment", "Variables", "REDRIVE_SCOPE"); scope != d.scope {
			p = append(p, fmt.Sprintf("%s: REDRIVE_SCOPE %v, want %s (the projections of %s, which its role can run)", d.consumer, scope, d.scope, d.queue))
		}
	}
	return p
}

// ---------------------------------------------------------------- queue

// The dead-letter queue is encrypted, keeps a parked event as long as SQS can (14 days),
// hands a message redrive keeps failing on to an equally kept archive, and hides a message
// being redriven for six times the redrive timeout (AWS's advice for SQS event sources).
func checkQueue(s *stack) []string {
	var p []string
	for _, d := range deadLetterQueues {
		for _, q := range []string{d.queue, d.archive} {
			props := dig(s.res[q], "Properties")
			if s.res[q]["Type"] != "AWS::SQS::Queue" {
				p = append(p, "no queue "+q)
				continue
			}
			if dig(props, "SqsManagedSseEnabled") != true && dig(props, "KmsMasterKeyId") == nil {
				p = append(p, q+": not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
			}
			if r, _ := num(dig(props, "MessageRetentionPeriod")); r != infra.DLQRetentionSeconds {
				p = append(p, fmt.Sprintf("%s: MessageRetentionPeriod %v, want %d (14 days)", q, r, infra.DLQRetentionSeconds))
			}
		}
		rp := dig(s.res[d.queue], "Properties", "RedrivePolicy")
		if n, _ := num(dig(rp, "maxReceiveCount")); dig(rp, "deadLetterTargetArn") != "GetAtt:"+d.archive+".Arn" || n != infra.DLQMaxReceiveCount {
			p = append(p, fmt.Sprintf("%s: RedrivePolicy %v, want %s after %d receives", d.queue, rp, d.archive, infra.DLQMaxReceiveCount))
		}
		vis, _ := num(dig(s.res[d.queue], "Properties", "VisibilityTimeout"))
		timeout, _ := num(s.prop(d.consumer, "Timeout"))
		if timeout == 0 || vis < 6*timeout {
			p = append(p, fmt.Sprintf("%s: VisibilityTimeout %v, want at least 6 × %s's timeout (%v)", d.queue, vis, d.consumer, timeout))
		}
	}
	// A work queue hides a message over its consumer's timeout (a message must not come
	// back while the invocation that took it still runs: a rebuild would get a second
	// stepper), is consumed one message at a time with partial batch responses, is
	// encrypted, and has an archive.
	for _, w := range workQueues {
		props := dig(s.res[w.queue], "Properties")
		if s.res[w.queue]["Type"] != "AWS::SQS::Queue" {
			p = append(p, "no queue "+w.queue)
			continue
		}
		if dig(props, "SqsManagedSseEnabled") != true && dig(props, "KmsMasterKeyId") == nil {
			p = append(p, w.queue+": not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
		}
		vis, _ := num(dig(props, "VisibilityTimeout"))
		timeout, _ := num(s.prop(w.consumer, "Timeout"))
		if timeout == 0 || vis <= timeout {
			p = append(p, fmt.Sprintf("%s: VisibilityTimeout %v, want over %s's timeout (%v)", w.queue, vis, w.consumer, timeout))
		}
		if dig(props, "RedrivePolicy", "deadLetterTargetArn") != "GetAtt:"+w.archive+".Arn" {
			p = append(p, fmt.Sprintf("%s: no archive %s", w.queue, w.archive))
		}
		q := s.events(w.consumer, "SQS")
		if len(q) != 1 {
			p = append(p, fmt.Sprintf("%s: %d SQS sources, want %s", w.consumer, len(q), w.queue))
		}
		for ev, props := range q {
			if n, _ := num(dig(props, "BatchSize")); dig(props, "Queue") != "GetAtt:"+w.queue+".Arn" || n != 1 ||
				!slices.Contains(strs(dig(props, "FunctionResponseTypes")), "ReportBatchItemFailures") {
				p = append(p, fmt.Sprintf("%s %s: want %s, BatchSize 1, ReportBatchItemFailures: %v", w.consumer, ev, w.queue, props))
			}
		}
	}
	return p
}

// ---------------------------------------------------------------- dead letters

// Every queue in the template is a dead-letter queue or the archive behind one. Every
// dead-letter queue has exactly one consumer (a redrive, with partial batch responses),
// and every queue, archives included, has an alarm on messages present: an archived
// message is one the redrive gave up on, which only an operator can resolve. Archives
// have no consumer: that is what keeps a message that keeps failing out of the way.
func checkDeadLetters(s *stack) []string {
	var p []string
	archives := map[string]bool{}
	for _, q := range s.ofType("AWS::SQS::Queue") {
		if t, ok := dig(s.res[q], "Properties", "RedrivePolicy", "deadLetterTargetArn").(string); ok {
			archives[strings.TrimSuffix(strings.TrimPrefix(t, "GetAtt:"), ".Arn")] = true
		}
	}
	consumers := map[string][]string{} // queue → functions with an SQS source on it
	for _, fn := range s.functions() {
		for _, props := range s.events(fn, "SQS") {
			q := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprint(dig(props, "Queue")), "GetAtt:"), ".Arn")
			consumers[q] = append(consumers[q], fn)
		}
	}
	alarmed := map[string]bool{}
	for _, name := range s.ofType("AWS::CloudWatch::Alarm") {
		props := dig(s.res[name], "Properties")
		dims := strs2(dig(props, "Dimensions"))
		th, _ := num(dig(props, "Threshold"))
		if dig(props, "Namespace") == "AWS/SQS" && dig(props, "MetricName") == "ApproximateNumberOfMessagesVisible" &&
			dig(props, "ComparisonOperator") == "GreaterThanThreshold" && th == 0 && len(dims) == 1 && dig(dims[0], "Name") == "QueueName" {
			q := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprint(dig(dims[0], "Value")), "GetAtt:"), ".QueueName")
			alarmed[q] = slices.Contains(strs(dig(props, "AlarmActions")), "Ref:AlarmTopic")
		}
	}
	work := map[string]bool{}
	for _, w := range workQueues {
		work[w.queue] = true
	}
	for _, q := range s.ofType("AWS::SQS::Queue") {
		if work[q] {
			continue // checkQueue's; its alarm is on its oldest message's age (checkAlarms)
		}
		if !alarmed[q] {
			p = append(p, q+": no alarm on messages present (ApproximateNumberOfMessagesVisible > 0, notifying AlarmTopic)")
		}
		switch {
		case archives[q] && len(consumers[q]) > 0:
			p = append(p, fmt.Sprintf("%s is an archive but %v consume it", q, consumers[q]))
		case !archives[q] && len(consumers[q]) != 1:
			p = append(p, fmt.Sprintf("dead-letter queue %s: consumers %v, want exactly one redrive", q, consumers[q]))
		case !archives[q] && dig(s.res[q], "Properties", "RedrivePolicy") == nil:
			p = append(p, fmt.Sprintf("dead-letter queue %s: no archive for what its redrive keeps failing on", q))
		}
	}
	return p
}

// ---------------------------------------------------------------- alarms

// Alarms: dead letters present, each stream consumer's iterator age (firing before
// records reach MaximumRecordAgeInSeconds, far before the stream's 24 hours), errors of
// each function; every alarm notifies the topic, which an email subscribes to when given.
func checkAlarms(s *stack) []string {
	var p []string
	type alarm struct {
		namespace, metric, stat, op, dim string
		threshold                        float64
		notifies                         bool
	}
	var alarms []alarm
	for _, name := range s.ofType("AWS::CloudWatch::Alarm") {
		props := dig(s.res[name], "Properties")
		th, _ := num(dig(props, "Threshold"))
		dims := strs2(dig(props, "Dimensions"))
		var dim string
		if len(dims) == 1 {
			dim = fmt.Sprint(dig(dims[0], "Name"), "=", dig(dims[0], "Value"))
		}
		a := alarm{fmt.Sprint(dig(props, "Namespace")), fmt.Sprint(dig(props, "MetricName")), fmt.Sprint(dig(props, "Statistic")),
			fmt.Sprint(dig(props, "ComparisonOperator")), dim, th, slices.Contains(strs(dig(props, "AlarmActions")), "Ref:AlarmTopic")}
		if !a.notifies {
			p = append(p, name+": does not notify AlarmTopic")
		}
		alarms = append(alarms, a)
	}
	has := func(what string, ok func(alarm) bool) {
		if !slices.ContainsFunc(alarms, ok) {
			p = append(p, "no alarm: "+what)
		}
	}
	for _, d := range deadLetterQueues {
		has(d.queue+" depth > 0", func(a alarm) bool {
			return a.namespace == "AWS/SQS" && a.metric == "ApproximateNumberOfMessagesVisible" && a.dim == "QueueName=GetAtt:"+d.queue+".QueueName" &&
				a.op == "GreaterThanThreshold" && a.threshold == 0
		})
	}
	for _, w := range workQueues {
		has(w.queue+" oldest message age", func(a alarm) bool {
			return a.namespace == "AWS/SQS" && a.metric == "ApproximateAgeOfOldestMessage" && a.dim == "QueueName=GetAtt:"+w.queue+".QueueName" &&
				a.op == "GreaterThanThreshold" && a.threshold > 0
		})
	}
	for _, fn := range s.functions() {
		has(fn+" errors > 0", func(a alarm) bool {
			return a.namespace == "AWS/Lambda" && a.metric == "Errors" && a.dim == "FunctionName=Ref:"+fn && a.op == "GreaterThanThreshold" && a.threshold == 0
		})
		for ev, props := range s.events(fn, "DynamoDB") {
			maxAge, _ := num(dig(props, "MaximumRecordAgeInSeconds"))
			has(fmt.Sprintf("%s iterator age (maximum) under %s's MaximumRecordAgeInSeconds", fn, ev), func(a alarm) bool {
				return a.namespace == "AWS/Lambda" && a.metric == "IteratorAge" && a.dim == "FunctionName=Ref:"+fn && a.stat == "Maximum" &&
					a.op == "GreaterThanThreshold" && a.threshold > 0 && a.threshold < maxAge*1000 && a.threshold < 24*3600*1000
			})
		}
	}
	if topics := s.ofType("AWS::SNS::Topic"); !slices.Contains(topics, "AlarmTopic") {
		p = append(p, "no AlarmTopic")
	} else if k := dig(s.res["AlarmTopic"], "Properties", "KmsMasterKeyId"); k == "alias/aws/sns" {
		p = append(p, "AlarmTopic: CloudWatch cannot publish to a topic under the AWS-managed SNS key")
	}
	sub := s.res["AlarmSubscription"]
	if sub["Condition"] != "HasAlarmEmail" || dig(sub, "Properties", "Endpoint") != "Ref:AlarmEmail" || dig(sub, "Properties", "TopicArn") != "Ref:AlarmTopic" {
		p = append(p, fmt.Sprintf("AlarmSubscription: want AlarmEmail on AlarmTopic under Condition HasAlarmEmail: %v", sub))
	}
	return p
}

// ---------------------------------------------------------------- tables

// tableShape is what infra defines and the template must repeat.
type tableShape struct {
	Billing string
	Attrs   map[string]string // name → type
	Keys    map[string]string // name → HASH/RANGE
	GSIs    map[string]string // index → "attr:HASH,attr:RANGE/PROJECTION"
	Stream  string
}

func shapeOfInfra(in *dynamodb.CreateTableInput) tableShape {
	s := tableShape{Billing: string(in.BillingMode), Attrs: map[string]string{}, Keys: map[string]string{}, GSIs: map[string]string{}}
	for _, a := range in.AttributeDefinitions {
		s.Attrs[*a.AttributeName] = string(a.AttributeType)
	}
	for _, k := range in.KeySchema {
		s.Keys[*k.AttributeName] = string(k.KeyType)
	}
	for _, g := range in.GlobalSecondaryIndexes {
		var ks []string
		for _, k := range g.KeySchema {
			ks = append(ks, *k.AttributeName+":"+string(k.KeyType))
		}
		s.GSIs[*g.IndexName] = strings.Join(ks, ",") + "/" + string(g.Projection.ProjectionType)
	}
	if in.StreamSpecification != nil && in.StreamSpecification.StreamEnabled != nil && *in.StreamSpecification.StreamEnabled {
		s.Stream = string(in.StreamSpecification.StreamViewType)
	}
	return s
}

// Keys, attribute types, GSIs (keys and projection), stream view and billing equal infra's
// definitions, which the emulators, LocalStack and the tests create; both tables have
// point-in-time recovery, encryption and TTL on expiresAt (snapshots and idempotency
// records expire); the events table's deletion protection follows the parameter.
func checkTables(s *stack) []string {
	var p []string
	for logical, want := range map[string]*dynamodb.CreateTableInput{"EventsTable": infra.EventsTable("x"),
		"ReadModelTable": infra.ReadModelTable("x"), "IndexTable": infra.IndexTable("x")} {
		tbl, err := s.typed.GetDynamoDBTableWithName(logical)
		if err != nil {
			p = append(p, err.Error())
			continue
		}
		got := tableShape{Attrs: map[string]string{}, Keys: map[string]string{}, GSIs: map[string]string{}}
		if tbl.BillingMode != nil {
			got.Billing = *tbl.BillingMode
		}
		for _, a := range tbl.AttributeDefinitions {
			got.Attrs[a.AttributeName] = a.AttributeType
		}
		for _, k := range tbl.KeySchema {
			got.Keys[k.AttributeName] = k.KeyType
		}
		for _, g := range tbl.GlobalSecondaryIndexes {
			var ks []string
			for _, k := range g.KeySchema {
				ks = append(ks, k.AttributeName+":"+k.KeyType)
			}
			pt := ""
			if g.Projection.ProjectionType != nil {
				pt = *g.Projection.ProjectionType
			}
			got.GSIs[g.IndexName] = strings.Join(ks, ",") + "/" + pt
		}
		if tbl.StreamSpecification != nil {
			got.Stream = tbl.StreamSpecification.StreamViewType
		}
		if w := shapeOfInfra(want); !reflect.DeepEqual(got, w) {
			p = append(p, fmt.Sprintf("%s differs from infra:\ntemplate %+v\ninfra    %+v", logical, got, w))
		}
		if tbl.PointInTimeRecoverySpecification == nil || tbl.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled == nil ||
			!*tbl.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled {
			p = append(p, logical+": point-in-time recovery off")
		}
		if tbl.SSESpecification == nil || !tbl.SSESpecification.SSEEnabled {
			p = append(p, logical+": SSESpecification.SSEEnabled off")
		}
		if ttl := tbl.TimeToLiveSpecification; logical == "IndexTable" {
			// Index items never expire on their own: they live as long as their events.
			if ttl != nil && ttl.Enabled {
				p = append(p, "IndexTable: TTL would drop index items while their events remain")
			}
		} else if ttl == nil || !ttl.Enabled || ttl.AttributeName == nil || *ttl.AttributeName != infra.AttrExpiresAt {
			p = append(p, fmt.Sprintf("%s: TTL must be enabled on %s", logical, infra.AttrExpiresAt))
		}
	}
	if dp := dig(s.res["EventsTable"], "Properties", "DeletionProtectionEnabled"); dp != "If:Protected.true.false" {
		p = append(p, fmt.Sprintf("EventsTable: DeletionProtectionEnabled %v, want !If [Protected, true, false]", dp))
	}
	return p
}

// ---------------------------------------------------------------- the checks themselves

// breakages are templates broken the way each check guards against: the first occurrence
// of old becomes new, and the named check must report it.
var breakages = []struct{ check, what, old, new string }{
	{"routes", "the ops page's files behind the authorizer", "            Path: /ops\n            Method: GET\n            Auth:\n              Authorizer: NONE\n", "            Path: /ops\n            Method: GET\n"},
	{"dashboard", "a metric no function emits", `"CommandLatency", "Function", "api", {"stat": "p50"`, `"CommandLatencyMs", "Function", "api", {"stat": "p50"`},
	{"dashboard", "a metric name in a search no function emits", `MetricName=\"ParkedEvents\"`, `MetricName=\"Parked\"`},
	{"dashboard", "the functions' namespace not the one plotted", `METRICS_NAMESPACE: !Sub "ecmstore/${AWS::StackName}"`, `METRICS_NAMESPACE: !Sub "ecm/${AWS::StackName}"`},
	{"dashboard", "a Function dimension no function reports", `"ProjectorLag", "Function", "projector"`, `"ProjectorLag", "Function", "ProjectorFunction"`},
	{"dashboard", "a seed-001 panel missing", `"RebuildTime", "Function", "api"`, `"AggregateLoadTime", "Function", "api"`},
	{"code", "a function whose main package does not exist", "  RedriveFunction:\n", "  RedrivFunction:\n"},
	{"queue", "a rebuild message back while its invocation still runs", "      VisibilityTimeout: 330\n", "      VisibilityTimeout: 30\n"},
	{"code", "CodeUri away from the Makefile", "      CodeUri: .\n", "      CodeUri: functions/api\n"},
	{"code", "an architecture the Makefile does not build", "Architectures: [arm64]", "Architectures: [x86_64]"},
	{"code", "no makefile build method", "      BuildMethod: makefile\n", "      BuildMethod: go1.x\n"},
	{"routes", "no default authorizer", "        DefaultAuthorizer: JwtAuthorizer\n", ""},
	{"routes", "a public proxy route", "            Path: /{proxy+}\n            Method: ANY\n", "            Path: /{proxy+}\n            Method: ANY\n            Auth:\n              Authorizer: NONE\n"},
	{"routes", "a route on the implicit API", "            ApiId: !Ref HttpApi\n            Path: /{proxy+}\n", "            Path: /{proxy+}\n"},
	{"routes", "an authorized /healthz", "              Authorizer: NONE\n", "              Authorizer: JwtAuthorizer\n"},
	{"iam", "the api may update events", "Action: [dynamodb:PutItem, dynamodb:ConditionCheckItem, dynamodb:GetItem, dynamodb:Query]", "Action: [dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:ConditionCheckItem, dynamodb:GetItem, dynamodb:Query]"},
	{"iam", "the projector may append events", "Action: [dynamodb:GetItem, dynamodb:Query]\n", "Action: [dynamodb:GetItem, dynamodb:Query, dynamodb:PutItem]\n"},
	{"iam", "a wildcard that covers DeleteItem", "Action: [dynamodb:PutItem, dynamodb:ConditionCheckItem, dynamodb:GetItem, dynamodb:Query]", "Action: [dynamodb:PutItem, dynamodb:ConditionCheckItem, dynamodb:GetItem, dynamodb:Query, dynamodb:*Item]"},
	{"iam", "dynamodb:* on the read models", "dynamodb:ConditionCheckItem, dynamodb:BatchWriteItem]", "dynamodb:*]"},
	{"iam", "a statement on every resource", "Resource: !GetAtt ReadModelTable.Arn", `Resource: "*"`},
	{"iam", "SAM-generated role", "      Role: !GetAtt SagaRole.Arn\n", "      Policies: [AWSLambdaBasicExecutionRole]\n"},
	{"iam", "a managed policy on a role", "      Description: api function\n", "      Description: api function\n      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n"},
	{"iam", "redrive cannot receive from the queue", "sqs:ReceiveMessage, ", ""},
	{"iam", "the read models' redrive may append events", "redrive below).\n              - Effect: Allow\n                Action: [dynamodb:GetItem, dynamodb:Query]\n", "redrive below).\n              - Effect: Allow\n                Action: [dynamodb:GetItem, dynamodb:Query, dynamodb:PutItem]\n"},
	{"iam", "the saga's redrive cannot append a redriven step's commands", "ConditionChecks).\n              - Effect: Allow\n                Action: [dynamodb:PutItem, dynamodb:ConditionCheckItem, dynamodb:GetItem, dynamodb:Query]", "ConditionChecks).\n              - Effect: Allow\n                Action: [dynamodb:GetItem, dynamodb:Query]"},
	{"iam", "the saga's redrive cannot receive from its queue", "Action: [sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes, sqs:SendMessage]\n                Resource: !GetAtt SagaDeadLetterQueue.Arn", "Action: [sqs:DeleteMessage, sqs:GetQueueAttributes, sqs:SendMessage]\n                Resource: !GetAtt SagaDeadLetterQueue.Arn"},
	{"iam", "the saga parks in the read models' queue", "Action: [sqs:SendMessage]\n                Resource: !GetAtt SagaDeadLetterQueue.Arn\n", "Action: [sqs:SendMessage]\n                Resource: !GetAtt DeadLetterQueue.Arn\n"},
	{"iam", "the api cannot park a saga step", "                  - !GetAtt SagaDeadLetterQueue.Arn\n", ""},
	{"iam", "a log group that is not the function's", `LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-saga"`, `LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-sagas"`},
	{"mappings", "LATEST", "StartingPosition: TRIM_HORIZON", "StartingPosition: LATEST"},
	{"mappings", "parallel batches per shard", "ParallelizationFactor: 1", "ParallelizationFactor: 2"},
	{"mappings", "no bisecting", "BisectBatchOnFunctionError: true", "BisectBatchOnFunctionError: false"},
	{"mappings", "no partial batch response", "FunctionResponseTypes: [ReportBatchItemFailures]", "FunctionResponseTypes: []"},
	{"mappings", "infinite retries", "MaximumRetryAttempts: 5", "MaximumRetryAttempts: -1"},
	{"mappings", "infinite record age", "MaximumRecordAgeInSeconds: 3600", "MaximumRecordAgeInSeconds: -1"},
	{"mappings", "a record age past the stream's retention", "MaximumRecordAgeInSeconds: 3600", "MaximumRecordAgeInSeconds: 86400"},
	{"mappings", "failures to the archive", "Destination: !GetAtt DeadLetterQueue.Arn", "Destination: !GetAtt DeadLetterArchiveQueue.Arn"},
	{"mappings", "a stream consumer without its mapping", "      Events:\n        EventStream:\n          Type: DynamoDB\n", "      Events:\n        EventStream:\n          Type: Kinesis\n"},
	{"mappings", "saga failures to the read models' queue", "Destination: !GetAtt SagaDeadLetterQueue.Arn", "Destination: !GetAtt DeadLetterQueue.Arn"},
	{"mappings", "the saga's redrive on the read models' queue", "Queue: !GetAtt SagaDeadLetterQueue.Arn", "Queue: !GetAtt DeadLetterQueue.Arn"},
	{"mappings", "the saga's redrive with the read models' scope", "REDRIVE_SCOPE: sagas", "REDRIVE_SCOPE: read-models"},
	{"mappings", "the read models' redrive running every projection", "          REDRIVE_SCOPE: read-models\n", ""},
	{"mappings", "redrive without partial batch responses", "            BatchSize: 10\n            FunctionResponseTypes: [ReportBatchItemFailures]\n", "            BatchSize: 10\n"},
	{"queue", "unencrypted", "SqsManagedSseEnabled: true", "SqsManagedSseEnabled: false"},
	{"queue", "four-day retention", "MessageRetentionPeriod: 1209600", "MessageRetentionPeriod: 345600"},
	{"queue", "no archive", "        maxReceiveCount: 5\n", "        maxReceiveCount: 50\n"},
	{"queue", "visibility shorter than the redrive", "VisibilityTimeout: 360", "VisibilityTimeout: 60"},
	{"queue", "the saga's queue without its archive", "deadLetterTargetArn: !GetAtt SagaDeadLetterArchiveQueue.Arn", "deadLetterTargetArn: !GetAtt DeadLetterArchiveQueue.Arn"},
	{"deadletters", "a dead-letter queue nobody consumes", "Queue: !GetAtt SagaDeadLetterQueue.Arn", "Queue: !GetAtt DeadLetterQueue.Arn"},
	{"deadletters", "a dead-letter queue without an alarm", "Value: !GetAtt SagaDeadLetterQueue.QueueName}", "Value: !GetAtt DeadLetterQueue.QueueName}"},
	{"deadletters", "an archive without an alarm", "Value: !GetAtt SagaDeadLetterArchiveQueue.QueueName}", "Value: !GetAtt DeadLetterArchiveQueue.QueueName}"},
	{"deadletters", "an archive with a consumer", "Queue: !GetAtt DeadLetterQueue.Arn", "Queue: !GetAtt DeadLetterArchiveQueue.Arn"},
	{"alarms", "no errors alarm for the redrive", "Value: !Ref RedriveFunction}", "Value: !Ref ProjectorFunction}"},
	{"alarms", "no errors alarm for the saga's redrive", "Value: !Ref SagaRedriveFunction}", "Value: !Ref SagaFunction}"},
	{"alarms", "no alarm on the saga's dead letters", "Value: !GetAtt SagaDeadLetterQueue.QueueName}", "Value: !GetAtt SagaDeadLetterArchiveQueue.QueueName}"},
	{"alarms", "no iterator-age alarm for the saga", "Value: !Ref SagaFunction}\n      Statistic: Maximum", "Value: !Ref ApiFunction}\n      Statistic: Maximum"},
	{"alarms", "an iterator-age alarm past the record age", "Threshold: 900000", "Threshold: 7200000"},
	{"alarms", "a dead-letter alarm on the wrong metric", "MetricName: ApproximateNumberOfMessagesVisible", "MetricName: NumberOfMessagesSent"},
	{"alarms", "an alarm that notifies nobody", "      AlarmActions: [!Ref AlarmTopic]\n", ""},
	{"alarms", "a topic CloudWatch cannot publish to", "    Type: AWS::SNS::Topic\n", "    Type: AWS::SNS::Topic\n    Properties:\n      KmsMasterKeyId: alias/aws/sns\n"},
	{"alarms", "an unconditional email subscription", "    Condition: HasAlarmEmail\n", ""},
	{"tables", "sort key type", "- {AttributeName: sk, AttributeType: N}", "- {AttributeName: sk, AttributeType: S}"},
	{"tables", "stream view", "StreamViewType: NEW_IMAGE", "StreamViewType: NEW_AND_OLD_IMAGES"},
	{"tables", "a GSI back on the events table", "        - {AttributeName: sk, KeyType: RANGE}\n      StreamSpecification:", "        - {AttributeName: sk, KeyType: RANGE}\n      GlobalSecondaryIndexes:\n        - IndexName: byType\n          KeySchema:\n            - {AttributeName: pk, KeyType: HASH}\n          Projection: {ProjectionType: ALL}\n      StreamSpecification:"},
	{"tables", "index table sort key type", "        - {AttributeName: sk, AttributeType: S}\n      KeySchema:", "        - {AttributeName: sk, AttributeType: N}\n      KeySchema:"},
	{"tables", "index table with a stream", "  IndexTable:\n    Type: AWS::DynamoDB::Table\n    Properties:\n", "  IndexTable:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      StreamSpecification:\n        StreamViewType: NEW_IMAGE\n"},
	{"iam", "the api writes the index", "                Action: [dynamodb:Query]\n                Resource: !GetAtt IndexTable.Arn", "                Action: [dynamodb:Query, dynamodb:PutItem]\n                Resource: !GetAtt IndexTable.Arn"},
	{"iam", "the projector cannot write the index", "Action: [dynamodb:BatchWriteItem, dynamodb:PutItem]", "Action: [dynamodb:PutItem]"},
	{"iam", "a grant on the old GSIs", "                Resource: !GetAtt IndexTable.Arn", "                Resource: !Sub \"${EventsTable.Arn}/index/*\""},
	{"tables", "provisioned billing", "BillingMode: PAY_PER_REQUEST", "BillingMode: PROVISIONED"},
	{"tables", "no point-in-time recovery", "PointInTimeRecoveryEnabled: true", "PointInTimeRecoveryEnabled: false"},
	{"tables", "no snapshot TTL", "        AttributeName: expiresAt\n", "        AttributeName: ttl\n"},
	{"tables", "deletion protection ignoring the parameter", "DeletionProtectionEnabled: !If [Protected, true, false]", "DeletionProtectionEnabled: false"},
}

// Every check fails on a template broken the way it guards against, so none of them
// passes vacuously; every check has at least one such breakage.
func TestTemplateChecksCatchBreakage(t *testing.T) {
	_, raw := load(t)
	byName := map[string]check{}
	for _, c := range checks {
		byName[c.name] = c
	}
	covered := map[string]bool{}
	for _, b := range breakages {
		covered[b.check] = true
		t.Run(b.check+"/"+b.what, func(t *testing.T) {
			c, ok := byName[b.check]
			if !ok {
				t.Fatalf("no check %q", b.check)
			}
			if !strings.Contains(raw, b.old) {
				t.Fatalf("template.yaml no longer contains %q: update this breakage", b.old)
			}
			s, err := parse([]byte(strings.Replace(raw, b.old, b.new, 1)))
			if err != nil {
				t.Fatalf("broken template does not parse: %v", err)
			}
			if len(c.run(s)) == 0 {
				t.Errorf("check %q passed a template with %s", b.check, b.what)
			}
		})
	}
	for _, c := range checks {
		if !covered[c.name] {
			t.Errorf("check %q has no breakage proving it can fail", c.name)
		}
	}
}

// ---------------------------------------------------------------- dashboard

// dashboardNeeds are the EMF metrics the dashboard must plot: the seed-001 figures
// (events/s, command latency, error rate, errors by event type, aggregate load and
// rebuild times, snapshots and their size) and the projector's lag, conflicts and retries.
var dashboardNeeds = []string{"EventsAppended", "CommandLatency", "Errors5xx", "Rejected4xx", "Requests", "ParkedEvents",
	"AggregateLoadTime", "RebuildTime", "SnapshotsCreated", "SnapshotSize", "ProjectorLag", "Conflicts", "Retries"}

var searchMetric = regexp.MustCompile(`\{"([^"]+)",([A-Za-z,]+)\} MetricName="([A-Za-z0-9]+)"`)

// The dashboard plots what the functions emit: its body is JSON, every EMF metric it names
// (in a metric row or a SEARCH) is one shared/metrics writes, in the namespace the
// functions are given (METRICS_NAMESPACE), with a Function dimension one of them reports;
// it has every seed-001 panel, and the depth of every dead-letter queue.
func checkDashboard(s *stack) []string {
	dash := s.ofType("AWS::CloudWatch::Dashboard")
	if len(dash) != 1 {
		return []string{fmt.Sprintf("dashboards %v, want one", dash)}
	}
	var p []string
	ns, _ := dig(s.globals, "Environment", "Variables", "METRICS_NAMESPACE").(string)
	ns = strings.TrimPrefix(ns, "Sub:")
	if ns == "" {
		p = append(p, "Globals: no METRICS_NAMESPACE for the functions' EMF lines")
	}
	functions := map[string]bool{"api": true, "projector": true, "saga": true}
	for _, fn := range s.functions() {
		if scope, ok := dig(s.res[fn], "Properties", "Environment", "Variables", "REDRIVE_SCOPE").(string); ok {
			functions["redrive-"+scope] = true
		}
	}
	body, _ := dig(s.res[dash[0]], "Properties", "DashboardBody").(string)
	var doc struct {
		Widgets []struct {
			Properties struct {
				Metrics [][]any `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(body, "Sub:")), &doc); err != nil || len(doc.Widgets) == 0 {
		return append(p, fmt.Sprintf("%s: DashboardBody is not a dashboard's JSON: %v", dash[0], err))
	}
	emitted := metrics.EMFMetricNames()
	plotted := map[string]bool{}
	use := func(where, namespace, name string) {
		switch {
		case namespace != ns:
			p = append(p, fmt.Sprintf("%s: namespace %q, but the functions write to %q", where, namespace, ns))
		case !slices.Contains(emitted, name):
			p = append(p, fmt.Sprintf("%s: %s is not a metric the functions emit (%v)", where, name, emitted))
		default:
			plotted[name] = true
		}
	}
	for _, w := range doc.Widgets {
		for _, row := range w.Properties.Metrics {
			if len(row) == 0 {
				continue
			}
			if expr, ok := dig(row[0], "expression").(string); ok {
				for _, m := range searchMetric.FindAllStringSubmatch(expr, -1) {
					use("SEARCH "+expr, m[1], m[3])
				}
				continue
			}
			ns0, _ := row[0].(string)
			if ns0 == "..." || ns0 == "AWS/SQS" || ns0 == "AWS/Lambda" {
				if ns0 == "AWS/SQS" && len(row) > 3 {
					plotted[fmt.Sprint("AWS/SQS ", row[1], " ", row[3])] = true
				}
				continue
			}
			if len(row) < 2 {
				p = append(p, fmt.Sprintf("metric row %v", row))
				continue
			}
			name := fmt.Sprint(row[1])
			use(fmt.Sprint(row), ns0, name)
			for i := 2; i+1 < len(row); i += 2 {
				if row[i] == metrics.DimFunction && !functions[fmt.Sprint(row[i+1])] {
					p = append(p, fmt.Sprintf("%v: Function %v is not one the functions report (%v)", row, row[i+1], functions))
				}
			}
		}
	}
	for _, want := range dashboardNeeds {
		if !plotted[want] {
			p = append(p, "the dashboard does not plot "+want)
		}
	}
	for _, d := range deadLetterQueues {
		if !plotted["AWS/SQS ApproximateNumberOfMessagesVisible ${"+d.queue+".QueueName}"] {
			p = append(p, "the dashboard does not plot the depth of "+d.queue)
		}
	}
	return p
}
