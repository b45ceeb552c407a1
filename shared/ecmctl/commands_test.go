package ecmctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/system"
)

// brokenDocs refuses one account's read-model writes while broken: a projection failure
// whose cause an operator can fix, so that a redrive clears the dead letter.
type brokenDocs struct {
	docstore.Store
	key    string
	broken atomic.Bool
}

func (b *brokenDocs) Update(ctx context.Context, fn func(context.Context, docstore.Tx) error) error {
	return b.Store.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return fn(ctx, brokenTx{tx, b}) })
}

type brokenTx struct {
	docstore.Tx
	b *brokenDocs
}

func (t brokenTx) Put(ctx context.Context, collection, key string, v any) error {
	if t.b.broken.Load() && collection == bank.AccountsCollection && key == t.b.key {
		return errors.New("read model write refused (injected)")
	}
	return t.Tx.Put(ctx, collection, key, v)
}

// fixture is a system with a little history: an account with three events, another
// whose second event has a type this version does not know (parked for good), and, where
// the test controls the server, a third whose read-model write fails until healed.
type fixture struct {
	args   []string // the flags that point ecmctl at the system
	poison event.Event
	alice  []event.Event
	heal   func()                             // http only
	get    func(path string) apitest.Response // http only: read the server's API
	direct bool
	noFeed bool // DynamoDB: no global log to export from
	// appendEvent adds an event while a command runs (nil where the CLI holds the store).
	appendEvent func(t *testing.T) string
	events      int
}

func produce(t *testing.T, sys *system.System, flaky *brokenDocs) fixture {
	t.Helper()
	ctx := context.Background()
	c := &apitest.Client{T: t, H: sys.Handler}
	c.Must(201, "POST", "/accounts/alice/open", map[string]any{"initialDeposit": 100}, "X-Actor", "alice")
	c.Must(200, "POST", "/accounts/alice/deposit", map[string]any{"amount": 50})
	c.Must(200, "POST", "/accounts/alice/withdraw", map[string]any{"amount": 30})
	c.Must(201, "POST", "/accounts/poison/open", map[string]any{"initialDeposit": 10})
	bad, err := sys.Store.Append(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "poison"}, 1,
		[]event.Event{event.MustNew("InterestAccrued", map[string]string{"amount": "5"})})
	if err != nil {
		t.Fatal(err)
	}
	if flaky != nil {
		flaky.key = "flaky"
		flaky.broken.Store(true)
		c.Must(201, "POST", "/accounts/flaky/open", map[string]any{"initialDeposit": 5})
	}
	alice, err := sys.Store.Load(ctx, eventstore.Stream{Type: bank.AggregateType, ID: "alice"}, eventstore.Range{})
	if err != nil || len(alice) != 3 {
		t.Fatalf("alice: %v %v", alice, err)
	}
	n := 5
	if flaky != nil {
		n++
	}
	if sys.Runner != nil {
		if err := sys.Runner.CatchUpAll(ctx); err != nil {
			t.Fatal(err)
		}
	} else {
		// DynamoDB: the stream poller projects and indexes in the background.
		c.Eventually(5*time.Minute, func() string {
			dls, err := sys.Engine.DeadLetters(ctx)
			if err != nil || len(dls) == 0 {
				return fmt.Sprintf("poison not parked yet (%v)", err)
			}
			found := 0
			if err := eachEvent(ctx, direct{sys: sys}, eventstore.Filter{}, func(event.Event) bool { found++; return true }); err != nil {
				return err.Error()
			}
			if found < n {
				return fmt.Sprintf("%d of %d events indexed", found, n)
			}
			return ""
		})
	}
	f := fixture{poison: bad[0], alice: alice, events: n}
	f.appendEvent = func(t *testing.T) string {
		r := c.Must(200, "POST", "/accounts/alice/deposit", map[string]any{"amount": 1})
		return r.Num("version")
	}
	return f
}

func embeddedFixture(t *testing.T) fixture {
	dir := t.TempDir()
	cfg := system.Config{EventStore: "embedded", DataDir: dir}
	sys, err := system.Open(context.Background(), cfg, quiet(), backends...)
	if err != nil {
		t.Fatal(err)
	}
	f := produce(t, sys, nil)
	if err := sys.Close(); err != nil { // the CLI opens the file itself
		t.Fatal(err)
	}
	f.appendEvent = nil
	f.args, f.direct = []string{"--store", "embedded", "--data-dir", dir}, true
	return f
}

// dynamoFixture runs the system on DynamoDB Local with its stream poller, as
// `make run-emulated` does; ecmctl opens the same tables directly.
func dynamoFixture(t *testing.T) fixture {
	_, cfg := dynamoTarget(t)
	// The dead-letter queue's consumer would redrive too: here only ecmctl does.
	t.Setenv("DLQ_POLLER", "off")
	sys := start(t, cfg())
	f := produce(t, sys, nil)
	f.args, f.direct, f.noFeed = []string{"--store", "dynamodb"}, true, true
	return f
}

func postgresFixture(t *testing.T) fixture {
	dsn := emulator.Postgres(t)
	sys, err := system.Open(context.Background(), system.Config{EventStore: "postgres", DatabaseURL: dsn}, quiet(), backends...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sys.Close() })
	f := produce(t, sys, nil)
	f.args, f.direct = []string{"--store", "postgres", "--database-url", dsn}, true
	return f
}

// httpFixture serves the system's handler over HTTP behind a bearer token check.
func httpFixture(t *testing.T) fixture {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "ecmstore.db"))
	if err != nil {
		t.Fatal(err)
	}
	docs := &brokenDocs{Store: s}
	sys := system.Assemble(system.Config{EventStore: "embedded"}, system.Backend{Store: s, Feed: s, Docs: docs, Close: s.Close}, quiet())
	t.Cleanup(func() { _ = sys.Close() })
	f := produce(t, sys, docs)
	// A served system runs its loops: rebuilds are background jobs the feed runner steps.
	loops, stopLoops := context.WithCancel(context.Background())
	done := sys.Start(loops)
	t.Cleanup(func() { stopLoops(); <-done })
	const token = "s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":{"code":"unauthorized","message":"no token"}}`, http.StatusUnauthorized)
			return
		}
		sys.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.args = []string{"--api", srv.URL, "--token", token}
	f.heal = func() { docs.broken.Store(false) }
	c := &apitest.Client{T: t, H: sys.Handler}
	f.get = func(path string) apitest.Response { return c.Must(200, "GET", path, nil) }
	return f
}

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rows = append(rows, m)
	}
	return rows
}

func decode(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
}

// Every command against each way of reaching a system: the embedded store and
// PostgreSQL opened directly, and the HTTP API with a token.
func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*testing.T) fixture
	}{
		{"embedded", embeddedFixture},
		{"postgres", postgresFixture},
		{"dynamodb", dynamoFixture},
		{"http", httpFixture},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.setup(t)
			cmd := func(args ...string) []string { return append(args, f.args...) }
			parked := 1
			if f.heal != nil {
				parked = 2
			}

			// projections status: the parked events block the accounts projection.
			var st struct{ Projections []map[string]any }
			decode(t, run(t, cmd("projections", "status", "--json")...), &st)
			var accounts map[string]any
			for _, p := range st.Projections {
				if p["name"] == "accounts" {
					accounts = p
				}
			}
			if accounts == nil || accounts["status"] != "blocked" || accounts["parked"] != float64(parked) {
				t.Fatalf("accounts projection: %v", accounts)
			}
			if out := run(t, cmd("projections", "status")...); !strings.Contains(out, "NAME") || !regexpLine(out, `accounts\s+blocked`) {
				t.Fatalf("status table:\n%s", out)
			}

			// dead-letters list / show.
			out := run(t, cmd("dead-letters", "list")...)
			if !strings.Contains(out, f.poison.EventID) || !strings.Contains(out, "InterestAccrued") ||
				!strings.Contains(out, "BankAccount#poison") {
				t.Fatalf("dead letters:\n%s", out)
			}
			var dl map[string]any
			decode(t, run(t, cmd("dead-letters", "show", f.poison.EventID[:8])...), &dl)
			attempts, _ := dl["attempts"].(float64)
			if dl["eventType"] != "InterestAccrued" || dl["aggregateId"] != "poison" || attempts < 1 {
				t.Fatalf("dead letter: %v", dl)
			}
			if _, err := try(t, nil, cmd("dead-letters", "show", "no-such-id")...); !errors.Is(err, ErrNoDeadLetter) {
				t.Fatalf("show of an unknown id: %v", err)
			}

			// dead-letters redrive: the healed one clears, the poison stays with one more attempt.
			if f.heal != nil {
				if _, err := try(t, nil, cmd("dead-letters", "redrive", f.poison.EventID)...); !errors.Is(err, ErrUnsupported) {
					t.Fatalf("redrive of one over HTTP: %v", err)
				}
				f.heal()
				out = run(t, cmd("dead-letters", "redrive")...)
				if !strings.Contains(out, "redriven: 1, still parked: 1") || !strings.Contains(out, f.poison.EventID) {
					t.Fatalf("redrive:\n%s", out)
				}
				if g := f.get("/accounts/flaky"); g.Num("balance") != "5" {
					t.Fatalf("redriven account: %s", g.Raw)
				}
			} else {
				out = run(t, cmd("dead-letters", "redrive", f.poison.EventID[:8])...)
				if !strings.Contains(out, "redriven: 0, still parked: 1") {
					t.Fatalf("redrive:\n%s", out)
				}
			}
			decode(t, run(t, cmd("dead-letters", "show", f.poison.EventID)...), &dl)
			if dl["attempts"] != attempts+1 {
				t.Fatalf("the failed redrive is not counted: %v", dl)
			}

			// streams show, now and as of the second event.
			out = run(t, cmd("streams", "show", "BankAccount", "alice")...)
			for _, e := range f.alice {
				if !strings.Contains(out, e.EventID) {
					t.Fatalf("stream lacks %s:\n%s", e.EventID, out)
				}
			}
			var stream struct{ Events []event.Event }
			decode(t, run(t, cmd("streams", "show", "BankAccount", "alice", "--json",
				"--as-of", f.alice[1].Timestamp.Format(time.RFC3339Nano))...), &stream)
			if len(stream.Events) != 2 || stream.Events[1].EventID != f.alice[1].EventID {
				t.Fatalf("as of v2: %+v", stream.Events)
			}
			if _, err := try(t, nil, cmd("streams", "show", "BankAccount", "nobody")...); !errors.Is(err, eventstore.ErrNotFound) {
				t.Fatalf("unknown stream: %v", err)
			}

			// events query and tail.
			rows := jsonLines(t, run(t, cmd("events", "query", "--aggregate-type", "BankAccount", "--json")...))
			if want := 5 + parked - 1; len(rows) != want {
				t.Fatalf("%d BankAccount events, want %d", len(rows), want)
			}
			rows = jsonLines(t, run(t, cmd("events", "query", "--type", "MoneyDeposited", "--json")...))
			if len(rows) != 1 || rows[0]["eventId"] != f.alice[1].EventID {
				t.Fatalf("MoneyDeposited: %v", rows)
			}
			rows = jsonLines(t, run(t, cmd("events", "tail", "-n", "2", "--json")...))
			if len(rows) != 2 {
				t.Fatalf("tail -n 2: %v", rows)
			}
			if f.appendEvent != nil {
				followTail(t, f, cmd)
			}

			// projections rebuild --watch: replays and comes back to the same state.
			out = run(t, cmd("projections", "rebuild", "accounts", "--watch", "--interval", "50ms")...)
			if !strings.Contains(out, "accounts: rebuilt") || !regexpLine(out, `accounts\s+blocked`) {
				t.Fatalf("rebuild --watch:\n%s", out)
			}

			// The store-level commands: direct only.
			if !f.direct {
				for _, c := range [][]string{{"export"}, {"import"}, {"migrate", "--to", "postgres"}} {
					if _, err := try(t, nil, cmd(c...)...); !errors.Is(err, ErrUnsupported) {
						t.Fatalf("%v over HTTP: %v", c, err)
					}
				}
				return
			}
			file := filepath.Join(t.TempDir(), "events.jsonl")
			if f.noFeed {
				if _, err := try(t, nil, cmd("export", "-o", file)...); err == nil || !strings.Contains(err.Error(), "no global log") {
					t.Fatalf("export from DynamoDB: %v", err)
				}
				return
			}
			run(t, cmd("export", "-o", file)...)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			exported := jsonLines(t, string(b))
			if len(exported) < f.events {
				t.Fatalf("exported %d events of %d", len(exported), f.events)
			}
			into := []string{"--store", "embedded", "--data-dir", t.TempDir(), "--in", file}
			out = run(t, append([]string{"import"}, into...)...)
			n := len(exported)
			if !regexpLine(out, `imported \d+ events: \d+ written, 0 already there`) || !strings.Contains(out, "verified") {
				t.Fatalf("import:\n%s", out)
			}
			if c := numbers(t, importedRE, out); c[0] != n || c[1] != n {
				t.Fatalf("import of %d: %v", n, c)
			}
			out = run(t, append([]string{"import"}, into...)...)
			if c := numbers(t, importedRE, out); c[1] != 0 || c[2] != n {
				t.Fatalf("second import of %d: %v", n, c)
			}
		})
	}
}

// followTail runs `events tail --follow` and sees an event appended while it runs.
func followTail(t *testing.T, f fixture, cmd func(...string) []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- ctl(ctx, nil, out, &syncBuffer{}, cmd("events", "tail", "-n", "1", "--follow", "--json", "--interval", "100ms")...)
	}()
	waitFor(t, func() bool { return len(jsonLines(t, out.String())) >= 1 })
	version := f.appendEvent(t)
	waitFor(t, func() bool {
		rows := jsonLines(t, out.String())
		last := rows[len(rows)-1]
		return last["aggregateId"] == "alice" && str(last["version"]) == version
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail --follow: %v", err)
	}
	if rows := jsonLines(t, out.String()); len(rows) != 2 {
		t.Fatalf("tail --follow printed %d events, want the last one and the new one:\n%s", len(rows), out.String())
	}
}

// waitFor polls with a generous deadline (the machine is shared and slow).
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 3 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var importedRE = regexp.MustCompile(`imported (\d+) events: (\d+) written, (\d+) already there`)

func regexpLine(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

// A target that differs from the source after the copy fails the verification loudly:
// a MISMATCH line per differing stream and exit status 1.
func TestMigrateReportsDifferences(t *testing.T) {
	f := embeddedFixture(t)
	for _, tc := range []struct {
		name   string
		stream eventstore.Stream
		want   string
	}{
		{"an event added to a copied stream", eventstore.Stream{Type: bank.AggregateType, ID: "alice"}, "MISMATCH BankAccount#alice: source 3 events"},
		{"a stream the source does not have", eventstore.Stream{Type: bank.AggregateType, ID: "stranger"}, "target holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			args := append([]string{"migrate", "--to", "embedded", "--target-data-dir", target}, f.args...)
			if out := run(t, args...); !verifiedRE.MatchString(out) {
				t.Fatalf("migrate:\n%s", out)
			}
			s, err := boltstore.Open(filepath.Join(target, "ecmstore.db"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Append(context.Background(), tc.stream, eventstore.Any, []event.Event{event.MustNew(bank.MoneyDeposited, map[string]int{"amount": 1})})
			if cerr := s.Close(); err != nil || cerr != nil {
				t.Fatal(err, cerr)
			}
			out, err := try(t, nil, args...)
			if err == nil || !strings.Contains(err.Error(), "verification FAILED") || !strings.Contains(out+err.Error(), tc.want) {
				t.Fatalf("migrate over a changed target: %v\n%s", err, out)
			}
		})
	}
}
