package ecmctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api/apitest"
	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/migrate"
	"github.com/ecmstore/ecmstore/shared/system"
)

var errInjected = errors.New("injected fault")

// faulty stands between migrate and its target and, from the after-th append on, fails
// the way a real interruption does.
type faulty struct {
	eventstore.Store
	after  int64
	mode   string // "fail": refused; "lost-ack": written, answer lost; "cancel": the operator's Ctrl-C
	n      atomic.Int64
	cancel context.CancelFunc
}

func (f *faulty) Append(ctx context.Context, s eventstore.Stream, exp int64, evs []event.Event) ([]event.Event, error) {
	if f.n.Add(1) < f.after {
		return f.Store.Append(ctx, s, exp, evs)
	}
	switch f.mode {
	case "lost-ack":
		if _, err := f.Store.Append(ctx, s, exp, evs); err != nil {
			return nil, err
		}
		return nil, errInjected
	case "cancel":
		f.cancel()
		return f.Store.Append(ctx, s, exp, evs)
	}
	return nil, errInjected
}

// dynamoTarget points the environment at DynamoDB Local and fauxqs with fresh table and
// queue names, as `make run-emulated` does.
func dynamoTarget(t *testing.T) (args []string, cfg func() system.Config) {
	ddb, q := emulator.DynamoDB(t), emulator.SQS(t)
	s := fmt.Sprint(time.Now().UnixNano())
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB": string(ddb), "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": string(ddb), "AWS_ENDPOINT_URL_SQS": string(q),
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
		"EVENTS_TABLE": "events-" + s, "READMODEL_TABLE": "models-" + s, "INDEX_TABLE": "index-" + s,
		"DLQ_NAME": "dlq-" + s, "SAGA_DLQ_NAME": "saga-dlq-" + s,
	} {
		t.Setenv(k, v)
	}
	return []string{"--to", "dynamodb"}, func() system.Config {
		t.Setenv("EVENT_STORE", "dynamodb")
		c, err := system.FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if !c.StreamPoller {
			t.Fatalf("config %+v: the stream poller should project the migrated events", c)
		}
		return c
	}
}

var (
	copiedRE   = regexp.MustCompile(`(\d+) events read, (\d+) written, (\d+) already in the target`)
	verifiedRE = regexp.MustCompile(`verified (\d+) streams, (\d+) events: every stream's count and SHA-256 digest match`)
	stoppedRE  = regexp.MustCompile(`migrate stopped after (\d+) events written \(run it again to resume\)`)
)

func numbers(t *testing.T, re *regexp.Regexp, s string) []int {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("output does not match %s:\n%s", re, s)
	}
	out := make([]int, len(m)-1)
	for i := range out {
		out[i], _ = strconv.Atoi(m[i+1])
	}
	return out
}

// The headline: a store of thousands of events from the seeds' domains moves from the
// embedded store to DynamoDB Local, PostgreSQL and another embedded store. The first
// run is cut short (a refused write, a write whose answer was lost, the operator's
// Ctrl-C); the second resumes and verifies; re-running, even from the first event,
// writes nothing. Then the system opened on the target projects the migrated events into
// read models equal to the source's, leaves the migrated streams untouched, and passes
// the HTTP acceptance suite.
func TestMigrateResumesVerifiesAndServes(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T) ([]string, func() system.Config)
		mode   string
		after  int64
	}{
		{"dynamodb", dynamoTarget, "lost-ack", 150},
		{"postgres", func(t *testing.T) ([]string, func() system.Config) {
			dsn := emulator.Postgres(t)
			return []string{"--to", "postgres", "--target-database-url", dsn}, func() system.Config {
				return system.Config{EventStore: "postgres", DatabaseURL: dsn, SnapshotEvery: 3}
			}
		}, "cancel", 60},
		{"embedded", func(t *testing.T) ([]string, func() system.Config) {
			dir := t.TempDir()
			return []string{"--to", "embedded", "--target-data-dir", dir}, func() system.Config {
				return system.Config{EventStore: "embedded", DataDir: dir, SnapshotEvery: 3}
			}
		}, "fail", 77},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := seeded(t)
			if seed.events < 3000 {
				t.Fatalf("the seed holds %d events, want thousands", seed.events)
			}
			targetArgs, targetConfig := tc.target(t)
			args := append([]string{"migrate", "--from", "embedded", "--data-dir", src}, targetArgs...)

			// 1. Cut short.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := &faulty{after: tc.after, mode: tc.mode, cancel: cancel}
			a := &app{wrapTarget: func(s eventstore.Store) eventstore.Store { f.Store = s; return f }}
			var out, errOut bytes.Buffer
			err := ctl(ctx, a, &out, &errOut, args...)
			t.Logf("interrupted run: %v\n%s", err, out.String())
			if err == nil {
				t.Fatal("the interrupted migrate succeeded")
			}
			first := numbers(t, stoppedRE, err.Error())[0]
			if first == 0 || first >= seed.events {
				t.Fatalf("interrupted after %d of %d events: not midway", first, seed.events)
			}

			// 2. Resumed: completes and verifies.
			out2 := run(t, args...)
			c := numbers(t, copiedRE, out2)
			v := numbers(t, verifiedRE, out2)
			if v[1] != seed.events {
				t.Fatalf("verified %d events, the source holds %d", v[1], seed.events)
			}
			if c[1] == 0 || first+c[1] > seed.events {
				t.Fatalf("%d events written, then %d on resuming, for %d in the source", first, c[1], seed.events)
			}
			switch tc.mode {
			case "lost-ack": // the write whose answer was lost is recognised, not repeated
				if c[2] == 0 {
					t.Fatal("the resumed run found nothing already in the target")
				}
			case "fail": // every event written exactly once over the two runs
				if first+c[1] != seed.events {
					t.Fatalf("%d + %d events written for %d in the source", first, c[1], seed.events)
				}
			}

			// 3. Again, and again from the first event: nothing is written twice.
			c = numbers(t, copiedRE, run(t, args...))
			if c[1] != 0 {
				t.Fatalf("a third run wrote %d events", c[1])
			}
			c = numbers(t, copiedRE, run(t, append(args, "--restart")...))
			if c[0] != seed.events || c[1] != 0 || c[2] != seed.events {
				t.Fatalf("a run from the first event read %d, wrote %d, found %d of %d", c[0], c[1], c[2], seed.events)
			}

			// 4. The system on the target: read models built from the migrated events. On
			// DynamoDB Local the stream poller projects the whole backlog first, minutes on a
			// loaded machine: the deadlines are generous, the assertions exact.
			sys := start(t, targetConfig())
			cl := &apitest.Client{T: t, H: sys.Handler}
			for id, want := range seed.balances {
				cl.Eventually(15*time.Minute, func() string {
					if g := cl.Do("GET", "/accounts/"+id, nil); g.Num("balance") != want {
						return fmt.Sprintf("account %s on the target: %d %s, want balance %s", id, g.Status, g.Raw, want)
					}
					return ""
				})
			}
			// Every migrated event is found by GET /events (on DynamoDB, once the stream has
			// filled the index).
			srcEvents := sourceEvents(t, src)
			cl.Eventually(15*time.Minute, func() string {
				found := map[string]bool{}
				err := eachEvent(context.Background(), direct{sys: sys}, eventstore.Filter{}, func(e event.Event) bool {
					found[e.EventID] = true
					return true
				})
				if err != nil {
					return err.Error()
				}
				var missing []string
				for _, e := range srcEvents {
					if !found[e.EventID] {
						missing = append(missing, fmt.Sprintf("%s v%d %s at %s", eventstore.StreamOf(e), e.Version, e.EventType,
							e.Timestamp.Format(time.RFC3339Nano)))
					}
				}
				if len(missing) > 0 {
					return fmt.Sprintf("%d of the %d migrated events not found by a query, e.g. %v", len(missing), len(srcEvents),
						missing[:min(5, len(missing))])
				}
				return ""
			})
			// Projecting them (the order saga included) appended nothing to them.
			if _, err := migrate.Verify(context.Background(), sys.Raw, digestOf(t, src), nil); err != nil {
				t.Fatalf("after the target's projections ran: %v", err)
			}

			// 5. The acceptance flows pass on the target.
			apitest.Run(t, func(*testing.T) http.Handler { return sys.Handler }, apitest.Validate(apitest.Contract(t)))
		})
	}
}
