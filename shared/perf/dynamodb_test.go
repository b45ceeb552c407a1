package perf

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ecmstore/ecmstore/infra"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Writers and clients on each side of the ratio, and how long each measured phase runs.
const (
	ddbWriters = 8
	ddbPhase   = 5 * time.Second
	ddbRuns    = 3
)

// BenchmarkDynamoDB measures commands/s through the HTTP API with 8 clients against raw
// conditional PutItem/s with 8 writers on a table of the events table's shape (same keys,
// stream on, items copied from a real deposit event), both on one fresh DynamoDB Local
// warmed up first, the raw figure first in each of 3 runs, each run on fresh tables. It
// prints, per command, the requests sent to DynamoDB, the CPU time of the DynamoDB Local
// JVM and of this process, and the bytes sent and received; the ratio is the median of
// the runs' ratios. The stream poller is off: projections are measured on their own
// (BenchmarkProjections), and on AWS they run in other Lambdas against DynamoDB's, not
// this JVM's, capacity.
func BenchmarkDynamoDB(b *testing.B) {
	ctx := context.Background()
	awsCfg := emulatorEnv(b)
	if emulator.DynamoDBPID() == 0 {
		b.Fatal("DynamoDB Local was not started by this process (ECM_TEST_DYNAMODB_ENDPOINT set?): its CPU time cannot be read")
	}
	w := newWire()
	db := emulator.DynamoDBClient(emulator.DynamoDB(b), w.option)

	// Warm-up: DynamoDB Local's JIT takes tens of seconds to reach its speed; its first
	// requests are several times slower than its later ones.
	var template map[string]types.AttributeValue
	for i := range 3 {
		cmd := runCommands(b, ctx, awsCfg, w, fmt.Sprintf("warm%d", i), false, 3*time.Second)
		template = cmd.item
		rawPuts(b, ctx, db, w, template, fmt.Sprintf("warm%d", i), 3*time.Second)
	}

	type run struct{ raw, plain, keyed phase }
	var runs []run
	for i := range ddbRuns {
		r := run{raw: rawPuts(b, ctx, db, w, template, strconv.Itoa(i), ddbPhase)}
		r.plain = runCommands(b, ctx, awsCfg, w, fmt.Sprintf("p%d", i), false, ddbPhase).phase
		r.keyed = runCommands(b, ctx, awsCfg, w, fmt.Sprintf("k%d", i), true, ddbPhase).phase
		runs = append(runs, r)
		fmt.Printf("run %d: raw PutItem %.0f/s | commands %.0f/s (ratio %.2f) | with Idempotency-Key %.0f/s (ratio %.2f)\n",
			i+1, r.raw.rate(), r.plain.rate(), r.plain.rate()/r.raw.rate(), r.keyed.rate(), r.keyed.rate()/r.raw.rate())
	}
	median := func(f func(run) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	// The per-operation detail of the median run by ratio.
	slices.SortFunc(runs, func(a, c run) int {
		return int((a.plain.rate()/a.raw.rate() - c.plain.rate()/c.raw.rate()) * 1e6)
	})
	mid := runs[len(runs)/2]
	fmt.Printf("DynamoDB Local, %d writers/clients, %v phases, median of %d runs:\n", ddbWriters, ddbPhase, ddbRuns)
	fmt.Printf("  raw conditional PutItem: %.0f/s; per put: %s; server CPU %s, client CPU %s\n",
		median(func(r run) float64 { return r.raw.rate() }), mid.raw.wire.per(mid.raw.n), mid.raw.serverPer(), mid.raw.clientPer())
	fmt.Printf("  deposit commands (HTTP, no key): %.0f/s, ratio %.2f; per command: %s; server CPU %s, client CPU %s\n",
		median(func(r run) float64 { return r.plain.rate() }), median(func(r run) float64 { return r.plain.rate() / r.raw.rate() }),
		mid.plain.wire.per(mid.plain.n), mid.plain.serverPer(), mid.plain.clientPer())
	fmt.Printf("  deposit commands (HTTP, Idempotency-Key): %.0f/s, ratio %.2f; per command: %s; server CPU %s, client CPU %s\n",
		median(func(r run) float64 { return r.keyed.rate() }), median(func(r run) float64 { return r.keyed.rate() / r.raw.rate() }),
		mid.keyed.wire.per(mid.keyed.n), mid.keyed.serverPer(), mid.keyed.clientPer())
	b.ReportMetric(median(func(r run) float64 { return r.raw.rate() }), "raw-puts/s")
	b.ReportMetric(median(func(r run) float64 { return r.plain.rate() }), "commands/s")
	b.ReportMetric(median(func(r run) float64 { return r.plain.rate() / r.raw.rate() }), "ratio")
	b.ReportMetric(median(func(r run) float64 { return r.keyed.rate() / r.raw.rate() }), "keyed-ratio")
	b.ReportMetric(float64(mid.plain.wire.requests)/float64(mid.plain.n), "requests/command")
}

// phase is one measured stretch: n operations in d, what went over the wire, and the
// CPU time of the DynamoDB Local JVM (server) and of this process (client).
type phase struct {
	n              int64
	d              time.Duration
	wire           wireCounts
	server, client time.Duration
}

func (p phase) rate() float64 { return float64(p.n) / p.d.Seconds() }
func (p phase) serverPer() string {
	return fmt.Sprintf("%.0f µs", float64(p.server.Microseconds())/float64(max(p.n, 1)))
}
func (p phase) clientPer() string {
	return fmt.Sprintf("%.0f µs", float64(p.client.Microseconds())/float64(max(p.n, 1)))
}

// measure runs work on `writers` goroutines for d, counting what each call of work
// reports done.
func measure(w *wire, d time.Duration, writers int, work func(writer int, seq int64) bool) phase {
	pid := emulator.DynamoDBPID()
	var n atomic.Int64
	var wg sync.WaitGroup
	s0, c0 := cpuTime(pid), selfCPU()
	w.start()
	began := time.Now()
	stop := began.Add(d)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(1); time.Now().Before(stop); seq++ {
				if work(i, seq) {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	p := phase{n: n.Load(), d: time.Since(began), wire: w.stop()}
	p.server, p.client = cpuTime(pid)-s0, selfCPU()-c0
	return p
}

// rawPuts is the baseline: conditional PutItems (attribute_not_exists, ALL_OLD on
// failure, as the store sends them) of the template item under new keys, on a fresh
// table of the events table's definition.
func rawPuts(b *testing.B, ctx context.Context, db *dynamodb.Client, w *wire, template map[string]types.AttributeValue, tag string, d time.Duration) phase {
	table := "raw-" + tag + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := db.CreateTable(ctx, infra.EventsTable(table)); err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)}) }()
	var failed atomic.Int64
	p := measure(w, d, ddbWriters, func(writer int, seq int64) bool {
		item := make(map[string]types.AttributeValue, len(template))
		for k, v := range template {
			item[k] = v
		}
		item[infra.AttrPK] = &types.AttributeValueMemberS{Value: fmt.Sprintf("BankAccount#raw-%d", writer)}
		item[infra.AttrSK] = &types.AttributeValueMemberN{Value: strconv.FormatInt(seq, 10)}
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item,
			ConditionExpression: aws.String("attribute_not_exists(#0)"), ExpressionAttributeNames: map[string]string{"#0": infra.AttrPK},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
		if err != nil {
			failed.Add(1)
			return false
		}
		return true
	})
	if f := failed.Load(); f > 0 {
		b.Fatalf("raw puts: %d failed", f)
	}
	return p
}

type commandRun struct {
	phase
	item map[string]types.AttributeValue // one stored deposit event, for the raw puts
}

// runCommands assembles the system on fresh tables (stream poller off), opens one account
// per client, then has each client deposit over HTTP for d, with a new Idempotency-Key
// per request when keyed.
func runCommands(b *testing.B, ctx context.Context, awsCfg aws.Config, w *wire, tag string, keyed bool, d time.Duration) commandRun {
	s := tag + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c := system.Config{EventStore: "dynamodb", EventsTable: "ev-" + s, ReadModelTable: "rm-" + s, IndexTable: "ix-" + s,
		DLQName: "dlq-" + s, SagaDLQName: "sdlq-" + s, SnapshotEvery: 50, EndpointOverride: true, EnsureResources: true}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	back, err := system.DynamoDBBackend(ctx, c, awsCfg, log, w.option)
	if err != nil {
		b.Fatal(err)
	}
	sys := system.Assemble(c, back, log)
	runCtx, cancel := context.WithCancel(ctx)
	done := sys.Start(runCtx)
	srv := httptest.NewServer(sys.Handler)
	defer func() {
		srv.Close()
		cancel()
		<-done
		_ = sys.Close()
		for _, t := range []string{c.EventsTable, c.ReadModelTable, c.IndexTable} {
			_, _ = back.AWS.DynamoDB.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(t)})
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: ddbWriters * 2}, Timeout: time.Minute}
	post := func(path, body, key string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	acct := func(i int) string { return fmt.Sprintf("acc-%s-%d", s, i) }
	for i := range ddbWriters {
		if st, body := post("/accounts/"+acct(i)+"/open", `{"initialDeposit":100}`, ""); st != http.StatusCreated {
			b.Fatalf("open: %d %s", st, body)
		}
	}
	var mu sync.Mutex
	failures := map[string]int{}
	p := measure(w, d, ddbWriters, func(writer int, seq int64) bool {
		key := ""
		if keyed {
			key = fmt.Sprintf("%s-%d-%d", s, writer, seq)
		}
		st, body := post("/accounts/"+acct(writer)+"/deposit", `{"amount":1}`, key)
		if st != http.StatusOK {
			mu.Lock()
			failures[fmt.Sprintf("%d %.120s", st, body)]++
			mu.Unlock()
			return false
		}
		return true
	})
	if len(failures) > 0 {
		b.Fatalf("deposits failed: %v", failures)
	}
	out, err := back.AWS.DynamoDB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(c.EventsTable), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{infra.AttrPK: &types.AttributeValueMemberS{Value: "BankAccount#" + acct(0)},
			infra.AttrSK: &types.AttributeValueMemberN{Value: "2"}}})
	if err != nil || out.Item == nil {
		b.Fatalf("the first deposit's item: %v", err)
	}
	return commandRun{phase: p, item: out.Item}
}

// emulatorEnv starts DynamoDB Local and fauxqs and points the SDK's standard
// configuration at them, as `make run-emulated` does.
func emulatorEnv(b *testing.B) aws.Config {
	ep, q := emulator.DynamoDB(b), emulator.SQS(b)
	for k, v := range map[string]string{"AWS_ENDPOINT_URL_DYNAMODB": string(ep), "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": string(ep),
		"AWS_ENDPOINT_URL_SQS": string(q), "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"} {
		b.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}
