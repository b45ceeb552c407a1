package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ecmstore/ecmstore/shared/bank"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/money"
	"github.com/ecmstore/ecmstore/shared/orders"
	"github.com/ecmstore/ecmstore/shared/system"
)

// Target is one backend under test. Base stays open across processes (and schedules):
// a crash abandons a System, never the store under it.
type Target struct {
	Name   string
	Config system.Config
	// Base is the opened backend, without faults: the checker reads it.
	Base system.Backend
	// Wrap returns the backend a new process runs on. Default: Base with the Store and
	// Docs wrappers.
	Wrap func(ctx context.Context, p *Process) (system.Backend, error)
	// Pump delivers new events to the projections (and the saga) of a process and
	// reports whether anything moved. Default: the system's feed runner.
	Pump func(ctx context.Context, sys *system.System, s *Schedule) (bool, error)
	// Settle, when set, runs after Pump has nothing left at quiescence, with faults off
	// (DynamoDB: catch every stream the workload touched up from the store).
	Settle func(ctx context.Context, sys *system.System, streams []eventstore.Stream) error
	Logger *slog.Logger
}

// Workload sizes one schedule.
type Workload struct {
	Accounts, Products, Commands int
	// Contenders × PerContender unversioned, unkeyed deposits race on one account at the
	// end (faults off): none may be refused with 409.
	Contenders, PerContender int
	MaxTries                 int // per command; default 20
	Faults                   Config
}

// DefaultFaults is the mix the suite runs.
func DefaultFaults() Config {
	return Config{
		Default: Rates{ErrorBefore: 0.02, LostResponse: 0.02, Throttle: 0.01, Timeout: 0.01, Crash: 0.008},
		Ops: map[string]Rates{
			// The client side: a request that never arrives, an answer that never comes back.
			"http.request": {ErrorBefore: 0.03, LostResponse: 0.05},
		},
	}
}

// Result is one schedule's outcome.
type Result struct {
	Seed       uint64
	Schedule   *Schedule
	History    *History
	Violations []Violation
	Processes  int
}

// Report is the failure report: seed, reproduction, crash points, violations.
func (r *Result) Report(target string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s seed %d: %d invariant violation(s)\n", target, r.Seed, len(r.Violations))
	fmt.Fprintf(&b, "  reproduce: FAULT_SEED=%d go test -race -count=1 ./shared/faults -run 'TestFaults/%s$' -v"+
		"   (FAULT_TRACE=1 lists every injected fault)\n", r.Seed, target)
	fmt.Fprintf(&b, "  processes: %d; faults:", r.Processes)
	counts := r.Schedule.Counts()
	for k := ErrorBefore; k < numKinds; k++ {
		fmt.Fprintf(&b, " %s=%d", k, counts[k])
	}
	b.WriteString("\n")
	for _, c := range r.Schedule.Crashes() {
		fmt.Fprintf(&b, "  crash at %s\n", c)
	}
	if os.Getenv("FAULT_TRACE") != "" {
		for _, d := range r.Schedule.Decisions() {
			fmt.Fprintf(&b, "  fault %s#%d %s performed=%v during %s\n", d.Op, d.N, d.Kind, d.Performed, d.During)
		}
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  VIOLATION %s\n", v)
	}
	return b.String()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// run is one schedule in progress.
type run struct {
	t     *Target
	w     Workload
	sched *Schedule
	clock *clock
	pid   int
	proc  *Process
	sys   *system.System
	hist  *History
	cmds  int
}

// Run runs one seeded schedule against t and checks the result.
func (t *Target) Run(ctx context.Context, seed uint64, w Workload) (*Result, error) {
	if w.MaxTries == 0 {
		w.MaxTries = 20
	}
	if t.Logger == nil {
		t.Logger = slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	}
	r := &run{t: t, w: w, sched: NewSchedule(seed, w.Faults), clock: &clock{t: time.Now().UTC()},
		hist: &History{Replay: map[string]json.RawMessage{}, ReadModel: map[string]json.RawMessage{}}}
	if err := r.restart(ctx); err != nil {
		return nil, err
	}
	if err := r.workload(ctx); err != nil {
		return nil, err
	}
	var settle []Violation
	if err := r.quiesce(ctx); err != nil {
		// With faults off every step must succeed: a failure here is the product's.
		settle = append(settle, Violation{Invariant: InvSettle, Detail: err.Error()})
	}
	if err := r.collect(ctx); err != nil {
		return nil, err
	}
	vs := append(settle, Check(r.hist)...)
	return &Result{Seed: seed, Schedule: r.sched, History: r.hist, Violations: vs, Processes: r.pid}, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// restart abandons the current process (its caches and repositories; the store stays
// open) and assembles a new one. Time moves on by a minute, as a restart takes a while:
// what the dead process left pending goes stale.
func (r *run) restart(ctx context.Context) error {
	r.pid++
	r.proc = NewProcess(r.sched, r.pid)
	var b system.Backend
	var err error
	if r.t.Wrap != nil {
		b, err = r.t.Wrap(ctx, r.proc)
		if err != nil {
			return fmt.Errorf("process %d: %w", r.pid, err)
		}
	} else {
		b = r.t.Base
		b.Store = Backend(r.t.Base.Store, r.proc)
		if b.Feed != nil {
			b.Feed = b.Store.(eventstore.Feed)
		}
		b.Docs = Docs(r.t.Base.Docs, r.proc)
	}
	b.Close = nil // a crash never closes the store
	r.sys = system.Assemble(r.t.Config, b, r.t.Logger)
	r.sys.Handler.Now = r.clock.Now
	// A claim lapses at the client's back-off step (a request_in_progress answer moves the
	// clock a minute), and renewals, which tick in real time, stay off the seeded
	// operation order in practice.
	r.sys.Handler.IdempotencyLease = time.Minute
	r.clock.advance(time.Minute)
	return nil
}

func (r *run) rnd() *rand.Rand {
	var out *rand.Rand
	r.sched.Rand(func(x *rand.Rand) { out = rand.New(rand.NewPCG(x.Uint64(), x.Uint64())) })
	return out
}

// serve sends one request through the client's transport (itself under the schedule:
// "http.request" ErrorBefore never arrives, LostResponse arrives and the answer is lost).
func (r *run) serve(ctx context.Context, method, path string, body any, hdr map[string]string) (Answer, bool) {
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	var a Answer
	var got bool
	err := r.proc.Do(ctx, "http.request", func(ctx context.Context) error {
		req := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Actor", "fault-client")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		r.sys.Handler.ServeHTTP(rec, req)
		a = Answer{Status: rec.Code, Version: rec.Header().Get("x-ecm-version"), Body: rec.Body.String(),
			Replayed: rec.Header().Get("Idempotent-Replayed") == "true"}
		var eb struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if a.Status >= 400 && json.Unmarshal(rec.Body.Bytes(), &eb) == nil {
			a.Code = eb.Error.Code
		}
		got = true
		return nil
	})
	if !got {
		return a, false
	}
	if err != nil || r.proc.Crashed() {
		// The answer was produced but the connection (or the process) died with it.
		a.Lost = true
	}
	return a, true
}

func retryable(a Answer) bool {
	return a.Lost || a.Status >= 500 || a.Code == "request_in_progress"
}

// command sends c until it gets an answer it need not retry, restarting crashed
// processes in between, and records every answer.
func (r *run) command(ctx context.Context, c *Command, method, path string, body any) {
	r.hist.Commands = append(r.hist.Commands, c)
	r.sched.SetDuring(c.String())
	hdr := map[string]string{"X-Correlation-Id": c.Correlation}
	if c.Key != "" {
		hdr["Idempotency-Key"] = c.Key
	}
	for try := 0; try < r.w.MaxTries; try++ {
		if r.proc.Crashed() {
			if err := r.restart(ctx); err != nil {
				return
			}
		}
		if c.IfMatch && (try == 0 || hdr["If-Match"] == "") {
			v, ok := r.version(ctx, streamOf(c.Kind, c.Target))
			if !ok {
				continue
			}
			hdr["If-Match"] = fmt.Sprintf(`"%d"`, v)
		}
		a, ok := r.serve(ctx, method, path, body, hdr)
		if !ok {
			continue // never arrived
		}
		c.Answers = append(c.Answers, a)
		if !retryable(a) {
			c.Final = &c.Answers[len(c.Answers)-1]
			return
		}
		if a.Code == "request_in_progress" {
			r.clock.advance(time.Minute) // the client backs off; a dead request goes stale
		}
	}
	// Gave up: nothing was acknowledged. With a fault rate of a few percent per
	// operation, every try failing means the server is stuck (the checker says so).
	c.GaveUp = true
}

// version reads an aggregate's current version the way a client would (GET ?consistent).
func (r *run) version(ctx context.Context, st eventstore.Stream) (int64, bool) {
	path := map[string]string{bank.AggregateType: "/accounts/", orders.ProductType: "/products/",
		orders.AggregateType: "/orders/"}[st.Type] + st.ID + "?consistent=true"
	a, ok := r.serve(ctx, http.MethodGet, path, nil, nil)
	if !ok || a.Lost || a.Status != 200 {
		return 0, false
	}
	var v int64
	_, err := fmt.Sscan(a.Version, &v)
	return v, err == nil
}

func (r *run) newCommand(kind, target string) *Command {
	r.cmds++
	corr := fmt.Sprintf("f%d-c%d", r.sched.Seed, r.cmds)
	return &Command{Seq: r.cmds, Kind: kind, Target: target, Key: corr, Correlation: corr}
}

// pump delivers what is new to the projections; errors are the schedule's doing and are
// left for a later pump (or for settling) to make good.
func (r *run) pump(ctx context.Context) {
	r.sched.SetDuring("projections and saga")
	for range 20 {
		if r.proc.Crashed() {
			return
		}
		var moved bool
		var err error
		if r.t.Pump != nil {
			moved, err = r.t.Pump(ctx, r.sys, r.sched)
		} else {
			moved, err = r.sys.Runner.Step(ctx)
		}
		if err != nil || !moved {
			return
		}
	}
}

func (r *run) workload(ctx context.Context) error {
	rnd := r.rnd()
	prefix := fmt.Sprintf("f%d", r.sched.Seed)
	for i := range r.w.Accounts {
		id := fmt.Sprintf("%s-acc%d", prefix, i)
		r.hist.Accounts = append(r.hist.Accounts, id)
		c := r.newCommand(CmdOpen, id)
		c.Amount = money.Amount(rnd.IntN(5)+1) * 100 * money.Amount(unit)
		r.command(ctx, c, http.MethodPost, "/accounts/"+id+"/open", map[string]any{"initialDeposit": c.Amount})
	}
	for i := range r.w.Products {
		id := fmt.Sprintf("%s-prod%d", prefix, i)
		r.hist.Products = append(r.hist.Products, id)
		c := r.newCommand(CmdStock, id)
		c.Quantity = rnd.IntN(6) + 2
		r.command(ctx, c, http.MethodPost, "/products/"+id+"/stock", map[string]any{"quantity": c.Quantity})
	}
	for range r.w.Commands {
		acc := r.hist.Accounts[rnd.IntN(len(r.hist.Accounts))]
		switch x := rnd.IntN(100); {
		case x < 35:
			c := r.newCommand(CmdDeposit, acc)
			c.Amount = money.Amount(rnd.IntN(50)+1) * money.Amount(unit)
			r.command(ctx, c, http.MethodPost, "/accounts/"+acc+"/deposit", map[string]any{"amount": c.Amount})
		case x < 55:
			c := r.newCommand(CmdWithdraw, acc)
			c.Amount = money.Amount(rnd.IntN(80)+1) * money.Amount(unit)
			r.command(ctx, c, http.MethodPost, "/accounts/"+acc+"/withdraw", map[string]any{"amount": c.Amount})
		case x < 70:
			// A versioned command without a key: If-Match makes its retries safe.
			c := r.newCommand(CmdDeposit, acc)
			c.Key, c.IfMatch = "", true
			c.Amount = money.Amount(rnd.IntN(50)+1) * money.Amount(unit)
			r.command(ctx, c, http.MethodPost, "/accounts/"+acc+"/deposit", map[string]any{"amount": c.Amount})
		default:
			id := fmt.Sprintf("%s-ord%d", prefix, len(r.hist.Orders))
			r.hist.Orders = append(r.hist.Orders, id)
			c := r.newCommand(CmdPlace, id)
			c.Account = acc
			perm := rnd.Perm(len(r.hist.Products))
			for _, p := range perm[:rnd.IntN(min(2, len(perm)))+1] {
				c.Items = append(c.Items, orders.Item{ProductID: r.hist.Products[p], Quantity: rnd.IntN(3) + 1,
					Price: money.Amount(rnd.IntN(40)+1) * money.Amount(unit)})
			}
			r.command(ctx, c, http.MethodPost, "/orders/"+id+"/place", map[string]any{"customerId": prefix + "-cust",
				"paymentAccountId": acc, "items": c.Items})
		}
		if rnd.IntN(3) == 0 {
			r.pump(ctx)
		}
		if rnd.IntN(25) == 0 {
			// An operator redrives what was parked: a crash can hit mid redrive.
			r.operate(ctx, "/dead-letters/redrive")
		}
		if rnd.IntN(25) == 0 {
			// An operator rebuilds a projection (the saga included: a rebuild replays the
			// orders, and must not pay for them again).
			var names []string
			for _, p := range r.sys.Engine.Projections() {
				if slices.ContainsFunc(p.AggregateTypes(), func(t string) bool {
					return t == bank.AggregateType || t == orders.AggregateType || t == orders.ProductType
				}) {
					names = append(names, p.Name())
				}
			}
			r.operate(ctx, "/projections/"+names[rnd.IntN(len(names))]+"/rebuild")
		}
	}
	return nil
}

// operate sends an operator's POST until it succeeds (a rebuild is safe to repeat).
func (r *run) operate(ctx context.Context, path string) {
	r.sched.SetDuring("operator POST " + path)
	for range r.w.MaxTries {
		if r.proc.Crashed() {
			if err := r.restart(ctx); err != nil {
				return
			}
		}
		a, ok := r.serve(ctx, http.MethodPost, path, nil, nil)
		if ok && !a.Lost && a.Status < 500 {
			return
		}
	}
}

// unit is one currency unit in money.Amount's fixed point.
var unit = func() money.Amount {
	a, err := money.Parse("1")
	if err != nil {
		panic(err)
	}
	return a
}()

// quiesce turns faults off, restarts once more, races a few unversioned commands, and
// runs projections, the saga and redrives until nothing moves.
func (r *run) quiesce(ctx context.Context) error {
	r.sched.SetEnabled(false)
	if err := r.restart(ctx); err != nil {
		return err
	}
	r.contend(ctx)
	streams := r.streams()
	for round := 0; round < 30; round++ {
		before, err := r.eventCount(ctx)
		if err != nil {
			return err
		}
		movedAny := false
		for range 200 {
			var moved bool
			var err error
			if r.t.Pump != nil {
				moved, err = r.t.Pump(ctx, r.sys, r.sched)
			} else {
				moved, err = r.sys.Runner.Step(ctx)
			}
			if err != nil {
				return fmt.Errorf("settling: projections: %w", err)
			}
			if !moved {
				break
			}
			movedAny = true
		}
		if r.t.Settle != nil {
			if err := r.t.Settle(ctx, r.sys, streams); err != nil {
				return fmt.Errorf("settling: %w", err)
			}
		}
		res, err := r.sys.Engine.Redrive(ctx)
		if err != nil {
			return fmt.Errorf("settling: redrive: %w", err)
		}
		after, err := r.eventCount(ctx)
		if err != nil {
			return err
		}
		// Quiet: a whole round in which nothing was delivered, redriven or appended (the
		// saga appends while it settles; its events must reach the read models too).
		if !movedAny && res.Redriven == 0 && after == before && r.settled(ctx) {
			return nil
		}
	}
	return nil // the checker reports what did not settle
}

func (r *run) eventCount(ctx context.Context) (int, error) {
	n := 0
	for _, st := range r.streams() {
		evs, err := r.t.Base.Store.Load(ctx, st, eventstore.Range{})
		if err != nil {
			return 0, fmt.Errorf("settling: read %s: %w", st, err)
		}
		n += len(evs)
	}
	return n, nil
}

// settled: no dead letters and every order the store has is past the saga.
func (r *run) settled(ctx context.Context) bool {
	dls, err := r.sys.Engine.DeadLetters(ctx)
	if err != nil || len(dls) > 0 {
		return false
	}
	for _, id := range r.hist.Orders {
		evs, err := r.t.Base.Store.Load(ctx, eventstore.Stream{Type: orders.AggregateType, ID: id}, eventstore.Range{})
		if err != nil {
			return false
		}
		if len(evs) == 0 {
			continue
		}
		switch evs[len(evs)-1].EventType {
		case orders.Confirmed, orders.Cancelled, orders.Shipped:
		default:
			return false
		}
	}
	return true
}

func (r *run) streams() []eventstore.Stream {
	var out []eventstore.Stream
	for _, id := range r.hist.Orders { // orders first: the saga writes to the others
		out = append(out, eventstore.Stream{Type: orders.AggregateType, ID: id})
	}
	for _, id := range r.hist.Accounts {
		out = append(out, eventstore.Stream{Type: bank.AggregateType, ID: id})
	}
	for _, id := range r.hist.Products {
		out = append(out, eventstore.Stream{Type: orders.ProductType, ID: id})
	}
	return out
}

// contend races unversioned, unkeyed deposits on one account. Without a key they are
// never retried (a retry could apply twice); without an expected version the store's
// conflicts are the server's to resolve, so none may be answered 409.
func (r *run) contend(ctx context.Context) {
	if r.w.Contenders == 0 || len(r.hist.Accounts) == 0 {
		return
	}
	acc := r.hist.Accounts[0]
	var cmds []*Command
	for range r.w.Contenders * r.w.PerContender {
		c := r.newCommand(CmdDeposit, acc)
		c.Key, c.Amount, c.Concurrent = "", unit, true
		cmds = append(cmds, c)
	}
	var wg sync.WaitGroup
	for g := range r.w.Contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range cmds[g*r.w.PerContender : (g+1)*r.w.PerContender] {
				a, ok := r.serve(ctx, http.MethodPost, "/accounts/"+acc+"/deposit", map[string]any{"amount": c.Amount},
					map[string]string{"X-Correlation-Id": c.Correlation})
				if ok {
					c.Answers = append(c.Answers, a)
					c.Final = &c.Answers[0]
				}
			}
		}()
	}
	wg.Wait()
	r.hist.Commands = append(r.hist.Commands, cmds...)
}

// collect reads the raw store, the replays and the read models.
func (r *run) collect(ctx context.Context) error {
	r.hist.Events = map[eventstore.Stream][]event.Event{}
	for _, st := range r.streams() {
		evs, err := r.t.Base.Store.Load(ctx, st, eventstore.Range{})
		if err != nil {
			return fmt.Errorf("read %s: %w", st, err)
		}
		if len(evs) > 0 {
			r.hist.Events[st] = evs
		}
	}
	var paths []string
	for _, id := range r.hist.Accounts {
		paths = append(paths, "/accounts/"+id)
	}
	for _, id := range r.hist.Products {
		paths = append(paths, "/products/"+id)
	}
	for _, id := range r.hist.Orders {
		paths = append(paths, "/orders/"+id)
	}
	for _, p := range paths {
		for _, q := range []string{"?consistent=true", ""} {
			a, ok := r.serve(ctx, http.MethodGet, p+q, nil, nil)
			if !ok || a.Status == 404 {
				continue
			}
			if a.Status != 200 {
				return fmt.Errorf("GET %s%s after settling: %s", p, q, a)
			}
			if q == "" {
				r.hist.ReadModel[p] = json.RawMessage(a.Body)
			} else {
				r.hist.Replay[p] = json.RawMessage(a.Body)
			}
		}
	}
	dls, err := r.sys.Engine.DeadLetters(ctx)
	if err != nil {
		return err
	}
	for _, d := range dls {
		r.hist.DeadLetters = append(r.hist.DeadLetters, fmt.Sprintf("%s %s v%d %s: %s", d.Projection, d.AggregateID, d.Version, d.EventType, d.Error))
	}
	sort.Strings(r.hist.DeadLetters)
	return nil
}
