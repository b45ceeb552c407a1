package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
)

// The lease tests run on the in-process document stores; the docstore conformance suite
// (doctest) proves the compare-and-set a takeover relies on for every backend, and the
// end-to-end suite (apitest UnversionedCommandsRetriedWithKey) runs keyed retries on all.
var leaseDocs = []struct {
	name string
	open func(t *testing.T) docstore.Store
}{
	{"memory", func(*testing.T) docstore.Store { return memstore.NewDocs() }},
	{"embedded", func(t *testing.T) docstore.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "events.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s.Docs()
	}},
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// slowCommand is a route whose handler blocks until released: the injected hook that
// makes a request as slow as a test needs, without sleeping.
type slowCommand struct {
	runs    atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func newSlowCommand() *slowCommand {
	return &slowCommand{entered: make(chan struct{}, 64), release: make(chan struct{})}
}

func (c *slowCommand) module() Module {
	return Module{Name: "slow", Routes: func(s *Server) {
		s.Handle("POST /slow/{id}", func(w http.ResponseWriter, r *http.Request) error {
			n := c.runs.Add(1)
			c.entered <- struct{}{}
			<-c.release
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, err := fmt.Fprintf(w, `{"run":%d}`, n)
			return err
		})
	}}
}

func (c *slowCommand) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-c.entered:
	case <-time.After(time.Minute):
		t.Fatal("the command never started")
	}
}

const (
	testLease = time.Minute // on the fake clock
	slowPath  = "/slow/x"
	slowBody  = `{}`
	slowActor = "tester"
)

// process is one server over the shared document store, as one Lambda instance or one
// local server would be.
func process(docs docstore.Store, clock *fakeClock, cmd *slowCommand, renew time.Duration) *Server {
	return New(Deps{Store: memstore.New(), Docs: docs, Now: clock.Now, Logger: slog.New(slog.DiscardHandler),
		IdempotencyLease: testLease, IdempotencyRenew: renew, Modules: []Module{cmd.module()}})
}

func send(s *Server, key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, slowPath, strings.NewReader(slowBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Actor", slowActor)
	req.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// sendWithin is send for a request that must not block: a retry that ran the slow
// command again would wait for its release.
func sendWithin(t *testing.T, s *Server, key string) *httptest.ResponseRecorder {
	t.Helper()
	ch := make(chan *httptest.ResponseRecorder, 1)
	go func() { ch <- send(s, key) }()
	select {
	case rec := <-ch:
		return rec
	case <-time.After(time.Minute):
		t.Fatal("the retry did not answer within a minute: it ran the command again")
		return nil
	}
}

func errorCode(rec *httptest.ResponseRecorder) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return e.Error.Code
}

func wantInProgress(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusConflict || errorCode(rec) != "request_in_progress" {
		t.Fatalf("%s: %d %s, want 409 request_in_progress", what, rec.Code, rec.Body)
	}
}

func readRecord(t *testing.T, docs docstore.Store, key string) idempotencyRecord {
	t.Helper()
	var rec idempotencyRecord
	if _, err := docs.Get(context.Background(), idempotencyCollection, idempotencyID(slowActor, http.MethodPost, slowPath, key), &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// A request slower than the lease is not run again by a retry: the retry answers 409
// request_in_progress while it runs, and once it answered, the retry gets its answer.
// Within the process running it, that holds whatever the clock says (no renewal at all
// here); elsewhere, because the running process renews its lease.
func TestIdempotencyLeaseOutlivesSlowRequest(t *testing.T) {
	for _, d := range leaseDocs {
		for _, tc := range []struct {
			name           string
			renew          time.Duration // of the running process
			retryElsewhere bool
		}{
			{"retry in the running process, lease never renewed", time.Hour, false},
			{"retry in another process, lease renewed", 5 * time.Millisecond, true},
		} {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				docs := d.open(t)
				clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
				cmd := newSlowCommand()
				runner := process(docs, clock, cmd, tc.renew)
				retrier := runner
				if tc.retryElsewhere {
					retrier = process(docs, clock, cmd, tc.renew)
				}
				first := make(chan *httptest.ResponseRecorder, 1)
				go func() { first <- send(runner, "k") }()
				cmd.waitEntered(t)
				claimed := readRecord(t, docs, "k")

				clock.Advance(2 * testLease) // by the first claim, the owner is long dead
				if tc.retryElsewhere {
					deadline := time.Now().Add(time.Minute)
					for !readRecord(t, docs, "k").LeaseUntil.After(clock.Now()) {
						if time.Now().After(deadline) {
							t.Fatal("the running process never renewed its lease")
						}
						time.Sleep(time.Millisecond)
					}
				} else if rec := readRecord(t, docs, "k"); rec.LeaseUntil != claimed.LeaseUntil || clock.Now().Before(rec.leaseEnd()) {
					t.Fatalf("lease %v renewed or live at %v; this case needs it lapsed", rec.LeaseUntil, clock.Now())
				}
				wantInProgress(t, "retry during the slow request", sendWithin(t, retrier, "k"))
				if n := cmd.runs.Load(); n != 1 {
					t.Fatalf("the command ran %d times, want once", n)
				}

				close(cmd.release)
				var a *httptest.ResponseRecorder
				select {
				case a = <-first:
				case <-time.After(time.Minute):
					t.Fatal("the slow request never answered")
				}
				if a.Code != http.StatusCreated || a.Header().Get("Idempotent-Replayed") != "" {
					t.Fatalf("first answer: %d replayed=%q %s", a.Code, a.Header().Get("Idempotent-Replayed"), a.Body)
				}
				b := send(retrier, "k")
				if b.Code != http.StatusCreated || b.Header().Get("Idempotent-Replayed") != "true" || b.Body.String() != a.Body.String() {
					t.Fatalf("retry after the answer: %d replayed=%q %s, want the first answer %s replayed",
						b.Code, b.Header().Get("Idempotent-Replayed"), b.Body, a.Body)
				}
				if n := cmd.runs.Load(); n != 1 {
					t.Fatalf("the command ran %d times, want once", n)
				}
			})
		}
	}
}

// A pending record whose owner died (its lease lapsed, nobody renews it) is taken over by
// exactly one of several retries racing from different processes; the others answer 409
// and, once it answered, get its answer. A live claim is taken over by none. Records
// written before leases (no owner, no leaseUntil) hold for 30 s after createdAt.
func TestIdempotencyLapsedLeaseTakenOverOnce(t *testing.T) {
	const processes = 8
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fp := sha256.Sum256([]byte(slowBody))
	pending := idempotencyRecord{State: "pending", Fingerprint: hex.EncodeToString(fp[:]),
		ExpiresAt: now.Add(idempotencyTTL).Unix()}
	with := func(created, leaseUntil time.Time, owner string) idempotencyRecord {
		r := pending
		r.CreatedAt, r.LeaseUntil, r.Owner = created, leaseUntil, owner
		return r
	}
	for _, d := range leaseDocs {
		for _, tc := range []struct {
			name     string
			record   idempotencyRecord
			takeOver bool
		}{
			{"lease lapsed", with(now.Add(-time.Minute), now.Add(-time.Second), "dead"), true},
			{"lease live", with(now.Add(-time.Minute), now.Add(time.Second), "alive"), false},
			{"record without lease, 31s old", with(now.Add(-31*time.Second), time.Time{}, ""), true},
			{"record without lease, 29s old", with(now.Add(-29*time.Second), time.Time{}, ""), false},
		} {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				docs := d.open(t)
				clock := &fakeClock{now: now}
				cmd := newSlowCommand()
				id := idempotencyID(slowActor, http.MethodPost, slowPath, "k")
				if err := docs.Update(context.Background(), func(ctx context.Context, tx docstore.Tx) error {
					return tx.Put(ctx, idempotencyCollection, id, tc.record)
				}); err != nil {
					t.Fatal(err)
				}
				servers := make([]*Server, processes)
				for i := range servers {
					servers[i] = process(docs, clock, cmd, 5*time.Millisecond)
				}
				answers := make(chan *httptest.ResponseRecorder, processes)
				start := make(chan struct{})
				for _, s := range servers {
					go func() {
						<-start
						answers <- send(s, "k")
					}()
				}
				close(start)

				refused := processes
				if tc.takeOver {
					refused--
					cmd.waitEntered(t) // the one that took over runs until released
				}
				for range refused {
					select {
					case a := <-answers:
						wantInProgress(t, "racing retry", a)
					case <-time.After(time.Minute):
						t.Fatal("a retry never answered")
					}
				}
				if n := int(cmd.runs.Load()); n != processes-refused {
					t.Fatalf("%d retries ran the command, want %d", n, processes-refused)
				}
				close(cmd.release)
				if !tc.takeOver {
					return
				}
				var a *httptest.ResponseRecorder
				select {
				case a = <-answers:
				case <-time.After(time.Minute):
					t.Fatal("the retry that took over never answered")
				}
				if a.Code != http.StatusCreated || a.Header().Get("Idempotent-Replayed") != "" {
					t.Fatalf("taken-over run: %d %s", a.Code, a.Body)
				}
				for i, s := range servers {
					if b := send(s, "k"); b.Code != http.StatusCreated || b.Header().Get("Idempotent-Replayed") != "true" || b.Body.String() != a.Body.String() {
						t.Fatalf("process %d after the answer: %d replayed=%q %s", i, b.Code, b.Header().Get("Idempotent-Replayed"), b.Body)
					}
				}
				if n := cmd.runs.Load(); n != 1 {
					t.Fatalf("the command ran %d times, want once", n)
				}
			})
		}
	}
}
