// Package faults injects seeded, reproducible failures into the storage operations of an
// assembled system and checks afterwards that the product kept its promises: every
// command takes effect exactly once and nothing acknowledged is lost, whatever failed.
//
// A Schedule decides, from a seed, what happens to each storage operation; a Process is
// one assembled system whose storage goes through wrappers (Store, Docs, and the AWS SDK
// middleware of DynamoDBOptions) that consult the schedule. A Crash kills the process: it
// and every later operation through its wrappers fail with ErrCrashed until the harness
// assembles a new process over the same underlying store. Check reads the whole history
// afterwards and reports every invariant that does not hold.
package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Kind is what the schedule does to one operation.
type Kind int

const (
	None Kind = iota
	// ErrorBefore: the operation is not performed; an error is returned.
	ErrorBefore
	// LostResponse: the operation is performed, then an error is returned, as a
	// connection reset after the request reached the server would look.
	LostResponse
	// Throttle: the store's typed throttle error (eventstore.ThrottledError); not performed.
	Throttle
	// Timeout: context.DeadlineExceeded; performed or not, at random.
	Timeout
	// Crash: performed or not at random, then the process is dead.
	Crash
	numKinds
)

var kindNames = [...]string{"none", "error-before", "lost-response", "throttle", "timeout", "crash"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ErrCrashed is returned by every operation of a process after its crash.
var ErrCrashed = errors.New("faults: process crashed")

// ErrInjected is what errors the schedule made match (errors.Is), whatever their kind.
var ErrInjected = errors.New("faults: injected failure")

// InjectedError is one injected failure. It unwraps to ErrInjected and, for Timeout, to
// context.DeadlineExceeded (so retry logic sees what a real timeout would show).
type InjectedError struct {
	Kind      Kind
	Op        string
	Performed bool
}

func (e *InjectedError) Error() string {
	if e.Kind == Timeout {
		return fmt.Sprintf("%s: %v (injected)", e.Op, context.DeadlineExceeded)
	}
	return fmt.Sprintf("%s: connection dropped (injected %s)", e.Op, e.Kind)
}

func (e *InjectedError) Unwrap() []error {
	if e.Kind == Timeout {
		return []error{ErrInjected, context.DeadlineExceeded}
	}
	return []error{ErrInjected}
}

// Rates are the probabilities, per operation, of each fault kind (the rest is None).
type Rates struct {
	ErrorBefore, LostResponse, Throttle, Timeout, Crash float64
}

func (r Rates) total() float64 {
	return r.ErrorBefore + r.LostResponse + r.Throttle + r.Timeout + r.Crash
}

// Config configures a schedule: Default for every operation, Ops overriding it per
// operation name ("events.Append", "docs.Update", "dynamodb.PutItem", "http.response"…).
type Config struct {
	Default Rates
	Ops     map[string]Rates
}

// Schedule is the seeded source of every fault decision. Decisions are taken in the order
// operations arrive, so a sequential workload with the same seed sees the same faults.
type Schedule struct {
	Seed uint64
	cfg  Config

	mu      sync.Mutex
	rnd     *rand.Rand
	enabled bool
	seen    map[string]int // operation name → how many times it was called
	counts  [numKinds]int
	crashes []CrashPoint
	log     []Decision
	during  string
}

// CrashPoint names where a crash hit: the operation and its ordinal among the calls of
// that operation (1-based), and whether the operation had been performed.
type CrashPoint struct {
	Op        string
	N         int
	Performed bool
	During    string // what the harness was doing (SetDuring)
}

func (c CrashPoint) String() string {
	p := "not performed"
	if c.Performed {
		p = "performed"
	}
	return fmt.Sprintf("%s#%d (%s) during %s", c.Op, c.N, p, c.During)
}

// Decision is one injected fault, for the failure report.
type Decision struct {
	Op        string
	N         int
	Kind      Kind
	Performed bool
	During    string
}

// SetDuring names what the harness does next ("command #12 deposit …", "projections"),
// for the report of the faults injected meanwhile.
func (s *Schedule) SetDuring(what string) {
	s.mu.Lock()
	s.during = what
	s.mu.Unlock()
}

// NewSchedule returns an enabled schedule for seed.
func NewSchedule(seed uint64, cfg Config) *Schedule {
	return &Schedule{Seed: seed, cfg: cfg, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		enabled: true, seen: map[string]int{}}
}

// SetEnabled turns injection on or off (quiescence turns it off).
func (s *Schedule) SetEnabled(on bool) {
	s.mu.Lock()
	s.enabled = on
	s.mu.Unlock()
}

// Rand draws from the schedule's own stream, for harness decisions that must replay with
// the seed (which request's HTTP answer is lost, batch shuffles).
func (s *Schedule) Rand(fn func(r *rand.Rand)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.rnd)
}

// decide picks the fault for one call of op.
func (s *Schedule) decide(op string) (Kind, bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[op]++
	n := s.seen[op]
	if !s.enabled {
		return None, true, n
	}
	r, ok := s.cfg.Ops[op]
	if !ok {
		r = s.cfg.Default
	}
	if r.total() == 0 {
		return None, true, n
	}
	x := s.rnd.Float64()
	k := None
	for i, p := range []float64{r.ErrorBefore, r.LostResponse, r.Throttle, r.Timeout, r.Crash} {
		if x < p {
			k = Kind(i + 1)
			break
		}
		x -= p
	}
	performed := false
	switch k {
	case None:
		return None, true, n
	case LostResponse:
		performed = true
	case Timeout, Crash:
		performed = s.rnd.IntN(2) == 0
	}
	s.counts[k]++
	s.log = append(s.log, Decision{Op: op, N: n, Kind: k, Performed: performed, During: s.during})
	if k == Crash {
		s.crashes = append(s.crashes, CrashPoint{Op: op, N: n, Performed: performed, During: s.during})
	}
	return k, performed, n
}

// Counts returns how many faults of each kind were injected.
func (s *Schedule) Counts() map[Kind]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[Kind]int{}
	for k := ErrorBefore; k < numKinds; k++ {
		out[k] = s.counts[k]
	}
	return out
}

// Crashes returns the crash points hit, in order.
func (s *Schedule) Crashes() []CrashPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CrashPoint(nil), s.crashes...)
}

// Decisions returns every injected fault, in order.
func (s *Schedule) Decisions() []Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Decision(nil), s.log...)
}

// Tally sums fault counts over many schedules, for the summary line.
type Tally struct {
	Schedules  int
	Kinds      [numKinds]int
	Violations map[string]int // invariant → schedules violating it
	Failed     []uint64       // seeds with a violation
}

// Add adds one schedule's counts and violations.
func (t *Tally) Add(s *Schedule, vs []Violation) {
	t.Schedules++
	for k, n := range s.Counts() {
		t.Kinds[k] += n
	}
	if len(vs) == 0 {
		return
	}
	if t.Violations == nil {
		t.Violations = map[string]int{}
	}
	seen := map[string]bool{}
	for _, v := range vs {
		if !seen[v.Invariant] {
			seen[v.Invariant] = true
			t.Violations[v.Invariant]++
		}
	}
	t.Failed = append(t.Failed, s.Seed)
}

func (t *Tally) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d schedules; faults:", t.Schedules)
	for k := ErrorBefore; k < numKinds; k++ {
		fmt.Fprintf(&b, " %s=%d", k, t.Kinds[k])
	}
	total := 0
	var names []string
	for n, c := range t.Violations {
		total += c
		names = append(names, fmt.Sprintf("%s=%d", n, c))
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "; schedules with violations: %d", len(t.Failed))
	if len(names) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(names, " "))
	}
	return b.String()
}

// Process is one assembled system: every wrapper built for it consults its schedule and
// fails with ErrCrashed once it has crashed.
type Process struct {
	Schedule *Schedule
	ID       int
	crashed  atomic.Bool
}

// NewProcess returns a live process on schedule s.
func NewProcess(s *Schedule, id int) *Process { return &Process{Schedule: s, ID: id} }

// Crashed reports whether the process has crashed.
func (p *Process) Crashed() bool { return p.crashed.Load() }

// Crash kills the process from outside (a harness-chosen crash between steps).
func (p *Process) Crash() { p.crashed.Store(true) }

// Do runs one storage operation through the schedule. fn performs it; its error is
// returned unless a fault replaces it.
func (p *Process) Do(ctx context.Context, op string, fn func(context.Context) error) error {
	if p.crashed.Load() {
		return fmt.Errorf("%s: %w", op, ErrCrashed)
	}
	k, performed, _ := p.Schedule.decide(op)
	switch k {
	case None:
		return fn(ctx)
	case ErrorBefore:
		return &InjectedError{Kind: k, Op: op}
	case Throttle:
		return &eventstore.ThrottledError{RetryAfter: time.Second, Err: &InjectedError{Kind: k, Op: op}}
	case LostResponse, Timeout:
		if performed {
			_ = fn(ctx)
		}
		return &InjectedError{Kind: k, Op: op, Performed: performed}
	case Crash:
		if performed {
			_ = fn(ctx)
		}
		p.crashed.Store(true)
		return fmt.Errorf("%s: %w", op, ErrCrashed)
	}
	return fn(ctx)
}
