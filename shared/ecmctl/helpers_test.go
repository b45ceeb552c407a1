package ecmctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/migrate"
	"github.com/ecmstore/ecmstore/shared/system"
	"github.com/ecmstore/ecmstore/shared/system/embedded"
	"github.com/ecmstore/ecmstore/shared/system/postgres"
)

func TestMain(m *testing.M) { emulator.Main(m) }

// backends links the embedded and PostgreSQL backends into the systems the tests open, as
// openSystem does for the CLI.
var backends = []system.Option{embedded.Backend(), postgres.Backend()}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
}

// syncBuffer is written by a command running in another goroutine (events tail -f).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ctl runs ecmctl in process, as `ecmctl args…` would, and returns what it printed.
func ctl(ctx context.Context, a *app, out, errOut io.Writer, args ...string) error {
	if a == nil {
		a = &app{}
	}
	root := newRoot(a)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetIn(bytes.NewReader(nil))
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// run runs ecmctl and returns its standard output, failing the test on an error.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := try(t, nil, args...)
	if err != nil {
		t.Fatalf("ecmctl %v: %v\n%s", args, err, out)
	}
	return out
}

// try runs ecmctl and returns its output and error.
func try(t *testing.T, a *app, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := ctl(ctx, a, &out, &errOut, args...)
	t.Logf("ecmctl %v\n%s%s", args, out.String(), tailOf(errOut.String(), 400))
	return out.String(), err
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// start opens a system and runs its background loops for the test's duration; its
// warnings go to the test's output.
func start(t *testing.T, c system.Config) *system.System {
	t.Helper()
	sys, err := system.Open(context.Background(), c, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), backends...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := sys.Start(ctx)
	t.Cleanup(func() { cancel(); <-done; _ = sys.Close() })
	return sys
}

// The seeded store: thousands of events from the seeds' four domains, produced through
// the system's HTTP handler (commands, the order saga's reactions, idempotency, actors),
// built once per test process and copied for every test that migrates it.
var seed struct {
	once     sync.Once
	dir      string
	err      error
	events   int
	balances map[string]string // account id → balance after the workload
}

const (
	seedAccounts = 100
	seedMoves    = 24
	seedContexts = 60
	seedTasks    = 30
	seedOrders   = 40
)

// seeded returns a fresh copy of the seeded embedded store's data directory.
func seeded(t *testing.T) string {
	t.Helper()
	seed.once.Do(func() {
		seed.dir, seed.err = os.MkdirTemp("", "ecmctl-seed-")
		if seed.err == nil {
			seed.err = buildSeed(t, seed.dir)
		}
	})
	if seed.err != nil {
		t.Fatalf("seed store: %v", seed.err)
	}
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(seed.dir, "ecmstore.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ecmstore.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildSeed(t *testing.T, dir string) (err error) {
	sys, err := system.Open(context.Background(), system.Config{EventStore: "embedded", DataDir: dir, SnapshotEvery: 10}, quiet(), backends...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := sys.Start(ctx)
	defer func() {
		cancel()
		<-done
		if cerr := sys.Close(); err == nil {
			err = cerr
		}
	}()
	c := &apitest.Client{T: t, H: sys.Handler}
	seed.balances = map[string]string{}
	for i := range seedAccounts {
		id := fmt.Sprintf("acc-%03d", i)
		c.Must(201, "POST", "/accounts/"+id+"/open", map[string]any{"initialDeposit": 1000 + i}, "X-Actor", "teller")
		for j := range seedMoves {
			if j%3 == 2 {
				c.Must(200, "POST", "/accounts/"+id+"/withdraw", map[string]any{"amount": json.Number(fmt.Sprintf("%d.%02d", j, i%100))},
					"Idempotency-Key", fmt.Sprintf("w-%s-%d", id, j))
			} else {
				c.Must(200, "POST", "/accounts/"+id+"/deposit", map[string]any{"amount": 10 + j}, "X-Actor", "atm")
			}
		}
		seed.balances[id] = c.Must(200, "GET", "/accounts/"+id+"?consistent=true", nil).Num("balance")
	}
	for i := range seedContexts {
		p := fmt.Sprintf("/contexts/user-%03d", i)
		c.Must(201, "POST", p, map[string]any{"preferences": map[string]any{"theme": "light", "lang": "en"}}, "X-Actor", "user")
		for j := range 4 {
			c.Must(200, "PATCH", p, map[string]any{"preferences": map[string]any{"n": j, "tz": "UTC"}})
		}
	}
	for i := range seedTasks {
		p := fmt.Sprintf("/tasks/task-%03d", i)
		c.Must(201, "POST", p+"/create", map[string]any{"projectId": fmt.Sprintf("proj-%d", i%4), "title": "Task " + p}, "X-Actor", "alice")
		c.Must(200, "POST", p+"/assign", map[string]any{"assignee": "bob"}, "X-Actor", "alice")
		c.Must(200, "POST", p+"/request-review", map[string]any{"reviewer": "carol"}, "X-Actor", "bob")
		c.Must(200, "POST", p+"/approve", nil, "X-Actor", "carol")
		c.Must(200, "POST", p+"/merge", nil, "X-Actor", "bob")
	}
	for i := range 5 {
		c.Must(200, "POST", fmt.Sprintf("/products/prod-%d/stock", i), map[string]any{"quantity": 20})
	}
	c.Must(201, "POST", "/accounts/buyer/open", map[string]any{"initialDeposit": 100000})
	for i := range seedOrders {
		id := fmt.Sprintf("ord-%03d", i)
		c.Must(201, "POST", "/orders/"+id+"/place", map[string]any{"customerId": fmt.Sprintf("cust-%d", i%7), "paymentAccountId": "buyer",
			"items": []any{map[string]any{"productId": fmt.Sprintf("prod-%d", i%5), "quantity": 1 + i%3, "price": 9.99}}},
			"X-Correlation-Id", "corr-"+id)
	}
	// The saga confirms or cancels every order; then the confirmed ones ship.
	for i := range seedOrders {
		id := fmt.Sprintf("ord-%03d", i)
		var status string
		c.Eventually(2*time.Minute, func() string {
			status, _ = c.Do("GET", "/orders/"+id+"?consistent=true", nil).Body["status"].(string)
			if status == "CONFIRMED" || status == "CANCELLED" {
				return ""
			}
			return id + " is " + status
		})
		if status == "CONFIRMED" && i%2 == 0 {
			c.Must(200, "POST", "/orders/"+id+"/ship", nil)
		}
	}
	if err := sys.Runner.CatchUpAll(ctx); err != nil {
		return err
	}
	seed.balances["buyer"] = c.Must(200, "GET", "/accounts/buyer?consistent=true", nil).Num("balance")
	seed.events, err = countEvents(sys)
	return err
}

func countEvents(sys *system.System) (int, error) {
	n := 0
	err := migrate.ReadFeed(context.Background(), sys.Feed, func(event.Event) error { n++; return nil })
	return n, err
}

// sourceEvents reads every event of an embedded data directory.
func sourceEvents(t *testing.T, dir string) []event.Event {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(dir, "ecmstore.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []event.Event
	if err := migrate.ReadFeed(context.Background(), s, func(e event.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// digestOf digests every stream of an embedded data directory.
func digestOf(t *testing.T, dir string) *migrate.Manifest {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(dir, "ecmstore.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := migrate.NewManifest()
	if err := migrate.ReadFeed(context.Background(), s, m.Add); err != nil {
		t.Fatal(err)
	}
	return m
}
